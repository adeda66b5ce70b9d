import type { Logger } from "@galette/log";
import type { DutProcess } from "./dut";
import { run } from "./testkit";
import type { BenchTools } from "./tools";

/** Where the work happens on the DUT. */
export type Datapath = "xdp" | "afxdp" | "afpacket";

/**
 * Which experiment of the paper a scenario belongs to:
 * - macswap: one macswap NF across rates and sizes (Tables I–III, Fig. 4–5)
 * - chain5: five NFs chained in XDP (ratio to the single-NF chain)
 * - expensive: an expensive NF on a fraction P of the frames, placed in XDP or upcalled (Fig. 6–7)
 * - threads: userland worker threads at P = 0.5 (Fig. 8)
 * - calibration: the DUT drops everything; measures what the generator can offer
 */
export type Experiment = "calibration" | "macswap" | "chain5" | "expensive" | "threads";

/** The device under test as a scenario's setup sees it: namespace B of a fresh veth pair. */
export interface DutContext {
  ns: string;
  iface: string;
  ifindex: number;
  mac: string;
  /** CPU reserved for the DUT (its NAPI kthread is pinned here after setup) */
  cpu: number;
  tools: BenchTools;
  log: Logger;
  /** Start a long-running process in the DUT namespace; resolves once it prints `ready`. */
  spawn(cmd: string, args: string[], opts?: { readyTimeoutMs?: number }): Promise<DutProcess>;
}

/** What setup leaves running; teardown undoes it (the namespace is deleted afterwards anyway). */
export interface RunningDut {
  /** processes whose utime+stime count as the DUT's CPU */
  pids: number[];
  teardown(): Promise<void>;
}

/** A ratio target, checked in the report. */
export interface Target {
  metric: "throughput" | "p50" | "p99";
  /** ratio = this scenario / `against` (default: the scenario's baseline) */
  against?: string;
  atLeast?: number;
  atMost?: number;
  /** a short name for the row, printed on the console too (e.g. "mmap-map") */
  label?: string;
}

export interface Scenario {
  /** unique, "<impl>/<what>", e.g. "baseline/xdp-macswap" */
  name: string;
  /** row label in the report, e.g. "XDP_TX macswap (C)" */
  title: string;
  impl: "baseline" | "galette";
  experiment: Experiment;
  datapath: Datapath;
  /** userland workers: blocking ("irq", the paper's IRQ mode) or spinning ("poll") */
  workerMode?: "poll" | "irq";
  /** the scenario whose figures are this one's denominators */
  baseline?: string;
  targets?: Target[];
  /** expensive: fraction of expensive frames; threads: number of userland threads */
  params?: { P?: number; threads?: number };
  setup(dut: DutContext): Promise<RunningDut>;
}

const registry = new Map<string, Scenario>();

/** Add a scenario (the C baselines here, Galette's in galette.ts); names are unique. */
export function registerScenario(s: Scenario): void {
  if (registry.has(s.name)) throw new Error(`bench scenario "${s.name}" is already registered`);
  if (s.baseline && s.baseline === s.name) throw new Error(`bench scenario "${s.name}" is its own baseline`);
  registry.set(s.name, s);
}

export function scenarios(): Scenario[] {
  return [...registry.values()];
}

export function scenario(name: string): Scenario {
  const s = registry.get(name);
  if (!s)
    throw new Error(
      `unknown bench scenario "${name}"; known: ${[...registry.keys()].join(", ") || "(none)"}`,
    );
  return s;
}

/** Attach an XDP object's section in native mode on the DUT interface (replacing whatever is there). */
export async function attachXdp(dut: DutContext, obj: string, section = "xdp"): Promise<void> {
  await run("ip", [
    "-n",
    dut.ns,
    "-force",
    "link",
    "set",
    "dev",
    dut.iface,
    "xdpdrv",
    "obj",
    obj,
    "sec",
    section,
  ]);
}

export async function detachXdp(dut: DutContext): Promise<void> {
  await run("ip", ["-n", dut.ns, "link", "set", "dev", dut.iface, "xdpdrv", "off"]);
}

const processDut = (proc: DutProcess, log: Logger, name: string): RunningDut => ({
  pids: [proc.pid],
  async teardown() {
    const out = await proc.stop();
    const summary = out.trim().split("\n").pop();
    log.info({ scenario: name, summary }, "DUT process stopped");
  },
});

// ---- hand-written C baselines (the denominators) ----

export const calibrationScenario: Scenario = {
  name: "calibration/generator",
  title: "generator capacity (DUT: XDP_DROP)",
  impl: "baseline",
  experiment: "calibration",
  datapath: "xdp",
  async setup(dut) {
    await attachXdp(dut, dut.tools.xdpDropObj, "xdp");
    return { pids: [], teardown: () => detachXdp(dut) };
  },
};

export const baselineScenarios: Scenario[] = [
  {
    name: "baseline/xdp-macswap",
    title: "XDP_TX macswap (C)",
    impl: "baseline",
    experiment: "macswap",
    datapath: "xdp",
    async setup(dut) {
      await attachXdp(dut, dut.tools.xdpMacswapObj, "xdp");
      return { pids: [], teardown: () => detachXdp(dut) };
    },
  },
  ...(["poll", "irq"] as const).map(
    (mode): Scenario => ({
      name: `baseline/afxdp-macswap-${mode}`,
      title: `AF_XDP copy-mode macswap, ${mode === "poll" ? "busy-poll" : "blocking poll()"} (C)`,
      impl: "baseline",
      experiment: "macswap",
      datapath: "afxdp",
      workerMode: mode,
      async setup(dut) {
        const proc = await dut.spawn(dut.tools.afxdpMacswap, [
          "-i",
          dut.iface,
          "-o",
          dut.tools.xskRedirectObj,
          "-m",
          mode === "poll" ? "busy" : "poll",
          "-c",
          String(dut.cpu),
        ]);
        return processDut(proc, dut.log, `baseline/afxdp-macswap-${mode}`);
      },
    }),
  ),
  ...(["poll", "irq"] as const).map(
    (mode): Scenario => ({
      name: `baseline/afpacket-macswap-${mode}`,
      title: `AF_PACKET macswap, ${mode === "poll" ? "busy recvmmsg" : "blocking recvmmsg"} (C)`,
      impl: "baseline",
      experiment: "macswap",
      datapath: "afpacket",
      workerMode: mode,
      async setup(dut) {
        // An XDP_PASS program gives the DUT's veth a NAPI context, so its receive work runs
        // on the DUT CPU (as a NIC driver's would) instead of the generator's softirq.
        await attachXdp(dut, dut.tools.xdpPassObj, "xdp");
        const proc = await dut.spawn(dut.tools.afpacketMacswap, [
          "-i",
          dut.iface,
          "-m",
          mode === "poll" ? "busy" : "block",
          "-c",
          String(dut.cpu),
        ]);
        return processDut(proc, dut.log, `baseline/afpacket-macswap-${mode}`);
      },
    }),
  ),
];

/** Fractions the hand-written expensive-NF reference is measured at (a subset of the paper's, for time). */
export const REFERENCE_EXPENSIVE_FRACTIONS = [0, 0.5, 1] as const;

/**
 * Hand-written C reference of the expensive-NF experiment (Fig. 6–7): the same work
 * (expensive.h) in XDP with bpf_loop, or upcalled to a busy-polling AF_XDP worker while
 * normal frames stay in XDP. It shows what placement alone does, next to Galette's numbers.
 */
export const expensiveReferenceScenarios: Scenario[] = REFERENCE_EXPENSIVE_FRACTIONS.flatMap((P) => [
  {
    name: `baseline/expensive-xdp-P${P}`,
    title: `expensive NF in XDP (C), P=${P}`,
    impl: "baseline",
    experiment: "expensive",
    datapath: "xdp",
    params: { P },
    async setup(dut) {
      await attachXdp(dut, dut.tools.expensiveXdpObj, "xdp");
      return { pids: [], teardown: () => detachXdp(dut) };
    },
  },
  {
    name: `baseline/expensive-upcall-P${P}`,
    title: `expensive NF upcalled to AF_XDP (C), P=${P}`,
    impl: "baseline",
    experiment: "expensive",
    datapath: "afxdp",
    workerMode: "poll",
    params: { P },
    async setup(dut) {
      const proc = await dut.spawn(dut.tools.afxdpMacswap, [
        "-i",
        dut.iface,
        "-o",
        dut.tools.expensiveUpcallObj,
        "-p",
        "expensive_upcall",
        "-e",
        "-m",
        "busy",
        "-c",
        String(dut.cpu),
      ]);
      return processDut(proc, dut.log, `baseline/expensive-upcall-P${P}`);
    },
  },
]);

/** Fractions of expensive frames swept in Fig. 6–7. */
export const EXPENSIVE_FRACTIONS = [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1] as const;
/** Userland thread counts swept in Fig. 8 (at P = 0.5). */
export const THREAD_COUNTS = [1, 2, 4] as const;

for (const s of [calibrationScenario, ...baselineScenarios, ...expensiveReferenceScenarios])
  registerScenario(s);
