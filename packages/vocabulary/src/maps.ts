/** BPF map types an NF may declare, in their canonical (snake_case) spelling. */
export const MAP_TYPES = [
  "hash_map",
  "array",
  "lpm_trie",
  "percpu_array",
  "percpu_hash",
  "lru_hash",
] as const;
export type MapType = (typeof MAP_TYPES)[number];

/** The libbpf/kernel name of each type (what generated BTF map definitions use). */
export const BPF_MAP_TYPE_NAMES: Readonly<Record<MapType, string>> = {
  hash_map: "BPF_MAP_TYPE_HASH",
  array: "BPF_MAP_TYPE_ARRAY",
  lpm_trie: "BPF_MAP_TYPE_LPM_TRIE",
  percpu_array: "BPF_MAP_TYPE_PERCPU_ARRAY",
  percpu_hash: "BPF_MAP_TYPE_PERCPU_HASH",
  lru_hash: "BPF_MAP_TYPE_LRU_HASH",
};

/** Other accepted spellings, after folding case and `-` to `_`. */
export const MAP_TYPE_ALIASES: Readonly<Record<string, MapType>> = {
  hash: "hash_map",
  lpm: "lpm_trie",
};

/**
 * `lpm-trie`, `LPM_TRIE`, `hash` → the canonical spelling; undefined if it names no map
 * type. Case-insensitive; `-` and `_` are interchangeable.
 */
export function canonicalMapType(spelling: string): MapType | undefined {
  const folded = spelling.trim().toLowerCase().replaceAll("-", "_");
  if ((MAP_TYPES as readonly string[]).includes(folded)) return folded as MapType;
  return MAP_TYPE_ALIASES[folded];
}

/** The kernel's max_entries is a u32. */
export const MAX_MAP_ENTRIES_U32 = 0xffff_ffff;
