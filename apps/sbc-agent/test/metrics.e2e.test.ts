import { DeviceSummary } from "@galette/protocol";
import { describeKernel, freeTcpPort, sleep } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet } from "./fleet";

/** Value of one sample in a Prometheus text exposition (undefined: absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describeKernel("agent metrics and per-NF cost: a real agent, a real chain, real frames", () => {
  const fleet = new Fleet();
  const DEVICE = "edge-metrics";
  let port = 0;
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  };

  beforeAll(async () => {
    port = await freeTcpPort();
    await fleet.start({
      devices: [
        {
          name: DEVICE,
          websocket: true,
          pollIntervalSeconds: 30,
          agentConfig: { metricsListen: `127.0.0.1:${port}`, costIntervalSeconds: 1, costWindowMs: 1500 },
        },
      ],
    });
    expect((await fleet.publish("macswap")).build).toBe("built");
    const { version } = await fleet.push("chains/macswap.toml");
    await fleet.operator.assignChain({ chain: "macswap", devices: [DEVICE] });
    await fleet.converged(DEVICE, "macswap", version, 120_000);
  }, 400_000);
  afterAll(() => fleet.cleanup());

  it("counters move on /metrics; the cost window's bpf_stats reach the status and `galette device show`", async () => {
    const veth = fleet.agent(DEVICE).veth;
    const before = await scrape();
    expect(sample(before, "galette_chain_installed", { chain: "macswap" })).toBe(1);
    expect(sample(before, "galette_agent_state", { state: "converged" })).toBe(1);
    const tx0 = sample(before, "galette_nf_actions_total", { nf: "macswap", action: "Tx" }) ?? 0;

    // frames until a cost window has seen some (windows open every second, 1.5 s long)
    let summary: DeviceSummary | undefined;
    for (let i = 0; i < 40; i++) {
      await bounce(veth, `metrics-${i}`, 20, veth.ipA, 1);
      summary = DeviceSummary.parse(await fleet.operator.getDevice(DEVICE));
      if ((summary.cost?.xdp.runCount ?? 0) > 0 && (summary.cost?.nfs[0]?.xdp?.runCount ?? 0) > 0) break;
      await sleep(200);
    }
    const cost = summary?.cost;
    expect(cost, "no cost window with frames reached the controller").toBeTruthy();
    expect(cost!.xdp.runCount).toBeGreaterThan(0);
    expect(cost!.xdp.nsPerRun).toBeGreaterThan(0);
    expect(cost!.nfs).toMatchObject([{ instance: "macswap", placement: "xdp" }]);
    expect(cost!.nfs[0]!.xdpRuns).toBeGreaterThan(0);
    // the NF's own XDP program, timed by its shim during the window: one run per frame it ran
    // on (frames arrive at any time here: one crossing an edge of the window may be in one
    // count and not the other; the installer's e2e checks equality with frames mid-window)
    const own = cost!.nfs[0]!.xdp!;
    expect(own.runCount).toBeGreaterThan(0);
    expect(Math.abs(own.runCount - cost!.nfs[0]!.xdpRuns)).toBeLessThanOrEqual(2);
    expect(own.nsPerRun).toBeGreaterThan(0);
    expect(own.runTimeNs).toBeLessThan(cost!.xdp.runTimeNs);

    const after = await scrape();
    expect(sample(after, "galette_nf_actions_total", { nf: "macswap", action: "Tx" })).toBeGreaterThanOrEqual(
      tx0 + 20,
    );
    expect(sample(after, "galette_chain_xdp_runs_total")).toBeGreaterThan(0);
    expect(sample(after, "galette_chain_xdp_seconds_total")).toBeGreaterThan(0);
    expect(sample(after, "galette_nf_xdp_window_frames", { nf: "macswap" })).toBeGreaterThanOrEqual(0);
    expect(sample(after, "galette_nf_xdp_runs_total", { nf: "macswap" })).toBeGreaterThanOrEqual(
      own.runCount,
    );
    expect(sample(after, "galette_nf_xdp_seconds_total", { nf: "macswap" })).toBeGreaterThan(0);

    const shown = fleet.cli(["device", "show", DEVICE]);
    // a later window may have seen no frames: the format, not the numbers (checked above)
    expect(shown).toMatch(/cost: +XDP path (\d+ ns\/frame|idle) over \d+ frames \(bpf_stats, \d+ ms window/);
    expect(shown).toMatch(
      /NF +PLACEMENT +XDP FRAMES \(WINDOW\) +XDP NS\/FRAME +USERLAND CALLS +USERLAND NS\/CALL/,
    );
    expect(shown).toMatch(/macswap +xdp +\d+ +(\d+ ns|-) +0 +-/);

    const notFound = await fetch(`http://127.0.0.1:${port}/other`);
    expect(notFound.status).toBe(404);
  }, 180_000);
});
