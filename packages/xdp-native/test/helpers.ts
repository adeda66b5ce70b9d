import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const includeDir = join(here, "..", "include");
const outDir = join(tmpdir(), "galette-xdp-native-test");

async function multiarchInclude(): Promise<string> {
  const { stdout } = await execFileP("gcc", ["-print-multiarch"]);
  return `/usr/include/${stdout.trim()}`;
}

/** Compiles once per content hash (sources + flags), atomically, so parallel files share it. */
async function cached(
  src: string,
  ext: string,
  extra: string,
  build: (out: string) => Promise<void>,
): Promise<string> {
  const hash = createHash("sha256")
    .update(readFileSync(src))
    .update(readFileSync(join(includeDir, "galette_abi.h")))
    .update(extra)
    .digest("hex")
    .slice(0, 16);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `${src.split("/").pop()}-${hash}${ext}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  await build(tmp);
  renameSync(tmp, out);
  return out;
}

export async function compileBpf(name: string): Promise<string> {
  const src = join(here, "bpf", name);
  const inc = await multiarchInclude();
  return cached(src, ".o", "bpf", async (out) => {
    await execFileP("clang-22", [
      "-target",
      "bpf",
      "-mcpu=v3",
      "-O2",
      "-g",
      `-I${inc}`,
      `-I${includeDir}`,
      "-c",
      src,
      "-o",
      out,
    ]);
  });
}

/** Builds the C NF library; abiVersion overrides what galette_nf_abi_version returns. */
export async function compileNf(name: string, abiVersion?: number): Promise<string> {
  const src = join(here, "nf", name);
  const defs = abiVersion === undefined ? [] : [`-DTEST_ABI_VERSION=${abiVersion}`];
  return cached(src, ".so", defs.join(" "), async (out) => {
    // bpf_map_update_elem stays undefined: the worker process (libbpf) provides it.
    await execFileP("gcc", ["-O2", "-fPIC", "-shared", `-I${includeDir}`, ...defs, src, "-o", out]);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or the deadline passes (bounded). */
export async function waitFor(probe: () => boolean, timeoutMs = 5000, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (probe()) return true;
    await sleep(stepMs);
  }
  return probe();
}
