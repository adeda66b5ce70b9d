/**
 * `galette trace --device` end to end: a real controller (TLS, SQLite, NF builds), a real
 * galette-agent with chains/security.toml installed on its veth, real frames, and the
 * `galette` CLI as an operator runs it. The pcapng file is read back by tshark.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { TracedFrame } from "@galette/protocol";
import { type CliRun, describeKernel, exchangeFrames, spawnGalette, udpFrame } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Fleet, lpmKeyHex, waitFor } from "./fleet";

describeKernel("galette trace --device: through the controller to a real agent", () => {
  const fleet = new Fleet();
  const DEVICE = "edge-trace";
  const work = mkdtempSync(path.join(tmpdir(), "galette-trace-device-"));
  let traceToken = "";
  const env = (token: string) => ({
    GALETTE_URL: fleet.controller.url,
    GALETTE_TOKEN: token,
    GALETTE_CA: path.join(fleet.controller.dataDir, "ca.crt"),
  });
  /** `galette trace --device DEVICE ARGS` with the trace token */
  const traceDevice = (args: string[]) =>
    spawnGalette(["trace", "--device", DEVICE, ...args], { env: env(traceToken) });
  /** `galette trace` on this machine, on the agent's own installation (same interface and state) */
  const traceLocal = (args: string[]) => {
    const agent = fleet.agent(DEVICE);
    return spawnGalette([
      "trace",
      "--iface",
      agent.iface,
      "--netns",
      agent.veth.nsB,
      "--state-dir",
      path.resolve(agent.bundleDir, agent.config.stateDir),
      ...args,
    ]);
  };
  /** Waits until the agent started the trace the controller asked for after log line `from`. */
  const agentTracing = (from: number) =>
    waitFor("the agent to start tracing", 60_000, () =>
      fleet.agent(DEVICE).logged("tracing for the controller", from).length > 0 ? true : undefined,
    );
  const untilPrinted = (run: CliRun, text: string) =>
    waitFor(`galette to print "${text}"`, 60_000, () => (run.stderr().includes(text) ? true : undefined));

  const veth = () => fleet.agent(DEVICE).veth;
  /** One UDP frame from `srcIp` (proto 1 when `notUdp`: weak-classifier calls it Normal), `pad` bytes after the tag */
  const frame = (tag: string, srcIp: string, srcPort: number, notUdp = false, pad = 0) => {
    const v = veth();
    const f = udpFrame({
      dstMac: v.macB,
      srcMac: v.macA,
      dstIp: v.ipB,
      srcIp,
      srcPort,
      payload: Buffer.concat([Buffer.from(tag), Buffer.alloc(pad, 0x2e)]),
    });
    if (notUdp) f[23] = 1;
    return f;
  };
  const send = (f: Buffer, tag: string, expectBack?: number) =>
    exchangeFrames(veth().nsA, veth().ifA, {
      send: [f],
      repeat: 1,
      pps: 1000,
      listenMs: 400,
      match: Buffer.from(tag),
      ...(expectBack !== undefined ? { expect: expectBack } : {}),
    });

  beforeAll(async () => {
    await fleet.start({ devices: [{ name: DEVICE, websocket: true, pollIntervalSeconds: 30 }] });
    for (const nf of ["access-control", "weak-classifier", "dpi"])
      expect((await fleet.publish(nf)).build).toBe("built");
    const { version } = await fleet.push("chains/security.toml");
    await fleet.setMapEntries("security", "access-control.allow_list", [
      { key: lpmKeyHex(veth().ipA), value: "01000000" },
    ]);
    await fleet.operator.assignChain({ chain: "security", devices: [DEVICE] });
    await fleet.converged(DEVICE, "security", version, 300_000);
    traceToken = (await fleet.operator.createToken({ name: "tracer", scopes: ["trace"] })).token;
  }, 900_000);
  afterAll(async () => {
    await fleet.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it("a token without the trace scope is refused", async () => {
    const refused = await spawnGalette(["trace", "--device", DEVICE, "--count", "1"], {
      env: env(fleet.token),
    }).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("lacks the trace scope this route needs (HTTP 403)");
  }, 60_000);

  it("--pcapng: each frame's bytes as sent and its path through the chain as the packet comment", async () => {
    const file = path.join(work, "device.pcapng");
    const mark = fleet.agent(DEVICE).logs.length;
    const run = traceDevice([
      "--filter",
      "ip",
      "--count",
      "3",
      "--timeout",
      "90",
      "--json",
      "--pcapng",
      file,
    ]);
    await agentTracing(mark);
    const sent = [
      { tag: "pc-denied", frame: frame("pc-denied", "192.0.2.66", 4001), back: undefined },
      { tag: "pc-normal", frame: frame("pc-normal", veth().ipA, 4002, true), back: 1 },
      // longer than the 128 bytes a trace keeps: the file has those and the length on the wire
      { tag: "pc-fresh", frame: frame("pc-fresh", veth().ipA, 4003, false, 200), back: 1 },
    ];
    for (const s of sent) expect((await send(s.frame, s.tag, s.back)).received).toHaveLength(s.back ?? 0);
    const res = await run.done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("count reached after 3 frame(s)");
    const printed = res.stdout
      .trim()
      .split("\n")
      .map((l) => TracedFrame.parse(JSON.parse(l)));
    const paths = [
      "access-control→drop",
      "access-control→weak-classifier→tx",
      "access-control→weak-classifier→dpi (userland)→tx",
    ];
    expect(printed.map((f) => f.summary)).toEqual(paths);
    // the frame bytes go to the file, not to stdout (no --with-data)
    for (const f of printed) expect(f.data).toBeUndefined();
    expect(printed.map((f) => f.len)).toEqual(sent.map((x) => x.frame.length));

    // read back by Wireshark's reader: one packet per traced frame, in order
    const packets = JSON.parse(
      execFileSync("tshark", ["-r", file, "-T", "json", "-x"], {
        encoding: "utf8",
        maxBuffer: 16 * 1024 * 1024,
      }),
    ) as Array<{ _source: { layers: Record<string, unknown> } }>;
    expect(packets).toHaveLength(3);
    packets.forEach((p, i) => {
      const layers = p._source.layers;
      const raw = Buffer.from((layers.frame_raw as [string])[0], "hex");
      const kept = sent[i]!.frame.subarray(0, 128);
      expect(raw.toString("hex"), `packet ${i + 1} bytes`).toBe(kept.toString("hex"));
      const meta = layers.frame as Record<string, unknown>;
      expect(Number(meta["frame.len"])).toBe(sent[i]!.frame.length);
      expect(Number(meta["frame.cap_len"])).toBe(kept.length);
      expect((meta["frame.interface_id_tree"] as Record<string, string>)["frame.interface_name"]).toBe(
        fleet.agent(DEVICE).iface,
      );
      const comment = (layers.pkt_comment as Record<string, string>)["frame.comment"]!;
      const [head, ...steps] = comment.split("\n");
      expect(head).toBe(`galette trace frame ${printed[i]!.frame}: ${paths[i]}`);
      expect(steps).toHaveLength(printed[i]!.path.length);
      printed[i]!.path.forEach((s, k) => {
        expect(steps[k]).toContain(`${s.nf} #${s.instance} [${s.tier}] ${s.variant} -> ${s.action}`);
      });
    });
    const [denied, normal, fresh] = packets.map(
      (p) => (p._source.layers.pkt_comment as Record<string, string>)["frame.comment"]!,
    );
    expect(denied).toMatch(/access-control #\d+ \[xdp\] Denied -> drop/);
    expect(normal).toMatch(/access-control #\d+ \[xdp\] Allowed -> tailcall weak-classifier/);
    expect(normal).toMatch(/weak-classifier #\d+ \[xdp\] Normal -> tx/);
    expect(fresh).toMatch(/weak-classifier #\d+ \[xdp\] Suspicious -> upcall dpi/);
    expect(fresh).toMatch(/dpi #\d+ \[userland\] Clean -> tx/);
  }, 180_000);

  it("one trace at a time: a second --device trace, a local trace on its interface and a --device trace while a local one runs are refused, clearly", async () => {
    const mark = fleet.agent(DEVICE).logs.length;
    const first = traceDevice(["--filter", "ip", "--count", "1", "--timeout", "90"]);
    await agentTracing(mark);

    // the same device through the controller
    const second = await traceDevice(["--count", "1"]).done;
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`a trace is already running on device ${DEVICE} (HTTP 409)`);

    // the same installation from the device itself: the agent holds the interface's slot
    const local = await traceLocal(["--count", "1"]).done;
    expect(local.code).toBe(1);
    expect(local.stderr).toMatch(
      new RegExp(
        `a trace is already running on ${fleet.agent(DEVICE).iface}.* \\(pid \\d+\\); one tracer per interface`,
      ),
    );

    // the first one is untouched: it still gets its frame
    expect((await send(frame("one-a", veth().ipA, 4010, true), "one-a", 1)).received).toHaveLength(1);
    const firstRes = await first.done;
    expect(firstRes.code, firstRes.stderr).toBe(0);
    expect(firstRes.stdout).toContain("access-control→weak-classifier→tx");

    // a local tracer holds the slot: the device refuses the controller's trace and says why
    const holder = traceLocal(["--timeout", "90"]);
    await untilPrinted(holder, "galette trace: tracing");
    const refused = await traceDevice(["--count", "1", "--timeout", "20"]).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `device ${DEVICE}: a trace is already running on ${fleet.agent(DEVICE).iface}.* \\(pid ${holder.child.pid}\\); one tracer per interface`,
      ),
    );

    // a tracer that died without switching tracing off (SIGKILL) is replaced by the next one
    holder.child.kill("SIGKILL");
    await holder.done;
    const markNext = fleet.agent(DEVICE).logs.length;
    const next = traceDevice(["--filter", "ip", "--count", "1", "--timeout", "60", "--json"]);
    await agentTracing(markNext);
    await send(frame("one-b", "192.0.2.66", 4011), "one-b");
    const nextRes = await next.done;
    expect(nextRes.code, nextRes.stderr).toBe(0);
    expect(TracedFrame.parse(JSON.parse(nextRes.stdout)).summary).toBe("access-control→drop");
  }, 240_000);
});
