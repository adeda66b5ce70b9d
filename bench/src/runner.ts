import { readFileSync } from "node:fs";
import { availableParallelism, cpus, release } from "node:os";
import type { Logger } from "@galette/log";
import { spawnInNs } from "./dut";
import { type GenOptions, type GenResult, runGen } from "./gen";
import type { BenchPlan } from "./plan";
import { type CpuProfile, profileCpu } from "./profile";
import type { DutContext, Experiment, RunningDut, Scenario } from "./scenarios";
import type { BenchTools } from "./tools";
import { boostTasks, createBenchTopology, type NapiPinning } from "./topology";

export type RunKind = "throughput" | "latency" | "expensive-throughput" | "expensive-latency";

export interface RunRecord {
  kind: RunKind;
  size: number;
  /** paced rate, 0 = saturation (the generator as fast as it goes) */
  rate: number;
  rep: number;
  result: GenResult;
}

export interface ScenarioMeta {
  name: string;
  title: string;
  impl: Scenario["impl"];
  experiment: Experiment;
  datapath: Scenario["datapath"];
  workerMode?: Scenario["workerMode"];
  baseline?: string;
  targets?: Scenario["targets"];
  params?: Scenario["params"];
}

export interface ScenarioOutcome {
  scenario: ScenarioMeta;
  status: "ok" | "failed";
  /** failed: the error */
  reason?: string;
  runs: RunRecord[];
  napi?: NapiPinning;
  /** perf profile of the DUT CPU during a saturation window (see BenchPlan.profile) */
  profile?: CpuProfile;
  durationS?: number;
}

export interface MachineInfo {
  kernel: string;
  cpuModel: string;
  cpus: number;
  genCpu: number;
  dutCpu: number;
  loadavgBefore: string;
  /** set when the run ends (absent in results written before it existed) */
  loadavgAfter?: string;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  plan: BenchPlan;
  machine: MachineInfo;
  outcomes: ScenarioOutcome[];
}

export const metaOf = (s: Scenario): ScenarioMeta => ({
  name: s.name,
  title: s.title,
  impl: s.impl,
  experiment: s.experiment,
  datapath: s.datapath,
  workerMode: s.workerMode,
  baseline: s.baseline,
  targets: s.targets,
  params: s.params,
});

const rateLabel = (rate: number) => (rate === 0 ? "saturation" : `${rate} frames/s`);

/** The measurement windows a scenario gets under a plan, in order. */
export function runsFor(
  s: Pick<Scenario, "experiment" | "params">,
  plan: BenchPlan,
): Array<{ kind: RunKind; size: number; rate: number; expensive?: number }> {
  const out: Array<{ kind: RunKind; size: number; rate: number; expensive?: number }> = [];
  const small = plan.sizes[0] ?? 64;
  if (s.experiment === "calibration") {
    out.push({ kind: "throughput", size: small, rate: 0 });
  } else if (s.experiment === "macswap" || s.experiment === "chain5") {
    for (const size of plan.sizes) out.push({ kind: "throughput", size, rate: 0 });
    for (const rate of plan.rates) out.push({ kind: "latency", size: small, rate });
  } else {
    const P = s.params?.P ?? 0;
    out.push({ kind: "expensive-throughput", size: small, rate: 0, expensive: P });
    if (s.experiment === "expensive")
      out.push({ kind: "expensive-latency", size: small, rate: plan.expensiveRate, expensive: P });
  }
  return out;
}

export interface RunBenchOptions {
  plan: BenchPlan;
  tools: BenchTools;
  scenarios: Scenario[];
  log: Logger;
}

export async function runBench({ plan, tools, scenarios, log }: RunBenchOptions): Promise<BenchResults> {
  const startedAt = new Date().toISOString();
  const dutCpu = availableParallelism() > 1 ? 1 : 0;
  const machine: MachineInfo = {
    kernel: release(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    cpus: availableParallelism(),
    genCpu: 0,
    dutCpu,
    loadavgBefore: readFileSync("/proc/loadavg", "utf8").trim(),
  };
  const outcomes: ScenarioOutcome[] = [];
  // scenarios compared against by a runnable scenario's target get profiled with it
  const profiled = new Set<string>();
  for (const s of scenarios) {
    if (!s.targets?.length) continue;
    profiled.add(s.name);
    for (const t of s.targets) {
      const against = t.against ?? s.baseline;
      if (against) profiled.add(against);
    }
  }
  const runnable = scenarios.filter(
    (s) =>
      (!plan.only.length || plan.only.some((o) => s.name.includes(o))) &&
      (s.experiment !== "expensive" || plan.expensiveFractions.includes(s.params?.P ?? 0)),
  );
  // QUICK is a smoke run: one profile (the first scenario with a target of its own) shows
  // perf works end to end; each profile window costs seconds
  const quickProfiled = runnable.find((s) => s.targets?.length && profiled.has(s.name))?.name;
  const wantsProfile = (s: Scenario) =>
    plan.profile === "all" ||
    (plan.profile === "targets" && (plan.quick ? s.name === quickProfiled : profiled.has(s.name)));
  for (const s of runnable) {
    const t0 = Date.now();
    const outcome: ScenarioOutcome = { scenario: metaOf(s), status: "ok", runs: [] };
    try {
      await runScenario(s, plan, tools, log, outcome, wantsProfile(s));
    } catch (err) {
      outcome.status = "failed";
      outcome.reason = (err as Error).message;
      log.error({ scenario: s.name, err }, "scenario failed");
    }
    outcome.durationS = (Date.now() - t0) / 1000;
    outcomes.push(outcome);
  }
  machine.loadavgAfter = readFileSync("/proc/loadavg", "utf8").trim();
  return { startedAt, finishedAt: new Date().toISOString(), plan, machine, outcomes };
}

async function runScenario(
  s: Scenario,
  plan: BenchPlan,
  tools: BenchTools,
  log: Logger,
  outcome: ScenarioOutcome,
  profile: boolean,
): Promise<void> {
  const topo = await createBenchTopology("bn");
  let running: RunningDut | undefined;
  try {
    const { pair } = topo;
    const dut: DutContext = {
      ns: pair.nsB,
      iface: pair.ifB,
      ifindex: pair.ifindexB,
      mac: pair.macB,
      cpu: topo.dutCpu,
      tools,
      log,
      spawn: (cmd, args, opts) => spawnInNs(pair.nsB, cmd, args, opts),
    };
    log.info({ scenario: s.name, nsA: pair.nsA, nsB: pair.nsB }, "setting up DUT");
    running = await s.setup(dut);
    const napi = await topo.pinNapi();
    if (plan.boost) await boostTasks(tools.schedBoost, [...napi.dut, ...running.pids]);
    outcome.napi = napi;
    const dutPids = running.pids;
    const genOptions = (
      r: { rate: number; size: number; kind: RunKind; expensive?: number },
      rep: number,
    ): GenOptions => ({
      size: r.size,
      rate: r.rate,
      durationS: r.rate === 0 ? plan.throughputS : plan.latencyS,
      warmupS: plan.warmupS,
      expensive: r.expensive,
      // live frames only for saturation: one BPF_PROG_RUN call costs far more than a
      // sendmmsg, so small paced calls (a few frames each) fall way short of the rate
      mode: r.rate === 0 ? plan.generator : "afpacket",
      // the latency-distribution plot needs the histogram at the reference rate
      hist: r.kind === "latency" && r.rate === plan.referenceRate && rep === 0,
      boost: plan.boost,
      genCpu: topo.genCpu,
      dutCpu: topo.dutCpu,
      dutPids,
      dutNapiPids: napi.dut,
      genMac: pair.macA,
      dutMac: pair.macB,
    });
    for (const r of runsFor(s, plan)) {
      for (let rep = 0; rep < plan.repetitions; rep++) {
        const opts: GenOptions = genOptions(r, rep);
        const result = await runGen(tools, pair.nsA, pair.ifA, opts);
        // Every scenario but calibration (whose DUT drops everything) bounces frames back: a
        // window that got none back measured a DUT that forwards nothing, not a slow one.
        if (s.experiment !== "calibration" && result.received === 0)
          throw new Error(
            `${r.kind} window (${r.size} B, ${rateLabel(r.rate)}, rep ${rep}) received no frames back ` +
              `from the DUT (${result.sent} sent)`,
          );
        log.info(
          {
            scenario: s.name,
            kind: r.kind,
            size: r.size,
            rate: r.rate,
            rep,
            rxMpps: +(result.rx_pps / 1e6).toFixed(3),
            p50us: result.latency.normal.p50_us,
            p99us: result.latency.normal.p99_us,
          },
          "window",
        );
        outcome.runs.push({ kind: r.kind, size: r.size, rate: r.rate, rep, result });
      }
    }
    if (profile) {
      const size = plan.sizes[0] ?? 64;
      // at least 2 s of traffic in the full suite: perf's own start-up (up to ~1 s on a
      // loaded machine) must not eat a short window (QUICK keeps its short one: smoke only)
      const durationS = plan.quick ? plan.throughputS : Math.max(plan.throughputS, 2);
      const opts = { ...genOptions({ kind: "throughput", size, rate: 0 }, 0), hist: false, durationS };
      // perf samples the warm-up too: it covers perf's own start-up
      const dutTasks = [...napi.dut, ...dutPids];
      const { profile: p } = await profileCpu(topo.dutCpu, dutTasks, plan.warmupS + durationS, () =>
        runGen(tools, pair.nsA, pair.ifA, opts),
      );
      outcome.profile = p;
      log.info({ scenario: s.name, top: p.top.slice(0, 3) }, "profiled DUT CPU");
    }
  } finally {
    try {
      if (running) await running.teardown();
    } finally {
      await topo.cleanup();
    }
  }
}
