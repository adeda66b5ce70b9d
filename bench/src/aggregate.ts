import type { GenResult } from "./gen";
import type { BenchResults, RunKind, ScenarioOutcome } from "./runner";
import { type Spread, spread } from "./stats";

const select = (o: ScenarioOutcome, kind: RunKind, size?: number, rate?: number): GenResult[] =>
  o.runs
    .filter(
      (r) =>
        r.kind === kind && (size === undefined || r.size === size) && (rate === undefined || r.rate === rate),
    )
    .map((r) => r.result);

export interface ThroughputCell {
  rxPps?: Spread;
  offeredPps?: Spread;
  dutCpu?: Spread;
  dutProcsCpu?: Spread;
  /** DUT NAPI kthreads + DUT processes, in CPUs (per-task accounting: immune to other jobs on the CPU) */
  dutTaskCpu?: Spread;
  /** frames/s per DUT CPU (rx_pps / dutTaskCpu) */
  ppsPerDutCpu?: Spread;
  genCpu?: Spread;
  genSelfCpu?: Spread;
}

/** DUT CPU from per-task accounting: NAPI kthreads plus userland processes. */
export function dutTaskCpu(r: GenResult): number | undefined {
  if (r.dut_napi_cpu === null || r.dut_napi_cpu === undefined) return undefined;
  return r.dut_napi_cpu + (r.dut_procs_cpu ?? 0);
}

export function throughputAt(o: ScenarioOutcome, size: number): ThroughputCell {
  const rs = select(o, "throughput", size);
  return {
    rxPps: spread(rs.map((r) => r.rx_pps)),
    offeredPps: spread(rs.map((r) => r.offered_pps)),
    dutCpu: spread(rs.map((r) => r.cpu.dut?.busy)),
    dutProcsCpu: spread(rs.map((r) => r.dut_procs_cpu)),
    dutTaskCpu: spread(rs.map(dutTaskCpu)),
    ppsPerDutCpu: spread(
      rs.map((r) => {
        const c = dutTaskCpu(r);
        return c ? r.rx_pps / c : undefined;
      }),
    ),
    genCpu: spread(rs.map((r) => r.cpu.gen?.busy)),
    genSelfCpu: spread(rs.map((r) => r.gen_self_cpu)),
  };
}

export interface LatencyCell {
  rxPps?: Spread;
  offeredPps?: Spread;
  p50?: Spread;
  p90?: Spread;
  p99?: Spread;
  max?: Spread;
  /** fraction of sent frames that did not come back */
  loss?: Spread;
  dutCpu?: Spread;
  dutTaskCpu?: Spread;
}

function latencyCell(rs: GenResult[]): LatencyCell {
  return {
    rxPps: spread(rs.map((r) => r.rx_pps)),
    offeredPps: spread(rs.map((r) => r.offered_pps)),
    p50: spread(rs.map((r) => r.latency.normal.p50_us)),
    p90: spread(rs.map((r) => r.latency.normal.p90_us)),
    p99: spread(rs.map((r) => r.latency.normal.p99_us)),
    max: spread(rs.map((r) => r.latency.normal.max_us)),
    loss: spread(rs.map((r) => (r.sent > 0 ? Math.max(0, 1 - r.received / r.sent) : undefined))),
    dutCpu: spread(rs.map((r) => r.cpu.dut?.busy)),
    dutTaskCpu: spread(rs.map(dutTaskCpu)),
  };
}

/** Latency at a paced rate; rate 0 = at saturation (the 64 B throughput windows). */
export function latencyAt(o: ScenarioOutcome, rate: number, size: number): LatencyCell {
  return latencyCell(rate === 0 ? select(o, "throughput", size) : select(o, "latency", size, rate));
}

/** The histogram recorded at the reference rate (first repetition), if any. */
export function referenceHistogram(o: ScenarioOutcome, rate: number): Array<[number, number]> | undefined {
  return o.runs.find((r) => r.kind === "latency" && r.rate === rate && r.result.latency.normal.hist)?.result
    .latency.normal.hist;
}

export interface ExpensiveCell {
  normalPps?: Spread;
  p99?: Spread;
}

export function expensiveCell(o: ScenarioOutcome): ExpensiveCell {
  return {
    normalPps: spread(select(o, "expensive-throughput").map((r) => r.rx_normal_pps)),
    p99: spread(select(o, "expensive-latency").map((r) => r.latency.normal.p99_us)),
  };
}

/** The headline value of a metric for ratios: median throughput at the smallest size, p50/p99 at the reference rate. */
/** Saturation frames/s per DUT CPU at the smallest size (macswap-like scenarios). */
export function efficiency(results: BenchResults, o: ScenarioOutcome): number | undefined {
  if (o.status !== "ok" || o.scenario.experiment === "expensive" || o.scenario.experiment === "threads")
    return undefined;
  return throughputAt(o, results.plan.sizes[0] ?? 64).ppsPerDutCpu?.median;
}

export function headline(
  results: BenchResults,
  o: ScenarioOutcome,
  metric: "throughput" | "p50" | "p99",
): number | undefined {
  if (o.status !== "ok") return undefined;
  const size = results.plan.sizes[0] ?? 64;
  if (o.scenario.experiment === "expensive" || o.scenario.experiment === "threads") {
    const c = expensiveCell(o);
    if (metric === "throughput") return c.normalPps?.median;
    if (metric === "p99") return c.p99?.median;
    return undefined;
  }
  if (metric === "throughput") return throughputAt(o, size).rxPps?.median;
  const lat = latencyAt(o, results.plan.referenceRate, size);
  return metric === "p50" ? lat.p50?.median : lat.p99?.median;
}
