import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describeKernel } from "@galette/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  type BpfError,
  BpfMap,
  BpfObject,
  GALETTE_MAX_ACTIONS,
  galetteAction,
  isBpfError,
  MapType,
  possibleCpus,
  rootProgramObjectPath,
  struct,
  u8,
  u32,
  u64,
} from "../src/index";
import { compileBpf } from "./helpers";

function thrown(fn: () => unknown): BpfError {
  try {
    fn();
  } catch (err) {
    if (isBpfError(err)) return err;
    throw err;
  }
  throw new Error("expected an error");
}

describeKernel("xdp-native objects and maps", () => {
  let shim: string;
  let bad: string;
  const pinDir = mkdtempSync("/sys/fs/bpf/galette-test-");

  beforeAll(async () => {
    [shim, bad] = await Promise.all([compileBpf("nf_shim.bpf.c"), compileBpf("bad.bpf.c")]);
  });
  afterAll(() => rmSync(pinDir, { recursive: true, force: true }));

  it("loads an object from a path and from a Buffer, with rodata set per instance", async () => {
    const { readFileSync } = await import("node:fs");
    for (const src of [shim, readFileSync(shim)]) {
      const obj = BpfObject.load(src, { name: "nf_shim", rodata: { galette_instance_id: 9, nf_mode: 1 } });
      try {
        expect(obj.programs().map((p) => p.name)).toEqual(["galette_nf"]);
        expect(obj.programFd("galette_nf")).toBeGreaterThan(0);
        expect(obj.programId("galette_nf")).toBeGreaterThan(0);
        const names = obj.maps().map((m) => m.name);
        expect(names).toEqual(
          expect.arrayContaining(["galette_actions", "galette_progs", "galette_xsks", "galette_counts"]),
        );
        // rodata is frozen into the program; its map content shows what was loaded
        const rodata = obj.maps().find((m) => m.name.endsWith(".rodata"))!;
        const ro = BpfMap.fromFd(rodata.fd).lookup(Buffer.alloc(4))!;
        expect(ro.readUInt32LE(0)).toBe(9);
        expect(ro.readUInt32LE(4)).toBe(1);
      } finally {
        obj.close();
      }
    }
  });

  it("puts the verifier's own words, errno and the program name in a load error", () => {
    const err = thrown(() => BpfObject.load(bad));
    expect(err.code).toBe("EACCES");
    expect(err.errno).toBe(13);
    expect(err.program).toBe("bad_unchecked_read");
    expect(err.object).toBe(bad);
    expect(err.message).toContain("bad_unchecked_read");
    expect(err.message).toContain("invalid access to packet");
    expect(err.message).toContain("R1 offset is outside of the packet");
    expect(err.verifierLog).toContain("processed");
  });

  it("names what is wrong for bad objects, rodata, maps and programs", () => {
    expect(thrown(() => BpfObject.open("/nonexistent/x.o")).message).toMatch(
      /open BPF object \/nonexistent\/x.o: .*ENOENT/,
    );
    expect(thrown(() => BpfObject.open(Buffer.from("not an ELF"), { name: "junk" })).code).toBe(
      "LIBBPF_ERRNO__FORMAT",
    );
    const obj = BpfObject.open(shim);
    try {
      expect(thrown(() => obj.setRodata("nope", 1)).message).toMatch(
        /no read-only variable named 'nope' \(it has: galette_instance_id, nf_mode\)/,
      );
      expect(thrown(() => obj.setRodata("nf_mode", 1n)).message).toMatch(
        /'nf_mode'.* is 4 bytes, value has 8/,
      );
      expect(thrown(() => obj.reuseMap("nope", 3)).message).toMatch(
        /no map named 'nope' \(maps: .*galette_actions/,
      );
      obj.load();
      expect(thrown(() => obj.programFd("nope")).message).toMatch(
        /no program named 'nope' \(programs: galette_nf\)/,
      );
    } finally {
      obj.close();
    }
    expect(() => obj.programFd("galette_nf")).toThrow(/is closed/);
  });

  it("creates maps and does CRUD and iteration with Buffers and codecs", () => {
    const map = BpfMap.create({
      type: "hash",
      name: "gal_test_hash",
      keySize: 4,
      valueSize: 24,
      maxEntries: 64,
    });
    try {
      const entry = struct({ a: u32, b: u64, c: u8 });
      const t = map.typed(u32, entry);
      for (let i = 0; i < 10; i++) t.set(i, { a: i, b: BigInt(i) << 40n, c: i & 0xff });
      expect(t.get(3)).toEqual({ a: 3, b: 3n << 40n, c: 3 });
      expect(t.get(99)).toBeUndefined();
      expect(t.keys().sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(t.delete(3)).toBe(true);
      expect(t.delete(3)).toBe(false);
      expect(t.entries()).toHaveLength(9);
      expect(() => t.set(1, { a: 0, b: 0n, c: 0 }, "noexist")).toThrow(/EEXIST/);
      expect(() => t.set(50, { a: 0, b: 0n, c: 0 }, "exist")).toThrow(/ENOENT/);
      expect(() => map.update(Buffer.alloc(3), Buffer.alloc(24))).toThrow(
        /key for map fd \d+ is 3 bytes, the map needs 4/,
      );
      expect(() => map.typed(u64, entry)).toThrow(/key codec is 8 bytes, map 'gal_test_hash' keys are 4/);
    } finally {
      map.close();
    }
  });

  it("reads and writes every CPU's value of per-CPU maps", () => {
    const map = BpfMap.create({
      type: "percpu_array",
      name: "gal_test_pcpu",
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
    });
    try {
      const n = possibleCpus();
      expect(n).toBeGreaterThan(0);
      const t = map.typed(u32, u32);
      t.setPerCpu(
        2,
        Array.from({ length: n }, (_, i) => 100 + i),
      );
      expect(t.getPerCpu(2)).toEqual(Array.from({ length: n }, (_, i) => 100 + i));
      expect(t.getPerCpu(0)).toEqual(Array.from({ length: n }, () => 0));
      expect(() => map.lookup(Buffer.alloc(4))).toThrow(/use lookupPerCpu/);
      expect(() => map.updatePerCpu(Buffer.alloc(4), [Buffer.alloc(4)])).toThrow(
        n === 1 ? /never/ : /needs \d+ values, got 1/,
      );
    } finally {
      map.close();
    }
  });

  it("creates LPM tries (no-prealloc added) and matches longest prefixes", () => {
    const map = BpfMap.create({
      type: "lpm_trie",
      name: "gal_test_lpm",
      keySize: 8,
      valueSize: 4,
      maxEntries: 16,
    });
    try {
      expect(map.info.type).toBe(MapType.lpm_trie);
      const key = (len: number, ip: number[]) => Buffer.from([len, 0, 0, 0, ...ip]);
      const val = (v: number) => Buffer.from([v, 0, 0, 0]);
      map.update(key(8, [10, 0, 0, 0]), val(1));
      map.update(key(24, [10, 1, 2, 0]), val(2));
      expect(map.lookup(key(32, [10, 1, 2, 3]))?.[0]).toBe(2);
      expect(map.lookup(key(32, [10, 9, 9, 9]))?.[0]).toBe(1);
      expect(map.lookup(key(32, [11, 0, 0, 1]))).toBeUndefined();
    } finally {
      map.close();
    }
  });

  it("pins maps, opens pinned maps, and pins object maps by name at load", () => {
    const path = join(pinDir, "actions");
    const map = BpfMap.create({
      type: "array",
      name: "gal_pin",
      keySize: 4,
      valueSize: 8,
      maxEntries: GALETTE_MAX_ACTIONS,
    });
    map.typed(u32, galetteAction).set(1, { kind: 100, arg: 5 });
    map.pin(path);
    map.close();
    const again = BpfMap.openPinned(path);
    expect(again.typed(u32, galetteAction).get(1)).toEqual({ kind: 100, arg: 5 });
    // an object told to pin galette_actions at that path reuses the pinned map
    const obj = BpfObject.load(shim, { pinMaps: { galette_actions: path } });
    try {
      expect(obj.map("galette_actions").id).toBe(again.id);
      // and reuseMaps shares a map between objects by fd
      const counts = BpfMap.create({
        type: "percpu_array",
        name: "gal_cnt",
        keySize: 4,
        valueSize: 8,
        maxEntries: 16,
      });
      const obj2 = BpfObject.load(shim, { reuseMaps: { galette_counts: counts } });
      expect(obj2.map("galette_counts").id).toBe(counts.id);
      obj2.close();
      counts.close();
    } finally {
      obj.close();
      again.close();
    }
    expect(thrown(() => BpfMap.openPinned(join(pinDir, "missing"))).code).toBe("ENOENT");
    rmSync(path);
    expect(existsSync(path)).toBe(false);
  });

  it("ships the compiled root program", () => {
    const root = BpfObject.load(rootProgramObjectPath());
    try {
      expect(root.programs().map((p) => p.name)).toEqual(["galette_root"]);
      // slot 0: the chain (or the first port's direction); slot 1: the second port's direction
      const slots = root.map("galette_root_progs");
      expect(slots.info).toMatchObject({ type: MapType.prog_array, maxEntries: 2 });
      expect(root.map("galette_root_ports").info).toMatchObject({ type: MapType.array, maxEntries: 1 });
    } finally {
      root.close();
    }
  });
});
