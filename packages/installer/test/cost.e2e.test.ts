import type { BuiltChain } from "@galette/nf-build";
import {
  attachXdpPass,
  createVethPair,
  describeKernel,
  exchangeFrames,
  udpFrame,
  type VethPair,
} from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { measureCost } from "../src/cost";
import { Dataplane } from "../src/kernel";
import { builtChainText, install, stateDir } from "./helpers";

// the entry runs only in userland: the root program upcalls every frame to dpi's worker
const chain = `
[chain]
name = "cost-userland"

[functions.dpi]
maps = { flow_state = "_" }
disable_xdp = true

[maps.flow_state]
type = "hash_map"
size = 1024

[[links]]
from = "rx"
to = ["dpi"]

[[links]]
from = "dpi"
to = ["tx", "drop"]
`;

describeKernel("installer: per-NF cost (bpf_stats window, worker timing)", () => {
  let veth: VethPair;
  let built: BuiltChain;
  const state = stateDir();

  beforeAll(async () => {
    built = await builtChainText(chain, "cost-userland.toml");
    veth = await createVethPair("cst");
    await attachXdpPass(veth.nsA, veth.ifA);
  });
  afterAll(async () => {
    try {
      if (veth) Dataplane.remove({ iface: veth.ifB, netns: veth.nsB }, { stateDir: state.dir });
    } finally {
      await veth?.cleanup();
      state.cleanup();
    }
  });

  it("counts the root program's runs in the window and the userland NF's calls and time", async () => {
    const dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      { stateDir: state.dir, workers: { count: 1 } },
    );
    try {
      await expect(measureCost(dp, 0)).rejects.toThrow(/window must be 1 ms to 60 s, got 0 ms/);
      await expect(measureCost(dp, 120_000)).rejects.toThrow(/window must be 1 ms to 60 s/);

      const frame = udpFrame({
        dstMac: veth.macB,
        srcMac: veth.macA,
        dstIp: veth.ipB,
        srcIp: veth.ipA,
        srcPort: 5000,
        payload: Buffer.from("t-cost"),
      });
      const measuring = measureCost(dp, 2500);
      const { received } = await exchangeFrames(veth.nsA, veth.ifA, {
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
