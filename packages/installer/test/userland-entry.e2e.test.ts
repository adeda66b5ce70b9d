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
import { Dataplane } from "../src/kernel";
import { RX_INSTANCE } from "../src/spec";
import { builtChainFile, builtChainText, install, lpmKeyV4, stateDir } from "./helpers";

const userlandEntry = `
[chain]
name = "userland-entry"

[functions.dpi]
maps = { flow_state = "_" }
disable_xdp = true

[maps.flow_state]
type = "hash_map"
size = 65535

[[links]]
from = "rx"
to = ["dpi"]

[[links]]
from = "dpi"
to = ["tx", "drop"]
`;

describeKernel("installer: a chain whose entry runs only in userland (rx upcall program)", () => {
  let veth: VethPair;
  let built: BuiltChain;
  let security: BuiltChain;
  const state = stateDir();

  beforeAll(async () => {
    built = await builtChainText(userlandEntry, "userland-entry.toml");
    security = await builtChainFile("security.toml");
    veth = await createVethPair("iue");
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

  it("upcalls every frame to the entry NF in the workers, then moves to an XDP entry", async () => {
    const dp = await install(
      built,
      { iface: veth.ifB, netns: veth.nsB },
      { stateDir: state.dir, workers: { count: 1 } },
    );
    try {
      expect(dp.spec.entry).toBe(RX_INSTANCE);
      const base = { dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB, srcIp: veth.ipA };
      const send = (frame: Buffer, n: number, tag: string, expectN?: number) =>
        exchangeFrames(veth.nsA, veth.ifA, {
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
      dp.nfMap("access-control", "allow_list").update(lpmKeyV4(veth.ipA), Buffer.alloc(4));
      const icmpish = udpFrame({ ...base, payload: Buffer.from("t-ue-xdp") });
      icmpish[23] = 1;
      expect((await send(icmpish, 10, "t-ue-xdp", 10)).received).toHaveLength(10);
      expect(dp.counters().find((c) => c.name === "access-control")!.variants.Allowed).toBe(10);
    } finally {
      dp.uninstall();
    }
  });
});
