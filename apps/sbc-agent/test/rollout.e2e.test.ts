/**
 * Staged rollouts with real agents: a real controller, two galette-agents on veth pairs
 * running the security chain with traffic flowing, and `galette rollout` run as the
 * operator would. A version whose NF aborts every frame stops after phase 1 and its
 * device goes back to the version it ran (no download, no new signature); a good version
 * reaches both devices.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Rollout } from "@galette/protocol";
import { describeKernel, sleep } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet, lpmKeyHex, repoRoot, waitFor } from "./fleet";

const A = "edge-a";
const B = "edge-b";
const SOAK_S = 10;
const securityToml = readFileSync(path.join(repoRoot, "chains/security.toml"), "utf8");
/** weak-classifier's Normal → abort: every frame the test sends (not TCP/UDP: Normal) is aborted */
const aborting = securityToml.replace('to = ["tx", "!dpi", "drop"]', 'to = ["abort", "!dpi", "drop"]');
/** DPI's Matched → tx: a harmless change */
const good = securityToml.replace('from = "dpi"\nto = ["tx", "drop"]', 'from = "dpi"\nto = ["tx", "tx"]');

describeKernel("staged rollouts: gate, automatic rollback, and a good version to every device", () => {
  const fleet = new Fleet();
  let traffic = true;
  let flowing: Promise<void> | undefined;

  beforeAll(async () => {
    expect(aborting).not.toBe(securityToml);
    expect(good).not.toBe(securityToml);
    await fleet.start({
      devices: [A, B].map((name) => ({
        name,
        labels: { role: "edge" },
        websocket: true,
        pollIntervalSeconds: 5,
      })),
    });
    for (const nf of ["access-control", "weak-classifier", "dpi"])
      expect((await fleet.publish(nf)).build).toBe("built");
  });
  afterAll(async () => {
    traffic = false;
    await flowing;
    await fleet.cleanup();
  });

  /** `galette rollout status --json` (a CLI process: it blocks this process, traffic included, while it runs) */
  const rollout = (): Rollout => JSON.parse(fleet.cli(["rollout", "status", "--json"])) as Rollout;
  /** the newest rollout through the API, for polling (the traffic keeps flowing meanwhile) */
  const latest = async (): Promise<Rollout> => (await fleet.operator.listRollouts()).rollouts[0]!;
  const forwards = async (name: string, tag: string) => {
    const veth = fleet.agent(name).veth;
    return (await bounce(veth, tag, 10, veth.ipA, 10)).length;
  };

  it("two agents converge on the security chain and forward", async () => {
    expect((await fleet.push("chains/security.toml", securityToml)).version).toBe(1);
    await fleet.setMapEntries(
      "security",
      "access-control.allow_list",
      [A, B].map((n) => ({ key: lpmKeyHex(fleet.agent(n).veth.ipA), value: "01000000" })),
    );
    // pinned: a later push does not reach these devices by itself, a rollout does
    fleet.cli(["chain", "assign", "security", "--version", "1", "--selector", "role=edge"]);
    for (const name of [A, B]) {
      await fleet.converged(name, "security", 1);
      expect(await forwards(name, `v1-${name}`)).toBe(10);
    }
    // traffic through both devices for the rest of the test
    flowing = (async () => {
      while (traffic) {
        for (const name of [A, B]) {
          const veth = fleet.agent(name).veth;
          await bounce(veth, `flow-${name}`, 20, veth.ipA).catch((err: Error) => {
            process.stderr.write(`traffic through ${name}: ${err.message}\n`);
          });
        }
        await sleep(100);
      }
    })();
  });

  it("acceptance: a version whose NF aborts every frame stops after phase 1; the device is back on v1 within soak + 10 s; status says why", async () => {
    expect((await fleet.push("chains/security.toml", aborting)).version).toBe(2);
    const marks = { [A]: fleet.agent(A).logs.length, [B]: fleet.agent(B).logs.length };
    const t0 = Date.now();
    const started = fleet.cli([
      "rollout",
      "start",
      "security@2",
      "--to",
      "role=edge",
      "--phases",
      "1,100%",
      "--soak",
      `${SOAK_S}s`,
      "--gate",
      "installed && aborts == 0",
    ]);
    expect(started).toMatch(/rollout 1: security v2 to role=edge: running, phase 1\/2/);
    // edge-a gets v2 and aborts the traffic
    await waitFor(`${A} to install v2`, SOAK_S * 1000, () =>
      fleet
        .agent(A)
        .logs.slice(marks[A])
        .find((l) => /^assignment applied/.test(String(l.msg)) && l.version === 2),
    );
    // measured from the rollout's start as the controller recorded it, to the agent's own
    // log of the rollback being live (a slow CLI or status round trip does not count)
    const startedAt = Date.parse((await latest()).createdAt);
    const back = await waitFor(`${A} back on v1`, 60_000, async () => {
      const r = await latest();
      const d = await fleet.device(A);
      return r.state === "paused" && d.installed?.version === 1 && d.state === "converged" ? r : undefined;
    });
    const reapplied = fleet
      .agent(A)
      .logs.slice(marks[A])
      .find((l) => /^assignment applied/.test(String(l.msg)) && l.version === 1);
    expect(reapplied, "the agent logged v1 applied again").toBeDefined();
    expect(Number(reapplied!.time) - startedAt).toBeLessThan((SOAK_S + 10) * 1000);
    expect(back.stop).toMatchObject({ kind: "gate-failed", device: A, phase: 0 });
    expect(back.stop!.failed![0]!.term).toBe("aborts == 0");
    expect(back.stop!.failed![0]!.values.aborts).toBeGreaterThan(0);
    expect(back.devices.map((d) => [d.name, d.state])).toEqual([
      [A, "rolled-back"],
      [B, "pending"],
    ]);
    const status = fleet.cli(["rollout", "status"]);
    expect(status).toMatch(/paused \(gate failed\), phase 1\/2/);
    expect(status).toMatch(/stopped: phase 1: edge-a failed the gate: aborts == 0 \(aborts=\d+\)/);
    expect(status).toMatch(/edge-a\s+1\s+rolled-back\s+security v1\s+gate failed: back on security v1/);
    // the rollback needed no download: the device still had v1's artifacts
    expect(fleet.agent(A).logged("artifact downloaded", marks[A])).toEqual([]);
    // phase 2 was never reached: edge-b never received v2
    expect(
      fleet
        .agent(B)
        .logs.slice(marks[B])
        .filter((l) => l.msg === "assignment received" && l.version === 2),
    ).toEqual([]);
    expect((await fleet.device(B)).installed).toMatchObject({ chain: "security", version: 1 });
    expect(await forwards(A, "after-rollback")).toBe(10);
    // every step is in the audit log
    const audit = (await fleet.operator.listAudit(new Date(t0 - 1000).toISOString())).entries;
    expect(audit.filter((e) => e.actor === "rollout 1").map((e) => e.route)).toEqual([
      "phase 1 started",
      "phase 1 gate failed, rolled back",
    ]);
    expect(audit.some((e) => e.method === "POST" && e.route === "/v1/rollouts" && e.status === 201)).toBe(
      true,
    );
    fleet.cli(["rollout", "abort"]);
    expect(rollout().state).toBe("aborted");
  });

  it("a good version goes phase by phase to both devices", async () => {
    expect((await fleet.push("chains/security.toml", good)).version).toBe(3);
    const out = fleet.cli([
      "rollout",
      "start",
      "security@3",
      "--to",
      "role=edge",
      "--phases",
      "1,100%",
      "--soak",
      "5s",
      "--gate",
      "installed && aborts == 0 && errors == 0 && heartbeat <= 10",
    ]);
    expect(out).toMatch(/rollout 2: security v3/);
    const done = await waitFor("rollout 2 to complete", 60_000, async () => {
      const r = await latest();
      if (r.state === "paused" || r.state === "aborted")
        throw new Error(`rollout 2 stopped: ${r.stop?.message}`);
      return r.state === "completed" ? r : undefined;
    });
    expect(done.devices.map((d) => [d.name, d.state])).toEqual([
      [A, "passed"],
      [B, "passed"],
    ]);
    for (const name of [A, B]) {
      await fleet.converged(name, "security", 3);
      expect(await forwards(name, `v3-${name}`)).toBe(10);
    }
  });

  it("refuses a gate with an unknown identifier, pointing at it, and starts nothing", () => {
    expect(() =>
      fleet.cli([
        "rollout",
        "start",
        "security@3",
        "--to",
        "role=edge",
        "--phases",
        "1,100%",
        "--soak",
        "5s",
        "--gate",
        "installed && abort == 0",
      ]),
    ).toThrow(/--gate: gate column 14: unknown identifier "abort"[\s\S]*installed && abort == 0\n {13}\^/);
    expect(rollout().id).toBe(2);
  });
});
