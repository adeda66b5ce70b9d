/**
 * Types the `nf` crate exports for use in maps, by name (used when lib.rs does not define a
 * type of that name). LPM-trie keys are the kernel's struct bpf_lpm_trie_key layout:
 * u32 prefix length followed by the address bytes.
 */
export const NF_CRATE_TYPES: Readonly<Record<string, { size: number; align: number }>> = {
  LpmKeyV4: { size: 8, align: 4 },
  LpmKeyV6: { size: 20, align: 4 },
};
