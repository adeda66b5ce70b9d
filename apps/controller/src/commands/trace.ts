/**
 * `galette trace`: each traced frame's path through the chain installed on an interface of
 * this machine — NF instance by instance, tier, the action variant and its target,
 * timestamps, the final verdict — as text, JSON lines (`--json`) or pcapng with the path
 * as each packet's comment (`--pcapng FILE`).
 */
import { compileTraceFilter, DEFAULT_STATE_DIR, Tracer } from "@galette/installer";
import type { TracedFrame } from "@galette/protocol";
import type { Command } from "commander";
import { loadOperatorConfig, OperatorClient } from "../operator-client";
import { PcapngWriter } from "../pcapng";
import { onShutdown } from "../signals";
import { targetFromFlags } from "./dataplane";

interface TraceFlags {
  device?: string;
  iface?: string;
  ports?: string;
  netns?: string;
  filter: string;
  sample: string;
  count?: string;
  timeout?: string;
  json?: boolean;
  pcapng?: string;
  withData?: boolean;
  stateDir: string;
}

const POLL_MS = 20;

function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

const micros = (ns: number) => `+${(ns / 1000).toFixed(1)}µs`;

/** One frame as text: the summary line, then one line per NF call. */
export function formatTracedFrame(f: TracedFrame): string {
  const lines = [`${f.time} frame ${f.frame} on ${f.iface} (${f.len} B): ${f.summary}`];
  for (const s of f.path) {
    const target = s.target ? ` ${s.target}` : "";
    lines.push(
      `  ${micros(s.elapsedNs).padStart(10)}  ${s.nf} #${s.instance} [${s.tier}] ${s.variant} → ${s.action}${target}`,
    );
  }
  return lines.join("\n");
}

/** The packet comment of a frame in pcapng: its path, then each step. */
export function frameComment(f: TracedFrame): string {
  const steps = f.path.map(
    (s) =>
      `${s.nf} #${s.instance} [${s.tier}] ${s.variant} -> ${s.action}${s.target ? ` ${s.target}` : ""} ${micros(s.elapsedNs)}`,
  );
  return [`galette trace frame ${f.frame}: ${f.summary}`, ...steps].join("\n");
}

/** ns since the epoch of a frame's arrival (wall clock ms + the monotonic sub-ms part, for order). */
function wallNs(f: TracedFrame): bigint {
  return BigInt(Date.parse(f.time)) * 1_000_000n + (BigInt(f.monotonicNs) % 1_000_000n);
}

function emitFrame(f: TracedFrame, flags: TraceFlags, pcap: PcapngWriter | undefined): void {
  if (pcap && f.data)
    pcap.write(f.iface, {
      timestampNs: wallNs(f),
      data: Buffer.from(f.data, "base64"),
      originalLength: f.len,
      comments: [frameComment(f)],
    });
  const out = flags.withData ? f : { ...f, data: undefined };
  process.stdout.write(`${flags.json ? JSON.stringify(out) : formatTracedFrame(f)}\n`);
}

async function traceLocal(flags: TraceFlags): Promise<void> {
  const target = targetFromFlags(flags);
  const sample = positiveInt("--sample", flags.sample);
  const count = flags.count !== undefined ? positiveInt("--count", flags.count) : undefined;
  const timeoutMs = flags.timeout !== undefined ? positiveInt("--timeout", flags.timeout) * 1000 : undefined;
  const pcap = flags.pcapng ? new PcapngWriter(flags.pcapng) : undefined;
  let tracer: Tracer;
  try {
    tracer = Tracer.start(target, {
      filter: flags.filter,
      sample,
      stateDir: flags.stateDir,
      withData: Boolean(flags.withData || pcap),
    });
  } catch (err) {
    pcap?.close();
    throw err;
  }
  process.stderr.write(
    `galette trace: tracing ${target.peer ? `${target.iface},${target.peer}` : target.iface}${flags.filter ? ` (filter: ${flags.filter})` : ""}${count ? `, ${count} frame(s)` : ""}\n`,
  );
  let seen = 0;
  const emit = (f: TracedFrame) => emitFrame(f, flags, pcap);
  try {
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let deadline: NodeJS.Timeout | undefined;
      const finish = (why?: string) => {
        if (timer) clearInterval(timer);
        if (deadline) clearTimeout(deadline);
        shutdown.dispose();
        if (why) process.stderr.write(`galette trace: ${why} after ${seen} frame(s)\n`);
        resolve();
      };
      const shutdown = onShutdown((why) => finish(`stopped (${why})`));
      if (timeoutMs) deadline = setTimeout(() => finish(`timed out (${timeoutMs / 1000} s)`), timeoutMs);
      timer = setInterval(() => {
        try {
          for (const f of tracer.poll()) {
            if (count !== undefined && seen >= count) break;
            emit(f);
            seen++;
          }
          if (count !== undefined && seen >= count) finish();
        } catch (err) {
          if (timer) clearInterval(timer);
          if (deadline) clearTimeout(deadline);
          shutdown.dispose();
          reject(err);
        }
      }, POLL_MS);
    });
    const lost = tracer.lost();
    if (lost > 0) process.stderr.write(`galette trace: the ring buffer was full for ${lost} frame(s)\n`);
  } finally {
    tracer.stop();
    pcap?.close();
  }
}

/** `--device NAME`: through the controller (a token with the trace scope), streamed back. */
async function traceDevice(flags: TraceFlags): Promise<void> {
  if (flags.iface || flags.ports || flags.netns)
    throw new Error("--device traces the device's own installation: leave out --iface, --ports and --netns");
  const client = new OperatorClient(loadOperatorConfig());
  const count = flags.count !== undefined ? positiveInt("--count", flags.count) : 10;
  const timeoutSeconds = flags.timeout !== undefined ? positiveInt("--timeout", flags.timeout) : 30;
  // checked here first for a clear message with the column; the device checks again
  compileTraceFilter(flags.filter);
  const pcap = flags.pcapng ? new PcapngWriter(flags.pcapng) : undefined;
  const withData = Boolean(flags.withData || pcap);
  let failed: string | undefined;
  try {
    process.stderr.write(
      `galette trace: tracing on device ${flags.device}${flags.filter ? ` (filter: ${flags.filter})` : ""}, ${count} frame(s)\n`,
    );
    await client.traceDevice(
      flags.device!,
      {
        filter: flags.filter,
        sample: positiveInt("--sample", flags.sample),
        count,
        timeoutSeconds,
        withData,
      },
      (line) => {
        if (line.type === "frame") emitFrame(line.frame, flags, pcap);
        else if (line.type === "error") failed = line.error;
        else process.stderr.write(`galette trace: ${line.reason} after ${line.frames} frame(s)\n`);
      },
    );
  } finally {
    pcap?.close();
  }
  if (failed) throw new Error(`device ${flags.device}: ${failed}`);
}

export function registerTraceCommand(program: Command): void {
  program
    .command("trace")
    .description(
      "Trace frames through the chain installed on an interface: each frame's path NF by NF (tier, variant, action and target, timestamps, verdict), across the upcall",
    )
    .option(
      "--device <name>",
      "trace on an enrolled device, through the controller (a token with the trace scope)",
    )
    .option("--iface <name>", "the interface of the installation (one port)")
    .option("--ports <a,b>", "the two ports of the installation")
    .option("--netns <name>", "network namespace of the interface (under /run/netns)")
    .option(
      "--filter <expr>",
      'frames to trace: terms joined by "and", each optionally "not": ip, ip6, arp, udp, tcp, icmp, icmp6, proto N, [src|dst] host A, [src|dst] net A/LEN, [src|dst] port N',
      "",
    )
    .option("--sample <n>", "trace 1 in N matching frames", "1")
    .option("--count <n>", "stop after N frames (default: until Ctrl-C)")
    .option("--timeout <seconds>", "stop after this long")
    .option("--json", "one JSON object per frame and line")
    .option(
      "--pcapng <file>",
      "also write the frames to a pcapng file, each with its path as the packet comment",
    )
    .option("--with-data", "include each frame's first bytes (base64) in the output")
    .option("--state-dir <dir>", "where installation records are kept", DEFAULT_STATE_DIR)
    .action((flags: TraceFlags) => (flags.device ? traceDevice(flags) : traceLocal(flags)));
}
