import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** bench/c: the generator, the sink and the hand-written baselines. */
export const cSourceDir = join(dirname(fileURLToPath(import.meta.url)), "..", "c");

export interface BenchTools {
  dir: string;
  galgen: string;
  afxdpMacswap: string;
  afpacketMacswap: string;
  schedBoost: string;
  /** BPF objects */
  sinkObj: string;
  genLiveObj: string;
  xdpMacswapObj: string;
  xskRedirectObj: string;
  xdpPassObj: string;
  xdpDropObj: string;
  expensiveXdpObj: string;
  expensiveUpcallObj: string;
}

function toolsIn(dir: string): BenchTools {
  return {
    dir,
    galgen: join(dir, "galgen"),
    afxdpMacswap: join(dir, "afxdp_macswap"),
    afpacketMacswap: join(dir, "afpacket_macswap"),
    schedBoost: join(dir, "sched_boost"),
    sinkObj: join(dir, "sink.bpf.o"),
    genLiveObj: join(dir, "gen_live.bpf.o"),
    xdpMacswapObj: join(dir, "xdp_macswap.bpf.o"),
    xskRedirectObj: join(dir, "xsk_redirect.bpf.o"),
    xdpPassObj: join(dir, "xdp_pass.bpf.o"),
    xdpDropObj: join(dir, "xdp_drop.bpf.o"),
    expensiveXdpObj: join(dir, "expensive_xdp.bpf.o"),
    expensiveUpcallObj: join(dir, "expensive_upcall.bpf.o"),
  };
}

function sourceFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? sourceFiles(join(dir, e.name), `${prefix}${e.name}/`)
        : /\.(c|h)$|^Makefile$/.test(e.name)
          ? [`${prefix}${e.name}`]
          : [],
    )
    .sort();
}

async function compilerVersions(): Promise<string> {
  const versions: string[] = [];
  for (const cc of ["gcc", "clang-22"]) {
    try {
      versions.push((await execFileP(cc, ["--version"])).stdout.split("\n")[0]!);
    } catch (err) {
      throw new Error(`bench tools need \`${cc}\` (run \`make setup\`): ${(err as Error).message}`);
    }
  }
  return versions.join("\n");
}

/**
 * Build the C tools once per content: the cache key hashes every source file under bench/c
 * and the compiler versions, so an edit or a toolchain change rebuilds and reruns share.
 */
export async function buildTools(cacheRoot = join(tmpdir(), "galette-bench")): Promise<BenchTools> {
  const hash = createHash("sha256");
  for (const f of sourceFiles(cSourceDir))
    hash
      .update(f)
      .update("\0")
      .update(readFileSync(join(cSourceDir, f)));
  hash.update(await compilerVersions());
  const dir = join(cacheRoot, hash.digest("hex").slice(0, 16));
  const tools = toolsIn(dir);
  if (Object.values(tools).every((p) => existsSync(p))) return tools;
  mkdirSync(cacheRoot, { recursive: true });
  // Build beside the final directory and rename, so a concurrent or interrupted build never
  // leaves a half-filled cache entry behind.
  const staging = `${dir}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  try {
    await execFileP("make", ["-s", "-C", cSourceDir, `OUT=${staging}`], { maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`building bench/c failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
  try {
    renameSync(staging, dir);
  } catch (err) {
    // another process finished the same build first: theirs is identical
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(tools.galgen)) throw err;
  }
  return tools;
}
