/**
 * What packet tracing costs the installed chain (docs/observability.md), measured as the
 * cost section measures chains: BPF_PROG_TEST_RUN (`bpftool prog run … repeat`) over the
 * root program attached to the DUT's interface, which tail-calls the whole chain. Three
 * states of the same installation, interleaved round by round so machine noise hits them
 * alike, median (min–max) of ROUNDS rounds:
 *
 * - off: no tracer (the root tests one map value, each shim compares data_meta with data);
 * - on, no frame matches: a tracer whose filter (`port 1`) the test frame fails;
 * - on, every frame: each frame is marked, the root record written with 128 bytes and one
 *   record per NF. A test run reuses one xdp_buff for all its repetitions (the metadata one
 *   adds stays for the next), so this state is measured under live frames instead: kernel
 *   bpf_stats (run_time_ns / run_cnt of the root, NFs included) while LIVE_FRAMES frames
 *   arrive, the tracer draining, against the same measurement with tracing off.
 *
 * - cost window open: the per-NF cost window's flag set (each NF shim reads the clock at
 *   entry and at its tail call or verdict and adds to its per-CPU slot), test run; "off" is
 *   the same installation with the window closed, the state every frame outside a window
 *   is in.
 *
 *   pnpm --filter @galette/bench exec tsx src/trace-cost.ts [chain.toml …]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  Dataplane,
  enableBpfStats,
  openCostMaps,
  planInstallation,
  readNfCost,
  setMeasuring,
  Tracer,
} from "@galette/installer";
import { createLogger } from "@galette/log";
import { buildChain, loadChainOrThrow } from "@galette/nf-build";
import { exchangeFrames, udpFrame } from "@galette/testkit/frames";
import { progStats, testRunNs } from "./cost";
import { repoRoot } from "./galette";
import { spread } from "./stats";
import { run } from "./testkit";
import { createBenchTopology } from "./topology";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const REPEAT = Number(process.env.REPEAT ?? 1_000_000);
const LIVE_FRAMES = 1000;

async function measure(chainFile: string): Promise<void> {
  const log = createLogger("galette-bench-trace-cost");
  const scratch = mkdtempSync(join(tmpdir(), "galette-trace-cost-"));
  const topo = await createBenchTopology("trc");
  const { pair } = topo;
  const target = { iface: pair.ifB, netns: pair.nsB };
  try {
    const built = await buildChain(await loadChainOrThrow(chainFile), { baseDir: repoRoot });
    const dp = await Dataplane.install(planInstallation(built.plan, built.artifacts, target), {
      stateDir: scratch,
      workers: { count: 1, mode: "blocking" },
      logger: log,
    });
    try {
      const { stdout } = await run("ip", ["-n", pair.nsB, "-j", "link", "show", "dev", pair.ifB]);
      const id = (JSON.parse(stdout) as Array<{ xdp?: { prog?: { id?: number } } }>)[0]?.xdp?.prog?.id;
      if (!id) throw new Error(`no XDP program on ${pair.ifB}`);
      const frameFile = join(scratch, "frame.bin");
      const frame = udpFrame({
        dstMac: pair.macB,
        srcMac: pair.macA,
        srcIp: pair.ipA,
        dstIp: pair.ipB,
        payload: Buffer.alloc(18),
      });
      writeFileSync(frameFile, frame);
      let frames = 0;
      /** ns per frame of the root (and the chain) by bpf_stats while LIVE_FRAMES arrive */
      const live = async (tracer?: Tracer): Promise<number> => {
        const a = await progStats(id);
        const drain = tracer
          ? setInterval(() => {
              frames += tracer.poll().length;
            }, 10)
          : undefined;
        try {
          await exchangeFrames(pair.nsA, pair.ifA, {
            send: [frame],
            repeat: LIVE_FRAMES,
            pps: 5000,
            listenMs: 50,
          });
        } finally {
          if (drain) clearInterval(drain);
        }
        if (tracer) frames += tracer.poll().length;
        const b = await progStats(id);
        if (b.count <= a.count) throw new Error(`no runs of program ${id} counted under traffic`);
        return (b.ns - a.ns) / (b.count - a.count);
      };
      const off: number[] = [];
      const miss: number[] = [];
      const liveOff: number[] = [];
      const every: number[] = [];
      const costOpen: number[] = [];
      const costMaps = openCostMaps(dp.spec.pins.dir);
      if (!costMaps) throw new Error(`installation ${dp.spec.pins.dir} has no per-NF cost maps`);
      const xdpNfs = dp.spec.instances.filter((i) => i.xdp);
      const timed = () => xdpNfs.map((i) => readNfCost(costMaps, i.id));
      /** each NF's own ns per run in the window's test runs (what device status reports) */
      const nfNs = new Map<string, number[]>(xdpNfs.map((i) => [i.name, []]));
      const releaseStats = enableBpfStats();
      try {
        for (let r = 0; r < ROUNDS; r++) {
          off.push(await testRunNs(id, frameFile, REPEAT));
          const t1 = Tracer.start(target, { filter: "port 1", stateDir: scratch });
          try {
            miss.push(await testRunNs(id, frameFile, REPEAT));
          } finally {
            t1.stop();
          }
          const t0 = timed();
          setMeasuring(costMaps, true);
          try {
            costOpen.push(await testRunNs(id, frameFile, REPEAT));
          } finally {
            setMeasuring(costMaps, false);
          }
          timed().forEach((t, k) => {
            const runs = t.runs - t0[k]!.runs;
            if (runs < REPEAT) throw new Error(`the cost window timed ${runs} runs of ${xdpNfs[k]!.name}`);
            nfNs.get(xdpNfs[k]!.name)!.push(Math.round((t.ns - t0[k]!.ns) / runs));
          });
          liveOff.push(await live());
          const t2 = Tracer.start(target, { stateDir: scratch });
          try {
            every.push(await live(t2));
            if (t2.lost() > 0) throw new Error(`the ring overflowed (${t2.lost()} lost)`);
          } finally {
            t2.stop();
          }
        }
      } finally {
        releaseStats();
        costMaps.close();
      }
      const s = (v: number[]) => {
        const x = spread(v)!;
        return `${x.median} (${x.min}–${x.max}) ns`;
      };
      const ratio = (v: number[], base = off) => (spread(v)!.median / spread(base)!.median).toFixed(3);
      const ns = (v: number[]) => {
        const x = spread(v)!;
        return `${x.median.toFixed(0)} (${x.min.toFixed(0)}–${x.max.toFixed(0)}) ns`;
      };
      process.stdout.write(
        `${built.plan.chain} (${built.plan.nfs.length} NFs), median (min–max) of ${ROUNDS} rounds:\n` +
          `  test run, trace off                 ${s(off)}\n` +
          `  test run, trace on, no frame match  ${s(miss)}  ratio ${ratio(miss)}\n` +
          `  test run, cost window open          ${s(costOpen)}  ratio ${ratio(costOpen)}\n` +
          [...nfNs].map(([nf, v]) => `    ${nf} timed by its shim: ${s(v)} per run\n`).join("") +
          `  live (bpf_stats), trace off         ${ns(liveOff)}\n` +
          `  live (bpf_stats), every frame       ${ns(every)}  ratio ${ratio(every, liveOff)}  (${frames} frames joined)\n`,
      );
    } finally {
      dp.uninstall();
    }
  } finally {
    await topo.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }
}

const chains = process.argv.slice(2);
for (const c of chains.length ? chains : ["bench/chains/macswap.toml", "bench/chains/chain5.toml"])
  await measure(resolve(repoRoot, c));
