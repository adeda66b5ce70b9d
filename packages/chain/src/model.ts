import type { SourceLocation } from "./diagnostics";

/** Canonical map type spellings (TOML accepts `-` and `_` interchangeably). */
export const MAP_TYPES = [
  "hash_map",
  "array",
  "lpm_trie",
  "percpu_array",
  "percpu_hash",
  "lru_hash",
] as const;
export type MapType = (typeof MAP_TYPES)[number];

/** Packet verdicts a link may end in. */
export const EXITS = ["tx", "pass", "drop", "abort"] as const;
export type Exit = (typeof EXITS)[number];

/** The kernel's BPF map max_entries is a u32. */
export const MAX_MAP_SIZE = 0xffff_ffff;

/** `lpm-trie` → `lpm_trie`; undefined if it is not a map type. */
export function canonicalMapType(spelling: string): MapType | undefined {
  const folded = spelling.replaceAll("-", "_");
  return (MAP_TYPES as readonly string[]).includes(folded) ? (folded as MapType) : undefined;
}

/** TOML map names bind to Rust #[maps] field names, where `-` cannot appear: `flow-state` ≡ `flow_state`. */
export function canonicalMapName(name: string): string {
  return name.replaceAll("-", "_");
}

export function isExit(name: string): name is Exit {
  return (EXITS as readonly string[]).includes(name);
}

/** One entry of a link's `to` list. */
export type Target =
  | { kind: "exit"; exit: Exit; location: SourceLocation }
  | { kind: "nf"; nf: string; upcall: boolean; location: SourceLocation };

/** A BPF map of the chain: one per shared [maps.X], one per owned map per instance. */
export interface ChainMap {
  /** unique in the chain: the shared name, or `instance.name` for owned maps */
  id: string;
  /** canonical (snake_case) name, the #[maps] field it binds to */
  name: string;
  type: MapType;
  size: number;
  shared: boolean;
  /** instance owning an inline map */
  owner?: string;
  /** instances binding the map, in declaration order */
  users: string[];
  location: SourceLocation;
}

export interface MapBinding {
  /** canonical name (the #[maps] field) */
  name: string;
  /** the key as written in TOML */
  tomlName: string;
  /** ChainMap.id */
  map: string;
  shared: boolean;
  location: SourceLocation;
}

/** A `[functions.NAME]` entry: one NF instance. The same crate may back several instances. */
export interface NfInstance {
  name: string;
  /** crate directory, default nf-examples/<name> */
  path: string;
  pathIsDefault: boolean;
  disableXdp: boolean;
  maps: MapBinding[];
  /** one target per Action variant, in order (the `to` of this NF's link) */
  actions: Target[];
  location: SourceLocation;
  /** the `to` array of this NF's link */
  linkLocation: SourceLocation;
}

export interface Chain {
  name: string;
  file: string;
  /** the `to` of the rx link */
  entry: Extract<Target, { kind: "nf" }>;
  rxLocation: SourceLocation;
  /** declaration order */
  functions: NfInstance[];
  maps: ChainMap[];
}

export function findFunction(chain: Chain, name: string): NfInstance | undefined {
  return chain.functions.find((f) => f.name === name);
}
