import { execFile } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createVethPair, describeKernel, exchangeFrames, nsRun, type VethPair } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import {
  ActionKind,
  galetteAction,
  NfLibraryError,
  netnsPath,
  u32,
  WorkerCrashError,
  WorkerError,
  WorkerPool,
  type WorkerPoolOptions,
  workerExecutablePath,
} from "../src/index";
import { macOf, seqOf, testFrames } from "./frames";

/** Steering bytes that make the C NF misbehave (see test/nf/macswap_nf.c). */
const BAD_LENGTH = 0x40;
const BAD_VARIANT = 0x80;

import { actionTable, compileBpf, compileNf, testCleanups, testMap, upcallDevice, waitFor } from "./helpers";

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

const cleanups = testCleanups();
const { defer, veth } = cleanups;

let shim: string;
let nfLib: string;
let nfLibWrongAbi: string;
let hostileLib: string;
beforeAll(async () => {
  [shim, nfLib, nfLibWrongAbi, hostileLib] = await Promise.all([
    compileBpf("nf_shim.bpf.c"),
    compileNf("macswap_nf.c"),
    compileNf("macswap_nf.c", 99),
    compileNf("hostile_nf.c"),
  ]);
});

/**
 * Device: root -> instance 1 (XDP shim, variant 0 upcalls to native instance 2) ->
 * AF_XDP workers running the C NF library as instances 2 and 3. The C NF swaps MACs,
 * records each frame's sequence number in its map, and returns the frame's variant byte:
 *   instance 2: 0 tx, 1 drop, 2 pass, 3 abort, 4 -> instance 3, 5 -> instance 3
 *   instance 3: 4 tx (swapped twice), 5 -> instance 2 (a cycle: hop limit)
 */
async function device(tag: string, library = nfLib, queues?: number) {
  const v = await veth(tag, queues ? { queues } : {});
  const { netns, xsks, xskCount, upcallerActions } = upcallDevice(cleanups, v, shim, "gal_w");

  const act2 = actionTable(cleanups, "gal_w_act2");
  const act3 = actionTable(cleanups, "gal_w_act3");
  const t2 = act2.typed(u32, galetteAction);
  t2.set(0, { kind: ActionKind.tx, arg: 0 });
  t2.set(1, { kind: ActionKind.drop, arg: 0 });
  t2.set(2, { kind: ActionKind.pass, arg: 0 });
  t2.set(3, { kind: ActionKind.abort, arg: 0 });
  t2.set(4, { kind: ActionKind.tailcall, arg: 3 });
  t2.set(5, { kind: ActionKind.upcall, arg: 3 });
  const t3 = act3.typed(u32, galetteAction);
  t3.set(4, { kind: ActionKind.tx, arg: 0 });
  t3.set(5, { kind: ActionKind.upcall, arg: 2 });
  const seen = testMap(cleanups, "hash", "gal_w_seen", 4096, 1);

  const options = (extra: Partial<WorkerPoolOptions> = {}): WorkerPoolOptions => ({
    ifname: v.ifB,
    netns,
    workers: 2,
    mode: "blocking",
    xskMap: xsks,
    xskCountMap: xskCount,
    instances: [
      { id: 1, actions: upcallerActions },
      { id: 2, actions: act2, library, maps: [seen] },
      { id: 3, actions: act3, library, maps: [seen] },
    ],
    ...extra,
  });
  const start = async (extra: Partial<WorkerPoolOptions> = {}) => {
    const pool = await WorkerPool.start(options(extra));
    defer(() => pool.stop());
    return pool;
  };
  return { v, xsks, xskCount, act2, seen, start, options };
}

/** Open AF_XDP sockets in a namespace (the XDP row of /proc/net/protocols; ss --xdp needs
 * CONFIG_XDP_SOCKETS_DIAG, which this kernel lacks). */
async function xdpSockets(ns: string): Promise<number> {
  const { stdout } = await nsRun(ns, "cat", ["/proc/net/protocols"]);
  const row = stdout.split("\n").find((l) => l.startsWith("XDP "));
  if (!row) throw new Error(`no XDP row in /proc/net/protocols of ${ns}`);
  return Number(row.trim().split(/\s+/)[2]);
}

/**
 * `n` frames over 64 flows (UDP source ports 4000-4063) from A to B: the sender's flow hash
 * picks the TX queue, and veth delivers on the RX queue with that number.
 */
function exchangeSpread(v: VethPair, n: number, firstSeq = 0) {
  const { frames, tag } = testFrames(v, n, () => 0, firstSeq);
  for (const [i, f] of frames.entries()) f.writeUInt16BE(4000 + (i % 64), 34);
  return exchangeFrames(v.nsA, v.ifA, { send: frames, match: tag, expect: n, listenMs: 3000 });
}

describeKernel("xdp-native AF_XDP worker pool", () => {
  it.each(["blocking", "busy-poll"] as const)(
    "%s workers run upcalled frames through native NFs to completion and count every frame",
    async (mode) => {
      const d = await device(mode === "blocking" ? "wb" : "wp");
      const pool = await d.start({ mode });
      expect(await xdpSockets(d.v.nsB)).toBe(2);
      expect(d.xskCount.typed(u32, u32).get(0)).toBe(2);

      const n = 200;
      // variants: 0 tx x n, then a few each of drop, pass, abort, two-NF path, cycle
      const extra = [1, 1, 2, 2, 2, 3, 4, 4, 4, 4, 5, BAD_LENGTH, BAD_VARIANT];
      const { frames, tag } = testFrames(d.v, n + extra.length, (seq) => (seq < n ? 0 : extra[seq - n]!));
      const got = await exchangeFrames(d.v.nsA, d.v.ifA, {
        send: frames,
        match: tag,
        expect: n + 4,
        listenMs: 3000,
      });

      const back = got.received;
      expect(back).toHaveLength(n + 4);
      const swapped = back.filter((f) => seqOf(f) < n);
      expect(swapped).toHaveLength(n);
      for (const f of swapped) {
        expect(macOf(f, 0)).toBe(d.v.macA);
        expect(macOf(f, 6)).toBe(d.v.macB);
      }
      // variant 4 went through instance 2 and 3: swapped twice
      for (const f of back.filter((f) => seqOf(f) >= n)) expect(macOf(f, 0)).toBe(d.v.macB);
      expect(new Set(back.map(seqOf)).size).toBe(n + 4);

      const total = n + extra.length;
      expect(await waitFor(() => pool.stats().totals.rx === total)).toBe(true);
      const s = pool.stats();
      expect(s.totals).toMatchObject({ rx: total, tx: n + 4, drop: 2, passUnsupported: 3, abort: 1 });
      const perWorker = (k: "hopLimit" | "badPacket" | "badVariant" | "nfCalls") =>
        s.workers.reduce((a, w) => a + w[k], 0);
      expect(perWorker("hopLimit")).toBe(1);
      expect(perWorker("badPacket")).toBe(1);
      expect(perWorker("badVariant")).toBe(1);
      expect(s.totals.tx + s.totals.dropped).toBe(total);
      // the random XSKMAP slot spreads frames over both workers
      for (const w of s.workers) {
        expect(w.state).toBe("running");
        expect(w.rx).toBeGreaterThan(0);
        expect(w.kernel).toMatchObject({ rxInvalidDescs: 0, txInvalidDescs: 0 });
      }
      const inst2 = s.instances.find((i) => i.id === 2)!;
      const inst3 = s.instances.find((i) => i.id === 3)!;
      // the cycle frame alternates 2 -> 3 -> 2 ... for 64 NF calls (32 each), then hits the limit
      expect(inst2.variants.slice(0, 6)).toEqual([n + 1, 2, 3, 1, 4, 32]); // +1: BAD_LENGTH returns 0
      expect(inst3.variants[5]).toBe(32);
      expect(inst3.variants[4]).toBe(4);
      expect(inst2.calls).toBe(n + extra.length - 1 + 32);
      expect(inst3.calls).toBe(4 + 32);
      expect(perWorker("nfCalls")).toBe(inst2.calls + inst3.calls);
      expect(inst2.nanoseconds).toBeGreaterThan(0);
      expect(s.instances.find((i) => i.id === 1)!.calls).toBe(0); // XDP-only instance
      // the NF saw every frame through the map fd it was given
      expect(d.seen.keys()).toHaveLength(total);

      pool.stop();
      expect(pool.running).toBe(false);
      expect(pool.lastStats?.totals.rx).toBe(total);
      expect(pool.lastStats?.workers.every((w) => w.state === "stopped")).toBe(true);
      expect(await xdpSockets(d.v.nsB)).toBe(0);
      expect(d.xskCount.typed(u32, u32).get(0)).toBe(0);
    },
  );

  it.each([4, 2])(
    "serves every RX queue of a 4-queue port with %i worker threads, each frame upcalled to its own queue's socket",
    async (workers) => {
      const d = await device(`wq${workers}`, nfLib, 4);
      const pool = await d.start({ workers });
      // a socket per (queue, worker), the layout published for XDP
      expect(await xdpSockets(d.v.nsB)).toBe(4 * workers);
      const count = d.xskCount.typed(u32, u32);
      expect([0, 1, 2, 3].map((k) => count.get(k))).toEqual([workers, 0, 4, 0]);

      const n = 256;
      const got = await exchangeSpread(d.v, n);
      expect(new Set(got.received.map(seqOf)).size).toBe(n);
      expect(got.received).toHaveLength(n);
      expect(await waitFor(() => pool.stats().totals.tx === n)).toBe(true);
      const s = pool.stats();
      expect(s.totals).toMatchObject({ rx: n, tx: n, drop: 0 });
      // the spread happened: every queue received frames, and every frame is accounted for
      const perQueue = s.rxPerQueue![0]!;
      expect(perQueue).toHaveLength(4);
      for (const q of perQueue) expect(q).toBeGreaterThan(0);
      expect(perQueue.reduce((a, b) => a + b, 0)).toBe(n);
      for (const w of s.workers) {
        expect(w.state).toBe("running");
        expect(w.kernel).toMatchObject({ rxInvalidDescs: 0, txInvalidDescs: 0, rxDropped: 0 });
      }
      expect(d.seen.keys()).toHaveLength(n);
      pool.stop();
      expect(await xdpSockets(d.v.nsB)).toBe(0);
      expect(count.get(0)).toBe(0);
    },
  );

  it("serves only the queues asked for, and refuses a socket count map too small for the queues", async () => {
    const d = await device("wqo", nfLib, 4);
    const small = testMap(cleanups, "array", "gal_w_small", 2);
    await expect(d.start({ xskCountMap: small })).rejects.toThrow(/galette_xsk_count has 2 entries.*needs 4/);
    await expect(d.start({ queues: 17 })).rejects.toThrow(/queues must be an integer in \[1, 16\]/);
    const pool = await d.start({ queues: 1, xskCountMap: small });
    expect(await xdpSockets(d.v.nsB)).toBe(2);
    expect(pool.stats().rxPerQueue).toEqual([[0]]);
  });

  it("reloadActions relinks the userland path without restarting workers", async () => {
    const d = await device("wr");
    const pool = await d.start();
    const send = async (count: number, first: number) => {
      const { frames, tag } = testFrames(d.v, count, () => 0, first);
      return exchangeFrames(d.v.nsA, d.v.ifA, { send: frames, match: tag, expect: count, listenMs: 600 });
    };
    expect((await send(20, 0)).received).toHaveLength(20);
    d.act2.typed(u32, galetteAction).set(0, { kind: ActionKind.drop, arg: 0 });
    // the map changed, but workers still use their snapshot until told
    expect((await send(10, 100)).received).toHaveLength(10);
    expect(pool.reloadActions()).toBe(2);
    expect((await send(10, 200)).received).toHaveLength(0);
    expect(await waitFor(() => pool.stats().totals.drop === 10)).toBe(true);
    expect(pool.stats().workers.every((w) => w.generation === 2)).toBe(true);
  });

  it("rejects a bad NF library before creating sockets, names it, and keeps the process alive", async () => {
    const d = await device("we");
    const bad = d.options({ instances: [{ id: 2, actions: d.act2, library: "/nonexistent/libgal_nf.so" }] });
    let err: unknown;
    try {
      await WorkerPool.start(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WorkerError);
    expect(err).toBeInstanceOf(NfLibraryError);
    expect(err).toMatchObject({ instance: 2, library: "/nonexistent/libgal_nf.so", worker: -1 });
    expect((err as WorkerError).message).toMatch(
      /NF instance 2 library \/nonexistent\/libgal_nf.so: dlopen failed: .*no such file/i,
    );
    expect((err as WorkerError).code).toBe("ENOENT");
    expect(await xdpSockets(d.v.nsB)).toBe(0);
    expect(d.xskCount.typed(u32, u32).get(0)).toBe(0);

    await expect(
      WorkerPool.start(d.options({ instances: [{ id: 2, actions: d.act2, library: nfLibWrongAbi }] })),
    ).rejects.toThrow(/ABI version 99, this worker speaks 1/);

    // the interface and queue are free again: a good pool starts and forwards
    const pool = await d.start({ workers: 1 });
    const { frames, tag } = testFrames(d.v, 5);
    expect(
      (await exchangeFrames(d.v.nsA, d.v.ifA, { send: frames, match: tag, expect: 5, listenMs: 1000 }))
        .received,
    ).toHaveLength(5);
    expect(pool.stats().totals.tx).toBe(5);
  });

  it.each(["blocking", "busy-poll"] as const)(
    "lets Node exit normally with a %s pool still running",
    async (mode) => {
      const v = await createVethPair("wx");
      defer(() => v.cleanup());
      const tsx = join(here, "..", "..", "..", "node_modules", ".bin", "tsx");
      const { stdout } = await execFileP(
        tsx,
        [join(here, "fixtures", "exit-with-running-pool.ts"), v.ifB, netnsPath(v.nsB), mode],
        {
          timeout: 30_000,
        },
      );
      expect(JSON.parse(stdout)).toEqual({ started: true, workers: ["running", "running"] });
      expect(await xdpSockets(v.nsB)).toBe(0);
    },
  );

  it("rejects bad configuration with the option and the problem named", async () => {
    const d = await device("wc");
    await expect(WorkerPool.start(d.options({ frameCount: 1000 }))).rejects.toThrow(
      /frameCount must be a power of two, got 1000/,
    );
    await expect(WorkerPool.start(d.options({ workers: 65 }))).rejects.toThrow(
      /workers must be an integer in \[1, 64\]/,
    );
    await expect(WorkerPool.start(d.options({ xskMap: d.xskCount }))).rejects.toThrow(/is not an XSKMAP/);
    await expect(WorkerPool.start(d.options({ ifname: "gal-nope0" }))).rejects.toThrow(
      /RX queue count of gal-nope0.*ENODEV/,
    );
    await expect(WorkerPool.start(d.options({ instances: [{ id: 2, actions: d.seen }] }))).rejects.toThrow(
      /action table of instance 2 must be an ARRAY u32 -> struct galette_action/,
    );
    expect(await xdpSockets(d.v.nsB)).toBe(0);
  });
});

/** Steering bytes of test/nf/hostile_nf.c. */
const HOSTILE = { crash: 0xc1, shadow: 0xc2, socket: 0xc3, exec: 0xc4, flood: 0xc5, mapNew: 0xc6 } as const;
const PROBE_KEY = 0xfffffff0;

describeKernel("xdp-native NF worker process: isolation and supervision", () => {
  /** Sends `count` normal frames (variant 0) from `first` and expects every one back once. */
  async function flows(d: Awaited<ReturnType<typeof device>>, count: number, first: number) {
    const { frames, tag } = testFrames(d.v, count, () => 0, first);
    const got = await exchangeFrames(d.v.nsA, d.v.ifA, {
      send: frames,
      match: tag,
      expect: count,
      listenMs: 2000,
    });
    expect(new Set(got.received.map(seqOf)).size).toBe(count);
    expect(got.received).toHaveLength(count);
  }
  /** Sends one marked frame; it must not come back. */
  async function hostile(d: Awaited<ReturnType<typeof device>>, steer: number, seq: number) {
    const { frames, tag } = testFrames(d.v, 1, () => steer, seq);
    const got = await exchangeFrames(d.v.nsA, d.v.ifA, {
      send: frames,
      match: tag,
      expect: 1,
      listenMs: 300,
    });
    expect(got.received).toHaveLength(0);
  }

  it("runs NF code as an unprivileged, confined process that this process never maps", async () => {
    const d = await device("wi", hostileLib);
    const pool = await d.start();
    const pid = pool.workerPid!;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (k: string) => status.match(new RegExp(`^${k}:\\s*(.*)$`, "m"))?.[1]?.trim();
    const ids = field("Uid")!.split(/\s+/).map(Number);
    expect(ids.every((id) => id === ids[0] && id !== 0)).toBe(true);
    expect(
      field("Gid")!
        .split(/\s+/)
        .map(Number)
        .every((g) => g !== 0),
    ).toBe(true);
    for (const k of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
      expect(field(k)).toBe("0000000000000000");
    expect(field("NoNewPrivs")).toBe("1");
    expect(field("Seccomp")).toBe("2");
    // it holds only what it was given: its pipes, control socket, AF_XDP sockets, the UMEM
    // and counter memfds, its eventfd and the NF's map fds (nothing the agent opened)
    const fds = readdirSync(`/proc/${pid}/fd`).map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`));
    for (const target of fds)
      expect(target).toMatch(
        /^(pipe:|socket:|anon_inode:\[eventfd\]|anon_inode:bpf-map|\/memfd:galette-|\/dev\/null)/,
      );
    expect(readFileSync("/proc/self/maps", "utf8")).not.toContain(basename(hostileLib));
    expect(readFileSync(`/proc/${pid}/maps`, "utf8")).toContain(basename(hostileLib));
    await flows(d, 20, 0);
    // The library's constructor ran on the worker's control thread and could not read a
    // world-readable file outside its directory: Landlock refused it (EACCES = 13).
    const probe = d.seen.lookup(Buffer.from(new Uint32Array([PROBE_KEY]).buffer));
    expect(probe?.[0]).toBe(13);
  });

  it("restarts a worker whose NF segfaults within 1 s, counts the crash and the lost frame, backs off when it repeats", async () => {
    const d = await device("ws", hostileLib);
    const reported: WorkerError[] = [];
    const pool = await d.start({ onError: (e) => reported.push(e) });
    await flows(d, 50, 0);
    const firstPid = pool.workerPid;

    await hostile(d, HOSTILE.crash, 1000);
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    const h = pool.health();
    expect(h.lastCrash).toBeInstanceOf(WorkerCrashError);
    expect(h.lastCrash).toMatchObject({ signal: "SIGSEGV", instances: [2], code: "ECRASH" });
    expect(h.lastCrash!.message).toMatch(/killed by SIGSEGV while running NF instance 2/);
    expect(h.crashesByInstance).toEqual({ 2: 1 });
    expect(h.restarts).toBe(1);
    expect(h.lastRestartMs).toBeLessThan(1000);
    // the frame the NF crashed on died with the worker and was counted; its UMEM frame is back
    expect(h.framesLostInCrashes).toBeGreaterThanOrEqual(1);
    expect(pool.workerPid).not.toBe(firstPid);
    expect(reported.map((e) => e.name)).toEqual(["WorkerCrashError"]);
    await flows(d, 50, 100);

    // Three deaths in a row restart at once; the fourth within the window backs off.
    for (let i = 0; i < 3; i++) {
      await hostile(d, HOSTILE.crash, 1001 + i);
      expect(await waitFor(() => pool.health().crashes === 2 + i, 3000, 5)).toBe(true);
      if (i < 2) expect(await waitFor(() => pool.health().state === "running", 3000, 5)).toBe(true);
    }
    expect(reported.map((e) => (e as WorkerCrashError).restartInMs)).toEqual([0, 0, 0, 250]);
    expect(await waitFor(() => pool.health().state === "running", 3000, 5)).toBe(true);
    expect(pool.health().crashesByInstance).toEqual({ 2: 4 });
    // frames keep flowing, each exactly once, and no UMEM frame leaked over four crashes
    await flows(d, 200, 200);
    const s = pool.stats();
    expect(s.workers.every((w) => w.state === "running")).toBe(true);
    expect(s.totals.rx).toBe(s.totals.tx + s.totals.dropped + 4);
    expect(pool.health().framesLostInCrashes).toBe(4);
  });

  it("where the worker must keep CAP_BPF (kernels before 6.5), it keeps only that, and seccomp still refuses map creation", async () => {
    const d = await device("wb", hostileLib);
    const pool = await d.start({ keepCapBpf: "always" });
    expect(pool.health().keepsCapBpf).toBe(true);
    const status = readFileSync(`/proc/${pool.workerPid}/status`, "utf8");
    const capBpf = (1n << 39n).toString(16).padStart(16, "0");
    expect(status).toMatch(new RegExp(`^CapEff:\\s*${capBpf}$`, "m"));
    expect(status).toMatch(new RegExp(`^CapPrm:\\s*${capBpf}$`, "m"));
    await flows(d, 20, 0);
    await hostile(d, HOSTILE.mapNew, 500);
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    expect(pool.health().lastCrash).toMatchObject({ signal: "SIGSYS", instances: [2] });
    // on this kernel a worker without capabilities reaches its maps: it keeps nothing
    const plain = await (await device("wn", hostileLib)).start();
    expect(plain.health().keepsCapBpf).toBe(false);
  });

  it("restarts a worker killed from outside (SIGKILL); frames flow before and after", async () => {
    const d = await device("wo", hostileLib);
    const pool = await d.start();
    await flows(d, 20, 0);
    const pid = pool.workerPid!;
    process.kill(pid, "SIGKILL");
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    expect(pool.health().lastCrash).toMatchObject({ signal: "SIGKILL", instances: [] });
    expect(pool.health().lastCrash!.message).toMatch(/killed by SIGKILL outside NF code/);
    expect(pool.workerPid).not.toBe(pid);
    expect(pool.health().lastRestartMs).toBeLessThan(1000);
    // the kernel decides whether the new worker could take the sockets over (probed)
    const h = pool.health();
    expect(h.socketRebuilds).toBe(h.socketTakeover === "rebuild" ? 1 : 0);
    await flows(d, 20, 100);
  });

  it.each([
    ["--frame-size", "0", /--frame-size must be 2048 or 4096/],
    ["--frame-size", "3000", /--frame-size must be 2048 or 4096/],
    ["--frame-count", "100", /--frame-count must be a power of two >= 64/],
    ["--ring-size", "0", /--ring-size must be a power of two >= 64/],
  ] as const)("the worker refuses %s %s before it touches anything", async (flag, value, message) => {
    const run = execFileP(workerExecutablePath(), ["--uid", "65534", "--gid", "65534", flag, value], {
      env: {},
    });
    const err = (await run.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number; stdout?: string } | undefined;
    expect(err?.code).toBe(2);
    const line = JSON.parse(err!.stdout!.trim()) as { type: string; message: string };
    expect(line.type).toBe("fatal");
    expect(line.message).toMatch(message);
  });

  /** The AF_XDP sockets a worker holds (fds 6 onwards, one per thread and queue). */
  const xskInodes = (pid: number, count: number) =>
    Array.from({ length: count }, (_, i) => readlinkSync(`/proc/${pid}/fd/${6 + i}`));

  it("replaces the sockets of a worker killed while frames flow where they cannot be taken over (Linux 6.1, forced here): frames flow again, losses counted", async () => {
    const d = await device("wr", nfLib);
    const pool = await d.start({ socketTakeover: "rebuild" });
    expect(pool.health()).toMatchObject({ socketTakeover: "rebuild", socketRebuilds: 0 });
    await flows(d, 20, 0);
    const pid = pool.workerPid!;
    const before = xskInodes(pid, 2);
    expect(before.every((l) => l.startsWith("socket:"))).toBe(true);

    // 600 frames over 1.5 s; the worker dies once they flow. (On veth the new sockets bind
    // only once this receiver is done: the kernel keeps a closed socket's queue until every
    // frame the socket sent is freed, and the receiver's capture holds some.)
    const count = 600;
    const first = 10_000;
    const { frames, tag } = testFrames(d.v, count, () => 0, first);
    const rx0 = pool.stats().totals.rx;
    const exchange = exchangeFrames(d.v.nsA, d.v.ifA, { send: frames, match: tag, pps: 400, listenMs: 500 });
    expect(await waitFor(() => pool.stats().totals.rx >= rx0 + 40, 10_000, 5)).toBe(true);
    process.kill(pid, "SIGKILL");
    const got = await exchange;
    expect(await waitFor(() => pool.health().state === "running", 10_000, 5)).toBe(true);

    const h = pool.health();
    expect(h).toMatchObject({ crashes: 1, restarts: 1, socketRebuilds: 1, socketTakeover: "rebuild" });
    expect(h.lastCrash).toMatchObject({ signal: "SIGKILL" });
    // the new worker holds new sockets, in the dead one's XSKMAP slots
    const after = xskInodes(pool.workerPid!, 2);
    expect(after.some((l) => before.includes(l))).toBe(false);
    // frames came back before the kill, each at most once
    const seqs = got.received.map(seqOf);
    expect(seqs.length).toBeGreaterThan(0);
    expect(new Set(seqs).size).toBe(seqs.length);
    // what is counted as lost was lost: never a frame that came back
    const lost = got.sent - got.received.length;
    expect(h.framesLostInRebuilds + h.framesLostInCrashes).toBeLessThanOrEqual(lost);
    expect(h.framesLostInRebuilds).toBeGreaterThan(0);
    // frames flow through the NF again, each exactly once
    await flows(d, 100, 20_000);

    // and again: the replaced set is replaced in turn
    process.kill(pool.workerPid!, "SIGKILL");
    expect(
      await waitFor(() => pool.health().crashes === 2 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    expect(pool.health().socketRebuilds).toBe(2);
    await flows(d, 100, 30_000);
    // the kernel's per-thread socket counters carry on over the replacements
    expect(pool.stats().workers.every((w) => w.kernel !== undefined)).toBe(true);
  });

  it("replaces the sockets of every RX queue after a death: frames spread over 4 queues flow again, no socket left over", async () => {
    const d = await device("wm", nfLib, 4);
    const pool = await d.start({ socketTakeover: "rebuild", queues: 4 });
    const spread = async (first: number) => {
      const n = 128;
      const got = await exchangeSpread(d.v, n, first);
      expect(new Set(got.received.map(seqOf)).size).toBe(n);
    };
    await spread(0);
    const before = pool.stats().rxPerQueue![0]!;
    process.kill(pool.workerPid!, "SIGKILL");
    expect(
      await waitFor(() => pool.health().state === "running" && pool.health().restarts === 1, 10_000, 5),
    ).toBe(true);
    expect(pool.health().socketRebuilds).toBe(1);
    // 4 queues x 2 workers, the old ones all closed
    expect(await xdpSockets(d.v.nsB)).toBe(8);
    await spread(1000);
    const after = pool.stats().rxPerQueue![0]!;
    for (const [q, n] of after.entries()) expect(n).toBeGreaterThan(before[q]!);
    // the kernel's counters carry on over the replacement
    for (const w of pool.stats().workers)
      expect(w.kernel).toMatchObject({ rxInvalidDescs: 0, txInvalidDescs: 0 });
  });

  it("counts the frame an NF crashed on when the sockets are replaced (the dead worker's journal)", async () => {
    const d = await device("wj", hostileLib);
    const pool = await d.start({ socketTakeover: "rebuild" });
    await flows(d, 20, 0);
    await hostile(d, HOSTILE.crash, 1000);
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 10_000, 5),
    ).toBe(true);
    expect(pool.health()).toMatchObject({
      socketRebuilds: 1,
      framesLostInCrashes: 1,
      framesLostInRebuilds: 0,
    });
    expect(pool.health().lastCrash).toMatchObject({ signal: "SIGSEGV", instances: [2] });
    await flows(d, 50, 100);
    const s = pool.stats();
    expect(s.totals.rx).toBe(s.totals.tx + s.totals.dropped + 1);
  });

  it("kills a worker that floods this process's status channel, and carries on", async () => {
    const d = await device("wf", hostileLib);
    const pool = await d.start();
    await hostile(d, HOSTILE.flood, 500);
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    expect(pool.health().lastCrash).toMatchObject({ signal: "SIGKILL" });
    expect(pool.health().lastCrash!.message).toMatch(/status line longer than 65536 bytes/);
    await flows(d, 20, 100);
  });

  it.each([
    ["reads /etc/shadow", HOSTILE.shadow],
    ["opens a socket", HOSTILE.socket],
    ["execs a shell", HOSTILE.exec],
  ] as const)("kills and reports an NF that %s (seccomp), and carries on", async (_what, steer) => {
    const d = await device(`wk${steer.toString(16)}`, hostileLib);
    const pool = await d.start();
    await flows(d, 20, 0);
    await hostile(d, steer, 500);
    expect(
      await waitFor(() => pool.health().crashes === 1 && pool.health().state === "running", 3000, 5),
    ).toBe(true);
    expect(pool.health().lastCrash).toMatchObject({ signal: "SIGSYS", code: "ESECCOMP", instances: [2] });
    expect(pool.health().lastCrash!.message).toMatch(
      /seccomp: forbidden system call\) while running NF instance 2/,
    );
    await flows(d, 20, 100);
  });
});
