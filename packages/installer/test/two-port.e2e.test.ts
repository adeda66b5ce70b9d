/**
 * Two-port forwarding, as an operator runs it: `pnpm galette dataplane up --ports P1,P2
 * chains/bridge.toml` inside the namespace holding both ports, hosts A and B on either
 * side. ping and TCP go through both ways (TTL decremented), counters match the frames
 * the hosts sent, and a signal to the command's PID removes the chain from both ports.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  createTwoPortTopology,
  describeKernel,
  inNs,
  nsRun,
  run,
  sleep,
  type TwoPortTopology,
} from "@galette/testkit";
import { queryXdp } from "@galette/xdp-native";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord } from "../src/record";
import { builtChainFile, builtChainText, install, quietLogger, repoRoot, stateDir } from "./helpers";
import { hostPackets, numberedUdp, sequenceProblems, tcpTransfer } from "./two-port-helpers";

interface Up {
  child: ChildProcess;
  stdout: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** `pnpm galette dataplane up --ports P1,P2 chains/bridge.toml` in the device namespace. */
function dataplaneUp(topo: TwoPortTopology): Up {
  const [nsenter, ...prefix] = inNs(topo.device);
  const child = spawn(
    nsenter!,
    [
      ...prefix,
      "pnpm",
      "galette",
      "dataplane",
      "up",
      "--ports",
      `${topo.p1},${topo.p2}`,
      "chains/bridge.toml",
    ],
    { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GALETTE_LOG: "warn" } },
  );
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), 150_000);
  return {
    child,
    stdout: () => stdout,
    done: new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        clearTimeout(killer);
        resolve({ code, signal, stdout, stderr });
      }),
    ),
  };
}

async function untilPrinted(up: Up, text: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!up.stdout().includes(text)) {
    if (up.child.exitCode !== null || up.child.signalCode !== null) {
      const r = await up.done;
      throw new Error(`dataplane up exited (${r.code ?? r.signal}) before printing ${text}:\n${r.stderr}`);
    }
    if (Date.now() > end) throw new Error(`dataplane up printed no ${text} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const attached = (topo: TwoPortTopology) =>
  [topo.p1, topo.p2].map((ifname) => queryXdp({ ifname, netns: `/run/netns/${topo.device}` }).progId);

/** The last counter line of decrement-ttl that `up` printed: {Next, Expired}. */
function lastCounts(stdout: string): { next: number; expired: number } {
  const lines = [...stdout.matchAll(/decrement-ttl\s+#\d+\s+xdp\s+Next=(\d+) Expired=(\d+)/g)];
  const last = lines.at(-1);
  if (!last) throw new Error(`no decrement-ttl counters in:\n${stdout}`);
  return { next: Number(last[1]), expired: Number(last[2]) };
}

/** Waits until neither port has an XDP program; returns how long that took. */
async function detachedWithin(topo: TwoPortTopology, sinceMs: number, limitMs: number): Promise<number> {
  for (;;) {
    const ms = Date.now() - sinceMs;
    if (attached(topo).every((id) => id === 0)) return ms;
    if (ms > limitMs) throw new Error(`still attached after ${ms} ms: ${attached(topo).join(", ")}`);
    await sleep(20);
  }
}

describeKernel("two ports: galette dataplane up --ports P1,P2 chains/bridge.toml", () => {
  let topo: TwoPortTopology;

  beforeAll(async () => {
    topo = await createTwoPortTopology("2p");
    await builtChainFile("bridge.toml"); // warm the build cache: `up` then starts quickly
  });

  afterAll(async () => {
    if (topo) {
      const target = { iface: topo.p1, peer: topo.p2 };
      if (readRecord(target)) Dataplane.remove(target);
      await topo.cleanup();
    }
  });

  it("forwards ping and TCP both ways with TTL decremented, counts every frame, SIGTERM removes it from both ports", async () => {
    const before = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    const up = dataplaneUp(topo);
    try {
      await untilPrinted(up, 'chain "bridge"');
      expect(attached(topo).every((id) => id !== 0)).toBe(true);

      for (const [from, to] of [
        [topo.a, topo.b],
        [topo.b, topo.a],
      ] as const) {
        const ping = await nsRun(from.ns, "ping", ["-c", "5", "-i", "0.05", "-W", "2", to.ip]);
        expect(ping.stdout).toContain("5 received");
        expect(ping.stdout).toMatch(/ttl=63/); // one hop through decrement-ttl
      }
      expect(await tcpTransfer(topo.a, topo.b, 5001, 2_000_000)).toBe("2000000");
      expect(await tcpTransfer(topo.b, topo.a, 5002, 2_000_000)).toBe("2000000");
      // TTL 1 expires in the chain: dropped, never reaches B
      const expired = await nsRun(topo.a.ns, "ping", [
        "-c",
        "3",
        "-i",
        "0.05",
        "-W",
        "1",
        "-t",
        "1",
        topo.b.ip,
      ]).catch((err: Error) => ({ stdout: err.message }));
      expect(expired.stdout).toContain("0 received");
      await sleep(300);
    } finally {
      const t0 = Date.now();
      up.child.kill("SIGTERM");
      const ms = await detachedWithin(topo, t0, 3000);
      expect(ms).toBeLessThan(3000);
    }
    const res = await up.done;
    expect(res.stderr).not.toMatch(/"level":50/);
    expect(res.code).toBe(0);
    expect(readRecord({ iface: topo.p1, peer: topo.p2 })).toBeUndefined();

    // Every frame a host sent went through the chain: forwarded (Next, received by the
    // other host) or expired (dropped). The final print comes after the last frame.
    const after = { a: await hostPackets(topo.a), b: await hostPackets(topo.b) };
    const sent = after.a.tx - before.a.tx + (after.b.tx - before.b.tx);
    const received = after.a.rx - before.a.rx + (after.b.rx - before.b.rx);
    const counts = lastCounts(res.stdout);
    expect(counts.expired).toBe(3);
    expect(counts.next + counts.expired).toBe(sent);
    expect(counts.next).toBe(received);
  });

  it("XDP forwarding through live reconfiguration: numbered datagrams both ways, none lost or duplicated", async () => {
    const state = stateDir();
    const target = { iface: topo.p1, peer: topo.p2, netns: topo.device };
    const bridge = await builtChainFile("bridge.toml");
    const renamed = await builtChainText(
      readFileSync(path.join(repoRoot, "chains", "bridge.toml"), "utf8")
        .replace("[functions.decrement-ttl]", '[functions.ttl]\npath = "nf-examples/decrement-ttl"')
        .replace('to = ["decrement-ttl"]', 'to = ["ttl"]')
        .replace('from = "decrement-ttl"', 'from = "ttl"'),
      "bridge.toml",
    );
    const dp = await install(bridge, target, { stateDir: state.dir, logger: quietLogger() });
    try {
      const count = 3000;
      const ab = await numberedUdp(topo.a, topo.b, 6101, count);
      const ba = await numberedUdp(topo.b, topo.a, 6102, count);
      await sleep(100);
      await dp.reconfigure(dp.replan(renamed.plan, renamed.artifacts));
      await sleep(100);
      await dp.reconfigure(dp.replan(bridge.plan, bridge.artifacts));
      await Promise.all([ab.sent, ba.sent]);
      const [gotAB, gotBA] = await Promise.all([ab.received, ba.received]);
      expect(sequenceProblems(gotAB, count)).toEqual([]);
      expect(sequenceProblems(gotBA, count)).toEqual([]);
    } finally {
      dp.uninstall();
      state.cleanup();
    }
  });

  it("a crashed up (SIGKILL) keeps forwarding on both ports; down --ports removes it from both", async () => {
    const up = dataplaneUp(topo);
    await untilPrinted(up, 'chain "bridge"');
    // the node process that runs the command (pnpm's child): killed, it uninstalls nothing
    // (SIGKILL to pnpm alone would make it notice and uninstall)
    const { stdout: children } = await run("pgrep", ["-P", String(up.child.pid)]);
    for (const pid of children.split("\n").filter(Boolean)) process.kill(Number(pid), "SIGKILL");
    await up.done;
    expect(attached(topo).every((id) => id !== 0)).toBe(true);
    const ping = await nsRun(topo.a.ns, "ping", ["-c", "2", "-i", "0.1", "-W", "2", topo.b.ip]);
    expect(ping.stdout).toContain("2 received");
    const [nsenter, ...prefix] = inNs(topo.device);
    const down = await run(
      nsenter!,
      [...prefix, "pnpm", "galette", "dataplane", "down", "--ports", `${topo.p1},${topo.p2}`],
      { cwd: repoRoot, timeoutMs: 60_000 },
    );
    expect(down.stdout).toContain(`removed the installation on ${topo.p1},${topo.p2}`);
    expect(attached(topo)).toEqual([0, 0]);
    expect(readRecord({ iface: topo.p1, peer: topo.p2 })).toBeUndefined();
  });

  it("SIGINT to its PID removes it from both ports too", async () => {
    const up = dataplaneUp(topo);
    await untilPrinted(up, 'chain "bridge"');
    expect(attached(topo).every((id) => id !== 0)).toBe(true);
    const t0 = Date.now();
    up.child.kill("SIGINT");
    expect(await detachedWithin(topo, t0, 3000)).toBeLessThan(3000);
    const res = await up.done;
    expect(res.stderr).not.toMatch(/"level":50/);
  });
});
