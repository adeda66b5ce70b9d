/**
 * Per-NF cost of an installed chain. Kernel bpf_stats cost a little on every program run, so
 * they are on only for a short measuring window (BPF_ENABLE_STATS, released after). The
 * kernel accounts a tail-called program to the program it entered, so the XDP time is the
 * root program's (the chain's whole XDP path) and per NF the frames it ran on in the window;
 * userland NFs are timed by their worker all the time (calls and ns inside the NF).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { DeviceCost } from "@galette/protocol";
import { enableBpfStats, runStatsDelta } from "@galette/xdp-native";
import type { Dataplane } from "./kernel";

export { enableBpfStats, withBpfStats } from "@galette/xdp-native";

/** Measures `dp` for `windowMs` with bpf_stats on. */
export async function measureCost(dp: Dataplane, windowMs: number): Promise<DeviceCost> {
  if (!(windowMs > 0) || windowMs > 60_000)
    throw new Error(`cost measuring window must be 1 ms to 60 s, got ${windowMs} ms`);
  const release = enableBpfStats();
  let before: ReturnType<Dataplane["rootRunStats"]>;
  let after: ReturnType<Dataplane["rootRunStats"]>;
  let countsBefore: Map<number, number>;
  const started = Date.now();
  try {
    before = dp.rootRunStats();
    countsBefore = xdpFrames(dp);
    await sleep(windowMs);
    after = dp.rootRunStats();
  } finally {
    release();
  }
  const countsAfter = xdpFrames(dp);
  const pool = dp.workerStats();
  const nfs = dp.spec.instances.map((i) => {
    const ps = pool?.instances.find((s) => s.id === i.id);
    const calls = ps?.calls ?? 0;
    const ns = ps?.nanoseconds ?? 0;
    return {
      uuid: i.uuid,
      instance: i.name,
      placement: [i.xdp ? "xdp" : "", i.userland ? "userland" : ""].filter(Boolean).join("+"),
      xdpRuns: Math.max(0, (countsAfter.get(i.id) ?? 0) - (countsBefore.get(i.id) ?? 0)),
      userlandCalls: calls,
      userlandNs: ns,
      ...(calls > 0 ? { userlandNsPerCall: ns / calls } : {}),
    };
  });
  return {
    measuredAt: new Date().toISOString(),
    windowMs: Math.max(1, Date.now() - started),
    xdp: runStatsDelta(before, after),
    nfs,
  };
}

/** Frames each XDP instance has counted (its galette_counts, every variant). */
function xdpFrames(dp: Dataplane): Map<number, number> {
  return new Map(dp.xdpCounts().map((c) => [c.id, c.total]));
}
