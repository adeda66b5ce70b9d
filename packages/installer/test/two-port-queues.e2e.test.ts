/**
 * Two ports of four RX queues each, userland NFs, two worker threads: the pool holds a socket
 * per (port, queue, worker) and XDP upcalls each frame to a socket of the queue it arrived on.
 * Many UDP flows both ways (the sender's flow hash picks the veth queue) must land on every
 * queue of both ports, and every frame is forwarded and counted.
 */
import { describeKernel, nsRun, sleep, type TopologyHost } from "@galette/testkit";
import { expect, it } from "vitest";
import { builtChainText } from "./helpers";
import { hostCounters, tcpTransfer, trafficSince, twoPortFixture, USERLAND_BRIDGE } from "./two-port-helpers";

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
  const fx = twoPortFixture("2pq", { queues: QUEUES });

  it("serves every queue of both ports with fewer worker threads than queues, every frame forwarded", async () => {
    const userland = await builtChainText(USERLAND_BRIDGE, "bridge-userland.toml");
    const { topo } = fx;
    const before = await hostCounters(topo);
    const dp = await fx.install(userland, { workers: { count: 2 } });

    const ping = await nsRun(topo.a.ns, "ping", ["-c", "3", "-i", "0.05", "-W", "2", topo.b.ip]);
    expect(ping.stdout).toContain("3 received");
    expect(await tcpTransfer(topo.a, topo.b, 5111, 500_000)).toBe("500000");
    await manyFlows(topo.a, topo.b, 3);
    await manyFlows(topo.b, topo.a, 3);
    await sleep(300);

    const { sent, received } = await trafficSince(topo, before);
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
    fx.dp = undefined;
  });
});
