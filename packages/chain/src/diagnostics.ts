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

/** Levenshtein distance, small inputs only (keys and names). */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diagonal = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(above + 1, prev[j - 1]! + 1, diagonal + cost);
      diagonal = above;
    }
  }
  return prev[b.length]!;
}

/**
 * The closest candidate to `word`, if it is close enough to be a plausible typo
 * (distance at most a third of the word, minimum 1; case and -/_ differences are free).
 */
export function closestMatch(word: string, candidates: Iterable<string>): string | undefined {
  const fold = (s: string) => s.toLowerCase().replaceAll("-", "_");
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const distance = editDistance(fold(word), fold(candidate));
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** ` — did you mean "x"?` or the empty string. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const match = closestMatch(word, candidates);
  return match === undefined ? "" : ` — did you mean "${match}"?`;
}
