/**
 * Per-NF cost of an installed chain, over a short measuring window. Kernel bpf_stats cost a
 * little on every program run, so they are on only for the window (BPF_ENABLE_STATS,
 * released after); they give the root program's time, which is the chain's whole XDP path
 * (the kernel accounts a tail-called program to the program the frame entered). Each XDP NF
 * times itself in its generated shim while the window's flag is set (cost-maps.ts), which
 * gives every NF's own run count and run time. Userland NFs are timed by their worker all
 * the time (calls and ns inside the NF).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { DeviceCost, NfCost, ProgramRunCost } from "@galette/protocol";
import { enableBpfStats, runStatsDelta } from "@galette/xdp-native";
import { type CostMaps, type NfXdpTotals, openCostMaps, readNfCost, setMeasuring } from "./cost-maps";
import type { Dataplane } from "./kernel";

export { enableBpfStats, withBpfStats } from "@galette/xdp-native";
export { type CostMaps, openCostMaps, readNfCost, setMeasuring } from "./cost-maps";

/** Measures `dp` for `windowMs` with bpf_stats and the NF shims' timing on. */
export async function measureCost(dp: Dataplane, windowMs: number): Promise<DeviceCost> {
  if (!(windowMs > 0) || windowMs > 60_000)
    throw new Error(`cost measuring window must be 1 ms to 60 s, got ${windowMs} ms`);
  const spec = dp.spec;
  const xdpIds = spec.instances.filter((i) => i.xdp).map((i) => i.id);
  const maps = openCostMaps(dp.spec.pins.dir);
  try {
    const release = enableBpfStats();
    let before: ReturnType<Dataplane["rootRunStats"]>;
    let after: ReturnType<Dataplane["rootRunStats"]>;
    let countsBefore: Map<number, number>;
    let timedBefore: Map<number, NfXdpTotals> | undefined;
    let timedAfter: Map<number, NfXdpTotals> | undefined;
    const started = Date.now();
    try {
      before = dp.rootRunStats();
      countsBefore = xdpFrames(dp);
      if (maps) {
        timedBefore = readTimed(maps, xdpIds);
        setMeasuring(maps, true);
      }
      try {
        await sleep(windowMs);
      } finally {
        // closed first: frames timed after this are not in the window anyway
        if (maps) setMeasuring(maps, false);
      }
      after = dp.rootRunStats();
      if (maps) timedAfter = readTimed(maps, xdpIds);
    } finally {
      release();
    }
    const countsAfter = xdpFrames(dp);
    const pool = dp.workerStats();
    const nfs = spec.instances.map((i): NfCost => {
      const ps = pool?.instances.find((s) => s.id === i.id);
      const calls = ps?.calls ?? 0;
      const ns = ps?.nanoseconds ?? 0;
      const xdpRuns = Math.max(0, (countsAfter.get(i.id) ?? 0) - (countsBefore.get(i.id) ?? 0));
      const timed =
        timedAfter && timedBefore
          ? nfRunCost(timedBefore.get(i.id), timedAfter.get(i.id), xdpRuns)
          : undefined;
      return {
        uuid: i.uuid,
        instance: i.name,
        placement: [i.xdp ? "xdp" : "", i.userland ? "userland" : ""].filter(Boolean).join("+"),
        xdpRuns,
        ...(timed ? { xdp: timed } : {}),
        userlandCalls: calls,
        userlandNs: ns,
        ...(calls > 0 ? { userlandNsPerCall: ns / calls } : {}),
      };
    });
    // a chain reconfigured during the window: its slots may hold another instance's runs
    if (dp.spec === spec) addTotals(dp, nfs);
    return {
      measuredAt: new Date().toISOString(),
      windowMs: Math.max(1, Date.now() - started),
      xdp: runStatsDelta(before, after),
      nfs,
    };
  } finally {
    maps?.close();
  }
}

/**
 * An XDP NF's own runs and time over the window, from its shim's slot before and after.
 * Undefined for a userland-only NF, and for an NF whose object does not time itself (built
 * before per-NF timing): it ran on frames in the window (`frames`) yet its slot never moved.
 */
export function nfRunCost(
  before: NfXdpTotals | undefined,
  after: NfXdpTotals | undefined,
  frames: number,
): ProgramRunCost | undefined {
  if (!before || !after) return undefined;
  const runCount = Math.max(0, after.runs - before.runs);
  const runTimeNs = Math.max(0, after.ns - before.ns);
  if (runCount === 0 && frames > 0) return undefined;
  return { runCount, runTimeNs, ...(runCount > 0 ? { nsPerRun: runTimeNs / runCount } : {}) };
}

function readTimed(maps: CostMaps, ids: number[]): Map<number, NfXdpTotals> {
  return new Map(ids.map((id) => [id, readNfCost(maps, id)]));
}

/** Frames each XDP instance has counted (its galette_counts, every variant). */
function xdpFrames(dp: Dataplane): Map<number, number> {
  return new Map(dp.xdpCounts().map((c) => [c.id, c.total]));
}

export interface NfXdpTotal {
  uuid: string;
  instance: string;
  runs: number;
  ns: number;
}

/** Per installation, each NF instance's timed XDP runs and ns summed over every window. */
const totals = new WeakMap<Dataplane, Map<string, NfXdpTotal>>();

function addTotals(dp: Dataplane, nfs: NfCost[]): void {
  const t = totals.get(dp) ?? new Map<string, NfXdpTotal>();
  totals.set(dp, t);
  for (const n of nfs) {
    if (!n.xdp) continue;
    const cur = t.get(n.uuid) ?? { uuid: n.uuid, instance: n.instance ?? n.uuid, runs: 0, ns: 0 };
    cur.runs += n.xdp.runCount;
    cur.ns += n.xdp.runTimeNs;
    t.set(n.uuid, cur);
  }
}

/**
 * Each XDP NF's own runs and time summed over the measuring windows taken on `dp` by this
 * process (counters that grow only during windows), for the NFs installed now.
 */
export function nfXdpTotals(dp: Dataplane): NfXdpTotal[] {
  const t = totals.get(dp);
  if (!t) return [];
  const live = new Set(dp.spec.instances.map((i) => i.uuid));
  for (const uuid of t.keys()) if (!live.has(uuid)) t.delete(uuid);
  return [...t.values()];
}
