/**
 * The rollout engine against a real SQLite repository (and two engines on one real
 * PostgreSQL, as two controller replicas), with a fake clock and devices
 * whose status reports are written straight into the repository (the kernel e2e test in
 * apps/sbc-agent/test/rollout.e2e.test.ts runs real agents).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@galette/log";
import type { ChainGraph } from "@galette/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RequestError } from "../src/control";
import { phaseSizes, RolloutEngine } from "../src/rollouts";
import { openPostgresRepository } from "../src/storage/postgres";
import type { Repository } from "../src/storage/repository";
import { openSqliteRepository } from "../src/storage/sqlite";
import { statusReport, usePostgres } from "./helpers";

const ACL = "11111111-1111-4111-8111-111111111111";
/** one NF; `denied` decides what its second variant does */
const graph = (denied: "drop" | "abort", allowed: "tx" | "abort" = "tx"): ChainGraph => ({
  entry: { kind: "tailcall", target: ACL },
  nfs: [
    {
      uuid: ACL,
      instance: "access-control",
      nf: "access-control",
      buildHash: "b",
      xdp: true,
      userland: false,
      actions: [
        { variant: "Allowed", kind: allowed },
        { variant: "Denied", kind: denied },
      ],
      maps: [],
    },
  ],
  maps: [],
});

describe("staged rollouts (engine)", () => {
  let dir: string;
  let repo: Repository;
  let now: number;
  const notified: string[][] = [];
  const online = new Set<string>();
  const engine = () =>
    new RolloutEngine({
      repo,
      log: createLogger("rollouts-test", { level: "silent" }),
      isOnline: (d) => online.has(d),
      notify: async (devices) => {
        notified.push(devices);
      },
      now: () => now,
    });
  const push = (g: ChainGraph) =>
    repo.insertChainVersion({
      name: "security",
      toml: "",
      file: "security.toml",
      graph: g,
      warnings: [],
      createdAt: "",
    });
  /** a status report: `version` installed, the NF's per-variant counts */
  const report = (name: string, version: number | null, allowed = 0, denied = 0, errors: string[] = []) => {
    const status = statusReport({
      installed: version ? { chain: "security", version } : null,
      state: "converged",
      errors: errors.map((message) => ({ message, at: new Date(now).toISOString() })),
      counters: [{ uuid: ACL, counters: { Allowed: allowed, Denied: denied, packets: allowed + denied } }],
    });
    return repo.saveDeviceStatus(name, status, new Date(now).toISOString());
  };
  const assigned = async (name: string) => {
    const d = (await repo.getDevice(name))!;
    return `${d.assignedChain}@${d.assignedVersion ?? "latest"}`;
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "galette-rollouts-"));
    repo = openSqliteRepository(dir);
    now = Date.parse("2026-01-01T00:00:00Z");
    notified.length = 0;
    online.clear();
    for (const name of ["edge-a", "edge-b", "edge-c", "core-a"]) {
      await repo.insertDevice({
        name,
        labels: { role: name.startsWith("edge") ? "edge" : "core" },
        serial: name,
        certPem: "",
        enrolledAt: "",
        notAfter: "",
      });
      online.add(name);
    }
    await push(graph("drop")); // v1
    await repo.addSelectorRule("security", 1, { role: "edge" }, "");
    await repo.addSelectorRule("security", 1, { role: "core" }, "");
    for (const name of ["edge-a", "edge-b", "edge-c", "core-a"]) await report(name, 1, 100, 10);
  });
  afterEach(async () => {
    await repo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (
    e: RolloutEngine,
    gate: string,
    extra: Partial<Parameters<RolloutEngine["start"]>[0]> = {},
  ) =>
    e.start(
      {
        chain: "security",
        selector: { role: "edge" },
        phases: ["1", "100%"],
        soakSeconds: 10,
        gate,
        ...extra,
      },
      "ops",
    );

  it("phase sizes are cumulative, percentages round up, and the last phase must reach everyone", async () => {
    expect(phaseSizes(["1", "10%", "50%", "100%"], 10)).toEqual([1, 1, 5, 10]);
    expect(phaseSizes(["1", "100%"], 1)).toEqual([1, 1]);
    expect(phaseSizes(["33%", "100%"], 3)).toEqual([1, 3]);
    expect(() => phaseSizes(["50%", "1", "100%"], 10)).toThrow(
      /phase 2 \(1\) reaches 1 devices, fewer than phase 1 \(5\)/,
    );
    expect(() => phaseSizes(["1", "50%"], 10)).toThrow(/end with 100%/);
    expect(() => phaseSizes(["0%", "100%"], 10)).toThrow(RequestError);
  });

  it("a good version goes phase by phase after each soak and ends on every selected device", async () => {
    await push(graph("drop")); // v2
    const e = engine();
    const r = await start(e, "installed && aborts == 0 && drop_ratio <= 1.2");
    expect(r.version).toBe(2);
    expect(r.devices.map((d) => [d.name, d.phase, d.state])).toEqual([
      ["edge-a", 0, "updating"],
      ["edge-b", 1, "pending"],
      ["edge-c", 1, "pending"],
    ]);
    expect(await assigned("edge-a")).toBe("security@2");
    expect(await assigned("edge-b")).toBe("security@1");
    expect(await assigned("core-a")).toBe("security@1");
    expect(notified).toEqual([["edge-a"]]);
    await report("edge-a", 2, 0, 0);
    await e.tick();
    now += 5_000;
    await report("edge-a", 2, 50, 5); // the same drop rate as before
    await e.tick();
    expect((await e.get(r.id)).phase).toBe(0);
    now += 5_000;
    await e.tick();
    let s = await e.get(r.id);
    expect(s.phase).toBe(1);
    expect(s.devices.map((d) => d.state)).toEqual(["passed", "updating", "updating"]);
    for (const name of ["edge-b", "edge-c"]) await report(name, 2);
    await e.tick();
    now += 10_000;
    await e.tick();
    s = await e.get(r.id);
    expect(s.state).toBe("completed");
    expect(s.stop).toBeNull();
    expect(s.events.at(-1)?.message).toMatch(/completed: 3 device\(s\) run security v2/);
    const audit = (await repo.listAudit({ limit: 100 })).filter((a) => a.method === "ROLLOUT");
    expect(audit.map((a) => a.route)).toEqual(["phase 1 started", "phase 2 started", "completed"]);
    expect(audit[0]).toMatchObject({ actor: `rollout ${r.id}`, target: "security v2: edge-a" });
  });

  it("a version whose NF aborts stops after phase 1, rolls the device back, and says which term failed with which values", async () => {
    await push(graph("abort", "abort")); // v2: every frame aborts
    const e = engine();
    const r = await start(e, "installed && aborts == 0");
    await report("edge-a", 2, 0, 0);
    await e.tick();
    now += 1000;
    await report("edge-a", 2, 40, 2);
    await e.tick();
    const s = await e.get(r.id);
    expect(s.state).toBe("paused");
    expect(s.stop).toMatchObject({
      kind: "gate-failed",
      device: "edge-a",
      phase: 0,
      failed: [{ term: "aborts == 0", values: { aborts: 42 } }],
    });
    expect(s.stop!.message).toBe("phase 1: edge-a failed the gate: aborts == 0 (aborts=42)");
    expect(s.devices[0]).toMatchObject({ state: "rolled-back", ran: { chain: "security", version: 1 } });
    // it followed the role=edge rule (pinned to v1): the explicit assignment is gone again
    expect((await repo.getDevice("edge-a"))!.assignedBy?.kind).toBe("selector");
    expect(await assigned("edge-a")).toBe("security@1");
    expect(notified.at(-1)).toEqual(["edge-a"]);
    // paused: nothing moves on
    now += 60_000;
    await e.tick();
    expect((await e.get(r.id)).devices.map((d) => d.state)).toEqual(["rolled-back", "pending", "pending"]);
    await expect(e.pause(r.id, "ops")).rejects.toThrow(/is paused, not running/);
    // resume runs the phase again; abort puts it back
    expect((await e.resume(r.id, "ops")).devices[0]!.state).toBe("updating");
    expect(await assigned("edge-a")).toBe("security@2");
    const aborted = await e.abort(r.id, "ops");
    expect(aborted.state).toBe("aborted");
    expect(await assigned("edge-a")).toBe("security@1");
    await expect(e.resume(r.id, "ops")).rejects.toThrow(/is aborted, not paused/);
  });

  it("the drop ratio compares with the device's own rate before the rollout", async () => {
    await push(graph("drop")); // v2
    const e = engine();
    const r = await start(e, "drop_ratio <= 1.2");
    await report("edge-a", 2, 0, 0);
    await e.tick();
    now += 1000;
    await report("edge-a", 2, 50, 50); // before: 10 of 110 dropped; now half
    await e.tick();
    const s = await e.get(r.id);
    expect(s.stop?.failed?.[0]?.term).toBe("drop_ratio <= 1.2");
    expect(s.stop?.failed?.[0]?.values.drop_ratio).toBeCloseTo(5.5, 2);
  });

  it("offline devices: wait holds the phase, skip leaves them out, fail stops the rollout", async () => {
    await push(graph("drop")); // v2
    for (const policy of ["fail", "skip", "wait"] as const) {
      const e = engine();
      online.delete("edge-a");
      now += 3_600_000; // the last report is an hour old
      const r = await start(e, "installed", { offline: policy, phases: ["1", "100%"] });
      now += 11_000;
      await e.tick();
      const s = await e.get(r.id);
      if (policy === "fail") {
        expect(s.stop?.failed).toEqual([{ term: "online (offline policy fail)", values: { online: false } }]);
        await e.abort(r.id, "ops");
      } else if (policy === "skip") {
        expect(s.devices[0]!.state).toBe("skipped");
        expect(await assigned("edge-a")).toBe("security@1");
        expect(s.phase).toBe(1);
        await e.abort(r.id, "ops");
      } else {
        expect(s.devices[0]!.state).toBe("waiting");
        expect(s.phase).toBe(0);
        // it comes back and installs: its own soak starts then
        online.add("edge-a");
        await report("edge-a", 2);
        await e.tick();
        expect((await e.get(r.id)).devices[0]!.state).toBe("updating");
        now += 10_000;
        await e.tick();
        expect((await e.get(r.id)).phase).toBe(1);
      }
    }
  });

  it("a restarted controller carries on from the stored state", async () => {
    await push(graph("drop")); // v2
    const r = await start(engine(), "installed && errors == 0");
    await report("edge-a", 2);
    // a new engine (as after a restart) on the same database
    const again = engine();
    now += 10_000;
    await again.tick();
    expect((await again.get(r.id)).phase).toBe(1);
    await report("edge-b", 2, 0, 0, ["install failed: boom"]);
    await again.tick();
    const s = await again.get(r.id);
    expect(s.stop?.failed).toEqual([{ term: "errors == 0", values: { errors: 1 } }]);
    // a rollback covers the whole failed phase
    expect(s.devices.map((d) => d.state)).toEqual(["passed", "rolled-back", "rolled-back"]);
  });

  it("refuses bad requests before changing anything", async () => {
    const e = engine();
    await expect(start(e, "installed && abort == 0")).rejects.toThrow(
      /--gate: gate column 14: unknown identifier "abort"/,
    );
    await expect(start(e, "installed", { version: 9 })).rejects.toThrow(
      /chain security version 9 does not exist/,
    );
    await expect(start(e, "installed", { selector: { role: "nope" } })).rejects.toThrow(
      /no enrolled device is labelled role=nope/,
    );
    await expect(start(e, "installed", { phases: ["1", "2"] })).rejects.toThrow(/end with 100%/);
    expect(await repo.listRollouts({})).toEqual([]);
    await start(e, "installed");
    await expect(start(e, "installed")).rejects.toThrow(
      /rollout 1 of security is running: finish or abort it first/,
    );
    expect(await assigned("edge-b")).toBe("security@1");
  });
});

describe("staged rollouts on controllers sharing one PostgreSQL", () => {
  const postgres = usePostgres();

  it("two controllers ticking at once step each rollout once: one assignment, one audit row per step", async () => {
    const url = postgres().createDatabase("rollouts_two");
    const [a, b] = await Promise.all([openPostgresRepository(url), openPostgresRepository(url)]);
    try {
      let now = Date.parse("2026-01-01T00:00:00Z");
      const notified: string[][] = [];
      const engineOn = (repo: Repository) =>
        new RolloutEngine({
          repo,
          log: createLogger("rollouts-test", { level: "silent" }),
          isOnline: () => true,
          notify: async (devices) => {
            notified.push(devices);
          },
          now: () => now,
        });
      for (const name of ["edge-a", "edge-b"])
        await a.insertDevice({
          name,
          labels: { role: "edge" },
          serial: name,
          certPem: "",
          enrolledAt: "",
          notAfter: "",
        });
      for (const g of [graph("drop"), graph("drop")])
        await a.insertChainVersion({
          name: "security",
          toml: "",
          file: "s.toml",
          graph: g,
          warnings: [],
          createdAt: "",
        });
      await a.addSelectorRule("security", 1, { role: "edge" }, "");
      const report = (repo: Repository, name: string, version: number) =>
        repo.saveDeviceStatus(
          name,
          statusReport({
            installed: { chain: "security", version },
            state: "converged",
            counters: [{ uuid: ACL, counters: { Allowed: 10, Denied: 1, packets: 11 } }],
          }),
          new Date(now).toISOString(),
        );
      for (const name of ["edge-a", "edge-b"]) await report(a, name, 1);
      const [ea, eb] = [engineOn(a), engineOn(b)];
      // stored, not yet stepped: both controllers tick together from here on
      const started = await ea.start(
        {
          chain: "security",
          selector: { role: "edge" },
          phases: ["1", "100%"],
          soakSeconds: 10,
          gate: "installed",
        },
        "ops",
      );
      await Promise.all([ea.tick(), eb.tick(), ea.tick(), eb.tick()]);
      await report(b, "edge-a", 2);
      now += 11_000;
      await Promise.all([ea.tick(), eb.tick()]);
      await report(a, "edge-b", 2);
      now += 11_000;
      await Promise.all([ea.tick(), eb.tick(), ea.tick(), eb.tick()]);
      const done = await eb.get(started.id);
      expect(done.state).toBe("completed");
      const steps = (await b.listAudit({ limit: 100 }))
        .filter((e) => e.method === "ROLLOUT")
        .map((e) => e.route);
      expect(steps).toEqual(["phase 1 started", "phase 2 started", "completed"]);
      expect(notified).toEqual([["edge-a"], ["edge-b"]]);
      expect(done.events.filter((e) => e.message.startsWith("phase 1 started"))).toHaveLength(1);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);
});
