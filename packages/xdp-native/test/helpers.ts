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
import {
  ActionKind,
  BpfMap,
  BpfObject,
  GALETTE_MAX_ACTIONS,
  GALETTE_MAX_INSTANCES,
  GALETTE_MAX_XSKS,
  galetteAction,
  type MapTypeName,
  netnsPath,
  rootProgramObjectPath,
  u32,
  XdpAttachment,
} from "../src/index";

const here = dirname(fileURLToPath(import.meta.url));
const includeDir = join(here, "..", "include");

export function compileBpf(name: string): Promise<string> {
  return compileBpfObject(join(here, "bpf", name), { includeDirs: [includeDir] });
}

/** Builds the C NF library; abiVersion overrides what galette_nf_abi_version returns. */
export function compileNf(name: string, abiVersion?: number): Promise<string> {
  const src = join(here, "nf", name);
  const headers = [
    ...["galette_abi.h", "galette_nf_maps.h"].map((h) => join(includeDir, h)),
    join(here, "nf", "test_nf.h"),
  ];
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

export type TestCleanups = ReturnType<typeof testCleanups>;

/** A map with 4-byte keys (a device's shared maps, action tables, the C NF's maps), closed after the test. */
export function testMap(
  c: TestCleanups,
  type: MapTypeName,
  name: string,
  maxEntries: number,
  valueSize = 4,
): BpfMap {
  return c.own(BpfMap.create({ type, name, keySize: 4, valueSize, maxEntries }));
}

/** An NF instance's action table (variant -> galette_action). */
export function actionTable(c: TestCleanups, name: string): BpfMap {
  return testMap(c, "array", name, GALETTE_MAX_ACTIONS, 8);
}

/**
 * The XDP side of an upcalling device on `v`'s B end: the device's PROG_ARRAY, XSKMAP and
 * socket-count map (named `<prefix>_progs`, ...), instance 1 (the test shim) whose variant 0
 * upcalls to instance 2, and the root program in front of it, attached. The userland
 * instances and the pool are the caller's.
 */
export function upcallDevice(c: TestCleanups, v: VethPair, shim: string, prefix: string) {
  const netns = netnsPath(v.nsB);
  const progs = testMap(c, "prog_array", `${prefix}_progs`, GALETTE_MAX_INSTANCES);
  const xsks = testMap(c, "xskmap", `${prefix}_xsks`, GALETTE_MAX_XSKS);
  const xskCount = testMap(c, "array", `${prefix}_xskcnt`, 4);
  const upcaller = c.own(
    BpfObject.load(shim, {
      rodata: { galette_instance_id: 1, nf_mode: 0 },
      reuseMaps: { galette_progs: progs, galette_xsks: xsks, galette_xsk_count: xskCount },
    }),
  );
  const upcallerActions = upcaller.map("galette_actions");
  upcallerActions.typed(u32, galetteAction).set(0, { kind: ActionKind.upcall, arg: 2 });
  progs.typed(u32, u32).set(1, upcaller.programFd("galette_nf"));
  const root = c.own(BpfObject.load(rootProgramObjectPath()));
  root.map("galette_root_progs").typed(u32, u32).set(0, upcaller.programFd("galette_nf"));
  const link = XdpAttachment.attach({ ifname: v.ifB, netns }, root.programFd("galette_root"));
  c.defer(() => link.detach());
  return { netns, progs, xsks, xskCount, upcallerActions };
}
