import { describeKernel, exchangeFrames, udpFrame, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Fleet } from "./fleet";

const macOf = (frame: Buffer, off: number) =>
  [...frame.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");

/** Sends `n` UDP frames through the device of `veth`; returns the ones that came back. */
async function bounce(veth: VethPair, tag: string, n = 10, srcIp = veth.ipA, expectN?: number) {
  const frame = udpFrame({
    dstMac: veth.macB,
    srcMac: veth.macA,
    dstIp: veth.ipB,
    srcIp,
    payload: Buffer.from(tag),
  });
  frame[23] = 1; // not TCP/UDP: the security chain's weak-classifier calls it Normal (XDP_TX)
  const { received } = await exchangeFrames(veth.nsA, veth.ifA, {
    send: [frame],
    repeat: n,
    pps: 1000,
    listenMs: 500,
    match: Buffer.from(tag),
    ...(expectN !== undefined ? { expect: expectN } : {}),
  });
  return received;
}

describeKernel("fleet: controller + two galette-agents on veth pairs", () => {
  const fleet = new Fleet();

  beforeAll(async () => {
    await fleet.start({
      devices: [
        { name: "edge-ws", labels: { role: "edge" }, websocket: true, pollIntervalSeconds: 30 },
        { name: "edge-poll", labels: { role: "edge" }, websocket: false, pollIntervalSeconds: 3 },
      ],
    });
    for (const nf of ["macswap", "access-control", "weak-classifier", "dpi"]) {
      const published = await fleet.publish(nf);
      expect(published.build).toBe("built");
    }
  });
  afterAll(async () => {
    await fleet.cleanup();
  });

  it("enrol → publish → push macswap → assign by label: both agents converge and bounce traffic", async () => {
    const pushed = await fleet.push("chains/macswap.toml");
    expect(pushed.version).toBe(1);
    const assigned = await fleet.operator.assignChain({ chain: "macswap", selector: { role: "edge" } });
    expect(assigned.assigned.sort()).toEqual(["edge-poll", "edge-ws"]);
    for (const name of ["edge-ws", "edge-poll"]) {
      const d = await fleet.converged(name, "macswap", 1);
      expect(d.errors).toEqual([]);
      expect(d.arch).toBe(process.arch === "x64" ? "x86_64" : d.arch);
      expect(d.kernelVersion).toMatch(/^\d+\.\d+/);
      const veth = fleet.agent(name).veth;
      const back = await bounce(veth, `macswap-${name}`, 10, veth.ipA, 10);
      expect(back).toHaveLength(10);
      expect(macOf(back[0]!, 0)).toBe(veth.macA);
      expect(macOf(back[0]!, 6)).toBe(veth.macB);
    }
    // Counters reach the controller through the periodic status report.
    const d = await fleet.converged("edge-ws", "macswap", 1);
    await expect
      .poll(async () => (await fleet.device("edge-ws")).counters[0]?.counters.packets ?? 0, { timeout: 5000 })
      .toBeGreaterThanOrEqual(10);
    expect(d.counters[0]?.instance).toBe("macswap");
  });
});
