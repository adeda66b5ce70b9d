import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { describeKernel, exchangeFrames, sleep, type VethPair } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import {
  ActionKind,
  type BpfMap,
  GALETTE_MAX_INSTANCES,
  galetteAction,
  type NfInstanceConfig,
  NfLibraryError,
  u32,
  WorkerPool,
} from "../src/index";
import { macOf, seqOf, testFrames } from "./frames";
import { actionTable, compileBpf, compileNf, testCleanups, testMap, upcallDevice, waitFor } from "./helpers";

const cleanups = testCleanups();
const { defer, veth } = cleanups;

let shim: string;
let nfLib: string;
/** The same NF built as a separate file, so this file alone maps it and its unload is visible. */
let addedLib: string;
let nfLibWrongAbi: string;
beforeAll(async () => {
  [shim, nfLib, addedLib, nfLibWrongAbi] = await Promise.all([
    compileBpf("nf_shim.bpf.c"),
    compileNf("macswap_nf.c"),
    compileNf("macswap_nf.c", 1),
    compileNf("macswap_nf.c", 99),
  ]);
});

/** Whether the pool's worker process maps `path`; NF libraries never enter this process. */
const libraryMapped = (pool: WorkerPool, path: string) => {
  expect(readFileSync("/proc/self/maps", "utf8")).not.toContain(path);
  const pid = pool.workerPid;
  // the worker maps its read-only copy of the library, named after the original
  return pid !== undefined && readFileSync(`/proc/${pid}/maps`, "utf8").includes(basename(path));
};

/**
 * root -> instance 1 (XDP shim, variant 0 upcalls to 2) -> workers: instance 2 (C NF, swaps
 * MACs, tx). Instance 3 (the same NF from another file) is what the tests add and remove:
 * re-pointing 2's variant 0 to it makes frames come back swapped twice. Each userland
 * instance records the sequence numbers it saw in its own map.
 */
async function device(tag: string, mode: "blocking" | "busy-poll" = "blocking") {
  const v = await veth(tag);
  const { netns, xsks, xskCount, upcallerActions: act1 } = upcallDevice(cleanups, v, shim, "gal_u");
  const act2 = actionTable(cleanups, "gal_u_act2").typed(u32, galetteAction);
  const act3Map = actionTable(cleanups, "gal_u_act3");
  act2.set(0, { kind: ActionKind.tx, arg: 0 });
  act3Map.typed(u32, galetteAction).set(0, { kind: ActionKind.tx, arg: 0 });
  const seen2 = testMap(cleanups, "hash", "gal_u_seen2", 16384, 1);
  const seen3 = testMap(cleanups, "hash", "gal_u_seen3", 16384, 1);

  const base: NfInstanceConfig[] = [
    { id: 1, actions: act1 },
    { id: 2, actions: act2.map, library: nfLib, maps: [seen2] },
  ];
  const withAdded: NfInstanceConfig[] = [
    ...base,
    { id: 3, actions: act3Map, library: addedLib, maps: [seen3] },
  ];
  // Each change is one table: the re-pointed action and the instance set it needs.
  const addThird = () => {
    act2.set(0, { kind: ActionKind.upcall, arg: 3 });
    return pool.updateInstances(withAdded);
  };
  const removeThird = () => {
    act2.set(0, { kind: ActionKind.tx, arg: 0 });
    return pool.updateInstances(base);
  };
  const pool = await WorkerPool.start({
    ifname: v.ifB,
    netns,
    workers: 2,
    mode,
    xskMap: xsks,
    xskCountMap: xskCount,
    instances: base,
  });
  defer(() => pool.stop());

  /** Paced frames A -> B -> A, all variant 0; resolves with what came back. */
  const traffic = (count: number, pps: number, firstSeq = 0) => {
    const { frames, tag } = testFrames(v, count, () => 0, firstSeq);
    return exchangeFrames(v.nsA, v.ifA, { send: frames, match: tag, expect: count, listenMs: 2000, pps });
  };
  const seqs = (m: BpfMap) => new Set(m.keys().map((k) => k.readUInt32LE(0)));
  return { v, pool, traffic, addThird, removeThird, base, withAdded, act2, seen2, seen3, seqs };
}

/** Every sequence number first..first+count-1 exactly once; returns the twice-swapped ones. */
function checkExactlyOnce(received: Buffer[], count: number, v: VethPair, first = 0): Set<number> {
  const bySeq = new Map<number, number>();
  for (const f of received) bySeq.set(seqOf(f), (bySeq.get(seqOf(f)) ?? 0) + 1);
  const missing = [...Array(count).keys()].map((i) => first + i).filter((s) => !bySeq.has(s));
  const duplicated = [...bySeq].filter(([, n]) => n > 1).map(([s]) => s);
  expect({ missing: missing.slice(0, 20), missingCount: missing.length, duplicated }).toEqual({
    missing: [],
    missingCount: 0,
    duplicated: [],
  });
  expect(received).toHaveLength(count);
  const twice = new Set<number>();
  for (const f of received) {
    // swapped once (instance 2): dst = A; swapped again by instance 3: dst = B
    const dst = macOf(f, 0);
    expect([v.macA, v.macB]).toContain(dst);
    if (dst === v.macB) twice.add(seqOf(f));
  }
  return twice;
}

describeKernel("xdp-native AF_XDP worker pool: live instance updates", () => {
  it("adds a userland instance, re-points to it and removes it under traffic: every frame back exactly once", async () => {
    const d = await device("ua");
    const total = 2400;
    const sending = d.traffic(total, 800);
    expect(await waitFor(() => d.pool.stats().totals.rx >= 200, 10_000, 5)).toBe(true);
    expect(libraryMapped(d.pool, addedLib)).toBe(false);

    const added = await d.addThird();
    expect(added).toEqual({ generation: 2, added: [3], removed: [], kept: [1, 2] });
    expect(libraryMapped(d.pool, addedLib)).toBe(true);
    // the new path is live: frames reach instance 3
    expect(
      await waitFor(() => (d.pool.stats().instances.find((i) => i.id === 3)?.calls ?? 0) >= 100, 10_000, 5),
    ).toBe(true);

    // Failing updates under traffic: rejected on this thread, pool untouched.
    const missing = "/nonexistent/libgal_added.so";
    const bad = await d.pool
      .updateInstances([...d.base, { id: 4, actions: d.act2.map, library: missing }])
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(NfLibraryError);
    expect(bad).toMatchObject({ instance: 4, library: missing, code: "ENOENT" });
    expect((bad as Error).message).toMatch(
      /NF instance 4 library \/nonexistent\/libgal_added.so: dlopen failed/,
    );
    await expect(
      d.pool.updateInstances([...d.base, { id: 4, actions: d.act2.map, library: nfLibWrongAbi }]),
    ).rejects.toThrow(
      new RegExp(`NF instance 4 library ${nfLibWrongAbi}: ABI version 99, this worker speaks 1`),
    );
    expect(d.pool.stats().generation).toBe(2);
    expect(d.pool.instances.map((i) => i.id)).toEqual([1, 2, 3]);
    const callsBefore = d.pool.stats().instances.find((i) => i.id === 3)!.calls;
    expect(
      await waitFor(() => d.pool.stats().instances.find((i) => i.id === 3)!.calls > callsBefore, 10_000, 5),
    ).toBe(true);

    const removed = await d.removeThird();
    expect(removed).toEqual({ generation: 3, added: [], removed: [3], kept: [1, 2] });
    // resolved = no worker runs the old table any more: the library is gone, the pool settled
    expect(libraryMapped(d.pool, addedLib)).toBe(false);
    expect(d.pool.stats().retiredTables).toBe(0);
    const rxAtRemoval = d.pool.stats().totals.rx;
    expect(rxAtRemoval).toBeLessThan(total); // the change happened while frames kept coming

    const twice = checkExactlyOnce((await sending).received, total, d.v);
    // exactly the frames instance 3 saw came back swapped twice, and no others
    expect(twice.size).toBeGreaterThan(0);
    expect(d.seqs(d.seen3)).toEqual(twice);
    expect(d.seqs(d.seen2).size).toBe(total);
    // after the removal the old path is back
    const after = await d.traffic(50, 0, total);
    expect(checkExactlyOnce(after.received, 50, d.v, total).size).toBe(0);

    const s = d.pool.stats();
    expect(s.totals).toMatchObject({ rx: total + 50, tx: total + 50, dropped: 0 });
    expect(s.instances.map((i) => i.id)).toEqual([1, 2]);
    // instance 2's counters carried on across both updates
    expect(s.instances.find((i) => i.id === 2)!.calls).toBe(total + 50);
    for (const w of s.workers) {
      expect(w.state).toBe("running");
      expect(w.kernel).toMatchObject({ rxDropped: 0, rxRingFull: 0, rxInvalidDescs: 0 });
    }
    expect(d.pool.errors).toEqual([]);
  });

  it("refuses bad updates with the problem named and keeps the old table; refuses updates once stopped", async () => {
    const d = await device("ub");
    await expect(d.pool.updateInstances([...d.base, { id: 2, actions: d.act2.map }])).rejects.toThrow(
      /instance id 2 is listed twice/,
    );
    await expect(d.pool.updateInstances([{ id: 2, actions: d.seen2, library: nfLib }])).rejects.toThrow(
      /action table of instance 2 must be an ARRAY u32 -> struct galette_action/,
    );
    await expect(
      d.pool.updateInstances([{ id: 2, actions: d.act2.map, library: nfLib, maps: [d.act2.map, 987654] }]),
    ).rejects.toThrow(/inspect map 1 of instance 2 \(fd 987654\).*EBADF/);
    await expect(
      d.pool.updateInstances([{ id: GALETTE_MAX_INSTANCES, actions: d.act2.map }]),
    ).rejects.toThrow(/id must be an integer in \[0, 255\]/);
    const s = d.pool.stats();
    expect(s.generation).toBe(1);
    expect(s.retiredTables).toBe(0);
    expect(d.pool.instances).toEqual(d.base);
    const got = await d.traffic(20, 0);
    expect(checkExactlyOnce(got.received, 20, d.v).size).toBe(0);

    d.pool.stop();
    await expect(d.pool.updateInstances(d.withAdded)).rejects.toThrow(
      /worker pool on .* is stopped: cannot update its NF instances/,
    );
    expect(libraryMapped(d.pool, addedLib)).toBe(false);
  });

  // Busy-poll workers always hold a table, so there updates really wait for them.
  it.each([
    ["blocking", 3000],
    ["busy-poll", 1500],
  ] as const)(
    "%s workers survive 50 rapid updates under traffic without losing or duplicating a frame",
    async (mode, total) => {
      const d = await device(mode === "blocking" ? "us" : "up", mode);
      const sending = d.traffic(total, 2000);
      expect(await waitFor(() => d.pool.stats().totals.rx >= 100, 10_000, 2)).toBe(true);
      const pending: Array<Promise<unknown>> = [];
      // updates after which a worker still held the replaced table (reclaimed later)
      let heldAtPublish = 0;
      for (let i = 0; i < 50; i++) {
        const update = i % 2 === 0 ? d.addThird() : d.removeThird();
        // Some are awaited, some overlap: retired tables then pile up until workers move on.
        if (d.pool.stats().retiredTables > 0) heldAtPublish++;
        if (i % 5 === 4) await update;
        else pending.push(update);
        await sleep(i % 3 === 0 ? 0 : 15);
      }
      await Promise.all(pending);
      // busy-poll workers are never offline, so the deferred-free path was really taken
      if (mode === "busy-poll") expect(heldAtPublish).toBeGreaterThan(0);
      expect(d.pool.stats().generation).toBe(51);
      expect(d.pool.stats().retiredTables).toBe(0);
      expect(libraryMapped(d.pool, addedLib)).toBe(false); // last update removed it

      const twice = checkExactlyOnce((await sending).received, total, d.v);
      expect(d.seqs(d.seen3)).toEqual(twice);
      const s = d.pool.stats();
      expect(s.totals).toMatchObject({ rx: total, tx: total, dropped: 0 });
      expect(s.workers.every((w) => w.state === "running")).toBe(true);
      expect(d.pool.errors).toEqual([]);
    },
  );
});
