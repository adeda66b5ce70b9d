/**
 * Two-port installer tests: a topology per describe block (testkit createTwoPortTopology)
 * with the chain it leaves installed removed afterwards, and traffic between its hosts.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import type { BuiltChain } from "@galette/nf-build";
import {
  createTwoPortTopology,
  inNs,
  nsRun,
  run,
  type TopologyHost,
  type TwoPortTopology,
} from "@galette/testkit";
import { afterAll, beforeAll } from "vitest";
import { type Dataplane, type DataplaneOptions, Dataplane as DP } from "../src/kernel";
import { install, quietLogger, stateDir } from "./helpers";

const TCP = path.join(__dirname, "fixtures", "tcp-transfer.mjs");
const UDP = path.join(__dirname, "fixtures", "udp-seq.mjs");

/** rx → decrement-ttl (userland only) → tx: the other port, or drop once the TTL runs out. */
export const USERLAND_BRIDGE = `
[chain]
name = "bridge-userland"

[functions.decrement-ttl]
disable_xdp = true

[[links]]
from = "rx"
to = ["decrement-ttl"]

[[links]]
from = "decrement-ttl"
to = ["tx", "drop"]
`;

export interface TwoPortFixture {
  /** host A | device (p1, p2) | host B, created before the block's tests */
  topo: TwoPortTopology;
  state: { dir: string; cleanup: () => void };
  /** the installation of install(); uninstalled after the block if a test left it */
  dp: Dataplane | undefined;
  /** both device ports, in the device namespace */
  target(): { iface: string; peer: string; netns: string };
  /** Installs a chain on both ports with this block's state dir (quiet logger by default). */
  install(built: BuiltChain, options?: Partial<DataplaneOptions>): Promise<Dataplane>;
}

/**
 * For one describe block: a fresh two-port topology and a private state dir, removed after
 * its tests with whatever chain they left installed on the device ports.
 */
export function twoPortFixture(
  tag: string,
  options: Parameters<typeof createTwoPortTopology>[1] = {},
): TwoPortFixture {
  const fixture: TwoPortFixture = {
    topo: undefined as unknown as TwoPortTopology,
    state: stateDir(),
    dp: undefined,
    target: () => ({ iface: fixture.topo.p1, peer: fixture.topo.p2, netns: fixture.topo.device }),
    install: async (built, opts = {}) => {
      fixture.dp = await install(built, fixture.target(), {
        stateDir: fixture.state.dir,
        logger: quietLogger(),
        ...opts,
      });
      return fixture.dp;
    },
  };
  beforeAll(async () => {
    fixture.topo = await createTwoPortTopology(tag, options);
  });
  afterAll(async () => {
    const { topo, state, dp } = fixture;
    if (dp) dp.uninstall();
    else if (topo) DP.remove(fixture.target(), { stateDir: state.dir });
    await topo?.cleanup();
    state.cleanup();
  });
  return fixture;
}

/** Both hosts' packet counters, for trafficSince. */
export async function hostCounters(topo: TwoPortTopology): Promise<HostCounters> {
  return { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
}
type HostCounters = { a: { tx: number; rx: number }; b: { tx: number; rx: number } };

/** Frames the two hosts sent and received, together, since `before`. */
export async function trafficSince(
  topo: TwoPortTopology,
  before: HostCounters,
): Promise<{ sent: number; received: number }> {
  const after = await hostCounters(topo);
  return {
    sent: after.a.tx - before.a.tx + (after.b.tx - before.b.tx),
    received: after.a.rx - before.a.rx + (after.b.rx - before.b.rx),
  };
}

/** Packets the host's interface sent and received (veth counts every frame). */
export async function hostPackets(h: TopologyHost): Promise<{ tx: number; rx: number }> {
  const { stdout } = await run("ip", ["-n", h.ns, "-j", "-s", "link", "show", h.iface]);
  const s = (
    JSON.parse(stdout) as Array<{ stats64: { tx: { packets: number }; rx: { packets: number } } }>
  )[0]!.stats64;
  return { tx: s.tx.packets, rx: s.rx.packets };
}

/** Starts a node fixture in a namespace and resolves once it printed `ready`. */
function startListener(ns: string, args: string[]) {
  const [nsenter, ...prefix] = inNs(ns);
  const child = spawn(nsenter!, [...prefix, process.execPath, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  // a listener that already answered and exited has closed its stdin: EPIPE is expected
  child.stdin!.on("error", () => undefined);
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<string>((resolve, reject) => {
    child.on("exit", (code) =>
      code === 0
        ? resolve(stdout)
        : reject(new Error(`${args.join(" ")} in ${ns} exited ${code}: ${stderr}`)),
    );
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (/^(listening|ready)$/m.test(stdout)) resolve();
    });
    exited.catch(reject);
  });
  return { child, ready, exited };
}

/** A real TCP transfer of `bytes` from one host to the other; resolves with what the server counted. */
export async function tcpTransfer(
  from: TopologyHost,
  to: TopologyHost,
  port: number,
  bytes: number,
): Promise<string> {
  const server = startListener(to.ns, [TCP, "serve", to.ip, String(port)]);
  try {
    await server.ready;
    const { stdout } = await nsRun(
      from.ns,
      process.execPath,
      [TCP, "send", to.ip, String(port), String(bytes)],
      {
        timeoutMs: 30_000,
      },
    );
    return stdout.trim();
  } finally {
    server.child.kill();
  }
}

/**
 * `count` numbered UDP datagrams from one host to the other (paced); `during` runs while
 * they flow. Resolves with the sequence numbers the receiver got, in arrival order.
 */
export async function numberedUdp(
  from: TopologyHost,
  to: TopologyHost,
  port: number,
  count: number,
): Promise<{ sent: Promise<unknown>; received: Promise<number[]> }> {
  const listener = startListener(to.ns, [UDP, "listen", to.ip, String(port), "1500"]);
  await listener.ready;
  const sent = nsRun(from.ns, process.execPath, [UDP, "send", to.ip, String(port), String(count)], {
    timeoutMs: 60_000,
  });
  // the sender is done: the listener answers once nothing more arrived for its quiet time
  // (a flow the chain drops would otherwise wait for the listener's 20 s bound)
  const senderDone = () => {
    if (listener.child.stdin!.writable) listener.child.stdin!.end("sent\n");
  };
  sent.then(senderDone, senderDone);
  const received = listener.exited.then(
    (out) => JSON.parse(out.split("\n").filter(Boolean).at(-1)!) as number[],
  );
  return { sent, received };
}

/** Every number 0..count-1 exactly once? Names what is missing or duplicated. */
export function sequenceProblems(seqs: number[], count: number): string[] {
  const seen = new Map<number, number>();
  for (const s of seqs) seen.set(s, (seen.get(s) ?? 0) + 1);
  const missing = [...Array(count).keys()].filter((i) => !seen.has(i));
  const dup = [...seen].filter(([, n]) => n > 1).map(([s]) => s);
  return [
    ...(missing.length ? [`missing ${missing.length}: ${missing.slice(0, 10).join(",")}`] : []),
    ...(dup.length ? [`duplicated ${dup.length}: ${dup.slice(0, 10).join(",")}`] : []),
  ];
}
