import { type ChildProcess, spawn } from "node:child_process";
import { inNs } from "./testkit";

/** A long-running process inside the DUT namespace (a userland baseline or worker). */
export interface DutProcess {
  pid: number;
  /** SIGTERM, wait for exit (SIGKILL after a grace period); resolves to its stdout. */
  stop(): Promise<string>;
}

/**
 * Spawn `cmd` in namespace `ns` and resolve once it prints a line `ready` on stdout.
 * nsenter execs the command, so the pid is the tool's own (for per-process CPU).
 */
export function spawnInNs(
  ns: string,
  cmd: string,
  args: string[],
  opts: { readyTimeoutMs?: number; stopTimeoutMs?: number } = {},
): Promise<DutProcess> {
  const [nsenter, ...prefix] = inNs(ns);
  // detached = a session, hence an autogroup, of its own: the runner can boost it without
  // boosting itself. The C tools die with their parent (PR_SET_PDEATHSIG), so none outlives us.
  const child: ChildProcess = spawn(nsenter!, [...prefix, cmd, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const describe = `${cmd} ${args.join(" ")} (in ${ns})`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`${describe} did not print "ready" within ${opts.readyTimeoutMs ?? 10_000} ms: ${stderr}`),
      );
    }, opts.readyTimeoutMs ?? 10_000);
    const onData = () => {
      if (!/^ready$/m.test(stdout)) return;
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      resolve({
        pid: child.pid!,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const grace = setTimeout(() => child.kill("SIGKILL"), opts.stopTimeoutMs ?? 5_000);
          const code = await exited;
          clearTimeout(grace);
          if (code !== 0) throw new Error(`${describe} exited with ${code}: ${stderr.trim()}`);
          return stdout;
        },
      });
    };
    child.stdout!.on("data", onData);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${describe} exited (${code}) before it was ready: ${stderr.trim()}`));
    });
  });
}
