/**
 * Per-device placement checks: the assigned chain against what the device's agent probed
 * (AF_XDP, bpf_loop, map types, XDP on its interface, memory). A chain that does not fit
 * is not sent: the device gets the chain it runs now, and operators see the refusal.
 */
import type { AssignmentRefusal } from "@galette/protocol";
import { deviceCapabilities, graphFitsDevice } from "./chains";
import { buildOfInstance } from "./releases";
import type { ArtifactStore } from "./storage/artifacts";
import type { ChainVersionRecord, DeviceRecord, Repository } from "./storage/repository";

/** BPF_FUNC_loop in enum bpf_func_id: what nf::repeat calls in XDP. */
export const BPF_FUNC_LOOP = 181;

const EM_BPF = 247;
const SHF_EXECINSTR = 0x4;

/**
 * The helper IDs a BPF ELF object's programs call: every `call` instruction (opcode
 * 0x85) with src_reg 0 in an executable section. Throws on a file that is not a
 * little-endian 64-bit BPF ELF.
 */
export function bpfHelperCalls(elf: Buffer): Set<number> {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error("not an ELF file");
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error("not a 64-bit little-endian ELF file");
  if (elf.readUInt16LE(18) !== EM_BPF) throw new Error(`ELF machine ${elf.readUInt16LE(18)} is not BPF`);
  const shoff = Number(elf.readBigUInt64LE(40));
  const shentsize = elf.readUInt16LE(58);
  const shnum = elf.readUInt16LE(60);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length)
    throw new Error("ELF section table out of bounds");
  const helpers = new Set<number>();
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + i * shentsize;
    const flags = Number(elf.readBigUInt64LE(sh + 8));
    if ((flags & SHF_EXECINSTR) === 0) continue;
    const offset = Number(elf.readBigUInt64LE(sh + 24));
    const size = Number(elf.readBigUInt64LE(sh + 32));
    if (offset + size > elf.length) throw new Error(`ELF section ${i} out of bounds`);
    for (let at = offset; at + 8 <= offset + size; at += 8) {
      // opcode 0x85 = BPF_JMP | BPF_CALL; src_reg 0 = a helper (1 = a BPF function, 2 = a kfunc)
      if (elf[at] === 0x85 && (elf[at + 1]! & 0xf0) === 0) helpers.add(elf.readInt32LE(at + 4));
    }
  }
  return helpers;
}

/** digest → calls bpf_loop; artifacts are content-addressed, so the answer never changes */
const bpfLoopByDigest = new Map<string, boolean>();

/** UUIDs of the chain's XDP NFs whose BPF object calls bpf_loop. */
export async function bpfLoopNfs(
  repo: Repository,
  artifacts: ArtifactStore,
  chain: ChainVersionRecord,
): Promise<Set<string>> {
  const uses = new Set<string>();
  for (const nf of chain.graph.nfs) {
    if (!nf.xdp) continue;
    const bpf = (await buildOfInstance(repo, chain, nf))?.artifacts.find((a) => a.kind === "bpf-object");
    // missing from the store: the device's download fails with its own error
    if (!bpf || !(await artifacts.has(bpf.digest))) continue;
    let calls = bpfLoopByDigest.get(bpf.digest);
    if (calls === undefined) {
      try {
        calls = bpfHelperCalls(await artifacts.read(bpf.digest)).has(BPF_FUNC_LOOP);
      } catch (err) {
        throw new Error(`NF "${nf.instance}": BPF object ${bpf.digest}: ${(err as Error).message}`);
      }
      bpfLoopByDigest.set(bpf.digest, calls);
    }
    if (calls) uses.add(nf.uuid);
  }
  return uses;
}

/** Why `chain` cannot run on `device` by its reported capabilities; null when it fits or nothing was reported. */
export async function chainRefusal(
  repo: Repository,
  artifacts: ArtifactStore,
  device: DeviceRecord,
  chain: ChainVersionRecord,
): Promise<AssignmentRefusal | null> {
  if (!device.status?.capabilities) return null;
  let loops: Set<string> | string;
  try {
    loops = await bpfLoopNfs(repo, artifacts, chain);
  } catch (err) {
    loops = (err as Error).message;
  }
  return refusalOf(device, chain, loops);
}

/**
 * chainRefusal with the chain's bpf_loop NFs known (bpfLoopNfs), or the message of why its
 * objects could not be read.
 */
export function refusalOf(
  device: DeviceRecord,
  chain: ChainVersionRecord,
  loops: ReadonlySet<string> | string,
): AssignmentRefusal | null {
  const probe = device.status?.capabilities;
  if (!probe) return null;
  // an object the controller cannot read is not sent to a device it may not fit
  const reasons =
    typeof loops === "string" ? [loops] : graphFitsDevice(chain.graph, deviceCapabilities(probe, loops));
  return reasons.length > 0 ? { chain: chain.name, version: chain.version, reasons } : null;
}

/** The refusal of the device's assigned chain, if it has one that does not fit. */
export async function assignmentRefusal(
  repo: Repository,
  artifacts: ArtifactStore,
  device: DeviceRecord,
): Promise<AssignmentRefusal | null> {
  if (!device.assignedChain) return null;
  const chain = await repo.getChainVersion(device.assignedChain, device.assignedVersion ?? undefined);
  return chain ? chainRefusal(repo, artifacts, device, chain) : null;
}

/**
 * The device as its assignment is served: when its assigned chain is refused, it keeps
 * the chain version it reports installed (or none).
 */
export async function servedDevice(
  repo: Repository,
  artifacts: ArtifactStore,
  device: DeviceRecord,
): Promise<{ device: DeviceRecord; refusal: AssignmentRefusal | null }> {
  const refusal = await assignmentRefusal(repo, artifacts, device);
  if (!refusal) return { device, refusal };
  const installed = device.status?.installed;
  return {
    device: {
      ...device,
      assignedChain: installed?.chain ?? null,
      assignedVersion: installed?.version ?? null,
    },
    refusal,
  };
}
