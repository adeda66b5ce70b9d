import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseChain } from "@galette/chain";
import { type BuiltChain, buildChain, loadChainOrThrow } from "@galette/nf-build";
import { attachXdpPass, compileBpfObject, createVethPair, ipv4Bytes, type VethPair } from "@galette/testkit";
import { abiHeaderDir } from "@galette/xdp-native";
import pino from "pino";
import { afterAll, beforeAll } from "vitest";
import { type Dataplane, type DataplaneOptions, Dataplane as DP } from "../src/kernel";
import { type InterfaceTarget, planInstallation } from "../src/spec";

export const repoRoot = path.resolve(__dirname, "..", "..", "..");

/** Builds (nf-build cache: fast when warm) the NFs of a chain file of the repository. */
export async function builtChainFile(name: string): Promise<BuiltChain> {
  const chain = await loadChainOrThrow(path.join(repoRoot, "chains", name));
  return buildChain(chain, { baseDir: repoRoot });
}

export async function builtChainText(text: string, file = "test.toml"): Promise<BuiltChain> {
  const parsed = parseChain(text, file);
  if (!parsed.chain) throw new Error(parsed.diagnostics.map((d) => d.message).join("\n"));
  return buildChain(parsed.chain, { baseDir: repoRoot });
}

/**
 * A chain whose entry runs only in userland: the root program upcalls every frame to dpi
 * (XDP disabled) in the workers, which sends it out or drops it.
 */
export const userlandEntryChain = (name: string, flowStateEntries: number) => `
[chain]
name = "${name}"

[functions.dpi]
maps = { flow_state = "_" }
disable_xdp = true

[maps.flow_state]
type = "hash_map"
size = ${flowStateEntries}

[[links]]
from = "rx"
to = ["dpi"]

[[links]]
from = "dpi"
to = ["tx", "drop"]
`;

export const quietLogger = () => pino({ level: process.env.GALETTE_TEST_LOG ?? "silent" });

/** A private state dir per test file, removed by the returned cleanup. */
export function stateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), "galette-installer-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface VethFixture {
  /** generator side (nsA/ifA, with XDP_PASS so XDP_TX frames arrive) ⇄ device side (nsB/ifB) */
  veth: VethPair;
  state: { dir: string; cleanup: () => void };
}

/**
 * For one describe block: a fresh veth pair with XDP_PASS on the generator side and a
 * private state dir, created before its tests and removed after them — with whatever
 * chain the tests left installed on the device side.
 */
export function vethFixture(tag: string): VethFixture {
  const fixture = { veth: undefined as unknown as VethPair, state: stateDir() };
  beforeAll(async () => {
    fixture.veth = await createVethPair(tag);
    await attachXdpPass(fixture.veth.nsA, fixture.veth.ifA);
  });
  afterAll(async () => {
    const { veth, state } = fixture;
    if (veth) DP.remove({ iface: veth.ifB, netns: veth.nsB }, { stateDir: state.dir });
    await veth?.cleanup();
    state.cleanup();
  });
  return fixture;
}

export async function install(
  built: BuiltChain,
  target: InterfaceTarget,
  options: DataplaneOptions,
): Promise<Dataplane> {
  return DP.install(planInstallation(built.plan, built.artifacts, target), {
    logger: quietLogger(),
    ...options,
  });
}

export const macOf = (frame: Buffer, off: number) =>
  [...frame.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");

/** Compiles a test BPF object of test/bpf (cached by content) against the dataplane ABI headers. */
export function compileTestBpf(name: string): Promise<string> {
  return compileBpfObject(path.join(__dirname, "bpf", name), { includeDirs: [abiHeaderDir()] });
}

/** nf::LpmKeyV4 { prefix_len: u32, addr: [u8; 4] } */
export const lpmKeyV4 = (ip: string, prefix = 32): Buffer => {
  const k = Buffer.alloc(8);
  k.writeUInt32LE(prefix, 0);
  ipv4Bytes(ip).copy(k, 4);
  return k;
};
