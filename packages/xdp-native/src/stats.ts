/**
 * Kernel bpf_stats: the run time and run count the kernel keeps per program while stats are
 * enabled. Enabled through BPF_ENABLE_STATS (an fd; stats stay on while any such fd is
 * open), never by writing kernel.bpf_stats_enabled, so concurrent measurers cannot switch
 * each other's window off. The kernel counts a program only when it enters it itself: a
 * program reached by bpf_tail_call adds to its caller's numbers, not its own.
 */
import { native } from "./native";

export interface ProgramRunStats {
  /** nanoseconds spent in the program (and what it tail-called) while stats were on */
  runTimeNs: number;
  runCount: number;
}

/** Turns bpf_stats on; call the returned function to release this hold. */
export function enableBpfStats(): () => void {
  const fd = native().enableStats();
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    native().closeFd(fd);
  };
}

/** Runs `fn` with bpf_stats on, releasing the hold after. */
export async function withBpfStats<T>(fn: () => Promise<T>): Promise<T> {
  const release = enableBpfStats();
  try {
    return await fn();
  } finally {
    release();
  }
}

/** The bpf_stats of one program fd (cumulative since it was loaded). */
export function programRunStats(fd: number): ProgramRunStats {
  const i = native().progInfo(fd);
  return { runTimeNs: i.runTimeNs, runCount: i.runCount };
}

/** The difference of two readings of one program: ns per run (undefined: it did not run). */
export function runStatsDelta(
  before: ProgramRunStats,
  after: ProgramRunStats,
): ProgramRunStats & { nsPerRun?: number } {
  const runCount = Math.max(0, after.runCount - before.runCount);
  const runTimeNs = Math.max(0, after.runTimeNs - before.runTimeNs);
  return { runTimeNs, runCount, ...(runCount > 0 ? { nsPerRun: runTimeNs / runCount } : {}) };
}
