import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Dataplane } from "@galette/installer";
import type { PublishNfResponse } from "@galette/protocol";
import { describeKernel } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bounce, Fleet, lpmKeyHex, repoRoot, waitFor } from "./fleet";

const securityToml = readFileSync(path.join(repoRoot, "chains/security.toml"), "utf8");
/** security.toml with DPI's Matched → tx: a changed chain whose NF builds are all unchanged. */
const securityV2 = securityToml.replace(
  'from = "dpi"\nto = ["tx", "drop"]',
  'from = "dpi"\nto = ["tx", "tx"]',
);
/** …and with weak-classifier's Malicious → tx as well (v3, pushed while the controller dies). */
const securityV3 = securityV2.replace('to = ["tx", "!dpi", "drop"]', 'to = ["tx", "!dpi", "tx"]');

const macOf = (frame: Buffer, off: number) =>
  [...frame.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");

describeKernel("fleet: controller + two galette-agents on veth pairs", () => {
  const fleet = new Fleet();
  const published = new Map<string, PublishNfResponse>();
  const WS = "edge-ws";
  const POLL = "edge-poll";
  const POLL_INTERVAL_MS = 3000;

  beforeAll(async () => {
    expect(securityV2).not.toBe(securityToml);
    expect(securityV3).not.toBe(securityV2);
    await fleet.start({
      devices: [
        { name: "edge-ws", labels: { role: "edge" }, websocket: true, pollIntervalSeconds: 30 },
        {
          name: "edge-poll",
          labels: { role: "edge" },
          websocket: false,
          pollIntervalSeconds: POLL_INTERVAL_MS / 1000,
          // the other device runs native (driver) XDP; this one generic (skb) XDP
          xdpMode: "generic",
        },
      ],
    });
    for (const nf of ["macswap", "access-control", "weak-classifier", "dpi"]) {
      const result = await fleet.publish(nf);
      expect(result.build).toBe("built");
      published.set(nf, result);
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
      // what the device's kernel says it is (uname -m), asked independently of the agent
      expect(d.arch).toBe(execFileSync("uname", ["-m"], { encoding: "utf8" }).trim());
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

  /**
   * Waits until `name` reports chain `version` converged; returns how long after `t0` the
   * agent had received that version and how long after `t0` it had it installed (agent
   * log times, so a slow status round trip does not count).
   */
  const timeToConverge = async (name: string, chain: string, version: number, t0: number) => {
    await fleet.converged(name, chain, version, 30_000);
    const logs = fleet.agent(name).logs;
    const received = logs.find(
      (l) => l.msg === "assignment received" && l.chain === chain && l.version === version,
    );
    const applied = logs.find(
      (l) => /^assignment applied/.test(String(l.msg)) && l.chain === chain && l.version === version,
    );
    return { received: Number(received?.time) - t0, applied: Number(applied?.time) - t0 };
  };
  /**
   * With ws the agent has the new assignment and has installed it within 2 s; polling, it
   * has it within one poll interval (+ the request's own time) and installs right after.
   */
  const expectInTime = (
    ws: { received: number; applied: number },
    poll: { received: number; applied: number },
    reconfigureOnly: boolean,
  ) => {
    expect(ws.received).toBeLessThan(2000);
    // A first install also downloads and verifies every NF; a changed chain must be live in 2 s.
    if (reconfigureOnly) expect(ws.applied).toBeLessThan(2000);
    expect(poll.received).toBeLessThan(POLL_INTERVAL_MS + 500);
    expect(poll.applied).toBeGreaterThanOrEqual(poll.received);
  };
  const downloads = (name: string, from: number) => fleet.agent(name).logged("artifact downloaded", from);

  it("switches both devices to the security chain: ws within 2 s, polling within one interval; allow-list applied", async () => {
    expect((await fleet.push("chains/security.toml", securityToml)).version).toBe(1);
    const allowList = "access-control.allow_list";
    await fleet.setMapEntries(
      "security",
      allowList,
      [WS, POLL].map((n) => ({ key: lpmKeyHex(fleet.agent(n).veth.ipA), value: "01000000" })),
    );
    const marks: Record<string, number> = {
      [WS]: fleet.agent(WS).logs.length,
      [POLL]: fleet.agent(POLL).logs.length,
    };
    const t0 = Date.now();
    await fleet.operator.assignChain({ chain: "security", selector: { role: "edge" } });
    const [ws, poll] = await Promise.all([
      timeToConverge(WS, "security", 1, t0),
      timeToConverge(POLL, "security", 1, t0),
    ]);
    expectInTime(ws, poll, false);
    for (const name of [WS, POLL]) {
      // access-control, weak-classifier (eBPF) and dpi (native): each fetched once
      expect(
        downloads(name, marks[name]!)
          .map((l) => l.kind)
          .sort(),
      ).toEqual(["bpf-object", "bpf-object", "native-lib"]);
      const veth = fleet.agent(name).veth;
      expect(await bounce(veth, `sec-ok-${name}`, 10, veth.ipA, 10)).toHaveLength(10);
      expect(await bounce(veth, `sec-denied-${name}`, 10, "192.0.2.66")).toHaveLength(0);
    }
  });

  it("pushes a changed chain: both reconfigure in time and download nothing (unchanged NF builds)", async () => {
    const marks: Record<string, number> = {
      [WS]: fleet.agent(WS).logs.length,
      [POLL]: fleet.agent(POLL).logs.length,
    };
    const t0 = Date.now();
    const pushed = await fleet.push("chains/security.toml", securityV2);
    expect(pushed.version).toBe(2);
    expect(pushed.notified.sort()).toEqual([POLL, WS]);
    const [ws, poll] = await Promise.all([
      timeToConverge(WS, "security", 2, t0),
      timeToConverge(POLL, "security", 2, t0),
    ]);
    expectInTime(ws, poll, true);
    for (const name of [WS, POLL]) {
      expect(downloads(name, marks[name]!)).toEqual([]);
      expect(fleet.agent(name).logged("assignment applied (reconfigured)", marks[name]!)).toHaveLength(1);
      const veth = fleet.agent(name).veth;
      expect(await bounce(veth, `sec2-${name}`, 10, veth.ipA, 10)).toHaveLength(10);
    }
  });

  it("refuses a corrupted artifact: keeps the old chain, reports the error, recovers once the store is repaired", async () => {
    // The agents pruned macswap's object when they moved to security: going back needs a download.
    const digest = published.get("macswap")!.artifacts.find((a) => a.kind === "bpf-object")!.digest;
    const stored = path.join(fleet.controller.dataDir, "artifacts", "sha256", digest.slice(0, 2), digest);
    const good = readFileSync(stored);
    const bad = Buffer.from(good);
    bad[bad.length >> 1]! ^= 0xff;
    writeFileSync(stored, bad);
    // The controller serves small artifacts from memory once read: a restart makes it read
    // (and serve) the corrupted file.
    await fleet.controller.stop();
    await fleet.controller.start();
    try {
      await fleet.operator.assignChain({ chain: "macswap", devices: [WS] });
      const d = await waitFor("edge-ws to report the corrupted artifact", 10_000, async () => {
        const s = await fleet.device(WS);
        return s.state === "error" && s.errors.length > 0 ? s : undefined;
      });
      expect(d.errors[0]!.message).toMatch(
        new RegExp(
          `NF "macswap" \\(macswap\\) bpf-object: artifact ${digest} as downloaded .* has sha256 [0-9a-f]{64}: corrupted`,
        ),
      );
      expect(d.installed).toMatchObject({ chain: "security", version: 2 });
      const veth = fleet.agent(WS).veth;
      expect(await bounce(veth, "still-security", 10, "192.0.2.66")).toHaveLength(0);
      expect(await bounce(veth, "still-security-ok", 10, veth.ipA, 10)).toHaveLength(10);
    } finally {
      writeFileSync(stored, good);
    }
    // Failed installs are retried with backoff; the repaired artifact goes in.
    await fleet.converged(WS, "macswap", 1, 15_000);
    expect((await fleet.device(WS)).errors).toEqual([]);
    // Back to following security for the next tests.
    await fleet.operator.assignChain({ chain: "security", devices: [WS] });
    await fleet.converged(WS, "security", 2);
  });

  it("controller killed in the middle of a push: all or nothing, agents keep forwarding while it is down and converge after", async () => {
    const before = (await fleet.operator.listChains()).chains.find(
      (c) => c.name === "security",
    )!.latestVersion;
    // The controller stops inside the push's storage transaction (after the version's row is
    // written, before the commit) and is SIGKILLed there.
    const paused = path.join(fleet.dir, "paused-in-chain-push");
    await fleet.controller.stop();
    await fleet.controller.start({ GALETTE_FAULT_PAUSE: `chain-push:${paused}` });
    const push = fleet.push("chains/security.toml", securityV3).then(
      (r) => r.version,
      (err: Error) => err,
    );
    await waitFor("the push to reach the storage transaction", 30_000, () => existsSync(paused));
    await fleet.controller.kill();
    expect(await push).toBeInstanceOf(Error);
    for (const name of [WS, POLL]) {
      const veth = fleet.agent(name).veth;
      expect(await bounce(veth, `down-${name}`, 10, veth.ipA, 10)).toHaveLength(10);
    }
    await fleet.controller.start();
    // Nothing of the interrupted push survived: no half-stored version.
    const chains = (await fleet.operator.listChains()).chains;
    expect(chains.find((c) => c.name === "security")!.latestVersion).toBe(before);
    expect(before).toBe(2);
    expect((await fleet.push("chains/security.toml", securityV3)).version).toBe(3);
    for (const name of [WS, POLL]) await fleet.converged(name, "security", 3, 20_000);
    const entries = await fleet.operator.getMapEntries("security", "access-control.allow_list");
    expect(entries.entries).toHaveLength(2);
  });

  it("agents killed while the controller is down: one reinstalls from its cache after a 'reboot', one adopts the pinned chain", async () => {
    await fleet.controller.kill();
    const ws = fleet.agent(WS);
    const poll = fleet.agent(POLL);
    await ws.signal("SIGKILL");
    await poll.signal("SIGKILL");
    // edge-poll: the pinned chain keeps forwarding with no agent at all.
    expect(await bounce(poll.veth, "no-agent", 10, poll.veth.ipA, 10)).toHaveLength(10);
    // edge-ws: as after a reboot, the pins and the installer's record are gone.
    Dataplane.remove(
      { iface: ws.veth.ifB, netns: ws.veth.nsB },
      { stateDir: path.resolve(ws.bundleDir, ws.config.stateDir) },
    );
    expect(await bounce(ws.veth, "rebooted", 5, ws.veth.ipA)).toHaveLength(0);

    const marks: Record<string, number> = { [WS]: ws.logs.length, [POLL]: poll.logs.length };
    ws.start();
    poll.start();
    await waitFor(
      "edge-ws to reinstall from its cache",
      20_000,
      () => ws.logged("assignment applied (installed)", marks[WS]).length > 0,
    );
    await waitFor(
      "edge-poll to adopt",
      20_000,
      () => poll.logged("adopted the live chain", marks[POLL]).length > 0,
    );
    expect(ws.logged("reinstalling from the cache", marks[WS])).toHaveLength(1);
    expect(downloads(WS, marks[WS]!)).toEqual([]);
    for (const a of [ws, poll]) {
      expect(await bounce(a.veth, `resumed-${a.name}`, 10, a.veth.ipA, 10)).toHaveLength(10);
      // the allow-list came back with the cached assignment's map entries
      expect(await bounce(a.veth, `resumed-denied-${a.name}`, 10, "192.0.2.66")).toHaveLength(0);
    }
    await fleet.controller.start();
    for (const name of [WS, POLL]) await fleet.converged(name, "security", 3, 20_000);
  });

  it("stops cleanly on SIGTERM and leaves the chain forwarding", async () => {
    const poll = fleet.agent(POLL);
    expect(await poll.signal("SIGTERM")).toBe(0);
    expect(poll.logged("agent stopped; the chain stays installed (XDP keeps forwarding)")).not.toHaveLength(
      0,
    );
    expect(await bounce(poll.veth, "after-stop", 10, poll.veth.ipA, 10)).toHaveLength(10);
  });
});
