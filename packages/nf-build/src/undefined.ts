/**
 * Explains undefined symbols left in an NF's linked BPF bitcode. In BPF nothing can be called
 * except helpers and the NF's own code, so each one is a path the verifier would reject —
 * usually a panic that Rust inserted for a check the author did not make.
 */
import type { CallSite } from "./debuglocs";
import type { NfAnalysis } from "./types";

interface Explanation {
  test: RegExp;
  why: string;
  fix: string;
}

const EXPLANATIONS: Explanation[] = [
  {
    test: /panic_bounds_check|slice_(start_|end_)?index|slice_index_fail|index_len_fail|str_index/,
    why: "indexing a slice or array with an index Rust cannot prove is in bounds (it inserts a panic)",
    fix: "take exactly the bytes you need with pkt.slice(n) / pkt.slice_from(off, n) and index them with constants, or use .get(i) and handle None",
  },
  {
    test: /unwrap_failed|expect_failed|option.*unwrap|result.*unwrap/,
    why: "unwrap()/expect() on an Option or Result (it panics on None/Err)",
    fix: "use match, if let, let-else or unwrap_or(...) instead",
  },
  {
    test: /div_by_zero|rem_by_zero|_overflow|panic_const/,
    why: "an arithmetic operation that may panic (division by zero or overflow)",
    fix: "use checked_div/checked_rem/checked_* or wrapping_* operations",
  },
  {
    test: /^(memcpy|memmove|memset|memcmp|bcmp)$/,
    why: "a block copy/compare too large or too dynamic for BPF to inline",
    fix: "copy or compare fixed, small sizes (field by field or with fixed-size arrays); avoid copy_from_slice on runtime lengths",
  },
  {
    test: /panic|fmt/,
    why: "a panic or formatting path",
    fix: "remove code that can panic (no unwrap, unchecked indexing, assert!, format!)",
  },
];

export function explainUndefinedSymbols(
  analysis: NfAnalysis,
  symbols: string[],
  sites: CallSite[] = [],
): string {
  const lines = [
    `NF ${analysis.name} (${analysis.libFile}) cannot run in XDP: its compiled code calls functions that do not exist in the kernel:`,
  ];
  const fixes = new Set<string>();
  for (const s of symbols) {
    const e = EXPLANATIONS.find((x) => x.test.test(s));
    lines.push(`  - ${s}${e ? `: ${e.why}` : ": a library function that is not available in BPF"}`);
    if (e) fixes.add(e.fix);
  }
  for (const site of sites) lines.push(`${site.file}:${site.line}:${site.column}: calls ${site.symbol}`);
  lines.push("How to fix:");
  for (const f of fixes) lines.push(`  - ${f}`);
  if (fixes.size === 0)
    lines.push("  - call only the nf crate's API and core functions that inline (no std, no allocation)");
  lines.push(
    "The NF can still be built for the native targets; to run it only in userland, set `xdp = false` under [package.metadata.galette] in Cargo.toml.",
  );
  return lines.join("\n");
}
