/**
 * Two ports with userland NFs: the workers hold a socket on each port (one UMEM) and send a
 * `tx` frame out of the other port. Real ping, TCP and numbered UDP both ways, every frame
 * counted; live reconfiguration to another instance, to XDP and back while numbered
 * datagrams flow both ways: none lost or duplicated.
 */
import { describeKernel, nsRun, sleep } from "@galette/testkit";
import { expect, it } from "vitest";
import { builtChainFile, builtChainText } from "./helpers";
import {
  hostCounters,
  numberedUdp,
  sequenceProblems,
  tcpTransfer,
  trafficSince,
  twoPortFixture,
  USERLAND_BRIDGE,
} from "./two-port-helpers";

describeKernel("two ports with userland NFs", () => {
  const fx = twoPortFixture("2pu");

  it("forwards ping, TCP and numbered UDP both ways through the workers, and through live reconfiguration", async () => {
    const userland = await builtChainText(USERLAND_BRIDGE, "bridge-userland.toml");
    const xdp = await builtChainFile("bridge.toml");
    const renamed = await builtChainText(
      USERLAND_BRIDGE.replace(
        "[functions.decrement-ttl]",
        '[functions.ttl]\npath = "nf-examples/decrement-ttl"',
      )
        .replaceAll('to = ["decrement-ttl"]', 'to = ["ttl"]')
        .replace('from = "decrement-ttl"', 'from = "ttl"'),
      "bridge-userland.toml",
    );
    const { topo } = fx;
    const before = await hostCounters(topo);
    const dp = await fx.install(userland, { workers: { count: 2 } });
    expect(dp.spec.instances[0]!.userland).toBe(true);
    expect(dp.spec.instances[0]!.xdp).toBe(false);

    for (const [from, to] of [
      [topo.a, topo.b],
      [topo.b, topo.a],
    ] as const) {
      const ping = await nsRun(from.ns, "ping", ["-c", "5", "-i", "0.05", "-W", "2", to.ip]);
      expect(ping.stdout).toContain("5 received");
      expect(ping.stdout).toMatch(/ttl=63/);
    }
    expect(await tcpTransfer(topo.a, topo.b, 5101, 1_000_000)).toBe("1000000");
    expect(await tcpTransfer(topo.b, topo.a, 5102, 1_000_000)).toBe("1000000");
    await sleep(300);

    // Every frame the hosts sent reached the worker (rx), was forwarded (Next: tx, out of the
    // other port, received by the other host) — nothing dropped, nothing reflected.
    const { sent, received } = await trafficSince(topo, before);
    const [ttl] = dp.counters();
    const ws = dp.workerStats()!;
    expect(ttl!.variants.Next).toBe(sent);
    expect(ws.totals.rx).toBe(sent);
    expect(ws.totals.tx).toBe(sent);
    expect(ws.totals.dropped).toBe(0);
    expect(received).toBe(sent);

    // Live reconfiguration while numbered datagrams flow both ways: the forwarder moves to a
    // new instance (another name: new slot, new table), to XDP, and back to userland.
    const count = 3000;
    const ab = await numberedUdp(topo.a, topo.b, 6001, count);
    const ba = await numberedUdp(topo.b, topo.a, 6002, count);
    await sleep(150);
    await dp.reconfigure(dp.replan(renamed.plan, renamed.artifacts));
    expect(dp.spec.instances.map((i) => i.name)).toEqual(["ttl"]);
    await sleep(150);
    // to XDP: the workers drain and stop once nothing upcalls any more
    await dp.reconfigure(dp.replan(xdp.plan, xdp.artifacts));
    expect(dp.spec.instances[0]!.xdp).toBe(true);
    expect(dp.workerStats()).toBeUndefined();
    await sleep(150);
    // and back: new workers on both ports
    await dp.reconfigure(dp.replan(userland.plan, userland.artifacts));
    expect(dp.spec.instances.map((i) => [i.name, i.userland])).toEqual([["decrement-ttl", true]]);
    await Promise.all([ab.sent, ba.sent]);
    const [gotAB, gotBA] = await Promise.all([ab.received, ba.received]);
    expect(sequenceProblems(gotAB, count)).toEqual([]);
    expect(sequenceProblems(gotBA, count)).toEqual([]);

    dp.uninstall();
    fx.dp = undefined;
  });
});
