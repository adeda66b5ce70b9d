import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TracedFrame } from "@galette/protocol";
import {
  type CliRun,
  describeKernel,
  exchangeFrames,
  spawnGalette as galette,
  udpFrame,
  type VethPair,
} from "@galette/testkit";
import { BpfMap, decodeTraceConfig, encodeTraceConfig } from "@galette/xdp-native";
import { afterAll, beforeAll, expect, it } from "vitest";
import { devicePins } from "../src/spec";
import { tracePins } from "../src/trace-maps";
import { builtChainFile, lpmKeyV4, vethFixture } from "./helpers";

/** Waits until a tracer says it is tracing; throws if it ends first or stays silent for a minute. */
async function tracing(run: CliRun): Promise<void> {
  let ended = false;
  void run.done.then(() => {
    ended = true;
  });
  for (const end = Date.now() + 60_000; Date.now() < end && !ended; ) {
    if (run.stderr().includes("galette trace: tracing")) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`galette trace did not start tracing: ${run.stderr()}`);
}

describeKernel("galette trace (chains/security.toml on a veth)", () => {
  const fixture = vethFixture("itrc");
  const { state } = fixture;
  let veth: VethPair;
  let up: CliRun;
  const work = mkdtempSync(path.join(tmpdir(), "galette-trace-"));

  beforeAll(async () => {
    veth = fixture.veth;
    await builtChainFile("security.toml");
    const allow = `access-control.allow_list=${lpmKeyV4(veth.ipA).toString("hex")}:00000000`;
    up = galette(
      [
        "dataplane",
        "up",
        "--iface",
        veth.ifB,
        "--netns",
        veth.nsB,
        "--state-dir",
        state.dir,
        "--map-set",
        allow,
        "chains/security.toml",
      ],
      { timeoutMs: 400_000 },
    );
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (up.stdout().includes('chain "security"')) {
          clearInterval(t);
          resolve();
        }
      }, 50);
      void up.done.then((r) => {
        clearInterval(t);
        reject(new Error(`dataplane up ended: ${r.stderr}`));
      });
    });
  }, 300_000);

  afterAll(async () => {
    up?.child.kill("SIGTERM");
    await up?.done;
    rmSync(work, { recursive: true, force: true });
  });

  const base = () => ({ dstMac: veth.macB, srcMac: veth.macA, dstIp: veth.ipB });
  /** `galette trace ARGS` on the installation dataplane up made */
  const trace = (args: string[]) =>
    galette(["trace", "--iface", veth.ifB, "--netns", veth.nsB, "--state-dir", state.dir, ...args]);
  const send = (frame: Buffer, repeat: number, tag: string, expect?: number) =>
    exchangeFrames(veth.nsA, veth.ifA, {
      send: [frame],
      repeat,
      pps: 2000,
      listenMs: 400,
      match: Buffer.from(tag),
      ...(expect !== undefined ? { expect } : {}),
    });

  it("prints the path of a denied frame, of a cleared flow's frame and of a new clean flow's frame (--json)", async () => {
    // a flow DPI inspects and clears (INSPECT_PACKETS clean frames) before the trace starts
    const cleared = udpFrame({
      ...base(),
      srcIp: veth.ipA,
      srcPort: 1111,
      payload: Buffer.from("t-cleared"),
    });
    expect((await send(cleared, 8, "t-cleared", 8)).received).toHaveLength(8);

    const run = trace(["--filter", "udp", "--count", "3", "--json"]);
    await tracing(run);
    // not UDP: the filter leaves it out
    const icmpish = udpFrame({ ...base(), srcIp: veth.ipA, payload: Buffer.from("t-notudp") });
    icmpish[23] = 1;
    await send(icmpish, 1, "t-notudp", 1);
    await send(udpFrame({ ...base(), srcIp: "192.0.2.66", payload: Buffer.from("t-denied") }), 1, "t-denied");
    expect((await send(cleared, 1, "t-cleared", 1)).received).toHaveLength(1);
    const fresh = udpFrame({ ...base(), srcIp: veth.ipA, srcPort: 3333, payload: Buffer.from("t-fresh") });
    expect((await send(fresh, 1, "t-fresh", 1)).received).toHaveLength(1);

    const res = await run.done;
    expect(res.code, res.stderr).toBe(0);
    const frames = res.stdout
      .trim()
      .split("\n")
      .map((l) => TracedFrame.parse(JSON.parse(l)));
    expect(frames.map((f) => f.summary)).toEqual([
      "access-control→drop",
      "access-control→weak-classifier→tx",
      "access-control→weak-classifier→dpi (userland)→tx",
    ]);
    const [denied, allowed, clean] = frames as [TracedFrame, TracedFrame, TracedFrame];
    expect(denied.path).toMatchObject([
      { nf: "access-control", tier: "xdp", variant: "Denied", action: "drop" },
    ]);
    expect(denied.verdict).toBe("drop");
    expect(allowed.path).toMatchObject([
      {
        nf: "access-control",
        tier: "xdp",
        variant: "Allowed",
        action: "tailcall",
        target: "weak-classifier",
      },
      { nf: "weak-classifier", tier: "xdp", variant: "Normal", action: "tx" },
    ]);
    expect(clean.path).toMatchObject([
      {
        nf: "access-control",
        tier: "xdp",
        variant: "Allowed",
        action: "tailcall",
        target: "weak-classifier",
      },
      { nf: "weak-classifier", tier: "xdp", variant: "Suspicious", action: "upcall", target: "dpi" },
      { nf: "dpi", tier: "userland", variant: "Clean", action: "tx" },
    ]);
    for (const f of frames) {
      expect(f.iface).toBe(veth.ifB);
      expect(f.len).toBeGreaterThanOrEqual(42);
      expect(f.data).toBeUndefined();
      // timestamps: after arrival, in path order, within a second
      const t = f.path.map((s) => s.elapsedNs);
      expect(t).toEqual([...t].sort((a, b) => a - b));
      expect(t[0]).toBeGreaterThanOrEqual(0);
      expect(t.at(-1)).toBeLessThan(1e9);
    }
    // the frames are in the order they arrived
    expect(frames.map((f) => f.frame)).toEqual([...frames.map((f) => f.frame)].sort((a, b) => a - b));
  }, 120_000);

  it("writes pcapng with each frame's path as its packet comment (read back by tshark)", async () => {
    const file = path.join(work, "trace.pcapng");
    const run = trace(["--filter", "udp and port 4444", "--count", "2", "--pcapng", file]);
    await tracing(run);
    // another port: not traced
    await send(
      udpFrame({ ...base(), srcIp: veth.ipA, srcPort: 5555, payload: Buffer.from("t-other") }),
      1,
      "t-other",
      1,
    );
    await send(
      udpFrame({ ...base(), srcIp: "192.0.2.66", srcPort: 4444, payload: Buffer.from("t-pc1") }),
      1,
      "t-pc1",
    );
    await send(
      udpFrame({ ...base(), srcIp: veth.ipA, dstPort: 4444, payload: Buffer.from("t-pc2") }),
      1,
      "t-pc2",
      1,
    );
    const res = await run.done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain("access-control→drop");
    const fields = execFileSync(
      "tshark",
      ["-r", file, "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "frame.comment"],
      {
        encoding: "utf8",
      },
    )
      .trim()
      .split("\n");
    expect(fields).toHaveLength(2);
    expect(fields[0]).toMatch(/^4444\t\d+\tgalette trace frame \d+: access-control→drop/);
    expect(fields[1]).toMatch(
      /^\d+\t4444\tgalette trace frame \d+: access-control→weak-classifier→dpi \(userland\)→tx/,
    );
  }, 120_000);

  it("refuses a bad filter, a second tracer and an interface without a chain, clearly and without switching anything on", async () => {
    const bad = await trace(["--filter", "udp or tcp"]).done;
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('trace filter, column 5: "or" is not supported');

    const first = trace(["--timeout", "60"]);
    await tracing(first);
    const second = await trace(["--count", "1"]).done;
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/a trace is already running on .* \(pid \d+\); one tracer per interface/);
    first.child.kill("SIGTERM");
    const stopped = await first.done;
    expect(stopped.code).toBe(0);
    expect(stopped.stderr).toContain("stopped (SIGTERM)");

    // the slot is free again: the next tracer works
    const next = trace(["--count", "1", "--json"]);
    await tracing(next);
    await send(udpFrame({ ...base(), srcIp: "192.0.2.66", payload: Buffer.from("t-next") }), 1, "t-next");
    const res = await next.done;
    expect(res.code, res.stderr).toBe(0);
    expect(TracedFrame.parse(JSON.parse(res.stdout)).summary).toBe("access-control→drop");

    const none = await galette(["trace", "--iface", "nosuch0", "--state-dir", state.dir]).done;
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no chain is installed on nosuch0: nothing to trace");
  }, 120_000);

  it("a tracer that lost the slot (another one started at the same moment) stops, says so and leaves tracing to the holder", async () => {
    const first = trace(["--timeout", "60"]);
    await tracing(first);
    const key = Buffer.alloc(4);
    const cfg = BpfMap.openPinned(tracePins(devicePins({ iface: veth.ifB, netns: veth.nsB }).dir).cfg);
    try {
      const held = decodeTraceConfig(cfg.lookup(key)!);
      expect(held).toMatchObject({ on: true, owner: first.child.pid });
      // what the other tracer's start writes when both found the slot free
      cfg.update(key, encodeTraceConfig({ ...held, owner: process.pid }));
      const res = await first.done;
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(
        new RegExp(`the trace slot on ${veth.ifB}.* is now held by pid ${process.pid}; this trace stopped`),
      );
      expect(decodeTraceConfig(cfg.lookup(key)!)).toMatchObject({ on: true, owner: process.pid });
    } finally {
      const c = decodeTraceConfig(cfg.lookup(key)!);
      cfg.update(key, encodeTraceConfig({ ...c, on: false, owner: 0 }));
      cfg.close();
    }
  }, 120_000);
});
