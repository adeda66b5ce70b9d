/**
 * The build sandbox against crates written by an attacker: every way to read a host file or
 * the environment at compile time, to run a command, or to wear the builder down, each
 * refused or contained (real bubblewrap, real rustc/LLVM; bpf target where the variant allows).
 */
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildNf,
  cacheDir,
  DEFAULT_SANDBOX_LIMITS,
  NfBuildLimitError,
  runTool,
  type SandboxRun,
  type Target,
} from "../src/index";
import { exampleDir, repoRoot } from "./support";

const SECRET_ENV = "GALETTE_SANDBOX_TEST_SECRET";
const secret = `s3cret-${randomBytes(12).toString("hex")}`;
let root: string;
/** a file only the host can see: what an attacker would aim at (a key in the data dir) */
let hostKey: string;
let marker: string;

const NF_TAIL = `
use nf::Packet;
pub enum Action { Pass }
pub fn packet(_pkt: &mut Packet) -> Action { Action::Pass }
`;

/** An NF crate that builds for bpf unless `extra` (lib.rs lines) or `toml` (Cargo.toml lines) stop it. */
function crate(
  name: string,
  extra: string,
  opts: { toml?: string; std?: boolean; files?: Record<string, string> } = {},
) {
  const dir = path.join(root, "crates", name);
  mkdirSync(path.join(dir, "src"), { recursive: true });
  writeFileSync(
    path.join(dir, "Cargo.toml"),
    `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n${opts.toml ?? ""}\n[dependencies]\nnf = { path = "../nf" }\n`,
  );
  writeFileSync(path.join(dir, "src", "lib.rs"), `${opts.std ? "" : "#![no_std]\n"}${extra}\n${NF_TAIL}`);
  for (const [file, text] of Object.entries(opts.files ?? {})) writeFileSync(path.join(dir, file), text);
  return dir;
}

async function failure(dir: string, targets: Target[] = ["bpf"], limits = {}): Promise<Error> {
  try {
    await buildNf(dir, { targets, sandbox: { limits } });
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${dir} built, but should not have`);
}

/** Nothing of the secrets in a message or an artifact. */
function expectNoSecret(text: string | Buffer) {
  const s = Buffer.isBuffer(text) ? text.toString("latin1") : text;
  expect(s).not.toContain(secret);
  expect(s).not.toContain(readFileSync(hostKey, "utf8").trim());
  // /etc/shadow's first line (root's entry)
  expect(s).not.toMatch(/root:[^:\n]*:\d+:/);
}

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), "galette-sandbox-"));
  const data = path.join(root, "data");
  mkdirSync(data, { mode: 0o700 });
  hostKey = path.join(data, "ca.key");
  writeFileSync(hostKey, `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----\n`, {
    mode: 0o600,
  });
  marker = path.join(root, "marker");
  process.env[SECRET_ENV] = secret;
});
afterAll(() => {
  delete process.env[SECRET_ENV];
  rmSync(root, { recursive: true, force: true });
});

describe("the sandbox itself", () => {
  it("runs a command as nobody, with no capabilities, no network, a clean environment and none of the host's files", async () => {
    const out = path.join(root, "run-out");
    mkdirSync(out);
    const run: SandboxRun = {
      readOnly: [],
      writable: [out],
      cwd: out,
      limits: DEFAULT_SANDBOX_LIMITS,
      uid: 65534,
      gid: 65534,
      deadline: Date.now() + 30_000,
    };
    const { chownSync } = await import("node:fs");
    chownSync(out, 65534, 65534);
    // what a linker wrapper or build script would do if it ever ran
    const script = [
      "id -u",
      "grep CapEff /proc/self/status",
      "ls /",
      "cat /proc/net/dev | tail -n +3 | cut -d: -f1",
      "env",
      // no descriptor of the host process (database, keys, sockets) is inherited
      "ls /proc/self/fd",
      `cat ${hostKey} /etc/shadow 2>&1 || true`,
      `touch ${marker} 2>&1 || true`,
      "touch /usr/bin/galette-sandbox-probe 2>&1 || true",
    ].join("; echo ---; ");
    const { stdout } = await runTool("/bin/sh", ["-c", script], { what: "probe", sandbox: run });
    const [uid, caps, top, ifaces, env, fds] = stdout.split("---\n").map((s) => s.trim());
    expect(uid).toBe("65534");
    expect(caps).toMatch(/CapEff:\s+0+$/);
    expect(top?.split("\n").sort()).toEqual(["bin", "dev", "lib", "lib64", "proc", "sbin", "tmp", "usr"]);
    expect(ifaces?.split("\n").map((s) => s.trim())).toEqual(["lo"]);
    expect(env).not.toContain(SECRET_ENV);
    // stdin/stdout/stderr and the directory ls itself opened
    expect(fds?.split("\n").sort()).toEqual(["0", "1", "2", "3"]);
    expectNoSecret(stdout);
    expect(stdout).toMatch(/No such file or directory/);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync("/usr/bin/galette-sandbox-probe")).toBe(false);
  });

  it("kills a step at the wall-clock limit and names it", async () => {
    const run: SandboxRun = {
      readOnly: [],
      writable: [],
      cwd: "/",
      limits: { ...DEFAULT_SANDBOX_LIMITS, wallMs: 1000 },
      uid: 65534,
      gid: 65534,
      deadline: Date.now() + 1000,
    };
    const started = Date.now();
    const err = await runTool("/bin/sh", ["-c", "sleep 60"], { what: "sleep", sandbox: run }).catch((e) => e);
    expect(err).toBeInstanceOf(NfBuildLimitError);
    expect((err as NfBuildLimitError).limit).toBe("wallMs");
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe("hostile NF crates in the sandbox", () => {
  it("builds an example the same way, with crate-relative paths in its debug info", async () => {
    const r = await buildNf(exampleDir("macswap"), { targets: ["bpf"], sandbox: true });
    const obj = readFileSync(r.artifacts[0]!.file);
    expect(obj.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
    // no directory of this machine: not the crate's, the build cache's or Galette's own
    for (const dir of [path.resolve(exampleDir("macswap")), cacheDir(), repoRoot])
      expect(obj.toString("latin1")).not.toContain(dir);
  });

  it("locates a panic path in the author's code, crate-relative", async () => {
    const err = await failure(path.join(repoRoot, "packages/nf-build/test/fixtures/bad-nfs/unchecked-index"));
    expect(err.message).toContain(
      "unchecked-index/src/lib.rs:13:9: calls core::panicking::panic_bounds_check",
    );
  });

  it("refuses to read host files or the environment at compile time (include_*!, #[path], env!, asm .incbin)", async () => {
    const aims = [hostKey, "/etc/shadow"];
    const cases: Array<[string, string, Target]> = [];
    aims.forEach((file, i) => {
      cases.push(
        [`include-str-${i}`, `pub static S: &str = include_str!(${JSON.stringify(file)});`, "bpf"],
        [`include-bytes-${i}`, `pub static S: &[u8] = include_bytes!(${JSON.stringify(file)});`, "bpf"],
        [`include-${i}`, `pub const S: &str = include!(${JSON.stringify(file)});`, "bpf"],
        [`path-mod-${i}`, `#[path = ${JSON.stringify(file)}] mod m;`, "bpf"],
        [`doc-${i}`, `#[doc = include_str!(${JSON.stringify(file)})] pub struct D;`, "bpf"],
        // the assembler reads .incbin files itself (x86_64: asm! is stable there)
        [
          `incbin-${i}`,
          `core::arch::global_asm!(".section .rodata.k\\n.incbin \\"${file}\\"\\n.previous");`,
          "x86_64",
        ],
      );
    });
    // relative to the crate: up into the directory next to it
    cases.push(["include-relative", `pub static S: &str = include_str!("../../../data/ca.key");`, "bpf"]);
    cases.push(["env", `pub static S: &str = env!("${SECRET_ENV}");`, "bpf"]);
    cases.push(["concat-env", `pub static S: &str = concat!("k=", env!("${SECRET_ENV}"));`, "bpf"]);
    for (const [name, line, target] of cases) {
      const err = await failure(crate(name, line), [target]);
      expect(err.message, name).toMatch(/does not compile/);
      expect(err.message, name).toMatch(/No such file|not defined at compile time|Could not find incbin/);
      expectNoSecret(err.message);
    }
  });

  it("builds option_env! of a secret as None: the artifact holds nothing of it", async () => {
    const dir = crate(
      "option-env",
      `#[unsafe(no_mangle)] pub static LEAK: [u8; 32] = match option_env!("${SECRET_ENV}") { Some(_) => [1; 32], None => [0; 32] };`,
    );
    const r = await buildNf(dir, { targets: ["bpf", "x86_64"], sandbox: true });
    for (const a of r.artifacts) expectNoSecret(readFileSync(a.file));
  });

  it("gives author code no unstable features and runs no linker argument from it", async () => {
    const cases: Array<[string, string]> = [
      [
        "link-arg",
        `#![feature(link_arg_attribute)]\n#[link(kind = "link-arg", name = "-Wl,--wrapper,touch ${marker}", modifiers = "+verbatim")] extern "C" {}`,
      ],
      ["plugin", `#![feature(plugin)]\n#![plugin(evil)]`],
      ["asm-bpf", `#![feature(asm_experimental_arch)]\ncore::arch::global_asm!(".incbin \\"${hostKey}\\"");`],
    ];
    for (const [name, line] of cases) {
      const err = await failure(crate(name, line), ["x86_64"]);
      // E0554: no #![feature] on stable; E0557: the feature is gone altogether
      expect(err.message, name).toMatch(/error\[E055[47]\]/);
    }
    // a stable #[link] names a library; it cannot smuggle an option to the linker
    const err = await failure(
      crate(
        "link-name",
        `#[link(name = "-Wl,--wrapper=touch ${marker}", kind = "dylib", modifiers = "+verbatim")] extern "C" { fn galette_x(); }\n#[unsafe(no_mangle)] pub extern "C" fn keep() { unsafe { galette_x() } }`,
      ),
      ["x86_64"],
    );
    expect(err.message).toMatch(/does not compile|glue|linking/);
    expect(existsSync(marker)).toBe(false);
  });

  it("contains what stable attributes allow: crate-type/crate-name overrides, proc_macro, link_section, static link of a host file", async () => {
    const failing: Array<[string, string, RegExp]> = [
      ["crate-name", `#![crate_name = "evil"]`, /crate-name.*crate_name|crate_name.*crate-name|must match/],
      [
        "static-host-file",
        `#[link(name = ":${hostKey}", kind = "static", modifiers = "+verbatim")] extern "C" { fn galette_y(); }\n#[unsafe(no_mangle)] pub extern "C" fn keep() { unsafe { galette_y() } }`,
        /could not find native static library|cannot find|No such file|does not compile|linking/,
      ],
    ];
    for (const [name, line, message] of failing) {
      const err = await failure(crate(name, line), ["x86_64"]);
      expect(err.message, name).toMatch(message);
      expectNoSecret(err.message);
    }
    // these build (the command line's --crate-type wins; proc_macro is a library like any
    // other; a section is a name): nothing of them runs at build time and nothing leaks
    const building: Array<[string, string]> = [
      ["crate-type", `#![crate_type = "proc-macro"]`],
      ["extern-proc-macro", "extern crate proc_macro;"],
      [
        "link-section",
        `#[unsafe(link_section = ".init_array")] #[used] pub static INIT: extern "C" fn() = init;\npub extern "C" fn init() {}`,
      ],
    ];
    for (const [name, line] of building) {
      const r = await buildNf(crate(name, line), { targets: ["bpf"], sandbox: true }).catch((e: Error) => e);
      if (r instanceof Error) expectNoSecret(r.message);
      else for (const a of r.artifacts) expectNoSecret(readFileSync(a.file));
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses manifests that reach outside the crate or would run code at build time", async () => {
    const cases: Array<[string, string | undefined, Record<string, string> | undefined, RegExp]> = [
      ["lib-abs", `[lib]\npath = "${hostKey}"\n`, undefined, /\[lib\] path .* is outside the crate/],
      ["lib-up", `[lib]\npath = "../../data/ca.key"\n`, undefined, /\[lib\] path .* is outside the crate/],
      ["build-script", `build = "build.rs"\n`, undefined, /cannot have a build script/],
      [
        "build-rs",
        undefined,
        { "build.rs": "fn main() {}" },
        /build\.rs: NF crates cannot have a build script/,
      ],
      ["proc-macro", `[lib]\nproc-macro = true\n`, undefined, /cannot be a procedural macro/],
      ["other-dep", `[dependencies.evil]\npath = "/root"\n`, undefined, /may depend only on `nf`/],
    ];
    for (const [name, toml, files, expected] of cases) {
      const dir = crate(name, "", { ...(toml ? { toml } : {}), ...(files ? { files } : {}) });
      const err = await failure(dir);
      expect(err.name, name).toBe("NfAnalysisError");
      expect(err.message, name).toMatch(expected);
    }
    const badName = crate("bad-name", "");
    writeFileSync(
      path.join(badName, "Cargo.toml"),
      `[package]\nname = "../../etc"\nversion = "0.1.0"\n[dependencies]\nnf = { path = "../nf" }\n`,
    );
    expect((await failure(badName)).message).toMatch(/is not a valid NF name/);
  });

  it("kills a const-eval infinite loop at the wall-clock limit, leaving no process behind", async () => {
    const name = `spin-${randomBytes(4).toString("hex")}`;
    const dir = crate(
      name,
      "#![allow(long_running_const_eval)]\nconst fn spin() -> u32 { let mut i = 0u32; loop { i = i.wrapping_add(1); if i == 0 { i = 1 } } }\npub const X: u32 = spin();",
    );
    const started = Date.now();
    const err = await failure(dir, ["bpf"], { wallMs: 4000 });
    expect(err.message).toMatch(/killed at the wall-clock time limit/);
    expect(Date.now() - started).toBeLessThan(60_000);
    // the whole sandbox went with it: no process still working on this crate (its scratch dir is named after it)
    const compiling = () =>
      readdirSync("/proc")
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, "latin1").includes(name);
          } catch {
            return false; // exited while we looked
          }
        });
    for (let i = 0; i < 50 && compiling().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(compiling()).toEqual([]);
  });

  it("kills a compiler at the CPU-time limit and names it", async () => {
    const dir = crate(
      `cpu-${randomBytes(4).toString("hex")}`,
      "#![allow(long_running_const_eval)]\nconst fn spin() -> u32 { let mut i = 0u32; loop { i = i.wrapping_add(1); if i == 0 { i = 1 } } }\npub const X: u32 = spin();",
    );
    const err = await failure(dir, ["bpf"], { cpuSeconds: 2, wallMs: 120_000 });
    expect(err.message).toMatch(/killed at the CPU time limit \(2 s per process\)/);
  });

  it("kills a build whose compiler messages pass the output limit, and cuts messages it returns", async () => {
    const calls = (inner: string) => Array.from({ length: 10 }, () => `${inner}!();`).join(" ");
    const dir = crate(
      "loud",
      [
        `#[deprecated(note = "${"x".repeat(100)}")] pub fn d() {}`,
        `macro_rules! c1 { () => { ${Array.from({ length: 10 }, () => "d();").join(" ")} } }`,
        `macro_rules! c2 { () => { ${calls("c1")} } }`,
        `macro_rules! c3 { () => { ${calls("c2")} } }`,
        `macro_rules! c4 { () => { ${calls("c3")} } }`,
        "pub fn loud() { c4!(); }",
      ].join("\n"),
    );
    const err = await failure(dir, ["bpf"], { outputBytes: 64 * 1024 });
    expect(err.message).toMatch(/killed at the compiler output size limit/);
    expect(err.message.length).toBeLessThan(20_000);
  });

  it("stops a step at the memory limit", async () => {
    const dir = crate("hungry", "pub static BIG: [u8; 1 << 31] = [1; 1 << 31];");
    const err = await failure(dir, ["bpf"], { memoryBytes: 1024 ** 3 });
    expect(err.message).toMatch(/killed at the memory limit/);
  });
});
