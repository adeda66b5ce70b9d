/**
 * The agent's systemd unit lists the capabilities the agent runs with. This runs the
 * installer (as the agent does: chain + AF_XDP worker process with a userland NF) with
 * exactly that bounding set, inside the device's network namespace (as a device's agent
 * is), and checks the chain forwards, DPI included; then without each one of them in turn,
 * and checks the install fails: the list is exact.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { queryXdp } from "@galette/xdp-native";
import { beforeAll, expect, it } from "vitest";
import { readRecord } from "../src/record";
import { devicePins } from "../src/spec";
import { builtChainFile, repoRoot, vethFixture } from "./helpers";

const unit = readFileSync(
  path.join(repoRoot, "apps", "sbc-agent", "systemd", "galette-agent.service"),
  "utf8",
);
const unitCaps = (unit.match(/^CapabilityBoundingSet=(.+)$/m)?.[1] ?? "").trim().split(/\s+/);
const child = path.join(__dirname, "fixtures", "install-child.ts");

describeKernel("the agent's systemd unit: exactly the capabilities it lists", () => {
  const fx = vethFixture("icap");
  // the child builds from the nf-build cache, warmed here with all privileges
  beforeAll(() => builtChainFile("security.toml").then(() => undefined), 300_000);

  /** Starts the installer with only `caps`; resolves once it forwards or has exited. */
  async function installWith(
    caps: string[],
  ): Promise<{ proc: ChildProcess; ready: boolean; stderr: string }> {
    const { veth, state } = fx;
    const bounding = ["-all", ...caps.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
    const proc = spawn(
      "nsenter",
      [
        `--net=/run/netns/${veth.nsB}`,
        "setpriv",
        `--bounding-set=${bounding}`,
        "--inh-caps=-all",
        "--",
        // node itself (not the tsx wrapper): the killed pid is the installer
        process.execPath,
        "--import",
        "tsx",
        child,
        path.join(repoRoot, "chains", "security.toml"),
        veth.ifB,
        "-",
        state.dir,
        veth.ipA,
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: repoRoot },
    );
    let stderr = "";
    proc.stderr!.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 60_000);
      proc.stdout!.on("data", (b: Buffer) => {
        if (b.toString().includes("READY")) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      proc.on("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    return { proc, ready, stderr };
  }

  /**
   * The installation the child makes from inside the device's namespace: scoped to the
   * interface alone (pins, record), its root attached there.
   */
  function leftovers(): string[] {
    const { veth, state } = fx;
    const target = { iface: veth.ifB };
    const pins = devicePins(target).dir;
    const xdp = queryXdp({ ifname: veth.ifB, netns: `/run/netns/${veth.nsB}` }).progId;
    return [
      ...(existsSync(pins) ? [`pins ${pins}`] : []),
      ...(readRecord(target, state.dir) ? [`record in ${state.dir}`] : []),
      ...(xdp !== 0 ? [`XDP program ${xdp} on ${veth.ifB}`] : []),
    ];
  }

  /** Stops the child (SIGTERM: it uninstalls) and checks it left nothing for the next test. */
  async function stop(proc: ChildProcess): Promise<void> {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.on("exit", r));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
      expect(proc.exitCode, "the installer's exit on SIGTERM").toBe(0);
    }
    expect(leftovers()).toEqual([]);
  }

  it("forwards the security chain, DPI in the unprivileged worker included, with exactly the unit's capabilities", async () => {
    expect(unitCaps).toEqual(expect.arrayContaining(["CAP_BPF", "CAP_NET_ADMIN"]));
    expect(unitCaps).not.toContain("CAP_SYS_ADMIN");
    expect(leftovers()).toEqual([]);
    const { proc, ready, stderr } = await installWith(unitCaps);
    try {
      expect(ready, stderr).toBe(true);
      const { veth } = fx;
      const base = { dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB, srcIp: veth.ipA };
      // a new UDP flow: its first frames go through DPI in the worker process, all come back
      const clean = await exchangeFrames(veth.nsA, veth.ifA, {
        send: [udpFrame({ ...base, srcPort: 1111, payload: Buffer.from("c-clean hello") })],
        repeat: 12,
        pps: 2000,
        listenMs: 800,
        match: Buffer.from("c-clean"),
        expect: 12,
      });
      expect(clean.received).toHaveLength(12);
      // a signature: DPI (userland) drops it
      const evil = await exchangeFrames(veth.nsA, veth.ifA, {
        send: [udpFrame({ ...base, srcPort: 2222, payload: Buffer.from("c-evil GALETTE-EVIL") })],
        repeat: 12,
        pps: 2000,
        listenMs: 800,
        match: Buffer.from("c-evil"),
      });
      expect(evil.received).toHaveLength(0);
    } finally {
      await stop(proc);
    }
  }, 120_000);

  it("the Debian package's unit grants the same set", () => {
    const packaged = readFileSync(
      path.join(repoRoot, "packaging", "debian", "galette-agent", "galette-agent.service"),
      "utf8",
    );
    const caps = (packaged.match(/^CapabilityBoundingSet=(.+)$/m)?.[1] ?? "").trim().split(/\s+/);
    expect(caps.sort()).toEqual([...unitCaps].sort());
    expect(packaged).toMatch(/^ProtectSystem=strict$/m);
  });

  it.each(unitCaps)(
    "does not install without %s",
    async (missing) => {
      // on a clean interface: the install fails for want of the capability, nothing else
      expect(leftovers()).toEqual([]);
      const { proc, ready, stderr } = await installWith(unitCaps.filter((c) => c !== missing));
      try {
        expect(ready, stderr).toBe(false);
        expect(stderr).not.toMatch(/already has chain/);
      } finally {
        await stop(proc);
      }
    },
    120_000,
  );
});
