import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import { RX_INSTANCE } from "../src/spec";
import {
  builtChainFile,
  builtChainText,
  install,
  lpmKeyV4,
  userlandEntryChain,
  vethFixture,
} from "./helpers";

describeKernel("installer: a chain whose entry runs only in userland (rx upcall program)", () => {
  const fx = vethFixture("iue");
  let built: BuiltChain;
  let security: BuiltChain;

  beforeAll(async () => {
    built = await builtChainText(userlandEntryChain("userland-entry", 65535), "userland-entry.toml");
    security = await builtChainFile("security.toml");
  });

  it("upcalls every frame to the entry NF in the workers, then moves to an XDP entry", async () => {
    const dp = await install(
      built,
      { iface: fx.veth.ifB, netns: fx.veth.nsB },
      { stateDir: fx.state.dir, workers: { count: 1 } },
    );
    try {
      expect(dp.spec.entry).toBe(RX_INSTANCE);
      const base = { dstMac: fx.veth.macB, srcMac: fx.veth.macA, dstIp: fx.veth.ipB, srcIp: fx.veth.ipA };
      const send = (frame: Buffer, n: number, tag: string, expectN?: number) =>
        exchangeFrames(fx.veth.nsA, fx.veth.ifA, {
          send: [frame],
          repeat: n,
          pps: 1000,
          listenMs: 600,
          match: Buffer.from(tag),
          ...(expectN ? { expect: expectN } : {}),
        });
      const clean = await send(
        udpFrame({ ...base, srcPort: 5000, payload: Buffer.from("t-ue-clean") }),
        10,
        "t-ue-clean",
        10,
      );
      expect(clean.received).toHaveLength(10);
      const evil = await send(
        udpFrame({ ...base, srcPort: 5001, payload: Buffer.from("t-ue GALETTE-EVIL") }),
        10,
        "t-ue GALETTE",
      );
      expect(evil.received).toHaveLength(0);
      expect(dp.counters()[0]).toMatchObject({
        name: "dpi",
        placement: "userland",
        variants: { Clean: 10, Matched: 10 },
      });

      // to a chain with an XDP entry: the root slot moves from the rx program to access-control
      const r = dp.replan(security.plan, security.artifacts);
      expect(r.maps.reused).toEqual(["shared.flow_state"]);
      await dp.reconfigure(r);
      expect(dp.spec.rx).toBeUndefined();
      dp.nfMap("access-control", "allow_list").update(lpmKeyV4(fx.veth.ipA), Buffer.alloc(4));
      const icmpish = udpFrame({ ...base, payload: Buffer.from("t-ue-xdp") });
      icmpish[23] = 1;
      expect((await send(icmpish, 10, "t-ue-xdp", 10)).received).toHaveLength(10);
      expect(dp.counters().find((c) => c.name === "access-control")!.variants.Allowed).toBe(10);
    } finally {
      dp.uninstall();
    }
  });
});
