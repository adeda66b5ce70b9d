import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseChain } from "@galette/chain";
import pino from "pino";
import { type BuiltChain, buildChain, loadChainOrThrow } from "../src/artifacts";
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

export const quietLogger = () => pino({ level: process.env.GALETTE_TEST_LOG ?? "silent" });

/** A private state dir per test file, removed by the returned cleanup. */
export function stateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), "galette-installer-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
