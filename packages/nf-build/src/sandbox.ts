/**
 * The build sandbox for NF crates someone else wrote (what the controller compiles on
 * publish, or `galette nf build --sandbox`): every compiler, linker and LLVM step of such a
 * build runs under bubblewrap as an unprivileged uid, with no network, a clean environment,
 * the toolchain read-only and nothing else of the host visible, under resource limits.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { NfBuildError } from "./errors";

const execFileP = promisify(execFile);

export const BWRAP = "bwrap";

export interface SandboxLimits {
  /** wall-clock time of one NF build for one target, all steps together (ms) */
  wallMs: number;
  /** CPU time of any one process (RLIMIT_CPU, s) */
  cpuSeconds: number;
  /** address space of any one process (RLIMIT_AS, bytes) */
  memoryBytes: number;
  /** processes and threads of the sandbox uid (RLIMIT_NPROC) */
  processes: number;
  /** largest file a step may write (RLIMIT_FSIZE, bytes); also caps a step's stdout */
  fileBytes: number;
  /** compiler messages (stderr) a step may print before it is killed (bytes) */
  outputBytes: number;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  wallMs: 180_000,
  cpuSeconds: 180,
  memoryBytes: 4 * 1024 ** 3,
  processes: 256,
  fileBytes: 256 * 1024 ** 2,
  outputBytes: 1024 ** 2,
};

/** What the author sees of compiler messages: the rest is cut (a crate can make rustc print megabytes). */
export const MAX_MESSAGE_CHARS = 16 * 1024;

/** Names of the limits as reported to the uploader. */
export const LIMIT_NAMES: Record<keyof SandboxLimits, string> = {
  wallMs: "wall-clock time",
  cpuSeconds: "CPU time",
  memoryBytes: "memory",
  processes: "process count",
  fileBytes: "output file size",
  outputBytes: "compiler output size",
};

/** A sandboxed step went over one of the limits and was killed. */
export class NfBuildLimitError extends NfBuildError {
  constructor(
    readonly limit: keyof SandboxLimits,
    detail: string,
  ) {
    super(`the build was killed at the ${LIMIT_NAMES[limit]} limit (${detail})`);
    this.name = "NfBuildLimitError";
  }
}

export interface SandboxOptions {
  limits?: Partial<SandboxLimits>;
  /** uid/gid the tools run as (default 65534, nobody): a real host uid, so file checks are nobody's */
  uid?: number;
  gid?: number;
}

/** One sandboxed build (one NF, one target): what it may see and until when it may run. */
export interface SandboxRun {
  /** host paths visible read-only, at the same path */
  readOnly: string[];
  /** host paths visible read-write, at the same path (the build's output directory) */
  writable: string[];
  cwd: string;
  limits: SandboxLimits;
  uid: number;
  gid: number;
  /** Date.now() after which the build is killed */
  deadline: number;
}

export function resolveLimits(limits?: Partial<SandboxLimits>): SandboxLimits {
  const out = { ...DEFAULT_SANDBOX_LIMITS, ...limits };
  for (const [k, v] of Object.entries(out))
    if (!Number.isFinite(v) || v <= 0)
      throw new NfBuildError(`sandbox limit ${k} must be a positive number, got ${v}`);
  return out;
}

const ancestors = (p: string): string[] => {
  const out: string[] = [];
  for (let d = path.dirname(p); d !== "/" && d !== "."; d = path.dirname(d)) out.unshift(d);
  return out;
};

/**
 * The bwrap command line that runs `cmd args` in the sandbox. As root, no user namespace: the
 * tools run as a real unprivileged host uid (setpriv drops every capability and sets no_new_privs),
 * so even a file that were visible would be read with nobody's rights. The new pid namespace
 * dies with bwrap, taking every process of the build with it.
 */
export function bwrapArgs(run: SandboxRun, cmd: string, args: string[]): string[] {
  const l = run.limits;
  // Not root (an author's `galette nf build --sandbox`): bwrap needs a user namespace, in
  // which the tools keep the user's own uid.
  const privileged = process.getuid?.() === 0;
  const out = [
    ...(privileged ? [] : ["--unshare-user"]),
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
    "--setenv",
    "PATH",
    "/usr/bin",
    "--setenv",
    "LC_ALL",
    "C",
    // rustc and gcc put their temporary files here (the only writable place)
    "--setenv",
    "TMPDIR",
    run.writable[0] ?? "/nonexistent",
    "--setenv",
    "HOME",
    "/nonexistent",
    "--tmpfs",
    "/tmp",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/sbin",
    "/sbin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
  ];
  const made = new Set<string>(["/usr", "/tmp", "/proc", "/dev"]);
  const mount = (kind: "--ro-bind" | "--bind", p: string) => {
    // bwrap would make missing parents 0700 (root's): nobody could not reach the mount
    for (const dir of ancestors(p)) {
      if (made.has(dir) || dir.startsWith("/usr/")) continue;
      made.add(dir);
      out.push("--perms", "0755", "--dir", dir);
    }
    out.push(kind, p, p);
  };
  for (const p of run.readOnly) if (!p.startsWith("/usr/")) mount("--ro-bind", p);
  for (const p of run.writable) mount("--bind", p);
  out.push(
    "--chdir",
    run.cwd,
    "/usr/bin/setpriv",
    ...(privileged ? [`--reuid=${run.uid}`, `--regid=${run.gid}`, "--clear-groups"] : []),
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "/usr/bin/prlimit",
    // soft < hard: a process over its CPU time gets SIGXCPU, which tells it apart from our kill
    `--cpu=${l.cpuSeconds}:${l.cpuSeconds + 5}`,
    `--as=${l.memoryBytes}`,
    `--nproc=${l.processes}`,
    `--fsize=${l.fileBytes}`,
    "--core=0",
    "--",
    // descriptors the host process inherited without close-on-exec stay outside
    "/usr/bin/bash",
    "-c",
    CLOSE_FDS_AND_EXEC,
    "galette-sandbox",
    cmd,
    ...args,
  );
  return out;
}

const CLOSE_FDS_AND_EXEC =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash script, not a template
  'for fd in /proc/self/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null; fi; done; exec "$@"';

let bwrapChecked: Promise<void> | undefined;

/** Fails with a clear message when bubblewrap is missing or cannot make a sandbox here. */
export function checkSandbox(): Promise<void> {
  bwrapChecked ??= (async () => {
    try {
      await execFileP(BWRAP, [
        ...(process.getuid?.() === 0 ? [] : ["--unshare-user"]),
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "/usr/bin/true",
      ]);
    } catch (err) {
      throw new NfBuildError(
        `cannot run the NF build sandbox (bubblewrap): ${(err as Error).message.split("\n")[0]} (run \`make setup\`)`,
        { cause: err },
      );
    }
  })();
  bwrapChecked.catch(() => {
    bwrapChecked = undefined;
  });
  return bwrapChecked;
}

/** Which limit a sandboxed step that failed ran into, from its exit status and messages. */
export function limitFromExit(
  code: number | null,
  stderr: string,
  limits: SandboxLimits,
): NfBuildLimitError | undefined {
  // bwrap exits 128 + the signal that killed the sandboxed process
  if (code === 128 + 24) return new NfBuildLimitError("cpuSeconds", `${limits.cpuSeconds} s per process`);
  if (code === 128 + 25) return new NfBuildLimitError("fileBytes", `${limits.fileBytes} bytes per file`);
  if (
    /memory allocation of \d+ bytes failed|more memory than available to compiler|LLVM ERROR: out of memory|std::bad_alloc|Cannot allocate memory/.test(
      stderr,
    )
  )
    return new NfBuildLimitError("memoryBytes", `${limits.memoryBytes} bytes of address space per process`);
  if (/Resource temporarily unavailable|failed to spawn thread/.test(stderr))
    return new NfBuildLimitError("processes", `${limits.processes} processes`);
  return undefined;
}

/** Compiler messages for the uploader: no longer than MAX_MESSAGE_CHARS. */
export function truncateMessage(text: string, max = MAX_MESSAGE_CHARS): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}\n… (${text.length - max} more characters of compiler output cut)`;
}
