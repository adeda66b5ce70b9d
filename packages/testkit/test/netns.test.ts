import { afterAll, beforeAll, expect, it } from "vitest";
import {
  attachXdpPass,
  createVethPair,
  describeKernel,
  exchangeFrames,
  run,
  udpFrame,
  type VethPair,
} from "../src";

describeKernel("testkit veth topology", () => {
  let pair: VethPair;
  beforeAll(async () => {
    pair = await createVethPair("tk");
  });
  afterAll(async () => {
    await pair?.cleanup();
  });

  it("creates two namespaces joined by a veth that carries frames", async () => {
    await attachXdpPass(pair.nsA, pair.ifA);
    // A frame to an address B does not own is not answered: nothing comes back.
    const tag = Buffer.from("testkit-quiet");
    const frame = udpFrame({
      dstMac: pair.macB,
      srcMac: pair.macA,
      srcIp: pair.ipA,
      dstIp: "10.250.0.9",
      payload: tag,
    });
    const res = await exchangeFrames(pair.nsA, pair.ifA, { send: [frame], listenMs: 100, match: tag });
    expect(res.sent).toBe(1);
    expect(res.received).toHaveLength(0);
    const { stdout } = await run("nsenter", [
      `--net=/run/netns/${pair.nsA}`,
      "--",
      "ping",
      "-c1",
      "-W1",
      pair.ipB,
    ]);
    expect(stdout).toMatch(/1 received/);
  });

  it("removes everything on cleanup", async () => {
    const probe = await createVethPair("tk");
    await probe.cleanup();
    const { stdout } = await run("ip", ["netns", "list"]);
    expect(stdout).not.toContain(probe.nsA);
    expect(stdout).not.toContain(probe.nsB);
  });
});
