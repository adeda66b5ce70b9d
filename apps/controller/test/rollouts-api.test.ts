/**
 * The rollout API on a real controller (TLS, SQLite, the operator's token, devices with
 * client certificates posting status reports): errors, the operator view, and a restart
 * in the middle of a rollout.
 */
import { Rollout } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseChainRef, parseDuration } from "../src/commands/rollout";
import { ACL_RS, ACL_TOML, fakeBuilder, type Harness, startHarness, statusReport } from "./helpers";

describe("rollout API", () => {
  let h: Harness;
  const op = (path: string, options: Parameters<Harness["call"]>[1] = {}) =>
    h.call(path, { token: h.token, ...options });
  const report = (name: string, version: number) =>
    h.call("/v1/device/status", {
      method: "POST",
      client: h.asDevice(name),
      body: statusReport({ installed: { chain: "acl", version }, state: "converged" }),
    });
  const start = (body: Record<string, unknown>) =>
    op("/v1/rollouts", {
      method: "POST",
      body: {
        chain: "acl",
        selector: { role: "edge" },
        phases: ["1", "100%"],
        soakSeconds: 1,
        gate: "installed",
        ...body,
      },
    });

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder });
    await h.publishNf("acl", ACL_RS);
    for (let i = 0; i < 2; i++) await h.pushChain(ACL_TOML, "acl.toml");
    for (const name of ["edge-1", "edge-2"]) await h.enrol(name, { role: "edge" });
    expect(
      (
        await op("/v1/assignments", {
          method: "POST",
          body: { chain: "acl", version: 1, selector: { role: "edge" } },
        })
      ).status,
    ).toBe(200);
    for (const name of ["edge-1", "edge-2"]) expect((await report(name, 1)).status).toBe(204);
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("refuses bad requests with the reason and stores nothing", async () => {
    const bad = await start({ gate: "installed && aborts = 0" });
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({
      error: '--gate: gate column 21: "=" is not an operator: compare with "=="',
      details: ["installed && aborts = 0\n                    ^"],
    });
    expect((await start({ phases: ["1", "50%"] })).json().error).toMatch(/end with 100%/);
    expect((await start({ phases: ["1", "150%"] })).status).toBe(400);
    expect((await start({ offline: "maybe" })).status).toBe(400);
    expect((await start({ soakSeconds: 0 })).status).toBe(400);
    expect((await start({ selector: {} })).json().error).toMatch(/selector: give at least one label/);
    expect((await start({ version: 7 })).status).toBe(404);
    expect((await op("/v1/rollouts/99")).status).toBe(404);
    expect((await op("/v1/rollouts/abc")).status).toBe(400);
    expect((await op("/v1/rollouts/1/pause", { method: "POST" })).status).toBe(404);
    expect(Rollout.array().parse((await op("/v1/rollouts")).json().rollouts)).toEqual([]);
  });

  it("runs across a controller restart and shows its steps", async () => {
    const res = await start({ version: 2, soakSeconds: 2 });
    expect(res.status, res.body.toString()).toBe(201);
    const started = Rollout.parse(res.json());
    expect(started.devices.map((d) => [d.name, d.state])).toEqual([
      ["edge-1", "updating"],
      ["edge-2", "pending"],
    ]);
    // the device is told and its assignment is v2
    const assignment = await h.call("/v1/device/assignment", { client: h.asDevice("edge-1") });
    expect(assignment.json<{ chain: { version: number } }>().chain.version).toBe(2);
    expect((await start({ version: 2 })).status).toBe(409);
    await h.restart();
    expect((await report("edge-1", 2)).status).toBe(204);
    const phase2 = await waitForRollout(started.id, (r) => r.phase === 1);
    expect(phase2.devices[1]!.state).toBe("updating");
    expect((await report("edge-2", 2)).status).toBe(204);
    const done = await waitForRollout(started.id, (r) => r.state === "completed");
    expect(done.devices.map((d) => d.state)).toEqual(["passed", "passed"]);
    expect(done.events.map((e) => e.message).join("\n")).toMatch(
      /phase 1 started[\s\S]*phase 2 started[\s\S]*completed/,
    );
    const audit = (await op("/v1/audit")).json().entries as Array<{ actor: string; route: string }>;
    expect(audit.filter((e) => e.actor === `rollout ${started.id}`).map((e) => e.route)).toEqual([
      "phase 1 started",
      "phase 2 started",
      "completed",
    ]);
    expect((await op(`/v1/rollouts/${started.id}/abort`, { method: "POST" })).json().error).toMatch(
      /is completed already/,
    );
  });

  const waitForRollout = async (id: number, done: (r: Rollout) => boolean) => {
    for (let i = 0; i < 150; i++) {
      const r = Rollout.parse((await op(`/v1/rollouts/${id}`)).json());
      if (done(r)) return r;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`rollout ${id} did not get there in 15 s`);
  };

  it("CLI arguments: durations and CHAIN@VERSION", () => {
    expect(parseDuration("60s", "--soak")).toBe(60);
    expect(parseDuration("10m", "--soak")).toBe(600);
    expect(parseDuration("1h", "--soak")).toBe(3600);
    expect(parseDuration("90", "--soak")).toBe(90);
    expect(() => parseDuration("1.5m", "--soak")).toThrow(/--soak: "1.5m" is not a duration/);
    expect(() => parseDuration("0s", "--soak")).toThrow(/above zero/);
    expect(parseChainRef("security@4")).toEqual({ chain: "security", version: 4 });
    expect(parseChainRef("security")).toEqual({ chain: "security" });
    expect(() => parseChainRef("security@x")).toThrow(/positive integer/);
  });
});
