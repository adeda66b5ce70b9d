/** A place in a source file, 1-based line and column. */
export interface SourceLocation {
  file: string;
  line: number;
  column: number;
}

export type Severity = "error" | "warning";

/** One finding about a chain file. Every error and warning the package produces has this shape. */
export interface Diagnostic {
  severity: Severity;
  file: string;
  line: number;
  column: number;
  /** stable machine-readable code, listed in docs/chain-format.md */
  code: string;
  message: string;
  /** what to do about it */
  hint?: string;
  /** other places involved (e.g. the NF's lib.rs line, the first of two duplicate links) */
  related?: Array<SourceLocation & { message: string }>;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === "error");
}

/** Orders diagnostics by position so output reads top to bottom like a compiler's. */
export function sortDiagnostics(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  return [...diagnostics].sort(
    (a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column,
  );
}

/** `file:line:col: error: message` plus an indented hint, the format compilers use. */
export function formatDiagnostic(d: Diagnostic): string {
  let text = `${d.file}:${d.line}:${d.column}: ${d.severity}: ${d.message}`;
  for (const r of d.related ?? []) text += `\n  ${r.file}:${r.line}:${r.column}: note: ${r.message}`;
  if (d.hint) text += `\n  hint: ${d.hint}`;
  return text;
}

export function formatLocation(loc: SourceLocation): string {
  return `${loc.file}:${loc.line}:${loc.column}`;
}

/** Edit distance counting an adjacent transposition as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** Words longer than this get no suggestion, and at most this many candidates are compared: a bound on the work. */
const SUGGEST_MAX_WORD = 64;
const SUGGEST_MAX_CANDIDATES = 4096;

/**
 * The closest candidate to `word`, if it is close enough to be a plausible typo
 * (distance at most a third of the word, minimum 1; case and -/_ differences are free).
 * Bounded: long words and candidates far off in length are skipped.
 */
export function closestMatch(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > SUGGEST_MAX_WORD) return undefined;
  const fold = (s: string) => s.toLowerCase().replaceAll("-", "_");
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  let compared = 0;
  for (const candidate of candidates) {
    if (candidate === word || Math.abs(candidate.length - word.length) > limit) continue;
    if (++compared > SUGGEST_MAX_CANDIDATES) break;
    const distance = editDistance(fold(word), fold(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

/** ` — did you mean "x"?` or the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const match = closestMatch(word, candidates);
  return match === undefined ? "" : ` — did you mean "${match}"?`;
}
