/**
 * Two ports of four RX queues each, userland NFs, two worker threads: the pool holds a socket
 * per (port, queue, worker) and XDP upcalls each frame to a socket of the queue it arrived on.
 * Many UDP flows both ways (the sender's flow hash picks the veth queue) must land on every
 * queue of both ports, and every frame is forwarded and counted.
 */
import {
  createTwoPortTopology,
  describeKernel,
  nsRun,
  sleep,
  type TopologyHost,
  type TwoPortTopology,
} from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Dataplane, Dataplane as DP } from "../src/kernel";
import { builtChainText, install, quietLogger, stateDir } from "./helpers";
import { hostPackets, tcpTransfer } from "./two-port-helpers";

const USERLAND_BRIDGE = `
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

const QUEUES = 4;
const FLOWS = 64;

/** `perFlow` datagrams from each of FLOWS source ports (one socket each) to the other host. */
async function manyFlows(from: TopologyHost, to: TopologyHost, perFlow: number): Promise<void> {
  const script = `
const dgram = require("node:dgram");
(async () => {
  for (let i = 0; i < ${FLOWS}; i++) {
    const s = dgram.createSocket("udp4");
    await new Promise((r) => s.bind(20000 + i, "${from.ip}", r));
    for (let k = 0; k < ${perFlow}; k++) await new Promise((r, j) => s.send(Buffer.from("q" + i), 9, "${to.ip}", (e) => (e ? j(e) : r())));
    s.close();
  }
})();`;
  await nsRun(from.ns, process.execPath, ["-e", script], { timeoutMs: 30_000 });
}

describeKernel("two ports with several RX queues each", () => {
  let topo: TwoPortTopology;
  const state = stateDir();
  let dp: Dataplane | undefined;
  const target = () => ({ iface: topo.p1, peer: topo.p2, netns: topo.device });

  beforeAll(async () => {
    topo = await createTwoPortTopology("2pq", { queues: QUEUES });
  });

  afterAll(async () => {
    if (dp) dp.uninstall();
    else if (topo) DP.remove(target(), { stateDir: state.dir });
    await topo?.cleanup();
    state.cleanup();
  });

  it("serves every queue of both ports with fewer worker threads than queues, every frame forwarded", async () => {
    const userland = await builtChainText(USERLAND_BRIDGE, "bridge-userland.toml");
    const before = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    dp = await install(userland, target(), {
      stateDir: state.dir,
      workers: { count: 2 },
      logger: quietLogger(),
    });

    const ping = await nsRun(topo.a.ns, "ping", ["-c", "3", "-i", "0.05", "-W", "2", topo.b.ip]);
    expect(ping.stdout).toContain("3 received");
    expect(await tcpTransfer(topo.a, topo.b, 5111, 500_000)).toBe("500000");
    await manyFlows(topo.a, topo.b, 3);
    await manyFlows(topo.b, topo.a, 3);
    await sleep(300);

    const after = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    const sent = after.a.tx - before.a.tx + (after.b.tx - before.b.tx);
    const received = after.a.rx - before.a.rx + (after.b.rx - before.b.rx);
    const ws = dp.workerStats()!;
    expect(ws.totals.rx).toBe(sent);
    expect(ws.totals.tx).toBe(sent);
    expect(ws.totals.dropped).toBe(0);
    expect(received).toBe(sent);
    // the flows spread over every queue of both ports, and the per-queue counts add up
    const perQueue = ws.rxPerQueue!;
    expect(perQueue.map((q) => q.length)).toEqual([QUEUES, QUEUES]);
    for (const port of perQueue) for (const q of port) expect(q).toBeGreaterThan(0);
    expect(perQueue.flat().reduce((a, b) => a + b, 0)).toBe(sent);

    dp.uninstall();
    dp = undefined;
  });
});
