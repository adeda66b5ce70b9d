/**
 * Per-packet cost the generator cannot hide. On a small machine saturation throughput is
 * bound by the generator and paced latency by cross-CPU wake-ups, so a regression in the
 * chain's own cost can vanish in them. Three measurements of each program as installed on
 * the DUT's interface (the hand-written XDP_TX macswap, and Galette's root program with 1,
 * 5 and 33 NFs behind it), each repeated and reported as median (min–max) and as a ratio
 * to the baseline's median in the same run:
 *
 * - BPF_PROG_TEST_RUN with `repeat` (bpftool prog run): ns/packet with no generator at all;
 * - kernel bpf_stats (run_time_ns / run_cnt of the attached program, which includes the
 *   NFs it tail-calls) under live traffic; bpf_stats are on only while measuring
 *   (a BPF_ENABLE_STATS hold, shared with the agent's cost windows);
 * - round-trip latency on the same-CPU path: generator, sink and the veth's NAPI all on one
 *   CPU (no threaded NAPI), so no cross-CPU wake-up sits in the number.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Dataplane, planInstallation, withBpfStats } from "@galette/installer";
import { createLogger, type Logger } from "@galette/log";
import { buildChain, loadChainOrThrow } from "@galette/nf-build";
import { udpFrame } from "@galette/testkit/frames";
import { repoRoot } from "./galette";
import { runGen } from "./gen";
import { makePlan } from "./plan";
import { type Spread, spread } from "./stats";
import { run } from "./testkit";
import { type BenchTools, buildTools } from "./tools";
import { createBenchTopology } from "./topology";

export interface CostPlan {
  quick: boolean;
  /** repetitions of each measurement (≥ 3) */
  repetitions: number;
  /** BPF_PROG_TEST_RUN repeat count per repetition */
  testRunRepeat: number;
  /** seconds of live traffic per bpf_stats repetition, and its rate (frames/s) */
  statsS: number;
  statsRate: number;
  /** seconds per same-CPU latency repetition, and its rate (frames/s) */
  latencyS: number;
  latencyRate: number;
}

export function costPlan(quick: boolean): CostPlan {
  return quick
    ? {
        quick,
        repetitions: 3,
        testRunRepeat: 100_000,
        statsS: 0.3,
        statsRate: 50_000,
        latencyS: 0.3,
        latencyRate: 2_000,
      }
    : {
        quick,
        repetitions: 5,
        testRunRepeat: 1_000_000,
        statsS: 2,
        statsRate: 100_000,
        latencyS: 2,
        latencyRate: 2_000,
      };
}

/** spread() of repeated measurements, which must all be numbers. */
function spreadOf(samples: number[], what: string): Spread {
  const s = spread(samples);
  if (!s || s.n !== samples.length)
    throw new Error(`${what}: not every repetition gave a number (${samples.join(", ")})`);
  return s;
}

export interface CostRow {
  name: string;
  title: string;
  testRunNs: Spread;
  statsNs: Spread;
  sameCpuP50Us: Spread;
}

interface Subject {
  name: string;
  title: string;
  install(ns: string, iface: string): Promise<() => Promise<void>>;
}

/** A chain of `n` NFs: n − 1 pass-through NFs, then macswap (bench/chains/chain5.toml's shape). */
export function longChainToml(n: number): string {
  const names = [...Array.from({ length: n - 1 }, (_, i) => `pass-${i + 1}`), "macswap"];
  const lines = ["[chain]", `name = "bench-chain${n}"`, ""];
  for (const name of names)
    lines.push(
      `[functions.${name}]`,
      `path = "${name === "macswap" ? "nf-examples/macswap" : "bench/nfs/pass"}"`,
      'maps = { counters = { type = "array", size = 1 } }',
      "",
    );
  ["rx", ...names].forEach((from, i) => {
    lines.push("[[links]]", `from = "${from}"`, `to = ["${names[i] ?? "tx"}"]`, "");
  });
  return lines.join("\n");
}

function galetteSubject(
  name: string,
  title: string,
  chainFile: string,
  stateDir: string,
  log: Logger,
): Subject {
  return {
    name,
    title,
    async install(ns, iface) {
      const built = await buildChain(await loadChainOrThrow(chainFile), { baseDir: repoRoot });
      const dp = await Dataplane.install(
        planInstallation(built.plan, built.artifacts, { iface, netns: ns }),
        {
          stateDir,
          workers: { count: 1, mode: "blocking" },
          logger: log,
        },
      );
      return async () => dp.uninstall();
    },
  };
}

function baselineSubject(tools: BenchTools): Subject {
  return {
    name: "baseline/xdp-macswap",
    title: "XDP_TX macswap (C)",
    async install(ns, iface) {
      await run("ip", [
        "-n",
        ns,
        "-force",
        "link",
        "set",
        "dev",
        iface,
        "xdpdrv",
        "obj",
        tools.xdpMacswapObj,
        "sec",
        "xdp",
      ]);
      return async () => {
        await run("ip", ["-n", ns, "link", "set", "dev", iface, "xdpdrv", "off"]);
      };
    },
  };
}

/** The id of the XDP program attached to `iface` in `ns`. */
async function attachedProgId(ns: string, iface: string): Promise<number> {
  const { stdout } = await run("ip", ["-n", ns, "-j", "link", "show", "dev", iface]);
  const id = (JSON.parse(stdout) as Array<{ xdp?: { prog?: { id?: number } } }>)[0]?.xdp?.prog?.id;
  if (!id) throw new Error(`no XDP program attached to ${iface} in ${ns}`);
  return id;
}

/** Mean ns per run of program `id` over `repeat` BPF_PROG_TEST_RUN runs on the frame in `frameFile`. */
export async function testRunNs(id: number, frameFile: string, repeat: number): Promise<number> {
  const { stdout, stderr } = await run("bpftool", [
    "prog",
    "run",
    "id",
    String(id),
    "data_in",
    frameFile,
    "repeat",
    String(repeat),
  ]);
  const m = /duration \(average\): (\d+)ns/.exec(`${stdout}\n${stderr}`);
  if (!m)
    throw new Error(
      `bpftool prog run printed no duration: ${JSON.stringify((stdout + stderr).slice(0, 300))}`,
    );
  return Number(m[1]);
}

/** The kernel's bpf_stats of program `id` (zero while stats are off). */
export async function progStats(id: number): Promise<{ ns: number; count: number }> {
  const { stdout } = await run("bpftool", ["-j", "prog", "show", "id", String(id)]);
  const p = JSON.parse(stdout) as { run_time_ns?: number; run_cnt?: number };
  return { ns: p.run_time_ns ?? 0, count: p.run_cnt ?? 0 };
}

export async function runCost(opts: { quick: boolean; log: Logger }): Promise<CostRow[]> {
  const plan = costPlan(opts.quick);
  const tools = await buildTools();
  const scratch = mkdtempSync(join(tmpdir(), "galette-bench-cost-"));
  const rows: CostRow[] = [];
  try {
    const chain33 = join(scratch, "chain33.toml");
    writeFileSync(chain33, longChainToml(33));
    const subjects: Subject[] = [
      baselineSubject(tools),
      galetteSubject(
        "galette/xdp-macswap",
        "Galette, 1 NF (macswap)",
        resolve(repoRoot, "bench/chains/macswap.toml"),
        join(scratch, "s1"),
        opts.log,
      ),
      galetteSubject(
        "galette/xdp-chain5",
        "Galette, 5 NFs",
        resolve(repoRoot, "bench/chains/chain5.toml"),
        join(scratch, "s5"),
        opts.log,
      ),
      galetteSubject(
        "galette/xdp-chain33",
        "Galette, 33 NFs (the tail-call limit)",
        chain33,
        join(scratch, "s33"),
        opts.log,
      ),
    ];
    for (const s of subjects) {
      // a fresh topology per subject; no threaded NAPI: the veth's NAPI runs on the sending CPU
      const topo = await createBenchTopology("cost");
      const { pair } = topo;
      let uninstall: (() => Promise<void>) | undefined;
      try {
        uninstall = await s.install(pair.nsB, pair.ifB);
        const id = await attachedProgId(pair.nsB, pair.ifB);
        const frameFile = join(scratch, "frame.bin");
        writeFileSync(
          frameFile,
          udpFrame({
            dstMac: pair.macB,
            srcMac: pair.macA,
            srcIp: pair.ipA,
            dstIp: pair.ipB,
            payload: Buffer.alloc(18),
          }),
        );
        const testRun: number[] = [];
        for (let i = 0; i < plan.repetitions; i++)
          testRun.push(await testRunNs(id, frameFile, plan.testRunRepeat));
        const gen = {
          size: 64,
          warmupS: 0.1,
          genCpu: topo.genCpu,
          genMac: pair.macA,
          dutMac: pair.macB,
        };
        const stats = await withBpfStats(async () => {
          const out: number[] = [];
          for (let i = 0; i < plan.repetitions; i++) {
            const a = await progStats(id);
            await runGen(tools, pair.nsA, pair.ifA, {
              ...gen,
              rate: plan.statsRate,
              durationS: plan.statsS,
              dutCpu: topo.dutCpu,
            });
            const b = await progStats(id);
            if (b.count <= a.count)
              throw new Error(`${s.name}: no runs of program ${id} counted under traffic`);
            out.push((b.ns - a.ns) / (b.count - a.count));
          }
          return out;
        });
        const latency: number[] = [];
        for (let i = 0; i < plan.repetitions; i++) {
          const r = await runGen(tools, pair.nsA, pair.ifA, {
            ...gen,
            rate: plan.latencyRate,
            durationS: plan.latencyS,
            dutCpu: topo.genCpu,
          });
          const p50 = r.latency.normal.p50_us;
          if (p50 === undefined || r.received === 0)
            throw new Error(`${s.name}: no frames came back for the latency run`);
          latency.push(p50);
        }
        rows.push({
          name: s.name,
          title: s.title,
          testRunNs: spreadOf(testRun, `${s.name} test run`),
          statsNs: spreadOf(stats, `${s.name} bpf_stats`),
          sameCpuP50Us: spreadOf(latency, `${s.name} latency`),
        });
        opts.log.info({ subject: s.name, testRun, stats, latency }, "per-packet cost measured");
      } finally {
        try {
          await uninstall?.();
        } finally {
          await topo.cleanup();
        }
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return rows;
}

const fmt = (x: number, digits: number) => x.toFixed(digits);
const cell = (s: Spread, digits: number) =>
  `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;

export function renderCost(rows: CostRow[], plan: CostPlan): string {
  const base = rows.find((r) => r.name.startsWith("baseline/"));
  const ratio = (v: number, b: number | undefined) => (b ? `${(v / b).toFixed(2)}×` : "–");
  const lines = [
    "## Per-packet cost without the generator",
    "",
    `Each cell: median (min–max) of ${plan.repetitions} repetitions; ratio = median / the C baseline's median, same run. ` +
      `BPF_PROG_TEST_RUN: ${plan.testRunRepeat} runs of a 64 B frame per repetition over the program attached to the interface. ` +
      `bpf_stats: run_time_ns / run_cnt of that program (tail-called NFs included) under ${plan.statsRate / 1000} kpps for ${plan.statsS} s. ` +
      `Same-CPU p50: round trip at ${plan.latencyRate / 1000} kpps with the generator, the sink and both NAPIs on one CPU.`,
    "",
    "| program | BPF_PROG_TEST_RUN ns/packet | ratio | bpf_stats ns/packet | ratio | same-CPU p50 µs | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows)
    lines.push(
      `| ${r.title} | ${cell(r.testRunNs, 0)} | ${ratio(r.testRunNs.median, base?.testRunNs.median)} | ${cell(r.statsNs, 0)} | ${ratio(r.statsNs.median, base?.statsNs.median)} | ${cell(r.sameCpuP50Us, 1)} | ${ratio(r.sameCpuP50Us.median, base?.sameCpuP50Us.median)} |`,
    );
  return `${lines.join("\n")}\n`;
}

export async function runCostSection(reportPath: string): Promise<boolean> {
  const only = process.env.BENCH_ONLY?.split(",").filter(Boolean);
  if (only && !only.some((o) => "cost".includes(o))) return true;
  const log = createLogger("bench");
  const quick = makePlan(process.env).quick;
  try {
    const table = renderCost(await runCost({ quick, log }), costPlan(quick));
    process.stdout.write(`${table}\n`);
    appendFileSync(reportPath, `\n${table}`);
    return true;
  } catch (err) {
    process.stderr.write(`bench: per-packet cost failed: ${(err as Error).message}\n`);
    return false;
  }
}
