/**
 * POST /v1/nfs against uploads written by an attacker, on a real controller with the real
 * sandboxed builder: every crate is refused or contained, nothing of the controller's keys,
 * database, /etc/shadow or environment comes back, no command runs on the host, and the
 * device API keeps answering throughout.
 */
import { randomBytes } from "node:crypto";
import {
  existsSync,
  linkSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header, type HeaderData } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nfBuilderForServe } from "../src/nf-builder";
import { type Harness, MACSWAP_RS, startHarness, type TestResponse, tarOf, writeCrate } from "./helpers";

const SECRET_ENV = "GALETTE_HOSTILE_TEST_SECRET";
const secret = `env-${randomBytes(12).toString("hex")}`;
const NF_TAIL =
  "\nuse nf::Packet;\npub enum Action { Pass }\npub fn packet(_pkt: &mut Packet) -> Action { Action::Pass }\n";

describe("hostile NF uploads", () => {
  let h: Harness;
  let scratch: string;
  let marker: string;
  /** what must never leave the controller: its keys, its database, /etc/shadow, its environment */
  let secrets: string[];
  let targets: Record<string, string>;
  const polls: TestResponse["status"][] = [];
  let polling = true;
  let poller: Promise<void> | undefined;

  const publish = (body: Buffer, contentType = "application/x-tar") =>
    h.call("/v1/nfs", { method: "POST", token: h.token, headers: { "content-type": contentType }, body });

  function crate(name: string, extra: string, toml = ""): Buffer {
    const dir = writeCrate(scratch, name, `#![no_std]\n${extra}\n${NF_TAIL}`);
    if (toml) {
      const manifest = join(dir, "Cargo.toml");
      const text = readFileSync(manifest, "utf8").replace("[dependencies]", `${toml}\n[dependencies]`);
      writeFileSync(manifest, text);
    }
    return tarOf(scratch, name);
  }

  function expectNothingLeaked(res: TestResponse) {
    const body = res.body.toString("latin1");
    for (const s of secrets) expect(body).not.toContain(s);
    // the staging directory the upload was unpacked in
    expect(body).not.toContain(join(h.dir, "nf-sources"));
  }

  /** No artifact or stored source of the controller holds a secret. */
  function expectNothingStored() {
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
      );
    for (const file of walk(join(h.dir, "artifacts"))) {
      const bytes = readFileSync(file).toString("latin1");
      for (const s of secrets) expect(bytes, file).not.toContain(s);
    }
  }

  beforeAll(async () => {
    process.env[SECRET_ENV] = secret;
    scratch = mkdtempSync(join(tmpdir(), "galette-hostile-"));
    marker = join(scratch, "marker");
    h = await startHarness({
      nfBuilder: nfBuilderForServe(["bpf"], {
        concurrency: 2,
        limits: { wallMs: 8_000, outputBytes: 128 * 1024 },
      }),
    });
    const keyBody = (file: string) => readFileSync(join(h.dir, file), "utf8").split("\n")[3] ?? "";
    targets = {
      caKey: join(h.dir, "ca.key"),
      serverKey: join(h.dir, "server.key"),
      database: join(h.dir, "galette.db"),
      shadow: "/etc/shadow",
    };
    secrets = [
      secret,
      keyBody("ca.key"),
      keyBody("server.key"),
      // whole lines of /etc/shadow (user:hash:dates)
      ...readFileSync("/etc/shadow", "utf8")
        .split("\n")
        .filter((l) => l.includes(":"))
        .slice(0, 3),
    ];
    for (const s of secrets) expect(s.length).toBeGreaterThan(4);
    await h.enrol("poller");
    // the device API, polled all along: every answer must come (and none may be a 5xx)
    poller = (async () => {
      while (polling) {
        const res = await h.call("/v1/device/assignment?arch=x86_64", { client: h.asDevice("poller") });
        polls.push(res.status);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  });
  afterAll(async () => {
    polling = false;
    await poller;
    delete process.env[SECRET_ENV];
    await h?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("reads no host file or environment variable through include_str!/include_bytes!/include!/#[path]/env!/[lib] path", async () => {
    let n = 0;
    for (const [what, file] of Object.entries(targets)) {
      const lit = JSON.stringify(file);
      for (const line of [
        `pub static S: &str = include_str!(${lit});`,
        `pub static S: &[u8] = include_bytes!(${lit});`,
        `pub const S: &str = include!(${lit});`,
        `#[path = ${lit}] mod m;`,
      ]) {
        const res = await publish(crate(`read-${what.toLowerCase()}-${n++}`, line));
        expect(res.status, `${what}: ${line}`).toBe(422);
        expect(res.json<{ error: string }>().error).toMatch(/No such file|does not compile/);
        expectNothingLeaked(res);
      }
      const viaLib = await publish(crate(`lib-${what.toLowerCase()}`, "", `[lib]\npath = ${lit}`));
      expect(viaLib.status, what).toBe(400);
      expect(viaLib.json<{ error: string }>().error).toMatch(/\[lib\] path .* is outside the crate/);
      expectNothingLeaked(viaLib);
    }
    for (const line of [
      `pub static S: &str = env!("${SECRET_ENV}");`,
      `pub static S: &str = concat!("k=", env!("${SECRET_ENV}"));`,
    ]) {
      const res = await publish(crate(`env-${n++}`, line));
      expect(res.status).toBe(422);
      expect(res.json<{ error: string }>().error).toMatch(/not defined at compile time/);
      expectNothingLeaked(res);
    }
    // option_env! compiles, to None
    const opt = await publish(
      crate("option-env", `pub static S: Option<&str> = option_env!("${SECRET_ENV}");`),
    );
    expect(opt.status, opt.body.toString()).toBe(201);
    expectNothingStored();
  });

  it("runs nothing on the host: no unstable features, no linker arguments, no build script, no proc macro", async () => {
    const cases: Array<[string, string, string, number, RegExp]> = [
      [
        "link-arg",
        `#![feature(link_arg_attribute)]\n#[link(kind = "link-arg", name = "-Wl,--wrapper,touch ${marker}", modifiers = "+verbatim")] extern "C" {}`,
        "",
        422,
        /E0554/,
      ],
      ["plugin", "#![feature(plugin)]\n#![plugin(evil)]", "", 422, /E0557/],
      ["build-script", "", `build = "build.rs"`, 400, /cannot have a build script/],
      ["proc-macro", "", "[lib]\nproc-macro = true", 400, /procedural macro/],
    ];
    for (const [name, line, toml, status, message] of cases) {
      const res = await publish(crate(name, line, toml));
      expect(res.status, name).toBe(status);
      expect(res.json<{ error: string }>().error, name).toMatch(message);
      expectNothingLeaked(res);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("kills a const-eval infinite loop and a flood of compiler messages at the limits, naming them", async () => {
    const loop = await publish(
      crate(
        "const-loop",
        "#![allow(long_running_const_eval)]\nconst fn spin() -> u32 { let mut i = 0u32; loop { i = i.wrapping_add(1); if i == 0 { i = 1 } } }\npub const X: u32 = spin();",
      ),
    );
    expect(loop.status).toBe(422);
    expect(loop.json<{ error: string }>().error).toMatch(/killed at the wall-clock time limit/);
    const ten = (inner: string) => Array.from({ length: 10 }, () => `${inner};`).join(" ");
    const loud = await publish(
      crate(
        "loud",
        [
          `#[deprecated(note = "${"x".repeat(100)}")] pub fn d() {}`,
          `macro_rules! c1 { () => { ${ten("d()")} } }`,
          `macro_rules! c2 { () => { ${ten("c1!()")} } }`,
          `macro_rules! c3 { () => { ${ten("c2!()")} } }`,
          `macro_rules! c4 { () => { ${ten("c3!()")} } }`,
          "pub fn loud() { c4!(); }",
        ].join("\n"),
      ),
    );
    expect(loud.status).toBe(422);
    expect(loud.json<{ error: string }>().error).toMatch(/killed at the compiler output size limit/);
    expect(loud.body.length).toBeLessThan(32 * 1024);
  });

  it("queues 8 concurrent publishes and answers every one", async () => {
    const uploads = Array.from({ length: 8 }, (_, i) => crate(`burst-${i}`, `pub const N: u32 = ${i};`));
    const answers = await Promise.all(uploads.map((u) => publish(u)));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(answers.every((a) => a.json<{ build: string }>().build === "built")).toBe(true);
  });

  it("refuses gzip bombs after inflating at most the limit", async () => {
    // 3 GiB of inflated data from ~3 MiB: one 1 MiB gzip member of zeros, repeated (members
    // concatenate). After a file entry it is a file body over the limit; after the tar's end
    // it is trailing data; without a header it is not a tar at all. (Data over the limit in
    // files is refused from the headers, below.)
    const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
    const gigabytes = Array.from({ length: 3 * 1024 }, () => member);
    const small = new Header({ path: "bomb/Cargo.toml", type: "File", size: 10, mode: 0o644 });
    small.encode();
    const bombs: Array<[string, Buffer, RegExp]> = [
      [
        "after the end",
        Buffer.concat([gzipSync(Buffer.concat([small.block!, Buffer.alloc(512)])), ...gigabytes]),
        /data after the end/,
      ],
      ["zeros", Buffer.concat(gigabytes), /data after the end|empty|not a/],
    ];
    for (const [name, bomb, message] of bombs) {
      expect(bomb.length).toBeLessThan(8 * 1024 * 1024);
      const started = Date.now();
      const res = await publish(bomb, "application/gzip");
      expect(res.status, name).toBe(400);
      expect(res.json<{ error: string }>().error, name).toMatch(message);
      // inflating 3 GiB would take minutes here
      expect(Date.now() - started, name).toBeLessThan(30_000);
    }

    // a header that declares a huge file is refused before its data
    const big = new Header({ path: "big/Cargo.toml", type: "File", size: 4 * 1024 ** 3, mode: 0o644 });
    big.encode();
    const declared = await publish(
      gzipSync(Buffer.concat([big.block!, Buffer.alloc(4096)])),
      "application/gzip",
    );
    expect(declared.status).toBe(400);
    expect(declared.json<{ error: string }>().error).toMatch(/unpacks to more than/);
  });

  it("refuses symbolic links, hard links, device files, '..' and absolute entries, storing nothing", async () => {
    const stored = () => readdirSync(join(h.dir, "nf-sources")).filter((n) => !n.startsWith("."));
    const before = stored();
    const linked = writeCrate(scratch, "linked", MACSWAP_RS);
    symlinkSync(join(h.dir, "ca.key"), join(linked, "src", "key.rs"));
    const hard = writeCrate(scratch, "hard", MACSWAP_RS);
    linkSync(join(hard, "src", "lib.rs"), join(hard, "src", "copy.rs"));
    const entry = (path: string, type: HeaderData["type"], body = "") => {
      const header = new Header({ path, type, size: body.length, mode: 0o644, devmaj: 1, devmin: 3 });
      header.encode();
      const data = Buffer.alloc(Math.ceil(body.length / 512) * 512);
      data.write(body);
      return Buffer.concat([header.block!, data]);
    };
    const cargo = '[package]\nname = "evil"\nversion = "0.1.0"\n';
    const raw = (...entries: Buffer[]) => Buffer.concat([...entries, Buffer.alloc(1024)]);
    const cases: Array<[string, Buffer, RegExp]> = [
      ["symlink", tarOf(scratch, "linked"), /is a symbolic link/],
      ["hard link", tarOf(scratch, "hard"), /is a hard link/],
      [
        "char device",
        raw(entry("evil/Cargo.toml", "File", cargo), entry("evil/null", "CharacterDevice")),
        /is a character device/,
      ],
      [
        "block device",
        raw(entry("evil/Cargo.toml", "File", cargo), entry("evil/sda", "BlockDevice")),
        /is a block device/,
      ],
      ["fifo", raw(entry("evil/Cargo.toml", "File", cargo), entry("evil/pipe", "FIFO")), /is a fifo/],
      [
        "dot-dot",
        raw(entry("evil/Cargo.toml", "File", cargo), entry("evil/../../x.rs", "File", "x")),
        /escapes the archive/,
      ],
      ["absolute", raw(entry("/tmp/galette-abs.rs", "File", "x")), /absolute path/],
      [
        "duplicate",
        raw(entry("evil/Cargo.toml", "File", cargo), entry("evil/Cargo.toml", "File", cargo)),
        /appears twice/,
      ],
      ["double gzip", gzipSync(gzipSync(raw(entry("evil/Cargo.toml", "File", cargo)))), /compressed twice/],
    ];
    for (const [name, body, message] of cases) {
      const res = await publish(body, name === "double gzip" ? "application/gzip" : "application/x-tar");
      expect(res.status, name).toBe(400);
      expect(res.json<{ error: string }>().error, name).toMatch(message);
      expectNothingLeaked(res);
    }
    expect(existsSync("/tmp/galette-abs.rs")).toBe(false);
    expect(stored()).toEqual(before);
  });

  it("kept serving the device API while all of that ran", () => {
    expect(polls.length).toBeGreaterThan(10);
    expect(polls.filter((s) => s !== 200)).toEqual([]);
  });
});
