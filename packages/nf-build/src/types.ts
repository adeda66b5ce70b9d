/** Where something is in an NF author's source, for error messages (1-based). */
export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

/** A Rust type as written in a #[maps] field, with its size when it can be computed. */
export interface RustType {
  /** the type as written, e.g. "u32", "[u8; 6]", "FlowKey", "LpmKey<4>" */
  text: string;
  /** size in bytes when computable (primitives, arrays, #[repr(C)] structs of those in lib.rs) */
  size?: number;
}

export interface NfMapField {
  /** field name in the #[maps] struct; the chain's `maps` keys bind to these names */
  name: string;
  key: RustType;
  value: RustType;
  /** optional map type given in the source (e.g. #[map(type = "lpm-trie", size = 1024)]) */
  mapType?: string;
  /** max entries from #[map(size = N)], if given in the source */
  maxEntries?: number;
  location: SourceLocation;
}

export interface NfActionVariant {
  name: string;
  location: SourceLocation;
}

/** What the compiler learns from an NF crate's src/lib.rs, with a real Rust parser. */
export interface NfAnalysis {
  /** crate name from Cargo.toml ([package] name) */
  name: string;
  crateDir: string;
  libFile: string;
  /** #[maps] struct fields in declaration order (empty if the NF has no maps) */
  maps: NfMapField[];
  mapsStructName?: string;
  /** the enum returned by `packet`, variants in declaration order */
  actionEnum: string;
  actions: NfActionVariant[];
  /** true if the crate is not #![no_std] (userland-only NF; must be disable_xdp) */
  usesStd: boolean;
  /** from Cargo.toml, when the analysis read it */
  settings?: CrateSettings;
  /** non-fatal findings of the analyser (e.g. a key/value type whose size cannot be computed) */
  warnings?: NfDiagnostic[];
}

/** What an NF crate's Cargo.toml says about how to build it. */
export interface CrateSettings {
  /** [package] edition (2021 when absent) */
  edition: string;
  /** [package.metadata.galette] xdp: false = userland only, whatever the source */
  xdp?: boolean;
}

/** One finding of the NF analyser; the same shape as @galette/chain's Diagnostic so the two merge. */
export interface NfDiagnostic {
  severity: "error" | "warning";
  file: string;
  /** 1-based */
  line: number;
  /** 1-based */
  column: number;
  /** stable machine-readable code, e.g. "nf-no-packet-fn" */
  code: string;
  message: string;
  /** what to do about it */
  hint?: string;
}
