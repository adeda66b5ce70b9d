/**
 * A chain per direction on two ports (chains/bridge-directions.toml): frames from host A
 * enter at rx.a (guard: a blocked destination is dropped, the rest forwarded), frames from
 * host B at rx.b (only forwarded). Blocking B's address stops A→B and leaves B→A flowing;
 * every frame each host sent is counted by its direction's first NF. Then live
 * reconfiguration (to one chain for both directions, to both entries in userland, back),
 * adoption after the owning process let go, and uninstall from both ports; and the same
 * chain by `galette dataplane up --ports`, SIGKILLed (XDP keeps both directions apart) and
 * adopted by a new owner.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describeKernel, nsRun, sleep, spawnGalette, type TopologyHost } from "@galette/testkit";
import { queryXdp } from "@galette/xdp-native";
import { expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord } from "../src/record";
import { planInstallation } from "../src/spec";
import { builtChainFile, builtChainText, lpmKeyV4, quietLogger, repoRoot } from "./helpers";
import { hostPackets, numberedUdp, sequenceProblems, twoPortFixture } from "./two-port-helpers";

const ROUTE_ID = Buffer.from([1, 0, 0, 0]);
const directionsText = () => readFileSync(path.join(repoRoot, "chains", "bridge-directions.toml"), "utf8");

describeKernel("two ports, a chain per direction (rx.a / rx.b)", () => {
  const fx = twoPortFixture("2d");

  const counts = (dp: Dataplane, nf: string) => {
    const c = dp.counters().find((x) => x.name === nf);
    if (!c)
      throw new Error(
        `no counters for ${nf}: ${dp
          .counters()
          .map((x) => x.name)
          .join(", ")}`,
      );
    return c;
  };
  const attached = () =>
    [fx.topo.p1, fx.topo.p2].map(
      (ifname) => queryXdp({ ifname, netns: `/run/netns/${fx.topo.device}` }).progId,
    );
  /** numbered UDP from → to; the sequence numbers that arrived */
  const udp = async (from: TopologyHost, to: TopologyHost, port: number, count: number) => {
    const flow = await numberedUdp(from, to, port, count);
    await flow.sent;
    return flow.received;
  };

  it("A→B takes rx.a's chain, B→A rx.b's; counters match what each host sent; reconfigure, adopt, uninstall", async () => {
    const { topo } = fx;
    const built = await builtChainFile("bridge-directions.toml");
    expect(built.plan.entry).toEqual({
      kind: "tailcall",
      target: "guard",
      b: { kind: "tailcall", target: "ttl-ba" },
    });
    let dp = await fx.install(built);
    expect(dp.spec.entryB).toBe(dp.spec.instances.find((i) => i.name === "ttl-ba")!.id);
    expect(attached().every((id) => id !== 0)).toBe(true);

    // both directions forward while nothing is blocked (ARP, ping)
    for (const [from, to] of [
      [topo.a, topo.b],
      [topo.b, topo.a],
    ] as const) {
      const ping = await nsRun(from.ns, "ping", ["-c", "3", "-i", "0.05", "-W", "2", to.ip]);
      expect(ping.stdout).toContain("3 received");
      expect(ping.stdout).toMatch(/ttl=63/);
    }

    // block B's address in rx.a's chain: A→B is dropped by guard, B→A is not looked at
    dp.nfMap("guard", "routes").update(lpmKeyV4(topo.b.ip), ROUTE_ID);
    await sleep(200);
    const before = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    const c0 = { guard: counts(dp, "guard"), ab: counts(dp, "ttl-ab"), ba: counts(dp, "ttl-ba") };
    const count = 200;
    const gotBA = await udp(topo.b, topo.a, 6201, count);
    expect(sequenceProblems(gotBA, count)).toEqual([]);
    const gotAB = await udp(topo.a, topo.b, 6202, count);
    expect(gotAB).toEqual([]);
    await sleep(300);
    const after = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    const c1 = { guard: counts(dp, "guard"), ab: counts(dp, "ttl-ab"), ba: counts(dp, "ttl-ba") };
    const d = (x: typeof c0.guard, y: typeof c0.guard, v: string) =>
      (y.variants[v] ?? 0) - (x.variants[v] ?? 0);
    // every frame A sent entered rx.a's chain (guard), every frame B sent rx.b's (ttl-ba)
    expect(c1.guard.total - c0.guard.total).toBe(after.a.tx - before.a.tx);
    expect(c1.ba.total - c0.ba.total).toBe(after.b.tx - before.b.tx);
    expect(d(c0.guard, c1.guard, "Matched")).toBeGreaterThanOrEqual(count);
    // what guard let through went on through ttl-ab only
    expect(c1.ab.total - c0.ab.total).toBe(d(c0.guard, c1.guard, "Other"));
    // what B received is exactly what ttl-ab forwarded; what A received what ttl-ba forwarded
    expect(after.b.rx - before.b.rx).toBe(d(c0.ab, c1.ab, "Next"));
    expect(after.a.rx - before.a.rx).toBe(d(c0.ba, c1.ba, "Next"));

    // live: one chain for both directions (rx → guard): B→A now meets guard too (not blocked:
    // its destination is A) and rx.b's chain is retired; slot 1 empties
    const single = await builtChainText(
      directionsText()
        .replace('from = "rx.a"', 'from = "rx"')
        .replace(/\[\[links\]\]\nfrom = "rx.b"\nto = \["ttl-ba"\]\n/, "")
        .replace(/\[functions\.ttl-ba\]\npath = "nf-examples\/decrement-ttl"\n/, "")
        .replace(/\[\[links\]\]\nfrom = "ttl-ba"\nto = \["tx", "drop"\]\n?/, ""),
      "bridge-directions.toml",
    );
    expect(single.plan.entry.b).toBeUndefined();
    await dp.reconfigure(dp.replan(single.plan, single.artifacts));
    expect(dp.spec.entryB).toBeUndefined();
    const g0 = counts(dp, "guard");
    expect(sequenceProblems(await udp(topo.b, topo.a, 6203, count), count)).toEqual([]);
    expect(await udp(topo.a, topo.b, 6204, 20)).toEqual([]);
    const g1 = counts(dp, "guard");
    expect(d(g0, g1, "Other")).toBeGreaterThanOrEqual(count);

    // live: back to a chain per direction, both entering userland at different NFs
    // (!guard, !ttl-ba): root slots 0 and 1 → the rx upcall program, which tags the second
    // port's frames as variant 1 → the worker runs each direction's entry
    const upcalled = await builtChainText(
      directionsText()
        .replace('to = ["ttl-ba"]', 'to = ["!ttl-ba"]')
        .replace('to = ["guard"]', 'to = ["!guard"]'),
      "bridge-directions.toml",
    );
    expect(upcalled.plan.entry).toEqual({
      kind: "upcall",
      target: "guard",
      b: { kind: "upcall", target: "ttl-ba" },
    });
    await dp.reconfigure(dp.replan(upcalled.plan, upcalled.artifacts));
    expect([dp.spec.entry, dp.spec.entryB]).toEqual([255, 255]);
    const u0 = { guard: counts(dp, "guard"), ba: counts(dp, "ttl-ba") };
    expect([u0.guard.placement, u0.ba.placement]).toEqual(["userland", "userland"]);
    expect(sequenceProblems(await udp(topo.b, topo.a, 6205, count), count)).toEqual([]);
    expect(await udp(topo.a, topo.b, 6206, 20)).toEqual([]);
    const u1 = { guard: counts(dp, "guard"), ba: counts(dp, "ttl-ba") };
    expect(d(u0.ba, u1.ba, "Next")).toBeGreaterThanOrEqual(count);
    expect(d(u0.guard, u1.guard, "Matched")).toBeGreaterThanOrEqual(20);
    // B→A never met guard (its destination A is not blocked: it would count as Other)
    expect(d(u0.guard, u1.guard, "Other")).toBeLessThan(count);

    // and back to the XDP file, numbered datagrams both ways through the switch
    {
      dp.nfMap("guard", "routes").delete(lpmKeyV4(topo.b.ip));
      const n = 2000;
      const ab = await numberedUdp(topo.a, topo.b, 6207, n);
      const ba = await numberedUdp(topo.b, topo.a, 6208, n);
      await sleep(100);
      await dp.reconfigure(dp.replan(built.plan, built.artifacts));
      await Promise.all([ab.sent, ba.sent]);
      expect(sequenceProblems(await ab.received, n)).toEqual([]);
      expect(sequenceProblems(await ba.received, n)).toEqual([]);
    }

    // adoption: the owning process lets go (as after a crash: the chain stays in the
    // kernel), a new owner takes over; the directions are still apart
    dp.detachProcess();
    fx.dp = undefined;
    dp = await Dataplane.adopt(fx.target(), { stateDir: fx.state.dir, logger: quietLogger() });
    fx.dp = dp;
    expect(dp.spec.entryB).toBe(dp.spec.instances.find((i) => i.name === "ttl-ba")!.id);
    dp.nfMap("guard", "routes").update(lpmKeyV4(topo.b.ip), ROUTE_ID);
    expect(sequenceProblems(await udp(topo.b, topo.a, 6209, count), count)).toEqual([]);
    expect(await udp(topo.a, topo.b, 6210, 20)).toEqual([]);

    // uninstall: both ports bare, pins and record gone
    const pins = dp.spec.pins.dir;
    dp.uninstall();
    fx.dp = undefined;
    expect(attached()).toEqual([0, 0]);
    expect(existsSync(pins)).toBe(false);
    expect(readRecord(fx.target(), fx.state.dir)).toBeUndefined();
  });

  it("galette dataplane up --ports with rx.a/rx.b: a SIGKILLed up keeps both directions apart; a new owner adopts them", async () => {
    const { topo } = fx;
    const key = `${lpmKeyV4(topo.b.ip).toString("hex")}:${ROUTE_ID.toString("hex")}`;
    let printed: () => void = () => undefined;
    const ready = new Promise<void>((r) => {
      printed = r;
    });
    const up = spawnGalette(
      [
        "dataplane",
        "up",
        "--ports",
        `${topo.p1},${topo.p2}`,
        "--netns",
        topo.device,
        "--state-dir",
        fx.state.dir,
        "--map-set",
        `guard.routes=${key}`,
        "chains/bridge-directions.toml",
      ],
      { onStdout: (out) => out.includes('chain "bridge-directions"') && printed() },
    );
    let killed = false;
    const exited = up.done.then((r) => {
      if (!killed) throw new Error(`dataplane up exited (${r.code ?? r.signal}): ${r.stderr}`);
    });
    await Promise.race([ready, exited]);
    killed = true;
    up.child.kill("SIGKILL");
    await exited;
    // nobody owns it now: XDP keeps each direction on its own chain
    expect(sequenceProblems(await udp(topo.b, topo.a, 6301, 100), 100)).toEqual([]);
    expect(await udp(topo.a, topo.b, 6302, 20)).toEqual([]);
    const dp = await Dataplane.adopt(fx.target(), { stateDir: fx.state.dir, logger: quietLogger() });
    fx.dp = dp;
    expect(dp.spec.entryB).toBe(dp.spec.instances.find((i) => i.name === "ttl-ba")!.id);
    const before = counts(dp, "guard");
    expect(sequenceProblems(await udp(topo.b, topo.a, 6303, 100), 100)).toEqual([]);
    expect(await udp(topo.a, topo.b, 6304, 20)).toEqual([]);
    expect(
      (counts(dp, "guard").variants.Matched ?? 0) - (before.variants.Matched ?? 0),
    ).toBeGreaterThanOrEqual(20);
    dp.uninstall();
    fx.dp = undefined;
    expect(attached()).toEqual([0, 0]);
  });

  it("refuses a chain per direction on one port", async () => {
    const built = await builtChainFile("bridge-directions.toml");
    expect(() =>
      planInstallation(built.plan, built.artifacts, { iface: fx.topo.p1, netns: fx.topo.device }),
    ).toThrow(/has a direction per port \(rx.a, rx.b\): install it on two ports/);
  });
});
