/**
 * Whether an NF is expected to load on the kernels Galette knows, from their capability data
 * (what the agent's probe reports: AF_XDP, bpf_loop, tail calls, map types) — the checks the
 * controller makes before it sends a device a chain, applied to one NF at build time.
 */
import { readFile } from "node:fs/promises";
import type { NfBuildResult } from "@galette/nf-build";
import { canonicalMapType, MAP_TYPES, type MapType } from "@galette/vocabulary";
import { BPF_FUNC_LOOP, bpfHelperCalls } from "./capabilities";

/** A kernel Galette knows: the capability data its probe reports there. */
export interface KnownKernel {
  release: string;
  /** the devices that run it */
  devices: string;
  /** how this project runs it, when it does (the verifier matrix loads every NF there) */
  tested?: string;
  afXdp: boolean;
  bpfLoop: boolean;
  tailCalls: boolean;
  mapTypes: readonly MapType[];
}

/** Every NF map type is older than 4.14 (LPM trie: 4.11, LRU hash: 4.10). */
const ALL_MAP_TYPES: readonly MapType[] = MAP_TYPES;

export const KNOWN_KERNELS: readonly KnownKernel[] = [
  {
    release: "4.14",
    devices: "older Smart SFP firmware",
    afXdp: false,
    bpfLoop: false,
    tailCalls: true,
    mapTypes: ALL_MAP_TYPES,
  },
  {
    release: "5.10",
    devices: "Debian 11",
    afXdp: true,
    bpfLoop: false,
    tailCalls: true,
    mapTypes: ALL_MAP_TYPES,
  },
  {
    release: "6.1",
    devices: "Debian 12, Raspberry Pi OS bookworm",
    tested: "arm64, emulated (make test-devices)",
    afXdp: true,
    bpfLoop: true,
    tailCalls: true,
    mapTypes: ALL_MAP_TYPES,
  },
  {
    release: "6.6",
    devices: "Raspberry Pi OS bookworm",
    afXdp: true,
    bpfLoop: true,
    tailCalls: true,
    mapTypes: ALL_MAP_TYPES,
  },
  {
    release: "6.18",
    devices: "the test machine",
    tested: "x86_64 (make test)",
    afXdp: true,
    bpfLoop: true,
    tailCalls: true,
    mapTypes: ALL_MAP_TYPES,
  },
];

/** What the checks need to know about a built NF. */
export interface NfKernelNeeds {
  /** runs only in the AF_XDP workers (std, or xdp = false) */
  userlandOnly: boolean;
  /** its XDP object calls bpf_loop (nf::repeat) */
  callsBpfLoop: boolean;
  /** the map types of its #[maps] fields, as the manifest spells them */
  mapTypes: string[];
}

export interface KernelVerdict {
  release: string;
  devices: string;
  tested?: string;
  /** expected to load (and, for a userland NF, to run in the workers) */
  loads: boolean;
  /** why not, one line each */
  reasons: string[];
}

export function kernelVerdicts(
  nf: NfKernelNeeds,
  kernels: readonly KnownKernel[] = KNOWN_KERNELS,
): KernelVerdict[] {
  return kernels.map((k) => {
    const reasons: string[] = [];
    if (nf.userlandOnly && !k.afXdp) reasons.push("a userland NF needs AF_XDP (Linux 4.18)");
    if (!nf.userlandOnly && !k.tailCalls) reasons.push("XDP NFs are entered by tail calls (PROG_ARRAY)");
    if (!nf.userlandOnly && nf.callsBpfLoop && !k.bpfLoop)
      reasons.push("nf::repeat calls the bpf_loop helper (Linux 5.17)");
    for (const spelling of new Set(nf.mapTypes)) {
      const type = canonicalMapType(spelling);
      if (type && !k.mapTypes.includes(type)) reasons.push(`no ${type} maps`);
    }
    return {
      release: k.release,
      devices: k.devices,
      ...(k.tested ? { tested: k.tested } : {}),
      loads: reasons.length === 0,
      reasons,
    };
  });
}

/** The needs of a built NF: its manifest's flags and map types, and its XDP object's helper calls. */
export async function nfKernelNeeds(nf: {
  userlandOnly: boolean;
  maps: { type: string }[];
  bpfObject?: string;
}): Promise<NfKernelNeeds> {
  let callsBpfLoop = false;
  if (nf.bpfObject) {
    try {
      callsBpfLoop = bpfHelperCalls(await readFile(nf.bpfObject)).has(BPF_FUNC_LOOP);
    } catch (err) {
      throw new Error(`reading the helper calls of ${nf.bpfObject}: ${(err as Error).message}`);
    }
  }
  return { userlandOnly: nf.userlandOnly, callsBpfLoop, mapTypes: nf.maps.map((m) => m.type) };
}

/** One line per NF: `4.14 no (reason) · 5.10 yes · 6.1 yes (tested: …)`. */
export function formatVerdicts(verdicts: KernelVerdict[]): string {
  return verdicts
    .map(
      (v) => `${v.release} ${v.loads ? "yes" : `no (${v.reasons.join("; ")})`}${v.tested ? " [tested]" : ""}`,
    )
    .join(" · ");
}

/** Whether each built NF is expected to load on each known kernel (by its capability data). */
export async function buildVerdicts(results: NfBuildResult[]): Promise<KernelVerdict[][]> {
  return Promise.all(
    results.map(async (r) => {
      const bpf = r.artifacts.find((a) => a.target === "bpf");
      const needs = { userlandOnly: r.manifest.userlandOnly, maps: r.manifest.maps };
      return kernelVerdicts(await nfKernelNeeds(bpf ? { ...needs, bpfObject: bpf.file } : needs));
    }),
  );
}
