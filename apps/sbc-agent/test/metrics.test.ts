import { readFileSync } from "node:fs";
import path from "node:path";
import { createLogger } from "@galette/log";
import { repoRoot } from "@galette/testkit";
import { describe, expect, it } from "vitest";
import type { GaletteAgent } from "../src/agent";
import { agentRegistry, parseMetricsListen } from "../src/metrics";

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

describe("the Grafana dashboard", () => {
  it("queries only metrics the agent serves", async () => {
    const agent = {
      statusReport: () => ({ agentVersion: "0", arch: "x86_64", kernelVersion: "6", errors: [] }),
      state: "idle",
      installed: undefined,
      cost: undefined,
      dataplane: undefined,
    } as unknown as GaletteAgent;
    const served = new Set(
      (await agentRegistry(agent, createLogger("test")).getMetricsAsJSON()).map((m) => m.name),
    );
    const dashboard = readFileSync(path.join(repoRoot, "docs/grafana/galette-agent.json"), "utf8");
    const used = new Set(dashboard.match(/galette_[a-z_]+/g));
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(served, name).toContain(name);
  });
});
