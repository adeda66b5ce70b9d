import path from "node:path";
import type { NfDiagnostic } from "./types";

/** Thrown when a crate cannot be analysed; carries every error (and warning) found. */
export class NfAnalysisError extends Error {
  readonly diagnostics: NfDiagnostic[];
  constructor(diagnostics: NfDiagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === "error");
    super(errors.map((d) => formatNfDiagnostic(d)).join("\n"));
    this.name = "NfAnalysisError";
    this.diagnostics = diagnostics;
  }
}

/**
 * `file:line:col: error: message` plus an indented hint, like @galette/chain's formatDiagnostic.
 * With `relativeTo`, files under that directory are shown relative to it.
 */
export function formatNfDiagnostic(d: NfDiagnostic, relativeTo?: string): string {
  let file = d.file;
  if (relativeTo !== undefined) {
    const rel = path.relative(relativeTo, d.file);
    if (rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel)) file = rel;
  }
  let text = `${file}:${d.line}:${d.column}: ${d.severity}: ${d.message}`;
  if (d.hint) text += `\n  hint: ${d.hint}`;
  return text;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
