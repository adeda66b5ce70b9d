import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { describeKernel, exchangeFrames, udpFrame, type VethPair } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { readRecord } from "../src/record";
import { builtChainFile, install, repoRoot, vethFixture } from "./helpers";

/** Resolves when the child prints READY; rejects with its stderr if it exits first. */
function waitReady(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`installer child not ready after ${timeoutMs} ms: ${err}`)),
      timeoutMs,
    );
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("READY\n")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`installer child exited with ${code}: ${err}`));
    });
  });
}

describeKernel("installer: the installing process dies, XDP keeps forwarding, a new process adopts", () => {
  const fixture = vethFixture("iad");
  const { state } = fixture;
  let veth: VethPair;
  let child: ChildProcess | undefined;
  const target = () => ({ iface: veth.ifB, netns: veth.nsB });

  beforeAll(async () => {
    veth = fixture.veth;
    await builtChainFile("security.toml"); // warm the NF cache so the child starts fast
  });
  // before the fixture's own teardown (vitest runs afterAll hooks last-registered first)
  afterAll(() => {
    child?.kill("SIGKILL");
  });

  it("survives SIGKILL of the installer and is adopted without a second attach", async () => {
    // node itself (not the tsx wrapper, which would leave its node child running on SIGKILL)
    child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(__dirname, "fixtures", "install-child.ts"),
        path.join(repoRoot, "chains", "security.toml"),
        veth.ifB,
        veth.nsB,
        state.dir,
        veth.ipA,
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: repoRoot },
    );
    await waitReady(child, 120_000);
    const base = { dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB, srcIp: veth.ipA };
    const normal = (tag: string) => {
      const f = udpFrame({ ...base, payload: Buffer.from(tag) });
      f[23] = 1; // not TCP/UDP: stays in XDP
      return f;
    };
    /** n new UDP flows: each first packet goes to DPI in the workers */
    const viaWorkers = (tag: string, n: number, port: number) =>
      Array.from({ length: n }, (_, i) =>
        udpFrame({ ...base, srcPort: port + i, payload: Buffer.from(tag) }),
      );
    const send = (frames: Buffer[], tag: string, expectN?: number) =>
      exchangeFrames(veth.nsA, veth.ifA, {
        send: frames,
        pps: 1000,
        listenMs: 600,
        match: Buffer.from(tag),
        ...(expectN ? { expect: expectN } : {}),
      });

    expect((await send([normal("t-pre")], "t-pre", 1)).received).toHaveLength(1);
    expect((await send(viaWorkers("t-pre-u", 5, 20_000), "t-pre-u", 5)).received).toHaveLength(5);

    child.kill("SIGKILL");
    await new Promise((r) => child!.once("exit", r));
    child = undefined;

    // XDP forwards on: the root program is attached and every map and program is pinned
    const afterKill = await send(
      Array.from({ length: 20 }, () => normal("t-dead")),
      "t-dead",
      20,
    );
    expect(afterKill.received).toHaveLength(20);
    // …but userland died with the process: upcalled frames find no socket
    expect((await send(viaWorkers("t-dead-u", 5, 21_000), "t-dead-u")).received).toHaveLength(0);

    // a fresh install must not attach a second chain; adoption takes over instead
    const built = await builtChainFile("security.toml");
    await expect(install(built, target(), { stateDir: state.dir })).rejects.toThrow(
      /already has chain "security" installed/,
    );
    const dp = await Dataplane.adopt(target(), { stateDir: state.dir, workers: { count: 1 } });
    try {
      expect(readRecord(target(), state.dir)!.pid).toBe(process.pid);
      expect((await send(viaWorkers("t-adopt-u", 5, 22_000), "t-adopt-u", 5)).received).toHaveLength(5);
      expect((await send([normal("t-adopt")], "t-adopt", 1)).received).toHaveLength(1);
      const ac = dp.counters().find((c) => c.name === "access-control")!;
      // XDP counters survived the crash: every allowed frame since the first install
      expect(ac.variants.Allowed).toBe(1 + 5 + 20 + 5 + 5 + 1);
      // the same plan again is a no-op reconfiguration of the adopted installation
      const same = dp.replan(built.plan, built.artifacts);
      expect(same.created).toEqual([]);
    } finally {
      dp.uninstall();
    }
  });
});
