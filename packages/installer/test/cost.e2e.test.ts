import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import { measureCost } from "../src/cost";
import { builtChainText, install, userlandEntryChain, vethFixture } from "./helpers";

describeKernel("installer: per-NF cost (bpf_stats window, worker timing)", () => {
  const fx = vethFixture("cst");
  let built: BuiltChain;

  beforeAll(async () => {
    built = await builtChainText(userlandEntryChain("cost-userland", 1024), "cost-userland.toml");
  });

  it("counts the root program's runs in the window and the userland NF's calls and time", async () => {
    const dp = await install(
      built,
      { iface: fx.veth.ifB, netns: fx.veth.nsB },
      { stateDir: fx.state.dir, workers: { count: 1 } },
    );
    try {
      await expect(measureCost(dp, 0)).rejects.toThrow(/window must be 1 ms to 60 s, got 0 ms/);
      await expect(measureCost(dp, 120_000)).rejects.toThrow(/window must be 1 ms to 60 s/);

      const frame = udpFrame({
        dstMac: fx.veth.macB,
        srcMac: fx.veth.macA,
        dstIp: fx.veth.ipB,
        srcIp: fx.veth.ipA,
        srcPort: 5000,
        payload: Buffer.from("t-cost"),
      });
      const measuring = measureCost(dp, 2500);
      const { received } = await exchangeFrames(fx.veth.nsA, fx.veth.ifA, {
        send: [frame],
        repeat: 20,
        pps: 1000,
        listenMs: 600,
        match: Buffer.from("t-cost"),
        expect: 20,
      });
      expect(received).toHaveLength(20);
      const cost = await measuring;
      expect(cost.windowMs).toBeGreaterThanOrEqual(2500);
      // the root ran for each frame (and for whatever else reached the port in the window)
      expect(cost.xdp.runCount).toBeGreaterThanOrEqual(20);
      expect(cost.xdp.nsPerRun).toBeGreaterThan(0);
      expect(cost.nfs).toHaveLength(1);
      const dpi = cost.nfs[0]!;
      expect(dpi).toMatchObject({ instance: "dpi", placement: "userland", xdpRuns: 0 });
      expect(dpi.userlandCalls).toBeGreaterThanOrEqual(20);
      expect(dpi.userlandNs).toBeGreaterThan(0);
      expect(dpi.userlandNsPerCall).toBeCloseTo(dpi.userlandNs / dpi.userlandCalls);
    } finally {
      await dp.uninstall();
    }
  });
});
