import { readFile } from "node:fs/promises";
import type { Diagnostic } from "./diagnostics";
import { type ParseOptions, type ParseResult, parseChain } from "./parse";

/** Reads and parses a chain file; an unreadable file becomes a `read-error` diagnostic. */
export async function loadChainFile(file: string, options: ParseOptions = {}): Promise<ParseResult> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const d: Diagnostic = {
      severity: "error",
      file,
      line: 1,
      column: 1,
      code: "read-error",
      message: `cannot read chain file: ${reason}`,
    };
    return { diagnostics: [d] };
  }
  return parseChain(text, file, options);
}
