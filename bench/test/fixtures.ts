import type { GenResult } from "../src/gen";
import { makePlan } from "../src/plan";
import type { BenchResults, RunRecord, ScenarioOutcome } from "../src/runner";
import { metaOf } from "../src/runner";
import type { Scenario } from "../src/scenarios";

/** A galgen result with the given rate and latency; everything else plausible. */
export function genResult(
  rxPps: number,
  p50: number,
  p99: number,
  extra: Partial<GenResult> = {},
): GenResult {
  return {
    mode: "afpacket",
    size: 64,
    rate_target: 0,
    window_s: 1,
    sent: rxPps,
    offered_pps: rxPps,
    received: rxPps,
    rx_pps: rxPps,
    rx_normal: rxPps,
    rx_expensive: 0,
    rx_normal_pps: rxPps,
    rx_bytes: rxPps * 60,
    unswapped: 0,
    clock_skew: 0,
    send_errors: 0,
    latency: {
      normal: {
        count: rxPps,
        min_us: p50 / 2,
        p50_us: p50,
        p90_us: p99 / 2,
        p99_us: p99,
        max_us: p99 * 2,
        hist: [[p50, rxPps]],
      },
      expensive: { count: 0 },
    },
    cpu: { dut: { cpu: 1, busy: 0.5, user: 0.1, sys: 0.2, irq: 0.2, steal: 0 } },
    dut_procs_cpu: null,
    dut_napi_cpu: 0.5,
    gen_self_cpu: 1,
    ...extra,
  };
}

export const quickPlan = () => makePlan({ QUICK: "1" });

/** An ok outcome with one saturation window and one window per paced rate. */
export function okOutcome(s: Scenario, rxPps: number, p50: number, p99: number): ScenarioOutcome {
  const plan = quickPlan();
  const runs: RunRecord[] = [
    { kind: "throughput", size: 64, rate: 0, rep: 0, result: genResult(rxPps, p50 * 10, p99 * 10) },
    ...plan.rates.map((rate) => ({
      kind: "latency" as const,
      size: 64,
      rate,
      rep: 0,
      result: genResult(Math.min(rate, rxPps), p50, p99),
    })),
  ];
  return { scenario: metaOf(s), status: "ok", runs, durationS: 3 };
}

export function resultsOf(outcomes: ScenarioOutcome[]): BenchResults {
  return {
    startedAt: "2026-01-02T03:04:05.000Z",
    finishedAt: "2026-01-02T03:05:05.000Z",
    plan: quickPlan(),
    machine: { kernel: "6.x", cpuModel: "test CPU", cpus: 2, genCpu: 0, dutCpu: 1, loadavgBefore: "0 0 0" },
    outcomes,
  };
}
