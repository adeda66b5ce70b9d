/**
 * Galette scenarios (see docs/benchmarks.md, "Galette scenarios"), registered beside the C
 * baselines of scenarios.ts. cli.ts imports this module before the suite runs.
 *
 * Each setup builds the chain's NFs through nf-build (cached, in the runner: the first build
 * can take minutes and must not count against the DUT's start-up timeout), then starts
 * bench/src/galette-dut.ts inside the DUT namespace. That process installs the chain with
 * @galette/installer and runs the AF_XDP workers as its own threads, so its pid is the
 * DUT's userland CPU, together with its child: the unprivileged NF worker process (the
 * `-inprocess` rows run the workers as threads of galette-dut instead, as before the
 * worker process existed, to measure what the isolation costs). Teardown stops it (it
 * uninstalls on SIGTERM) and checks that the interface carries no XDP program afterwards.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { buildChain, loadChainOrThrow } from "@galette/nf-build";
import {
  type DutContext,
  EXPENSIVE_FRACTIONS,
  type RunningDut,
  registerScenario,
  type Scenario,
  THREAD_COUNTS,
} from "./scenarios";
import { run } from "./testkit";

const srcDir = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(srcDir, "..", "..");
const dutScript = join(srcDir, "galette-dut.ts");
// tsx as a loader of a plain `node` process: the pid the harness measures is the process
// that runs the workers (not a pnpm or tsx wrapper around it)
const tsxLoader = pathToFileURL(createRequire(join(repoRoot, "package.json")).resolve("tsx")).href;

/** Steps per expensive frame, as the C reference (bench/c/expensive.h EXPENSIVE_OPS). */
export const EXPENSIVE_ITERATIONS = 100_000;

export const CHAINS = {
  macswap: "bench/chains/macswap.toml",
  upcallMacswap: "bench/chains/upcall-macswap-bare.toml",
  upcallMacswapCounting: "bench/chains/upcall-macswap.toml",
  chain5: "bench/chains/chain5.toml",
  expensiveXdp: "bench/chains/expensive-xdp.toml",
  expensiveUpcall: "bench/chains/expensive-upcall.toml",
} as const;

/** Little-endian u32 key and u64 value as galette-dut `--map-set NF.MAP=KEYHEX:VALUEHEX`. */
export function u32u64MapSet(nf: string, map: string, key: number, value: number): string {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(key);
  const v = Buffer.alloc(8);
  v.writeBigUInt64LE(BigInt(value));
  return `${nf}.${map}=${k.toString("hex")}:${v.toString("hex")}`;
}

const builds = new Map<string, Promise<void>>();
/** Build a chain's NFs once per run (nf-build's cache makes later runs fast). */
export function prebuildChain(file: string): Promise<void> {
  let b = builds.get(file);
  if (!b) {
    b = (async () => {
      const chain = await loadChainOrThrow(resolve(repoRoot, file));
      await buildChain(chain, { baseDir: repoRoot });
    })();
    builds.set(file, b);
  }
  return b;
}

export interface GaletteDutOptions {
  chain: string;
  workers?: number;
  mode?: "busy-poll" | "blocking";
  mapSets?: string[];
  /** workers as threads of galette-dut (the isolation-cost baseline), not a worker process */
  inProcess?: boolean;
}

/** galette-dut's command line (exported for the unit test). */
export function galetteDutArgs(iface: string, o: GaletteDutOptions): string[] {
  return [
    "--import",
    tsxLoader,
    dutScript,
    "--chain",
    o.chain,
    "--iface",
    iface,
    "--workers",
    String(o.workers ?? 1),
    "--mode",
    o.mode ?? "blocking",
    ...(o.mapSets ?? []).flatMap((m) => ["--map-set", m]),
    ...(o.inProcess ? ["--in-process"] : []),
  ];
}

/** The child processes of `pid` (the NF worker process galette-dut started). */
function childPids(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
  );
}

async function xdpAttached(dut: DutContext): Promise<boolean> {
  const { stdout } = await run("ip", ["-n", dut.ns, "-j", "link", "show", "dev", dut.iface]);
  const [link] = JSON.parse(stdout) as Array<{ xdp?: unknown }>;
  return link?.xdp !== undefined;
}

export async function startGaletteDut(dut: DutContext, o: GaletteDutOptions): Promise<RunningDut> {
  await prebuildChain(o.chain);
  // inside the DUT namespace already (nsenter), so the installer targets the plain ifname
  const proc = await dut.spawn(process.execPath, galetteDutArgs(dut.iface, o), { readyTimeoutMs: 60_000 });
  // same CPU as the C baselines' processes (-c): every thread, workers included, and the
  // worker process's (its CPU is the DUT's too)
  const pids = [proc.pid, ...childPids(proc.pid)];
  for (const pid of pids) await run("taskset", ["-a", "-pc", String(dut.cpu), String(pid)]);
  return {
    pids,
    async teardown() {
      const out = await proc.stop();
      dut.log.info({ chain: o.chain, summary: out.trim().split("\n").pop() }, "Galette DUT stopped");
      if (await xdpAttached(dut))
        throw new Error(`${dut.iface} in ${dut.ns} still has an XDP program after uninstalling ${o.chain}`);
    },
  };
}

const expensiveMapSet = [u32u64MapSet("expensive", "config", 0, EXPENSIVE_ITERATIONS)];

const startExpensiveUpcall = (dut: DutContext, workers: number) =>
  startGaletteDut(dut, {
    chain: CHAINS.expensiveUpcall,
    workers,
    mode: "busy-poll",
    mapSets: expensiveMapSet,
  });

export const galetteScenarios: Scenario[] = [
  {
    name: "galette/xdp-macswap",
    title: "Galette macswap chain in XDP",
    impl: "galette",
    experiment: "macswap",
    datapath: "xdp",
    baseline: "baseline/xdp-macswap",
    targets: [
      { metric: "throughput", atLeast: 0.9 },
      { metric: "p50", atMost: 1.2 },
    ],
    setup: (dut) => startGaletteDut(dut, { chain: CHAINS.macswap }),
  },
  ...(["poll", "irq"] as const).map(
    (mode): Scenario => ({
      name: `galette/upcall-macswap-${mode}`,
      title: `Galette macswap upcalled to userland (${mode})`,
      impl: "galette",
      experiment: "macswap",
      datapath: "afxdp",
      workerMode: mode,
      baseline: `baseline/afxdp-macswap-${mode}`,
      targets: [
        { metric: "throughput", atLeast: 0.9 },
        // out-of-process (isolated) workers against in-process ones, same run
        { metric: "throughput", against: `galette/upcall-macswap-${mode}-inprocess`, atLeast: 0.9 },
      ],
      setup: (dut) =>
        startGaletteDut(dut, {
          chain: CHAINS.upcallMacswap,
          workers: 1,
          mode: mode === "poll" ? "busy-poll" : "blocking",
        }),
    }),
  ),
  // The cost of running NF code in the unprivileged worker process: the same upcall rows
  // with the workers as threads of the installing process (NF code with its privileges,
  // how Galette ran before; a baseline only, never how a device runs).
  ...(["poll", "irq"] as const).map(
    (mode): Scenario => ({
      name: `galette/upcall-macswap-${mode}-inprocess`,
      title: `Galette macswap upcalled (${mode}), in-process workers (isolation baseline)`,
      impl: "galette",
      experiment: "macswap",
      datapath: "afxdp",
      workerMode: mode,
      baseline: `baseline/afxdp-macswap-${mode}`,
      setup: (dut) =>
        startGaletteDut(dut, {
          chain: CHAINS.upcallMacswap,
          workers: 1,
          mode: mode === "poll" ? "busy-poll" : "blocking",
          inProcess: true,
        }),
    }),
  ),
  // The upcall targets use bench/nfs/macswap-bare, the C baselines' exact work. The paper's
  // macswap (nf-examples/macswap, Listing 2) also counts frames in an array map; the worker
  // maps the array (BPF_F_MMAPABLE), so the counter is a memory access, not two bpf()
  // syscalls per frame: "mmap-map" holds it against the bare upcall.
  {
    name: "galette/upcall-macswap-counting-irq",
    title: "Galette nf-examples/macswap (per-frame map counter) upcalled (irq)",
    impl: "galette",
    experiment: "macswap",
    datapath: "afxdp",
    workerMode: "irq",
    baseline: "baseline/afxdp-macswap-irq",
    targets: [
      { metric: "throughput", against: "galette/upcall-macswap-irq", atLeast: 0.8, label: "mmap-map" },
    ],
    setup: (dut) =>
      startGaletteDut(dut, { chain: CHAINS.upcallMacswapCounting, workers: 1, mode: "blocking" }),
  },
  {
    name: "galette/xdp-chain5",
    title: "Galette 5-NF chain in XDP",
    impl: "galette",
    experiment: "chain5",
    datapath: "xdp",
    baseline: "galette/xdp-macswap",
    targets: [{ metric: "throughput", atLeast: 0.6 }],
    setup: (dut) => startGaletteDut(dut, { chain: CHAINS.chain5 }),
  },
  ...EXPENSIVE_FRACTIONS.flatMap((P) => [
    {
      name: `galette/expensive-xdp-P${P}`,
      title: `Galette expensive NF in XDP, P=${P}`,
      impl: "galette" as const,
      experiment: "expensive" as const,
      datapath: "xdp" as const,
      params: { P },
      setup: (dut: DutContext) =>
        startGaletteDut(dut, { chain: CHAINS.expensiveXdp, mapSets: expensiveMapSet }),
    },
    {
      name: `galette/expensive-upcall-P${P}`,
      title: `Galette expensive NF upcalled, P=${P}`,
      impl: "galette" as const,
      experiment: "expensive" as const,
      datapath: "afxdp" as const,
      workerMode: "poll" as const,
      params: { P },
      // at P = 0.5 upcalling gives normal traffic >= 5x the throughput and >= 10x lower p99
      // than placing the expensive NF in XDP
      targets:
        P === 0.5
          ? [
              { metric: "throughput" as const, against: "galette/expensive-xdp-P0.5", atLeast: 5 },
              { metric: "p99" as const, against: "galette/expensive-xdp-P0.5", atMost: 0.1 },
            ]
          : undefined,
      setup: (dut: DutContext) => startExpensiveUpcall(dut, 1),
    },
  ]),
  ...THREAD_COUNTS.map(
    (threads): Scenario => ({
      name: `galette/threads-${threads}`,
      title: `Galette upcalled expensive NF, P=0.5, ${threads} userland thread(s)`,
      impl: "galette",
      experiment: "threads",
      datapath: "afxdp",
      workerMode: "poll",
      params: { P: 0.5, threads },
      setup: (dut) => startExpensiveUpcall(dut, threads),
    }),
  ),
];

for (const s of galetteScenarios) registerScenario(s);
