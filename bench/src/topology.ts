import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { attachXdpPass, createVethPair, nsRun, run, type VethPair } from "./testkit";

/**
 * The benchmark topology: generator namespace A <-veth-> DUT namespace B (fresh, uniquely
 * named per scenario). The generator and A's NAPI run on `genCpu`; the DUT's NAPI and its
 * userland workers on `dutCpu`, so /proc/stat of `dutCpu` is the DUT's CPU.
 */
export interface BenchTopology {
  pair: VethPair;
  genCpu: number;
  dutCpu: number;
  /** Threaded NAPI on both veth ends, A's kthread pinned to genCpu (SCHED_FIFO) and B's to dutCpu. */
  pinNapi(): Promise<NapiPinning>;
  cleanup(): Promise<void>;
}

export interface NapiPinning {
  gen: number[];
  dut: number[];
}

const safeIfName = (name: string): string => {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name))
    throw new Error(`unexpected interface name ${JSON.stringify(name)}`);
  return name;
};

/**
 * Veth NAPI runs in the softirq of whichever CPU transmitted unless it is threaded; a
 * threaded NAPI is a kthread we can pin. sysfs shows the namespace that mounted it, so
 * remount it in a private mount namespace inside B (bpffs stays untouched outside).
 */
export async function enableThreadedNapi(ns: string, iface: string): Promise<void> {
  const ifn = safeIfName(iface);
  await nsRun(ns, "unshare", [
    "--mount",
    "sh",
    "-c",
    `mount -t sysfs sysfs /sys && echo 1 > /sys/class/net/${ifn}/threaded`,
  ]).catch((err: Error) => {
    throw new Error(
      `threaded NAPI on ${ns}/${ifn} failed (veth has a NAPI only while an XDP program is attached): ${err.message}`,
      { cause: err },
    );
  });
}

/** pids of the threaded-NAPI kthreads of an interface (comm is `napi/<ifname>-<id>`, cut at 15 chars). */
export function napiThreads(iface: string): number[] {
  const prefix = `napi/${iface}-`.slice(0, 15);
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
    } catch {
      continue; // the process exited while we listed /proc
    }
    if (comm.startsWith(prefix)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Whether `pid` is in an autogroup of its own session. Kernel threads have none, and so do
 * tasks still in the root group (a CI runner's jobs started without setsid): the kernel
 * shows those as an empty /proc/PID/autogroup and refuses a nice there with EINVAL.
 */
export function hasOwnAutogroup(pid: number): boolean {
  return readFileSync(`/proc/${pid}/autogroup`, "utf8").trim() !== "";
}

/**
 * nice -20 and a short scheduling slice (bench/c/sched_boost.h) for every thread of the given
 * tasks, and nice -20 for their autogroups (where they have one): with autogroup scheduling a plain nice only weighs
 * inside its session's group, so the group's nice is what competes with other jobs. Kernel
 * threads (NAPI) have no autogroup.
 */
export async function boostTasks(schedBoost: string, pids: number[]): Promise<void> {
  const tids: string[] = [];
  for (const pid of pids) {
    try {
      tids.push(...readdirSync(`/proc/${pid}/task`));
    } catch (err) {
      throw new Error(`cannot boost pid ${pid}: it is gone (${(err as Error).message})`, { cause: err });
    }
    if (hasOwnAutogroup(pid)) writeFileSync(`/proc/${pid}/autogroup`, "-20");
  }
  if (tids.length) await run(schedBoost, tids);
}

async function pin(pids: number[], cpu: number): Promise<void> {
  for (const pid of pids) await run("taskset", ["-pc", String(cpu), String(pid)]);
}

export async function createBenchTopology(tag = "bn"): Promise<BenchTopology> {
  const pair = await createVethPair(tag);
  try {
    // XDP_TX from the DUT only reaches A if A has an XDP program; galgen swaps in its sink.
    await attachXdpPass(pair.nsA, pair.ifA);
  } catch (err) {
    await pair.cleanup();
    throw err;
  }
  const cpus = availableParallelism();
  const genCpu = 0;
  const dutCpu = cpus > 1 ? 1 : 0;
  return {
    pair,
    genCpu,
    dutCpu,
    async pinNapi() {
      await enableThreadedNapi(pair.nsA, pair.ifA);
      await enableThreadedNapi(pair.nsB, pair.ifB);
      const gen = napiThreads(pair.ifA);
      const dut = napiThreads(pair.ifB);
      if (gen.length === 0 || dut.length === 0)
        throw new Error(`no NAPI kthreads found for ${pair.ifA}/${pair.ifB} after enabling threaded NAPI`);
      await pin(gen, genCpu);
      // The sink is the measuring instrument: let it preempt the generator it shares a CPU
      // with, so latency is not inflated by scheduler time slices on the generator side.
      for (const pid of gen) await run("chrt", ["-f", "-p", "50", String(pid)]);
      await pin(dut, dutCpu);
      return { gen, dut };
    },
    cleanup: () => pair.cleanup(),
  };
}
