/**
 * The dead-man's switch end to end. The agent runs inside the device's namespace and
 * reaches the controller only through its data port: a relay in host A's namespace
 * (A's address, across the veth) forwards to the controller on loopback. A chain that
 * passes every frame stays; a chain whose access-control drops everything (the
 * controller's replies included) cuts the control path and is rolled back within the
 * grace, the reason shows in `galette device list`, and it is not installed again until
 * `galette device confirm`.
 */
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createVethPair, describeKernel, sleep, startRelay, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Fleet, type LogLine, waitFor } from "./fleet";

const GRACE_S = 5;
const DEVICE = "dms-1";

const chainToml = (name: string, exits: [string, string]) => `[chain]
name = "${name}"

[functions.access-control.maps]
allow_list = { type = "lpm-trie", size = 1024 }

[[links]]
from = "rx"
to = ["access-control"]

# access-control: Action { Allowed, Denied }; its allow-list stays empty: every frame is Denied
[[links]]
from = "access-control"
to = ["${exits[0]}", "${exits[1]}"]
`;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

const at = (l: LogLine | undefined): number => {
  if (!l?.time) throw new Error("log line without time");
  return l.time;
};

describeKernel("dead-man's switch", () => {
  const fleet = new Fleet();
  let veth: VethPair;
  const relays: ChildProcess[] = [];

  beforeAll(async () => {
    veth = await createVethPair("dms");
    const port = await freePort();
    fleet.controller.port = port;
    const socket = path.join(tmpdir(), `galette-dms-${process.pid}-${port}.sock`);
    relays.push(await startRelay(`unix:${socket}`, `tcp:127.0.0.1:${port}`));
    relays.push(await startRelay(`tcp:${veth.ipA}:8443`, `unix:${socket}`, veth.nsA));
    await fleet.start({
      serverHosts: ["localhost", "127.0.0.1", veth.ipA],
      devices: [
        {
          name: DEVICE,
          websocket: true,
          pollIntervalSeconds: 2,
          inNamespace: { veth, controllerUrl: `https://${veth.ipA}:8443` },
        },
      ],
    });
    await fleet.publish("access-control");
    await fleet.push("deadman-ok.toml", chainToml("deadman-ok", ["pass", "pass"]));
    await fleet.push("deadman-cut.toml", chainToml("deadman-cut", ["pass", "drop"]));
  }, 600_000);

  afterAll(async () => {
    await fleet.cleanup();
    for (const r of relays) r.kill("SIGKILL");
  });

  it("a chain that keeps the control path stays; one that cuts it is rolled back within the grace and held until confirmed", async () => {
    const agent = fleet.agent(DEVICE);
    // the agent reaches the controller only across its data port
    await waitFor("the device to report", 60_000, async () => (await fleet.device(DEVICE)).lastSeenAt);

    // 1. harmless: installed, the switch is disarmed, and it stays
    let from = agent.logs.length;
    const assigned = fleet.cli([
      "chain",
      "assign",
      "deadman-ok",
      "--devices",
      DEVICE,
      "--grace",
      `${GRACE_S}s`,
    ]);
    expect(assigned).toMatch(/assigned deadman-ok \(latest\) to dms-1/);
    await fleet.converged(DEVICE, "deadman-ok", 1, 60_000);
    await waitFor("the switch to be disarmed", 30_000, () =>
      agent.logged("dead-man's switch disarmed: the controller answers after the change", from).length > 0
        ? true
        : undefined,
    );
    await sleep((GRACE_S + 1) * 1000);
    let d = await fleet.device(DEVICE);
    expect(d.installed).toEqual({ chain: "deadman-ok", version: 1 });
    expect(d.rollback ?? null).toBeNull();
    expect(d.graceSeconds).toBe(GRACE_S);
    expect(agent.logged("rolling back", from)).toEqual([]);

    // 2. cutting: rolled back to deadman-ok within the grace and a few seconds
    from = agent.logs.length;
    fleet.cli(["chain", "assign", "deadman-cut", "--devices", DEVICE, "--grace", `${GRACE_S}s`]);
    d = await waitFor("the rollback to show in the device list", 90_000, async () => {
      const dev = await fleet.device(DEVICE);
      return dev.rollback?.chain === "deadman-cut" && dev.installed?.chain === "deadman-ok" ? dev : undefined;
    });
    expect(d.rollback).toMatchObject({
      chain: "deadman-cut",
      version: 1,
      restored: { chain: "deadman-ok", version: 1 },
    });
    expect(d.rollback?.reason).toMatch(
      new RegExp(`chain "deadman-cut" v1 cut this device off the controller: no answer within ${GRACE_S} s`),
    );
    expect(d.state).toBe("error");
    const armed = agent.logged("dead-man's switch armed", from);
    const rolling = agent.logged("rolling back", from);
    expect(armed).toHaveLength(1);
    expect(rolling).toHaveLength(1);
    const ms = at(rolling[0]) - at(armed[0]);
    expect(ms).toBeGreaterThanOrEqual(GRACE_S * 1000 - 100);
    expect(ms).toBeLessThan(GRACE_S * 1000 + 3000);
    const listed = fleet.cli(["device", "list"]);
    expect(listed).toContain("dms-1: rolled back deadman-cut v1");
    expect(listed).toContain("galette device confirm dms-1");

    // 3. not installed again while unconfirmed (several polls)
    from = agent.logs.length;
    await sleep(6000);
    d = await fleet.device(DEVICE);
    expect(d.installed).toEqual({ chain: "deadman-ok", version: 1 });
    expect(agent.logged("dead-man's switch armed", from)).toEqual([]);
    // …nor after a restart: the hold is on the device's disk
    await agent.signal("SIGTERM");
    from = agent.logs.length;
    agent.start();
    await waitFor(
      "the restarted agent to poll",
      30_000,
      () =>
        agent.logged(
          "not installing the version the dead-man's switch rolled back until the operator confirms it (galette device confirm)",
          from,
        ).length > 0 || undefined,
    );
    await sleep(3000);
    d = await fleet.device(DEVICE);
    expect(d.installed).toEqual({ chain: "deadman-ok", version: 1 });
    expect(d.rollback?.chain).toBe("deadman-cut");
    expect(agent.logged("dead-man's switch armed", from)).toEqual([]);

    // 4. confirmed: installed again, without the switch (the device is cut off again)
    from = agent.logs.length;
    expect(fleet.cli(["device", "confirm", DEVICE])).toMatch(/confirmed deadman-cut v1 for dms-1/);
    await waitFor(
      "the agent to install the confirmed version",
      30_000,
      () =>
        agent
          .logged("assignment applied (reconfigured)", from)
          .some((l) => l.chain === "deadman-cut" && l.version === 1) || undefined,
    );
    // the line says where the reconfiguration's time went, phase by phase
    const applied = agent.logged("assignment applied (reconfigured)", from).at(-1)!;
    expect(Object.keys(applied.phases as object).sort()).toEqual([
      "artifactsMs",
      "cacheMs",
      "dataplaneMs",
      "mapEntriesMs",
      "planMs",
      "verifyMs",
    ]);
    expect(Object.values(applied.phases as object).every((ms) => Number.isInteger(ms) && ms >= 0)).toBe(true);
    expect(
      agent.logged(
        "the operator confirmed the held-back version: installing it without the dead-man's switch",
        from,
      ),
    ).toHaveLength(1);
    await sleep((GRACE_S + 2) * 1000);
    expect(agent.logged("dead-man's switch armed", from)).toEqual([]);
    expect(agent.logged("rolling back", from)).toEqual([]);
  }, 300_000);

  it("confirm refuses a device that rolled nothing back", () => {
    // the confirmation above cleared the hold on the agent, which cannot report it now
    // (cut off); an unknown device is refused by name
    expect(() => fleet.cli(["device", "confirm", "no-such-device"])).toThrow(
      /device no-such-device is not enrolled/,
    );
  });
});
