import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, udpFrame, type VethPair } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import { builtChainFile, install, lpmKeyV4, vethFixture } from "./helpers";

describeKernel("installer: chains/security.toml (XDP + AF_XDP userland DPI)", () => {
  const fixture = vethFixture("isec");
  const { state } = fixture;
  let veth: VethPair;
  let built: BuiltChain;

  beforeAll(async () => {
    veth = fixture.veth;
    built = await builtChainFile("security.toml");
  });

  it("drops denied sources in XDP, transmits normal traffic from XDP, sends suspicious flows through DPI, accounts for every frame", async () => {
    const dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      { stateDir: state.dir, workers: { count: 2 } },
    );
    try {
      expect(dp.pool?.running).toBe(true);
      dp.nfMap("access-control", "allow_list").update(lpmKeyV4(veth.ipA), Buffer.alloc(4));
      const base = { dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB };
      const exchange = (frame: Buffer, n: number, tag: string, expectN?: number) =>
        exchangeFrames(veth.nsA, veth.ifA, {
          send: [frame],
          repeat: n,
          pps: 2000,
          listenMs: 800,
          match: Buffer.from(tag),
          ...(expectN !== undefined ? { expect: expectN } : {}),
        });

      // 1. a source outside the allow-list: dropped by access-control in XDP
      const denied = await exchange(
        udpFrame({ ...base, srcIp: "192.0.2.66", payload: Buffer.from("t-denied") }),
        20,
        "t-denied",
      );
      expect(denied.received).toHaveLength(0);

      // 2. allowed, not TCP/UDP: weak-classifier says Normal, XDP_TX straight back
      const icmpish = udpFrame({ ...base, srcIp: veth.ipA, payload: Buffer.from("t-normal") });
      icmpish[23] = 1;
      const normal = await exchange(icmpish, 30, "t-normal", 30);
      expect(normal.received).toHaveLength(30);

      // 3. a new UDP flow without signature: its first packets go to DPI (clean, tx from the
      //    worker), then the flow is trusted and stays in XDP — every frame comes back
      const clean = await exchange(
        udpFrame({ ...base, srcIp: veth.ipA, srcPort: 1111, payload: Buffer.from("t-clean hello") }),
        12,
        "t-clean",
        12,
      );
      expect(clean.received).toHaveLength(12);

      // 4. a flow carrying a signature: DPI drops it and flags the flow; XDP drops the rest
      const evil = await exchange(
        udpFrame({ ...base, srcIp: veth.ipA, srcPort: 2222, payload: Buffer.from("t-evil GALETTE-EVIL") }),
        12,
        "t-evil",
      );
      expect(evil.received).toHaveLength(0);

      const c = Object.fromEntries(dp.counters().map((x) => [x.name, x]));
      const ac = c["access-control"]!;
      const wc = c["weak-classifier"]!;
      const dpi = c.dpi!;
      expect(ac.variants).toEqual({ Allowed: 30 + 12 + 12, Denied: 20 });
      expect(wc.total).toBe(ac.variants.Allowed);
      expect(dpi.total).toBe(wc.variants.Suspicious);
      expect(dpi.variants.Matched).toBeGreaterThanOrEqual(1);
      expect(wc.variants.Malicious).toBeGreaterThanOrEqual(1);
      expect(dpi.variants.Matched! + wc.variants.Malicious!).toBe(12);
      // every frame that came back was transmitted by XDP (Normal) or by a worker (Clean)
      expect(wc.variants.Normal! + dpi.variants.Clean!).toBe(normal.received.length + clean.received.length);
      expect(dpi.variants.Clean).toBeGreaterThanOrEqual(4);
      const ws = dp.workerStats()!;
      expect(ws.totals.tx).toBe(dpi.variants.Clean);
      expect(ws.totals.drop).toBe(dpi.variants.Matched);
    } finally {
      dp.uninstall();
    }
  });
});
