import { readFileSync } from "node:fs";
import path from "node:path";
import { createLogger } from "@galette/log";
import { freeTcpPort, repoRoot } from "@galette/testkit";
import { describe, expect, it } from "vitest";
import type { GaletteAgent } from "../src/agent";
import { agentRegistry, parseMetricsListen, startMetricsServer } from "../src/metrics";

describe("metricsListen", () => {
  it("takes loopback addresses", () => {
    expect(parseMetricsListen("127.0.0.1:9469", false)).toEqual({ host: "127.0.0.1", port: 9469 });
    expect(parseMetricsListen("127.1.2.3:1", false)).toEqual({ host: "127.1.2.3", port: 1 });
    expect(parseMetricsListen("[::1]:9469", false)).toEqual({ host: "::1", port: 9469 });
    expect(parseMetricsListen("localhost:9469", false)).toEqual({ host: "localhost", port: 9469 });
  });

  it("refuses every non-loopback address unless metricsAllowRemote", () => {
    for (const listen of [
      "0.0.0.0:9469",
      "10.0.0.1:9469",
      "[::]:9469",
      "[::ffff:10.0.0.1]:9469",
      "[fe80::1]:9469",
      "localhost.example.com:9469",
      "127.0.0.1.nip.io:9469",
      "example.com:9469",
    ])
      expect(() => parseMetricsListen(listen, false), listen).toThrow(
        /not a loopback address.*metricsAllowRemote/,
      );
    expect(parseMetricsListen("0.0.0.0:9469", true)).toEqual({ host: "0.0.0.0", port: 9469 });
  });

  it("refuses what is not host:port", () => {
    for (const listen of [
      "9469",
      "127.0.0.1",
      "127.0.0.1:0",
      "127.0.0.1:65536",
      "127.0.0.1:x",
      "::1:9469",
      ":9469",
      "",
    ])
      expect(() => parseMetricsListen(listen, false), listen).toThrow(/expected host:port|not a loopback/);
  });
});

// an agent with nothing installed (the registry reads only these members)
const agent = {
  statusReport: () => ({ agentVersion: "0", arch: "x86_64", kernelVersion: "6", errors: [] }),
  state: "idle",
  installed: undefined,
  cost: undefined,
  dataplane: undefined,
} as unknown as GaletteAgent;

describe("the metrics server", () => {
  it("serves GET /metrics only, and refuses a taken port or a remote address with the address named", async () => {
    const log = createLogger("test");
    const port = await freeTcpPort();
    const server = await startMetricsServer(agent, `127.0.0.1:${port}`, false, log);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain('galette_agent_state{state="idle"} 1');
      expect(text).toContain('galette_agent_info{version="0",arch="x86_64",kernel="6"} 1');
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status).toBe(404);
      await expect(startMetricsServer(agent, `127.0.0.1:${port}`, false, log)).rejects.toThrow(
        `metricsListen 127.0.0.1:${port}: listen EADDRINUSE`,
      );
    } finally {
      server.close();
    }
    await expect(startMetricsServer(agent, "0.0.0.0:9469", false, log)).rejects.toThrow(
      /not a loopback address/,
    );
  });
});

describe("worker health metrics", () => {
  // a pool whose worker died twice on a kernel that made it rebuild the sockets
  const health = {
    state: "running",
    restarts: 2,
    crashes: 2,
    crashesByInstance: {},
    framesLostInCrashes: 3,
    socketTakeover: "rebuild",
    socketRebuilds: 2,
    framesLostInRebuilds: 17,
    backoffMs: 0,
    keepsCapBpf: false,
  };
  const withPool = {
    ...agent,
    dataplane: {
      spec: { instances: [] },
      counters: () => [],
      workerStats: () => undefined,
      workerHealth: () => health,
      rootRunStats: () => ({ runCount: 0, runTimeNs: 0 }),
    },
  } as unknown as GaletteAgent;

  it("renders socket rebuilds, the takeover mode and frames lost by cause from the pool's health", async () => {
    const text = await agentRegistry(withPool, createLogger("test")).metrics();
    expect(text).toContain("galette_worker_restarts_total 2");
    expect(text).toContain("galette_worker_socket_rebuilds_total 2");
    expect(text).toContain('galette_worker_socket_takeover{mode="rebuild"} 1');
    expect(text).toContain('galette_worker_frames_lost_total{cause="crash"} 3');
    expect(text).toContain('galette_worker_frames_lost_total{cause="rebuild"} 17');
    expect(text).toContain("galette_worker_up 1");
  });

  it("omits them when no pool runs", async () => {
    const text = await agentRegistry(agent, createLogger("test")).metrics();
    expect(text).not.toContain("galette_worker_socket_takeover{");
    expect(text).not.toContain("galette_worker_frames_lost_total{");
  });
});

describe("the Grafana dashboard", () => {
  it("queries only metrics the agent serves", async () => {
    const served = new Set(
      (await agentRegistry(agent, createLogger("test")).getMetricsAsJSON()).map((m) => m.name),
    );
    const dashboard = readFileSync(path.join(repoRoot, "docs/grafana/galette-agent.json"), "utf8");
    const used = new Set(dashboard.match(/galette_[a-z_]+/g));
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(served, name).toContain(name);
  });
});
