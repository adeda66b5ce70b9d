/**
 * The external toolchain nf-build drives (docs/toolchain.md): Debian's rustc-web, LLVM 22 and the
 * cross gcc linkers, plus the private sysroots and the cache directory they live in.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CPU_TARGETS, type CpuTargetName } from "@galette/vocabulary";
import { NfBuildError } from "./errors";
import { BWRAP, bwrapArgs, limitFromExit, NfBuildLimitError, type SandboxRun } from "./sandbox";

const execFileP = promisify(execFile);

export const RUSTC = process.env.GALETTE_RUSTC ?? "/usr/bin/rustc";
export const CLANG = "clang-22";
export const LLVM_LINK = "llvm-link-22";
export const OPT = "opt-22";
export const LLC = "llc-22";
export const LLVM_NM = "llvm-nm-22";
export const LLVM_DIS = "llvm-dis-22";

/**
 * Build targets: "bpf" is the XDP object; the rest are native libraries for AF_XDP workers,
 * one per CPU of @galette/vocabulary's table.
 */
export const TARGETS = ["bpf", ...CPU_TARGETS.map((c) => c.target)] as readonly ["bpf", ...CpuTargetName[]];
export type NativeTarget = CpuTargetName;
export type Target = "bpf" | NativeTarget;

export interface TargetInfo {
  /** rustc target triple */
  triple: string;
  /** the triple in artifact names (`<hash>.<artifactTriple>.so`) and the manifest */
  artifactTriple: string;
  /** gcc used as linker for native targets (undefined: rustc's default) */
  linker?: string;
  /**
   * whether no_std builds use the private sysroot built from rust-web-src (else the
   * installed one); std builds always use the installed std (see STD_SOURCE)
   */
  privateSysroot: boolean;
}

/**
 * Where std comes from for a native target. rustc-web ships std for the host only; Debian's
 * multiarch `libstd-rust-web-dev:<debArch>` puts the same release's std for another CPU
 * under /usr/lib/rustlib/<triple>/lib (`make setup` installs it). A target with neither has
 * no std at all.
 */
export type StdSource =
  | { kind: "host" }
  | { kind: "multiarch"; debArch: string }
  | { kind: "none"; reason: string };

export const STD_SOURCE: Record<NativeTarget, StdSource> = {
  x86_64: { kind: "host" },
  aarch64: { kind: "multiarch", debArch: "arm64" },
  armv7: { kind: "multiarch", debArch: "armhf" },
  riscv64: {
    kind: "none",
    reason:
      "Debian 12 has no riscv64 port, so there is no std for riscv64gc-unknown-linux-gnu: a riscv64 NF must be #![no_std]",
  },
};

/** How each CPU's native library is linked (its triple comes from the CPU table). */
const NATIVE_LINK: Record<NativeTarget, Pick<TargetInfo, "linker" | "privateSysroot">> = {
  x86_64: { privateSysroot: false },
  aarch64: { linker: "aarch64-linux-gnu-gcc", privateSysroot: true },
  armv7: { linker: "arm-linux-gnueabihf-gcc", privateSysroot: true },
  riscv64: { linker: "riscv64-linux-gnu-gcc", privateSysroot: true },
};

export const TARGET_INFO: Record<Target, TargetInfo> = {
  bpf: { triple: "bpfel-unknown-none", artifactTriple: "bpf", privateSysroot: true },
  ...(Object.fromEntries(
    CPU_TARGETS.map((c) => [
      c.target,
      { triple: c.triple, artifactTriple: c.triple, ...NATIVE_LINK[c.target] },
    ]),
  ) as Record<NativeTarget, TargetInfo>),
};

export function parseTargets(spec: string): Target[] {
  const out: Target[] = [];
  for (const raw of spec.split(",")) {
    const t = raw.trim();
    if (!t) continue;
    if (!(TARGETS as readonly string[]).includes(t))
      throw new NfBuildError(`unknown target "${t}": expected one of ${TARGETS.join(", ")}`);
    if (!out.includes(t as Target)) out.push(t as Target);
  }
  if (out.length === 0) throw new NfBuildError(`no targets given: expected some of ${TARGETS.join(", ")}`);
  return out;
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_DIR = path.resolve(here, "..");
/** packages/nf: the `nf` crate (nf/) and its proc-macro crate (macros/) */
export const NF_CRATE_ROOT = path.resolve(PACKAGE_DIR, "..", "nf");
export const ABI_INCLUDE_DIR = path.resolve(PACKAGE_DIR, "..", "xdp-native", "include");
export const SYSROOT_SCRIPT = path.join(PACKAGE_DIR, "scripts", "build-sysroot.sh");

/** Where sysroots, the artifact cache and build scratch live: $GALETTE_CACHE_DIR or ~/.cache/galette. */
export function cacheDir(): string {
  return process.env.GALETTE_CACHE_DIR ?? path.join(homedir(), ".cache", "galette");
}

/** Sysroots live apart from artifacts when $GALETTE_SYSROOT_DIR says so (benchmarks of cold builds). */
export function sysrootsDir(): string {
  return process.env.GALETTE_SYSROOT_DIR ?? path.join(cacheDir(), "sysroots");
}

export interface ToolOutput {
  stdout: string;
  stderr: string;
}

/** Counts compiler/linker processes started, so tests can assert a warm build runs none. */
export const compilerStats = { invocations: 0 };

/**
 * Runs a toolchain command with captured output. Rejects with NfBuildError carrying the
 * tool's stderr (the author-facing part) and `what` (which step failed). With `sandbox`, the
 * command runs under bubblewrap (sandbox.ts) and is killed at the sandbox's limits
 * (NfBuildLimitError naming the limit).
 */
export function runTool(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; what: string; sandbox?: SandboxRun },
): Promise<ToolOutput> {
  compilerStats.invocations++;
  const sb = opts.sandbox;
  if (sb && Date.now() >= sb.deadline)
    return Promise.reject(new NfBuildLimitError("wallMs", `${sb.limits.wallMs / 1000} s per build`));
  return new Promise((resolve, reject) => {
    const child = sb
      ? // bwrap gets an empty environment and its own process group (killed as a whole)
        spawn(BWRAP, bwrapArgs(sb, cmd, args), { env: {}, detached: true, stdio: ["ignore", "pipe", "pipe"] })
      : spawn(cmd, args, {
          cwd: opts.cwd,
          env: { ...process.env, ...opts.env },
          stdio: ["ignore", "pipe", "pipe"],
        });
    let stdout = "";
    let stderr = "";
    let killedFor: NfBuildLimitError | undefined;
    const kill = (why: NfBuildLimitError) => {
      if (killedFor) return;
      killedFor = why;
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    };
    const timer = sb
      ? setTimeout(
          () => kill(new NfBuildLimitError("wallMs", `${sb.limits.wallMs / 1000} s per build`)),
          Math.max(0, sb.deadline - Date.now()),
        )
      : undefined;
    child.stdout.on("data", (d: Buffer) => {
      if (killedFor) return;
      stdout += d.toString();
      if (sb && stdout.length > sb.limits.fileBytes)
        kill(new NfBuildLimitError("fileBytes", `${sb.limits.fileBytes} bytes of output`));
    });
    child.stderr.on("data", (d: Buffer) => {
      if (killedFor) return;
      stderr += d.toString();
      if (sb && stderr.length > sb.limits.outputBytes)
        kill(new NfBuildLimitError("outputBytes", `${sb.limits.outputBytes} bytes of compiler messages`));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(
        new NfBuildError(
          `${opts.what}: cannot run ${sb ? BWRAP : cmd}: ${err.message} (run \`make setup\`)`,
          {
            cause: err,
          },
        ),
      );
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (killedFor) return reject(killedFor);
      if (code === 0) return resolve({ stdout, stderr });
      const limit = sb ? limitFromExit(code, stderr, sb.limits) : undefined;
      if (limit) return reject(limit);
      reject(
        new NfBuildError(
          `${opts.what} failed (${cmd} exited ${code ?? signal}):\n${stderr.trim() || stdout.trim()}`,
        ),
      );
    });
  });
}

async function versionOf(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args);
    return stdout.trim();
  } catch (err) {
    throw new NfBuildError(
      `cannot run \`${cmd} ${args.join(" ")}\`: ${(err as Error).message} (run \`make setup\`)`,
      {
        cause: err,
      },
    );
  }
}

let toolVersions: Promise<Record<string, string>> | undefined;

/** Versions of every tool whose output ends up in an artifact (part of the cache key). */
export function toolchainVersions(): Promise<Record<string, string>> {
  toolVersions ??= (async () => {
    const entries: [string, string][] = [
      ["rustc", await versionOf(RUSTC, ["-vV"])],
      ["clang", await versionOf(CLANG, ["--version"])],
    ];
    for (const t of TARGETS) {
      const linker = TARGET_INFO[t].linker;
      // a missing cross linker only matters when that target is built (it fails there)
      if (linker) entries.push([linker, await versionOf(linker, ["--version"]).catch(() => "missing")]);
    }
    return Object.fromEntries(entries);
  })();
  toolVersions.catch(() => {
    toolVersions = undefined;
  });
  return toolVersions;
}

export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Sysroots are keyed by the exact rustc build (same key as scripts/setup.d/20-rust-toolchain.sh). */
export async function sysrootKey(): Promise<string> {
  const { stdout } = await execFileP(RUSTC, ["-vV"]);
  return sha256(stdout).slice(0, 12);
}

const sysrootBuilds = new Map<string, Promise<string | undefined>>();

export type StdStatus = { ok: true } | { ok: false; permanent: boolean; reason: string };

const stdStatuses = new Map<Target, StdStatus>();

/** The Debian package version of an installed package, or undefined when dpkg does not know it. */
function debVersion(pkg: string): string | undefined {
  try {
    // dpkg-query's own ${Version} field syntax, not a template
    return execFileSync("dpkg-query", ["-W", `-f=\${Version}`, pkg], { stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    // not installed, or no dpkg (a rustc from elsewhere): the caller says what is missing
    return undefined;
  }
}

/**
 * Whether a std NF can be built for `target` here, and if not, why and how to fix it
 * (`permanent`: nothing to install, the target has no std at all).
 */
export function stdStatus(target: Target): StdStatus {
  if (target === "bpf")
    return { ok: false, permanent: true, reason: "std does not exist for BPF: an XDP NF must be #![no_std]" };
  let status = stdStatuses.get(target);
  if (status) return status;
  const source = STD_SOURCE[target];
  const triple = TARGET_INFO[target].triple;
  if (source.kind === "host") status = { ok: true };
  else if (source.kind === "none") status = { ok: false, permanent: true, reason: source.reason };
  else {
    const pkg = `libstd-rust-web-dev:${source.debArch}`;
    const dir = `/usr/lib/rustlib/${triple}/lib`;
    const howTo = `run \`make setup\` (it adds the architecture: dpkg --add-architecture ${source.debArch}; apt-get update; apt-get install ${pkg}=<rustc-web's version>)`;
    const hasStd = existsSync(dir) && readdirSync(dir).some((f) => /^libstd-.*\.rlib$/.test(f));
    const want = RUSTC === "/usr/bin/rustc" ? debVersion("rustc-web") : undefined;
    const have = want ? debVersion(pkg) : undefined;
    if (!hasStd)
      status = {
        ok: false,
        permanent: false,
        reason: `std for ${triple} is not installed (${pkg} is missing, no libstd in ${dir}): ${howTo}`,
      };
    else if (want && have !== want)
      status = {
        ok: false,
        permanent: false,
        reason: `std for ${triple} is ${pkg} ${have ?? "(unknown version)"}, but rustc-web is ${want} (they must be the same release): ${howTo}`,
      };
    else status = { ok: true };
  }
  stdStatuses.set(target, status);
  return status;
}

/** The sysroot dir for a target (building it once if setup has not), or undefined for the installed one. */
export function ensureSysroot(target: Target): Promise<string | undefined> {
  const info = TARGET_INFO[target];
  if (!info.privateSysroot) return Promise.resolve(undefined);
  let p = sysrootBuilds.get(target);
  if (!p) {
    p = (async () => {
      const dir = path.join(sysrootsDir(), await sysrootKey(), info.triple);
      if (!existsSync(path.join(dir, ".complete"))) {
        await runTool("bash", [SYSROOT_SCRIPT, info.triple, dir], {
          what: `building the Rust sysroot for ${info.triple}`,
        });
      }
      return dir;
    })();
    sysrootBuilds.set(target, p);
    p.catch(() => sysrootBuilds.delete(target));
  }
  return p;
}
