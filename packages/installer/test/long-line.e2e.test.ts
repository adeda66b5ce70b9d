import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, inetChecksum, udpFrame, type VethPair } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import { builtChainFile, install, vethFixture } from "./helpers";

describeKernel("installer: chains/long-line.toml (40 NFs: XDP to the tail-call limit, then userland)", () => {
  const fixture = vethFixture("ill");
  const { state } = fixture;
  let veth: VethPair;
  let built: BuiltChain;

  beforeAll(async () => {
    veth = fixture.veth;
    built = await builtChainFile("long-line.toml");
  });

  it("every frame passes all 40 decrement-ttl instances and comes out", async () => {
    const dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      { stateDir: state.dir, workers: { count: 1 } },
    );
    try {
      const xdp = dp.spec.instances.filter((i) => i.xdp);
      const user = dp.spec.instances.filter((i) => i.userland);
      expect(xdp.map((i) => i.name).sort()).toEqual(
        Array.from({ length: 33 }, (_, k) => `ttl-${String(k + 1).padStart(2, "0")}`),
      );
      expect(user).toHaveLength(7);
      const n = 20;
      const frame = udpFrame({
        dstMac: veth.macB,
        srcMac: veth.macA,
        srcIp: veth.ipA,
        dstIp: veth.ipB,
        ttl: 64,
        payload: Buffer.from("t-long"),
      });
      const r = await exchangeFrames(veth.nsA, veth.ifA, {
        send: [frame],
        repeat: n,
        pps: 1000,
        expect: n,
        listenMs: 1500,
        match: Buffer.from("t-long"),
      });
      expect(r.received).toHaveLength(n);
      for (const f of r.received) {
        expect(f[22]).toBe(64 - 40);
        expect(inetChecksum(f.subarray(14, 34))).toBe(0);
      }
      for (const c of dp.counters())
        expect({ name: c.name, Next: c.variants.Next }).toEqual({ name: c.name, Next: n });
    } finally {
      dp.uninstall();
    }
  });
});
