import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  attachXdpPass,
  cachedBuild,
  compileBpfObject,
  createVethPair,
  run,
  sleep,
  type VethPair,
} from "@galette/testkit";
import { afterEach } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const includeDir = join(here, "..", "include");

export function compileBpf(name: string): Promise<string> {
  return compileBpfObject(join(here, "bpf", name), { includeDirs: [includeDir] });
}

/** Builds the C NF library; abiVersion overrides what galette_nf_abi_version returns. */
export function compileNf(name: string, abiVersion?: number): Promise<string> {
  const src = join(here, "nf", name);
  const headers = ["galette_abi.h", "galette_nf_maps.h"].map((h) => join(includeDir, h));
  const flags = ["-O2", "-fPIC", "-shared", `-I${includeDir}`];
  if (abiVersion !== undefined) flags.push(`-DTEST_ABI_VERSION=${abiVersion}`);
  // bpf_map_update_elem stays undefined: the worker process (libbpf) provides it.
  return cachedBuild(`${name}.so`, [src, ...headers], flags, (out) => run("gcc", [...flags, src, "-o", out]));
}

/** Polls `probe` until it returns true or the deadline passes (bounded). */
export async function waitFor(probe: () => boolean, timeoutMs = 5000, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (probe()) return true;
    await sleep(stepMs);
  }
  return probe();
}

/**
 * Clean-up after each test of a file, in reverse order and also when the test failed:
 * `own(x)` closes x, `defer(fn)` runs fn, `veth(tag)` removes its pair. Call once at the top of
 * a test file.
 */
export function testCleanups() {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return {
    defer(fn: () => unknown): void {
      cleanups.push(fn);
    },
    own<T extends { close(): void }>(x: T): T {
      cleanups.push(() => x.close());
      return x;
    },
    /** A fresh veth pair, XDP_PASS on the generator side: XDP_TX into a veth needs an XDP program on the receiving peer. */
    async veth(tag: string, opts: { queues?: number } = {}): Promise<VethPair> {
      const v = await createVethPair(tag, opts);
      cleanups.push(() => v.cleanup());
      await attachXdpPass(v.nsA, v.ifA);
      return v;
    },
  };
}
