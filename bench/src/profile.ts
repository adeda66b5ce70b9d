import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface CpuProfile {
  /** how it was taken */
  method: string;
  /** `perf report` lines: share of samples per command / object / symbol */
  top: string[];
}

/**
 * Sample one CPU with `perf record` while `during()` runs (the DUT CPU during a saturation
 * window), then summarise by command, object and symbol. XDP programs show up as
 * bpf_prog_<tag>_<name> symbols.
 */
export async function profileCpu<T>(
  cpu: number,
  /** report only these tasks (the DUT's NAPI kthreads and processes): other jobs on a shared CPU are noise */
  pids: number[],
  seconds: number,
  during: () => Promise<T>,
): Promise<{ profile: CpuProfile; result: T }> {
  const dir = mkdtempSync(join(tmpdir(), "galette-bench-perf-"));
  const data = join(dir, "perf.data");
  try {
    // cpu-clock: VMs often have no hardware PMU; idle time is not sampled
    const sampler = ["-e", "cpu-clock", "-F", "999", "-C", String(cpu)];
    const args = ["record", "-q", ...sampler, "-o", data, "--", "sleep", String(seconds + 1)];
    const perf = spawn("perf", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    perf.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const recorded = new Promise<void>((resolve, reject) => {
      perf.on("error", (err) =>
        reject(new Error(`perf record failed to start: ${err.message}`, { cause: err })),
      );
      perf.on("close", (code) =>
        code === 0 ? resolve() : reject(new Error(`perf ${args.join(" ")} exited ${code}: ${stderr.trim()}`)),
      );
    });
    // filter by command name (perf's --pid filter misses kernel threads)
    const comms = [
      ...new Set(
        pids.map((pid) => {
          try {
            // perf records the 15-character task comm; /proc shows longer kthread names
            return readFileSync(`/proc/${pid}/comm`, "utf8").trim().slice(0, 15);
          } catch (err) {
            throw new Error(`profiling: DUT task ${pid} is gone (${(err as Error).message})`, { cause: err });
          }
        }),
      ),
    ];
    // perf writes its data file once it samples; start the traffic only then (bounded wait)
    for (let i = 0; i < 100 && !existsSync(data) && perf.exitCode === null; i++)
      await new Promise((r) => setTimeout(r, 50));
    const result = await during();
    await recorded;
    const { stdout } = await execFileP(
      "perf",
      [
        "report",
        "-i",
        data,
        "--stdio",
        "--no-children",
        "--sort",
        "comm,dso,symbol",
        "--percent-limit",
        "1",
        ...(comms.length ? ["--comms", comms.join(","), "--percentage", "relative"] : []),
      ],
      { maxBuffer: 16 << 20, timeout: 60_000 },
    );
    const top = stdout
      .split("\n")
      .filter((l) => /^\s+\d+\.\d+%/.test(l))
      .map((l) =>
        l
          .trim()
          .replace(/[\s-]+$/, "")
          .replace(/\s{2,}/g, "  "),
      )
      .slice(0, 25);
    const samples = /# Samples: (\S+)/.exec(stdout)?.[1] ?? "?";
    const scope = comms.length ? `, DUT tasks only (${comms.join(", ")})` : "";
    return {
      profile: { method: `perf record ${sampler.join(" ")}, ${samples} samples${scope}`, top },
      result,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
