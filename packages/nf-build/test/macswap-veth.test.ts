/** macswap's XDP object attached natively to a veth bounces a real frame back MAC-swapped. */
import { rmSync } from "node:fs";
import {
  attachXdpPass,
  createVethPair,
  describeKernel,
  exchangeFrames,
  nsRun,
  udpFrame,
  type VethPair,
} from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildNf } from "../src";
import { bpftool, exampleDir, loadAll, mapUpdate } from "./support";

describeKernel("nf-build: macswap on a veth", () => {
  let veth: VethPair | undefined;
  let pinDir: string | undefined;

  beforeAll(async () => {
    veth = await createVethPair("nfms");
  });

  afterAll(async () => {
    await veth?.cleanup();
    if (pinDir) rmSync(pinDir, { recursive: true, force: true });
  });

  it("bounces a frame with source and destination MAC swapped and counts it", async () => {
    const v = veth as VethPair;
    const built = await buildNf(exampleDir("macswap"), { targets: ["bpf"] });
    const obj = built.artifacts[0]?.file as string;
    pinDir = await loadAll(obj, "veth");
    // Action::Tx (variant 0) → GALETTE_ACT_TX (3)
    await mapUpdate(`${pinDir}/maps/galette_actions`, "00000000", "0300000000000000");
    await nsRun(v.nsB, "ip", ["link", "set", "dev", v.ifB, "xdpdrv", "pinned", `${pinDir}/galette_nf`]);
    await attachXdpPass(v.nsA, v.ifA);

    const tag = Buffer.from(`macswap-${process.pid}`);
    const frame = udpFrame({ dstMac: v.macB, srcMac: v.macA, srcIp: v.ipA, dstIp: v.ipB, payload: tag });
    const { received } = await exchangeFrames(v.nsA, v.ifA, {
      send: [frame],
      expect: 1,
      match: tag,
      listenMs: 1000,
    });
    expect(received).toHaveLength(1);
    const back = received[0] as Buffer;
    expect(back.subarray(0, 6)).toEqual(frame.subarray(6, 12));
    expect(back.subarray(6, 12)).toEqual(frame.subarray(0, 6));
    expect(back.subarray(12)).toEqual(frame.subarray(12));

    const lookup = JSON.parse(
      await bpftool([
        "-j",
        "map",
        "lookup",
        "pinned",
        `${pinDir}/maps/nf_map_counters`,
        "key",
        "hex",
        "00",
        "00",
        "00",
        "00",
      ]),
    ) as { value: number | string[]; formatted?: { value: number } };
    const count = lookup.formatted?.value ?? Number(lookup.value);
    expect(count).toBe(1);
  });
});
