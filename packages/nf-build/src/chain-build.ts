/**
 * Builds every NF of a chain for eBPF and this CPU and plans the chain with the build
 * hashes: what `galette dataplane up`, the benchmarks and the installer's tests install.
 * It lives here, not in the installer, so a device (which installs artifacts it fetched)
 * carries no NF compiler.
 */
import path from "node:path";
import {
  type Chain,
  type ChainPlan,
  formatDiagnostic,
  hasErrors,
  loadChainFile,
  planChain,
  withAttributeMaps,
} from "@galette/chain";
import { cpuForNodeArch } from "@galette/vocabulary";
import { buildNf, type NfBuildResult } from "./build";
import { resolveChainInterfaces } from "./interfaces";
import type { NativeTarget } from "./toolchain";

/** nf-build's target name for the CPU this process runs on (the one CPU table is in @galette/vocabulary). */
export function hostTarget(): NativeTarget {
  const cpu = cpuForNodeArch(process.arch);
  if (!cpu) throw new Error(`no native NF target for CPU architecture "${process.arch}"`);
  return cpu.target;
}

/** One NF build as the installer takes it (the installer's NfArtifacts, structurally). */
export interface ChainNfArtifacts {
  hash: string;
  variants: string[];
  maps: Array<{ name: string; type: string; maxEntries: number; keySize: number; valueSize: number }>;
  bpfObject?: string;
  library?: string;
}

export interface BuiltChain {
  plan: ChainPlan;
  artifacts: Map<string, ChainNfArtifacts>;
  builds: Map<string, NfBuildResult>;
}

export interface BuildChainOptions {
  /** NF `path`s are relative to this directory (default: process.cwd(), the repository root) */
  baseDir?: string;
}

/** Parses a chain file, or throws with every diagnostic (file:line: message). */
export async function loadChainOrThrow(file: string, chainName?: string): Promise<Chain> {
  const parsed = await loadChainFile(file, chainName ? { chainName } : {});
  if (!parsed.chain || hasErrors(parsed.diagnostics))
    throw new Error(`chain ${file} is invalid:\n${parsed.diagnostics.map(formatDiagnostic).join("\n")}`);
  return parsed.chain;
}

/**
 * Builds every NF instance of `declared` for eBPF and this CPU (each instance with the map
 * types/sizes the chain gives it; the artifact cache makes a warm build cheap), then plans
 * the chain with the build hashes so instance UUIDs follow the builds.
 */
export async function buildChain(declared: Chain, options: BuildChainOptions = {}): Promise<BuiltChain> {
  const base = options.baseDir ?? process.cwd();
  // owned maps the chain omits come from the crates' #[map(type, size)]
  const chain = withAttributeMaps(declared, await resolveChainInterfaces(declared, base));
  const provisional = planChain(chain);
  const native = hostTarget();
  const byKey = new Map<string, Promise<NfBuildResult>>();
  const builds = new Map<string, NfBuildResult>();
  await Promise.all(
    provisional.nfs.map(async (nf) => {
      const overrides = Object.fromEntries(
        nf.maps.map((m) => [m.name, { type: m.type, maxEntries: m.maxEntries }]),
      );
      const dir = path.resolve(base, nf.path);
      const key = JSON.stringify([dir, overrides]);
      let build = byKey.get(key);
      if (!build) {
        build = buildNf(dir, { targets: ["bpf", native], mapOverrides: overrides, jobs: 2 });
        byKey.set(key, build);
      }
      builds.set(nf.name, await build);
    }),
  );
  const plan = planChain(chain, { buildHashes: new Map([...builds].map(([name, b]) => [name, b.hash])) });
  const artifacts = new Map<string, ChainNfArtifacts>();
  for (const [name, b] of builds) {
    const bpf = b.artifacts.find((a) => a.target === "bpf");
    const lib = b.artifacts.find((a) => a.target === native);
    artifacts.set(name, {
      hash: b.hash,
      variants: b.manifest.variants,
      maps: b.manifest.maps.map((m) => ({
        name: m.name,
        type: m.type,
        maxEntries: m.maxEntries,
        keySize: m.keySize,
        valueSize: m.valueSize,
      })),
      ...(bpf ? { bpfObject: bpf.file } : {}),
      ...(lib ? { library: lib.file } : {}),
    });
  }
  return { plan, artifacts, builds };
}
