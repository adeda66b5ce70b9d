/**
 * The `galette` CLI as an operator runs it (`pnpm galette …` from the repository root), for
 * tests of packages that the CLI drives: they run the command, they do not import the app.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is packages/testkit/src/cli.ts). */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export interface CliResult {
  /** exit code; null when a signal ended it */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** run inside this command prefix, e.g. inNs(ns) */
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long (default 240 s) */
  timeoutMs?: number;
  /** called with all stdout so far on every chunk */
  onStdout?: (stdout: string) => void;
}

export interface CliRun {
  /** the CLI's own process: a signal to it (SIGKILL too) reaches the CLI itself */
  child: ChildProcess;
  stdout(): string;
  /** stderr so far, while it runs */
  stderr(): string;
  done: Promise<CliResult>;
}

/**
 * The root package's `galette` script, run by sh as pnpm would run it but without pnpm in
 * between: the script execs node, so the child is the CLI and a SIGKILL kills the CLI.
 */
function galetteScript(): string {
  const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
    scripts?: Record<string, string>;
  };
  const script = pkg.scripts?.galette;
  if (!script?.startsWith("exec "))
    throw new Error(
      `the root package.json's "galette" script must exec the CLI, got ${JSON.stringify(script)}`,
    );
  return script;
}

/** Starts `pnpm galette ARGS` in the repository root (GALETTE_LOG=warn unless env says). */
export function spawnGalette(args: string[], opts: CliOptions = {}): CliRun {
  const [cmd, ...rest] = [...(opts.prefix ?? []), "sh", "-c", `${galetteScript()} "$@"`, "galette", ...args];
  const child = spawn(cmd!, rest, {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GALETTE_LOG: "warn", ...opts.env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
    opts.onStdout?.(stdout);
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 240_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on("error", (err) => {
      clearTimeout(killer);
      reject(new Error(`galette ${args.join(" ")}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

/** `pnpm galette ARGS` to completion, whatever the outcome. */
export function galette(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnGalette(args, opts).done;
}
