import path from "node:path";
import { TracedFrame } from "@galette/protocol";
import { describeKernel, sleep, spawnGalette } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet } from "./fleet";

describeKernel("galette trace --device: through the controller to a real agent", () => {
  const fleet = new Fleet();
  const DEVICE = "edge-trace";
  let traceToken = "";
  const env = (token: string) => ({
    GALETTE_URL: fleet.controller.url,
    GALETTE_TOKEN: token,
    GALETTE_CA: path.join(fleet.controller.dataDir, "ca.crt"),
  });

  beforeAll(async () => {
    await fleet.start({ devices: [{ name: DEVICE, websocket: true, pollIntervalSeconds: 30 }] });
    expect((await fleet.publish("macswap")).build).toBe("built");
    const { version } = await fleet.push("chains/macswap.toml");
    await fleet.operator.assignChain({ chain: "macswap", devices: [DEVICE] });
    await fleet.converged(DEVICE, "macswap", version, 120_000);
    traceToken = (await fleet.operator.createToken({ name: "tracer", scopes: ["trace"] })).token;
  }, 400_000);
  afterAll(() => fleet.cleanup());

  it("streams the device's traced frames to the CLI; a token without the trace scope is refused", async () => {
    const refused = await spawnGalette(["trace", "--device", DEVICE, "--count", "1"], {
      env: env(fleet.token),
    }).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("lacks the trace scope this route needs (HTTP 403)");

    const run = spawnGalette(
      ["trace", "--device", DEVICE, "--filter", "icmp", "--count", "2", "--timeout", "60", "--json"],
      {
        env: env(traceToken),
      },
    );
    let ended = false;
    void run.done.then(() => {
      ended = true;
    });
    // frames until the trace has two (the agent starts tracing a moment after the request)
    const veth = fleet.agent(DEVICE).veth;
    for (let i = 0; i < 60 && !ended; i++) {
      await bounce(veth, `trace-${i}`, 1, veth.ipA, 1);
      await sleep(200);
    }
    const res = await run.done;
    expect(res.code, res.stderr).toBe(0);
    const frames = res.stdout
      .trim()
      .split("\n")
      .map((l) => TracedFrame.parse(JSON.parse(l)));
    expect(frames).toHaveLength(2);
    for (const f of frames) {
      expect(f.summary).toBe("macswap→tx");
      expect(f.path).toMatchObject([{ nf: "macswap", tier: "xdp", action: "tx" }]);
      expect(f.iface).toBe(fleet.agent(DEVICE).iface);
      expect(f.data).toBeUndefined();
    }
    expect(res.stderr).toContain("count reached after 2 frame(s)");
  }, 180_000);
});
