/**
 * What the NF analyser sees in each crate, as `galette nf inspect` prints it: its maps with
 * key/value types and sizes, its actions in order, whether it needs std.
 */
import { analyzeNf, formatNfDiagnostic, NfAnalysisError } from "./analyze";
import type { NfAnalysis, NfDiagnostic, NfMapField } from "./types";

/** Where the report goes; `cwd` is what file paths are shown relative to. */
export interface NfInspectIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  cwd: string;
}

export interface NfInspectResult {
  crateDir: string;
  analysis?: NfAnalysis;
  /** errors (when analysis is absent) and warnings */
  diagnostics: NfDiagnostic[];
}

/** Analyses each crate, prints the result, returns the exit code (1 if any crate has errors). */
export async function runNfInspect(
  crateDirs: string[],
  options: { json: boolean },
  io: NfInspectIo,
): Promise<number> {
  const results: NfInspectResult[] = [];
  for (const crateDir of crateDirs) {
    try {
      const analysis = await analyzeNf(crateDir);
      results.push({ crateDir, analysis, diagnostics: analysis.warnings ?? [] });
    } catch (err) {
      if (!(err instanceof NfAnalysisError)) throw err;
      results.push({ crateDir, diagnostics: err.diagnostics });
    }
  }

  const failed = results.some((r) => r.analysis === undefined);
  // Diagnostics go to stderr in both modes, in the compiler format editors understand.
  for (const result of results) {
    for (const d of result.diagnostics) io.stderr(`${formatNfDiagnostic(d, io.cwd)}\n`);
  }
  if (options.json) {
    io.stdout(`${JSON.stringify(results, null, 2)}\n`);
  } else {
    io.stdout(results.flatMap((r) => (r.analysis ? [describeAnalysis(r.analysis, io.cwd)] : [])).join("\n"));
  }
  return failed ? 1 : 0;
}

function describeAnalysis(a: NfAnalysis, cwd: string): string {
  const where = (loc: { file: string; line: number; column: number }) =>
    formatNfDiagnostic({ ...loc, severity: "error", code: "", message: "" }, cwd).replace(/: error: $/, "");
  const lines = [`${a.name}  ${where({ file: a.libFile, line: 1, column: 1 }).replace(/:1:1$/, "")}`];
  lines.push(
    `  std: ${a.usesStd ? "yes (userland only: needs disable_xdp = true in the chain)" : "no (#![no_std])"}`,
  );
  if (a.maps.length === 0) {
    lines.push("  maps: none");
  } else {
    lines.push(`  maps (struct ${a.mapsStructName ?? "?"}):`);
    const rows = a.maps.map((m) => [
      m.name,
      `(${m.key.text}, ${m.value.text})`,
      `key ${sizeText(m.key.size)}, value ${sizeText(m.value.size)}`,
      mapTypeText(m),
      where(m.location),
    ]);
    lines.push(...table(rows).map((row) => `    ${row}`));
  }
  lines.push(`  actions (enum ${a.actionEnum}):`);
  lines.push(
    ...table(a.actions.map((action, i) => [String(i), action.name, where(action.location)])).map(
      (row) => `    ${row}`,
    ),
  );
  return `${lines.join("\n")}\n`;
}

function sizeText(size: number | undefined): string {
  return size === undefined ? "? B" : `${size} B`;
}

function mapTypeText(m: NfMapField): string {
  const parts = [m.mapType ?? "type from chain"];
  if (m.maxEntries !== undefined) parts.push(`size ${m.maxEntries}`);
  return parts.join(", ");
}

/** Left-aligned columns separated by two spaces. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}
