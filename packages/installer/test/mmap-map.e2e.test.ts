/**
 * Arrays are created BPF_F_MMAPABLE and the AF_XDP worker maps them for native NFs: a value
 * the XDP instance writes is read by the userland instance through the mapping, and the
 * other way round. An array created without the flag (an older installation's) still works,
 * through bpf().
 */
import { readFileSync } from "node:fs";
import { describeKernel, exchangeFrames, udpFrame } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import { Dataplane } from "../src/kernel";
import { planInstallation } from "../src/spec";
import { builtChainText, quietLogger, vethFixture } from "./helpers";

const chain = `
[chain]
name = "mmap-probe"

[functions.xdp-side]
path = "packages/installer/test/fixtures/mmap-probe"
maps = { cells = "_", wide = "_" }

[functions.user-side]
path = "packages/installer/test/fixtures/mmap-probe"
maps = { cells = "_", wide = "_" }
disable_xdp = true

[maps.cells]
type = "array"
size = 4

[maps.wide]
type = "array"
size = 4

[[links]]
from = "rx"
to = ["xdp-side"]

[[links]]
from = "xdp-side"
to = ["user-side", "tx"]

[[links]]
from = "user-side"
to = ["drop", "tx"]
`;

const BPF_F_MMAPABLE = 1 << 10;
// UDP payload at 42: a stage byte, then four little-endian u64 slots (see the fixture)
const slot = (frame: Buffer, i: number) => frame.readBigUInt64LE(43 + 8 * i);

/** The worker's mappings of BPF maps (/proc/PID/maps names them anon_inode:bpf-map). */
const mappedBpfMaps = (pid: number) =>
  readFileSync(`/proc/${pid}/maps`, "utf8")
    .split("\n")
    .filter((l) => l.includes("bpf-map")).length;

describeKernel("installer: userland NFs reach BPF_F_MMAPABLE arrays through a shared mapping", () => {
  const fx = vethFixture("imm");
  let built: Awaited<ReturnType<typeof builtChainText>>;
  beforeAll(async () => {
    built = await builtChainText(chain, "mmap-probe.toml");
  }, 300_000);

  const roundTrip = async (tag: number, value: bigint) => {
    const { veth } = fx;
    const payload = Buffer.alloc(49);
    payload.writeBigUInt64LE(value, 1);
    payload.writeUInt32BE(tag, 33); // after the slots: unchanged
    const sent = udpFrame({
      dstMac: veth.macB,
      srcMac: veth.macA,
      dstIp: veth.ipB,
      srcIp: veth.ipA,
      payload,
    });
    const r = await exchangeFrames(veth.nsA, veth.ifA, {
      send: [sent],
      repeat: 1,
      pps: 100,
      listenMs: 600,
      match: payload.subarray(33, 37),
      expect: 1,
    });
    expect(r.received).toHaveLength(1);
    const got = r.received[0]!;
    expect(got[42]).toBe(2); // both instances ran
    return got;
  };

  for (const mode of ["mmap", "mmap, in-process workers", "bpf() fallback"] as const) {
    it(`XDP writes, userland reads, and back (${mode})`, async () => {
      const { veth, state } = fx;
      const reconf = planInstallation(built.plan, built.artifacts, { iface: veth.ifB, netns: veth.nsB });
      const arrays = reconf.spec.maps.filter((m) => m.type === "array");
      expect(arrays).toHaveLength(2);
      for (const m of arrays) {
        expect(m.flags & BPF_F_MMAPABLE).toBe(BPF_F_MMAPABLE);
        // an array an older installer created: no flag, so the worker cannot map it
        if (mode === "bpf() fallback") m.flags = 0;
      }
      const mappedBefore = mappedBpfMaps(process.pid);
      const dp = await Dataplane.install(reconf, {
        logger: quietLogger(),
        stateDir: state.dir,
        workers: { count: 1, ...(mode === "mmap, in-process workers" ? { inProcess: true } : {}) },
      });
      try {
        const map = dp.nfMap("user-side", "cells");
        const v1 = 0x1122_3344_5566_7788n;
        const first = await roundTrip(0xa1, v1);
        expect(slot(first, 1)).toBe(v1); // userland read the XDP write
        expect(slot(first, 2)).toBe(0xffff_ffff_ffff_ffffn); // index past the end: absent
        expect(slot(first, 3)).toBe(0n);
        const v2 = 0x0102_0304_0506_0708n;
        const second = await roundTrip(0xa2, v2);
        expect(slot(second, 3)).toBe(v1 + 1n); // XDP read the userland write
        expect(slot(second, 1)).toBe(v2);
        // and the agent's bpf() sees what the worker wrote
        const key = Buffer.alloc(4);
        key.writeUInt32LE(1);
        expect(map.lookup(key)?.readBigUInt64LE(0)).toBe(v2 + 1n);

        // 12-byte values, 16 bytes apart: what XDP wrote at [3] is what userland read, and
        // userland's write to [1] landed where bpf() finds it, [0] and [2] untouched
        expect([...first.subarray(79, 91)]).toEqual(Array(12).fill(0x8b));
        const wide = dp.nfMap("user-side", "wide");
        const wideAt = (k: number) => {
          const kb = Buffer.alloc(4);
          kb.writeUInt32LE(k);
          return [...(wide.lookup(kb) ?? [])];
        };
        expect(wideAt(1)).toEqual(Array(12).fill(0xee));
        expect(wideAt(0)).toEqual(Array(12).fill(0x08));
        expect(wideAt(2)).toEqual(Array(12).fill(0x0a));

        if (mode === "mmap, in-process workers") {
          // the worker threads are ours: both arrays are mapped into this process
          expect(mappedBpfMaps(process.pid) - mappedBefore).toBe(2);
        } else {
          const pid = dp.workerHealth()?.pid;
          expect(pid).toBeTypeOf("number");
          expect(mappedBpfMaps(pid!)).toBe(mode === "mmap" ? 2 : 0);
        }
      } finally {
        dp.uninstall();
      }
      // stopping the workers unmaps what they mapped
      expect(mappedBpfMaps(process.pid)).toBe(mappedBefore);
    }, 120_000);
  }
});
