import { existsSync, mkdirSync, rmSync } from "node:fs";
import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { BpfMap } from "@galette/xdp-native";
import { beforeAll, expect, it } from "vitest";
import { measureCost } from "../src/cost";
import { costPins, ensureCostMaps, openCostMaps, readNfCost } from "../src/cost-maps";
import { Dataplane } from "../src/kernel";
import { builtChainText, install, quietLogger, vethFixture } from "./helpers";

// two XDP NFs: decrement-ttl drops (Expired) what macswap then never sees
const chain = `
[chain]
name = "cost-xdp2"

[functions.decrement-ttl]
path = "nf-examples/decrement-ttl"

[functions.macswap]
path = "nf-examples/macswap"
maps = { counters = { type = "array", size = 1 } }

[[links]]
from = "rx"
to = ["decrement-ttl"]

[[links]]
from = "decrement-ttl"
to = ["macswap", "drop"]

[[links]]
from = "macswap"
to = ["tx"]
`;

describeKernel("installer: per-XDP-NF run time and runs (shim timing in a cost window)", () => {
  const fx = vethFixture("xnc");
  let built: BuiltChain;

  beforeAll(async () => {
    built = await builtChainText(chain, "cost-xdp2.toml");
  });

  it("times each XDP NF on the frames it ran on, only while the window is open", async () => {
    const { veth } = fx;
    const target = { iface: veth.ifB, netns: veth.nsB };
    let dp = await install(built, target, { stateDir: fx.state.dir, workers: { count: 1 } });
    try {
      const frame = (ttl: number, tag: string) =>
        udpFrame({
          dstMac: veth.macB,
          srcMac: veth.macA,
          dstIp: veth.ipB,
          srcIp: veth.ipA,
          srcPort: 5001,
          ttl,
          payload: Buffer.from(tag),
        });
      const send = (repeat: number, ttl: number, tag: string, expectBack: number) =>
        exchangeFrames(veth.nsA, veth.ifA, {
          send: [frame(ttl, tag)],
          repeat,
          pps: 1000,
          listenMs: 400,
          match: Buffer.from(tag),
          expect: expectBack,
        });

      const measuring = measureCost(dp, 8000); // long: a loaded machine starts the senders slowly
      // frames only in the middle of the window, so none crosses its edges
      await new Promise((r) => setTimeout(r, 300));
      const live = await send(20, 64, "t-xnc-live", 20);
      expect(live.received).toHaveLength(20);
      await send(10, 1, "t-xnc-expired", 0);
      const cost = await measuring;

      const byName = new Map(cost.nfs.map((n) => [n.instance, n]));
      const dec = byName.get("decrement-ttl")!;
      const mac = byName.get("macswap")!;
      expect(dec.placement).toBe("xdp");
      expect(mac.placement).toBe("xdp");
      // each NF's own runs are the frames it handled (its action counters in the window)
      expect(dec.xdp?.runCount).toBe(dec.xdpRuns);
      expect(mac.xdp?.runCount).toBe(mac.xdpRuns);
      expect(dec.xdpRuns).toBeGreaterThanOrEqual(30);
      // macswap never saw the 10 expired frames decrement-ttl dropped
      expect(dec.xdpRuns - mac.xdpRuns).toBe(10);
      for (const n of [dec, mac]) {
        expect(n.xdp!.runTimeNs).toBeGreaterThan(0);
        expect(n.xdp!.nsPerRun).toBeCloseTo(n.xdp!.runTimeNs / n.xdp!.runCount);
      }
      // the NFs' own time is part of the chain's (root program, bpf_stats)
      expect(cost.xdp.runCount).toBeGreaterThanOrEqual(dec.xdpRuns);
      expect(dec.xdp!.runTimeNs + mac.xdp!.runTimeNs).toBeLessThan(cost.xdp.runTimeNs);

      // window closed: the flag is off and frames are no longer timed
      const maps = openCostMaps(dp.spec.pins.dir);
      expect(maps).toBeDefined();
      try {
        expect(maps!.on.lookup(Buffer.alloc(4))?.readUInt32LE(0)).toBe(0);
        const ids = dp.spec.instances.map((i) => i.id);
        const before = ids.map((id) => readNfCost(maps!, id));
        const after = await send(10, 64, "t-xnc-after", 10);
        expect(after.received).toHaveLength(10);
        expect(ids.map((id) => readNfCost(maps!, id))).toEqual(before);
      } finally {
        maps!.close();
      }

      // another process adopting the installation measures through the same pinned maps
      dp.detachProcess();
      dp = await Dataplane.adopt(target, {
        stateDir: fx.state.dir,
        workers: { count: 1 },
        logger: quietLogger(),
      });
      const again = measureCost(dp, 5000);
      await new Promise((r) => setTimeout(r, 300));
      expect((await send(10, 64, "t-xnc-adopted", 10)).received).toHaveLength(10);
      for (const n of (await again).nfs) {
        expect(n.xdpRuns).toBeGreaterThanOrEqual(10);
        expect(n.xdp?.runCount).toBe(n.xdpRuns);
      }
    } finally {
      await dp.uninstall();
    }
    // the cost maps go with the installation
    expect(openCostMaps(dp.spec.pins.dir)).toBeUndefined();
  });

  it("refuses a pinned map at a cost map's path that is not one", () => {
    const dir = `/sys/fs/bpf/galette-test-xnc-${process.pid}-${Date.now()}`;
    mkdirSync(dir);
    const wrong = BpfMap.create({ type: "array", name: "not_cost", keySize: 4, valueSize: 8, maxEntries: 1 });
    try {
      wrong.pin(costPins(dir).on);
      expect(() => ensureCostMaps(dir)).toThrow(
        /cost_on is not a per-NF cost map: type 2, key 4, value 8 bytes, 1 entries; expected array, key 4, value 4 bytes, 1 entries/,
      );
      // nothing created beside it
      expect(existsSync(costPins(dir).slots)).toBe(false);
    } finally {
      wrong.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
