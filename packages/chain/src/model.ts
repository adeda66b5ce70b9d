import type { Exit, MapType } from "@galette/vocabulary";
import type { SourceLocation } from "./diagnostics";

export { canonicalMapType, EXITS, type Exit, isExit, MAP_TYPES, type MapType } from "@galette/vocabulary";

/** TOML map names bind to Rust #[maps] field names, where `-` cannot appear: `flow-state` ≡ `flow_state`. */
export function canonicalMapName(name: string): string {
  return name.replaceAll("-", "_");
}

/** One entry of a link's `to` list. */
export type LinkTarget =
  | { kind: "exit"; exit: Exit; location: SourceLocation }
  | { kind: "nf"; nf: string; upcall: boolean; location: SourceLocation };

/** A BPF map of the chain: one per shared [maps.X], one per owned map per instance. */
export interface ChainMap {
  /** unique in the chain: the shared name, or `instance.name` for owned maps */
  id: string;
  /** canonical (snake_case) name, the #[maps] field it binds to */
  name: string;
  type: MapType;
  /** max_entries (the TOML's `size`) */
  maxEntries: number;
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
  targets: LinkTarget[];
  location: SourceLocation;
  /** the `to` array of this NF's link */
  linkLocation: SourceLocation;
}

/**
 * Where frames enter the chain: `rx` (every port of the installation), or per direction on
 * a two-port installation `rx.a` (frames arriving on the first port) and `rx.b` (on the
 * second).
 */
export const RX_SOURCES = ["rx", "rx.a", "rx.b"] as const;
export type RxSource = (typeof RX_SOURCES)[number];
export const isRxSource = (s: string): s is RxSource => (RX_SOURCES as readonly string[]).includes(s);

export interface Chain {
  name: string;
  file: string;
  /** the `to` of the rx link (both ports), or of the rx.a link when the chain has directions */
  entry: Extract<LinkTarget, { kind: "nf" }>;
  rxLocation: SourceLocation;
  /** the `to` of the rx.b link: frames arriving on the second port enter here (two ports only) */
  entryB?: Extract<LinkTarget, { kind: "nf" }>;
  rxBLocation?: SourceLocation;
  /** declaration order */
  functions: NfInstance[];
  maps: ChainMap[];
}

export function findFunction(chain: Chain, name: string): NfInstance | undefined {
  return chain.functions.find((f) => f.name === name);
}
