/** Shared by the nf-build tests: the example crates, a corpus of frames, map contents, harnesses. */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ethFrame, type RunOptions, run as testkitRun, udpFrame } from "@galette/testkit";
import { testHarness } from "../src/nf-test";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "..", "..", "..");
export const examplesDir = path.join(repoRoot, "nf-examples");
export const EXAMPLES = [
  "access-control",
  "compute",
  "decrement-ttl",
  "dest-ip-branch",
  "dpi",
  "load-balance",
  "macswap",
  "weak-classifier",
] as const;
export const exampleDir = (name: string) => path.join(examplesDir, name);
export const fixtureDir = (name: string) => path.join(here, "fixtures", "bad-nfs", name);

/** testkit's `run` with room for a cold compiler (4 minutes). */
export const run = (cmd: string, args: string[], opts: RunOptions = {}) =>
  testkitRun(cmd, args, { timeoutMs: 240_000, ...opts });

const mac = { dstMac: "02:00:00:00:00:0b", srcMac: "02:00:00:00:00:0a" };

function ipv4WithOptions(): Buffer {
  // IHL 6 (4 bytes of options): the L4 ports move by 4 bytes
  const f = udpFrame({
    ...mac,
    srcIp: "10.0.0.1",
    dstIp: "10.9.8.7",
    srcPort: 4242,
    dstPort: 53,
    payload: Buffer.from("opts"),
  });
  const eth = f.subarray(0, 14);
  const ip = Buffer.from(f.subarray(14, 34));
  const rest = f.subarray(34);
  ip[0] = 0x46;
  ip.writeUInt16BE(ip.readUInt16BE(2) + 4, 2);
  ip.writeUInt16BE(0, 10);
  return Buffer.concat([eth, ip, Buffer.from([1, 1, 1, 0]), rest]);
}

function tcpFrame(payload: string): Buffer {
  const f = udpFrame({
    ...mac,
    srcIp: "10.0.0.3",
    dstIp: "10.9.8.9",
    payload: Buffer.alloc(12 + payload.length),
  });
  f[23] = 6; // protocol TCP
  f[34 + 12] = 5 << 4; // data offset 5 words
  Buffer.from(payload).copy(f, 34 + 20);
  return f;
}

/** Frames every example runs on: its own and everybody else's traffic, edge cases included. */
export function corpus(): Buffer[] {
  const flow = udpFrame({
    ...mac,
    srcIp: "10.0.0.1",
    dstIp: "10.9.8.7",
    srcPort: 1000,
    dstPort: 53,
    payload: Buffer.from("hello"),
  });
  return [
    ...Array.from({ length: 6 }, () => flow), // a flow long enough for weak-classifier's window
    udpFrame({ ...mac, srcIp: "192.168.1.1", dstIp: "172.16.0.1", ttl: 1 }),
    udpFrame({ ...mac, srcIp: "10.1.2.3", dstIp: "10.9.9.1", ttl: 2 }),
    udpFrame({
      ...mac,
      srcIp: "10.0.0.2",
      dstIp: "10.9.8.1",
      ttl: 0,
      payload: Buffer.from("xx GALETTE-EVIL xx"),
    }),
    tcpFrame("GET /bin/sh HTTP/1.0"),
    ipv4WithOptions(),
    ethFrame({ ...{ dst: mac.dstMac, src: mac.srcMac }, ethertype: 0x0806, payload: Buffer.alloc(28, 1) }),
    ethFrame({ dst: mac.dstMac, src: mac.srcMac, ethertype: 0x86dd, payload: Buffer.alloc(40, 2) }),
    Buffer.from("0102030405060708090a0b0c0800", "hex"), // 14 bytes: Ethernet header only
    Buffer.alloc(200, 0x90),
  ];
}

export interface MapEntry {
  map: string;
  key: string;
  value: string;
}

/** What each example's maps hold before the corpus runs (hex, little-endian where numeric). */
export const MAP_ENTRIES: Record<string, MapEntry[]> = {
  "access-control": [{ map: "allow_list", key: "080000000a000000", value: "01000000" }],
  "dest-ip-branch": [{ map: "routes", key: "180000000a090800", value: "01000000" }],
  compute: [{ map: "config", key: "00000000", value: "3200000000000000" }],
};

const hexBytes = (hex: string) => hex.match(/../g) ?? [];

export async function bpftool(args: string[]): Promise<string> {
  return (await run("bpftool", args)).stdout;
}

export async function mapUpdate(pinned: string, key: string, value: string): Promise<void> {
  await bpftool([
    "map",
    "update",
    "pinned",
    pinned,
    "key",
    "hex",
    ...hexBytes(key),
    "value",
    "hex",
    ...hexBytes(value),
  ]);
}

/** `bpftool prog loadall` into a unique bpffs dir; returns the dir (remove it with rm -rf). */
export async function loadAll(obj: string, tag: string): Promise<string> {
  const dir = `/sys/fs/bpf/galette-nfb-${tag}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  await bpftool(["prog", "loadall", obj, dir, "type", "xdp", "pinmaps", `${dir}/maps`]);
  return dir;
}

export type HarnessFlavour = "real" | "x86_64" | "aarch64" | "armv7" | "riscv64";

const HARNESS_CC: Record<HarnessFlavour, string> = {
  real: "gcc",
  x86_64: "gcc",
  aarch64: "aarch64-linux-gnu-gcc",
  armv7: "arm-linux-gnueabihf-gcc",
  riscv64: "riscv64-linux-gnu-gcc",
};

/**
 * qemu-user with the cross toolchain's C library. LD_LIBRARY_PATH too: -L supplies the
 * dynamic loader, but the loader searches /lib/<triple> first, where a multiarch libc6:<arch>
 * (pulled in by libstd-rust-web-dev:<arch>) may be a different build, and a loader and libc
 * of different builds hang in the first pthread_create.
 */
const qemuUser = (qemu: string, prefix: string) => [
  qemu,
  "-L",
  prefix,
  "-E",
  `LD_LIBRARY_PATH=${prefix}/lib`,
];
export const QEMU: Partial<Record<HarnessFlavour, string[]>> = {
  aarch64: qemuUser("qemu-aarch64", "/usr/aarch64-linux-gnu"),
  armv7: qemuUser("qemu-arm", "/usr/arm-linux-gnueabihf"),
  riscv64: qemuUser("qemu-riscv64", "/usr/riscv64-linux-gnu"),
};

const harnessSrc = path.join(here, "..", "harness", "harness.c");
const abiInclude = path.join(repoRoot, "packages", "xdp-native", "include");

/** The harness: "real" (libbpf maps) is nf test's own; the others, with fake maps, compiled here once per content. */
export async function harness(flavour: HarnessFlavour): Promise<string> {
  if (flavour === "real") return testHarness();
  const digest = createHash("sha256")
    .update(readFileSync(harnessSrc))
    .update(readFileSync(path.join(abiInclude, "galette_abi.h")))
    .digest("hex")
    .slice(0, 12);
  const dir = path.join(tmpdir(), "galette-nf-harness", digest);
  const out = path.join(dir, `harness-${flavour}`);
  if (existsSync(out)) return out;
  await mkdir(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const args = ["-O1", "-Wall", "-Werror", `-I${abiInclude}`, harnessSrc, "-o", tmp];
  args.push("-DFAKE_MAPS", "-rdynamic", "-ldl");
  await run(HARNESS_CC[flavour], args);
  await rename(tmp, out);
  return out;
}

export async function writeCorpus(file: string, frames: Buffer[]): Promise<void> {
  await writeFile(file, `${frames.map((f) => f.toString("hex")).join("\n")}\n`);
}

export interface FrameResult {
  variant: number;
  frame: string;
}

export function parseHarnessOutput(stdout: string): FrameResult[] {
  return stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [v, frame] = l.split(" ");
      return { variant: Number(v), frame: frame ?? "" };
    });
}
