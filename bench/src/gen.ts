import { nsRun } from "./testkit";
import type { BenchTools } from "./tools";

/** Latency of the frames bounced back to the generator (µs; from galgen's sink histogram). */
export interface LatencySummary {
  count: number;
  min_us?: number;
  mean_us?: number;
  p50_us?: number;
  p90_us?: number;
  p99_us?: number;
  p999_us?: number;
  max_us?: number;
  /** sparse histogram: [bucket lower bound µs, frames] */
  hist?: Array<[number, number]>;
}

export interface CpuShare {
  cpu: number;
  busy: number;
  user: number;
  sys: number;
  irq: number;
  steal: number;
}

/** One galgen measurement window (the JSON galgen prints). */
export interface GenResult {
  mode: string;
  size: number;
  rate_target: number;
  window_s: number;
  sent: number;
  offered_pps: number;
  received: number;
  rx_pps: number;
  rx_normal: number;
  rx_expensive: number;
  rx_normal_pps: number;
  rx_bytes: number;
  unswapped: number;
  clock_skew: number;
  send_errors: number;
  latency: { normal: LatencySummary; expensive: LatencySummary };
  cpu: { dut?: CpuShare; gen?: CpuShare };
  /** utime+stime of the DUT's userland processes over the window, in CPUs (1.0 = one CPU busy) */
  dut_procs_cpu: number | null;
  /** utime+stime of the DUT's threaded-NAPI kthreads (XDP programs, veth RX/XDP_TX) over the window, in CPUs */
  dut_napi_cpu: number | null;
  /** CPU used by galgen itself (getrusage), in CPUs */
  gen_self_cpu: number;
}

export interface GenOptions {
  /** frame size on the wire incl. FCS */
  size: number;
  /** frames/s; 0 = as fast as the generator can */
  rate: number;
  durationS: number;
  warmupS: number;
  /** fraction of frames flagged BENCH_F_EXPENSIVE */
  expensive?: number;
  mode?: "afpacket" | "live";
  hist?: boolean;
  /** nice -20 in an autogroup of its own */
  boost?: boolean;
  genCpu: number;
  dutCpu: number;
  dutPids?: number[];
  dutNapiPids?: number[];
  genMac: string;
  dutMac: string;
}

const numericFields = [
  "window_s",
  "sent",
  "offered_pps",
  "received",
  "rx_pps",
  "rx_normal",
  "rx_expensive",
  "rx_normal_pps",
  "unswapped",
] as const;

/** Parse galgen's stdout, naming the missing/mistyped field and quoting the output otherwise. */
export function parseGenOutput(stdout: string): GenResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw new Error(`galgen printed no JSON result: ${JSON.stringify(stdout.slice(0, 300))}`, { cause: err });
  }
  const obj = parsed as Record<string, unknown>;
  for (const f of numericFields) {
    if (typeof obj[f] !== "number")
      throw new Error(`galgen result: field "${f}" is ${JSON.stringify(obj[f])}, expected a number`);
  }
  const lat = obj.latency as Record<string, unknown> | undefined;
  if (!lat || typeof lat.normal !== "object" || typeof lat.expensive !== "object")
    throw new Error(`galgen result: field "latency" must hold "normal" and "expensive" objects`);
  return parsed as GenResult;
}

export function genArgs(tools: BenchTools, iface: string, o: GenOptions): string[] {
  const args = [
    "-i",
    iface,
    "-O",
    tools.dir,
    "-s",
    String(o.size),
    "-r",
    String(o.rate),
    "-d",
    String(o.durationS),
    "-w",
    String(o.warmupS),
    "-c",
    String(o.genCpu),
    "-C",
    String(o.dutCpu),
    "-m",
    o.mode ?? "afpacket",
    "--gen-mac",
    o.genMac,
    "--dut-mac",
    o.dutMac,
  ];
  if (o.expensive) args.push("-x", String(o.expensive));
  if (o.dutPids?.length) args.push("-p", o.dutPids.join(","));
  if (o.dutNapiPids?.length) args.push("-k", o.dutNapiPids.join(","));
  if (o.hist) args.push("--hist");
  if (o.boost) args.push("--boost");
  return args;
}

/** Run one measurement window from the generator namespace. */
export async function runGen(
  tools: BenchTools,
  ns: string,
  iface: string,
  o: GenOptions,
): Promise<GenResult> {
  const timeoutMs = Math.ceil((o.durationS + o.warmupS) * 1000) + 15_000;
  const { stdout } = await nsRun(ns, tools.galgen, genArgs(tools, iface, o), { timeoutMs });
  return parseGenOutput(stdout);
}
