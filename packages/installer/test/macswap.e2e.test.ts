import { existsSync } from "node:fs";
import type { BuiltChain } from "@galette/nf-build";
import { describeKernel, exchangeFrames, udpFrame, type VethPair } from "@galette/testkit";
import { queryXdp } from "@galette/xdp-native";
import { beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord } from "../src/record";
import { builtChainFile, install, macOf, quietLogger, vethFixture } from "./helpers";

describeKernel("installer: chains/macswap.toml on a veth pair", () => {
  const fixture = vethFixture("ims");
  const { state } = fixture;
  let veth: VethPair;
  let built: BuiltChain;

  beforeAll(async () => {
    veth = fixture.veth;
    built = await builtChainFile("macswap.toml");
  });

  it("bounces frames MAC-swapped, counts every one, and uninstalls without leftovers", async () => {
    const target = { iface: veth.ifB, netns: veth.nsB };
    const dp = await install(built, target, { stateDir: state.dir });
    try {
      expect(readRecord(target, state.dir)?.spec.chain).toBe("macswap");
      expect(existsSync(dp.spec.pins.progs)).toBe(true);
      const frame = udpFrame({
        dstMac: veth.macB,
        srcMac: veth.macA,
        srcIp: veth.ipA,
        dstIp: veth.ipB,
        payload: Buffer.from("macswap-e2e"),
      });
      const n = 50;
      const r = await exchangeFrames(veth.nsA, veth.ifA, {
        send: [frame],
        repeat: n,
        expect: n,
        listenMs: 1500,
        match: Buffer.from("macswap-e2e"),
      });
      expect(r.received).toHaveLength(n);
      for (const f of r.received) {
        expect(macOf(f, 0)).toBe(veth.macA);
        expect(macOf(f, 6)).toBe(veth.macB);
      }
      const [c] = dp.counters();
      expect(c).toMatchObject({ name: "macswap", placement: "xdp", variants: { Tx: n }, total: n });
      // a second install on the same interface is refused and changes nothing
      await expect(install(built, target, { stateDir: state.dir })).rejects.toThrow(
        /already has chain "macswap" installed/,
      );
      expect(dp.counters()[0]!.total).toBe(n);
    } finally {
      dp.uninstall();
    }
    expect(queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId).toBe(0);
    expect(existsSync(dp.spec.pins.dir)).toBe(false);
    expect(readRecord(target, state.dir)).toBeUndefined();
    expect(Dataplane.remove(target, { stateDir: state.dir, logger: quietLogger() })).toBe(false);
  });
});
