import type { MapType } from "./maps";

/**
 * What one device can hold. The first four are the ABI's (galette_abi.h, checked by a
 * test); the rest are defaults sized for the smallest device we target, a Smart SFP with
 * 512 MB of RAM, and can be replaced per device once it reports its capabilities.
 */
export interface DeviceLimits {
  /** PROG_ARRAY slots (GALETTE_MAX_INSTANCES); one is the rx pseudo-instance, so a chain has at most this − 1 NFs */
  instanceSlots: number;
  /** Action variants per NF = action-table entries (GALETTE_MAX_ACTIONS) */
  actionsPerNf: number;
  /** maps one NF may declare (GALETTE_MAX_MAPS) */
  mapsPerNf: number;
  /** AF_XDP sockets = userland worker threads (GALETTE_MAX_XSKS) */
  workers: number;
  /** BPF maps one chain creates (shared + owned); each is a kernel object and an fd in the agent and every worker */
  mapsPerChain: number;
  /** max_entries of one map */
  entriesPerMap: number;
  /** estimated kernel memory of all the chain's maps together (bytes; see estimateMapBytes) */
  mapMemoryBytes: number;
  /** NF instances running in userland: the workers' instance table (each is a native library loaded into every worker) */
  userlandNfs: number;
  /** CPUs assumed when estimating per-CPU maps (each CPU holds its own copy of every value) */
  cpus: number;
}

const MiB = 1024 * 1024;

/** The ABI's version and sizes (galette_abi.h #defines of the same names; a test compares them). */
export const GALETTE_ABI_VERSION = 1;
export const GALETTE_MAX_ACTIONS = 16;
export const GALETTE_MAX_INSTANCES = 256;
export const GALETTE_MAX_XSKS = 64;
export const GALETTE_MAX_MAPS = 16;

/**
 * Defaults for a 512 MB device: a quarter of its memory for maps (the kernel, the agent,
 * the workers and their UMEM need the rest), 4 CPUs for per-CPU maps.
 */
export const DEFAULT_DEVICE_LIMITS: Readonly<DeviceLimits> = Object.freeze({
  instanceSlots: GALETTE_MAX_INSTANCES,
  actionsPerNf: GALETTE_MAX_ACTIONS,
  mapsPerNf: GALETTE_MAX_MAPS,
  workers: GALETTE_MAX_XSKS,
  mapsPerChain: 512,
  entriesPerMap: 1 << 24,
  mapMemoryBytes: 128 * MiB,
  userlandNfs: GALETTE_MAX_INSTANCES - 1,
  cpus: 4,
});

/** NF instances a chain may have on a device with these limits (one slot belongs to rx). */
export const maxChainInstances = (limits: DeviceLimits = DEFAULT_DEVICE_LIMITS): number =>
  limits.instanceSlots - 1;

/** Which galette_abi.h #define each ABI-backed limit mirrors. */
export const ABI_LIMIT_NAMES = {
  instanceSlots: "GALETTE_MAX_INSTANCES",
  actionsPerNf: "GALETTE_MAX_ACTIONS",
  mapsPerNf: "GALETTE_MAX_MAPS",
  workers: "GALETTE_MAX_XSKS",
} as const satisfies Partial<Record<keyof DeviceLimits, string>>;

/** Human names of the limits, for diagnostics and docs. */
export const LIMIT_DESCRIPTIONS: Readonly<Record<keyof DeviceLimits, string>> = {
  instanceSlots: "NF instance slots per device",
  actionsPerNf: "Action variants per NF",
  mapsPerNf: "maps per NF",
  workers: "userland worker threads",
  mapsPerChain: "maps per chain",
  entriesPerMap: "entries per map",
  mapMemoryBytes: "map memory per chain",
  userlandNfs: "userland NFs per device",
  cpus: "CPUs assumed for per-CPU maps",
};

const round8 = (n: number): number => Math.ceil(n / 8) * 8;

/**
 * Kernel memory a map takes when full, estimated from its type and sizes: hash maps
 * preallocate every element (a ~48-byte element header + key + value, LRU adds its list
 * node), arrays hold the values, per-CPU maps one value per CPU, LPM tries a ~48-byte node
 * per prefix. An estimate for budgeting, not the kernel's exact accounting.
 */
export function estimateMapBytes(
  type: MapType,
  entries: number,
  keySize: number,
  valueSize: number,
  cpus: number = DEFAULT_DEVICE_LIMITS.cpus,
): number {
  const key = round8(keySize);
  const value = round8(valueSize);
  switch (type) {
    case "array":
      return entries * value;
    case "percpu_array":
      return entries * (8 + value * cpus);
    case "hash_map":
      return entries * (48 + key + value);
    case "lru_hash":
      return entries * (48 + 24 + key + value);
    case "percpu_hash":
      return entries * (48 + key + 8 + value * cpus);
    case "lpm_trie":
      return entries * (48 + key + value);
  }
}

/**
 * Hard limits on a chain file itself, whatever the device: they bound the work any input
 * can cause (parsing, validation, planning) before device limits are even considered.
 */
export const CHAIN_INPUT_LIMITS = Object.freeze({
  /** bytes of TOML */
  tomlBytes: 1024 * 1024,
  /** [functions.X] entries */
  functions: 16_384,
  /** [[links]] entries */
  links: 16_385,
  /** [maps.X] entries */
  sharedMaps: 16_384,
  /** entries of one link's `to` */
  targetsPerLink: 256,
  /** maps bound by one function */
  mapsPerFunction: 256,
  /** characters of a function, map or chain name */
  nameLength: 63,
  /** characters of a `path` */
  pathLength: 4096,
});
export type ChainInputLimits = typeof CHAIN_INPUT_LIMITS;

export function formatBytes(n: number): string {
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(n % 1024 === 0 ? 0 : 1)} KiB`;
  return `${n} bytes`;
}
