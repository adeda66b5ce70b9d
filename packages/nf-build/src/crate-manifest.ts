/* What nf-build reads from an NF crate's Cargo.toml: read once, by the analyser. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { errorText, NfAnalysisError } from "./analysis-error";
import type { CrateSettings } from "./types";

export interface CrateManifest extends CrateSettings {
  name: string;
  libFile: string;
  /** the `nf` dependency's directory, when it is a path dependency */
  nfCrateDir?: string;
}

export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * [package] edition and [package.metadata.galette] xdp of a parsed Cargo.toml; `fail` for
 * an xdp that is not a boolean.
 */
export function crateSettings(
  toml: Record<string, unknown>,
  fail: (message: string) => never,
): CrateSettings {
  const pkg = isRecord(toml.package) ? toml.package : undefined;
  const edition = typeof pkg?.edition === "string" ? pkg.edition : "2021";
  const metadata = isRecord(pkg?.metadata) ? pkg.metadata : undefined;
  const galette = isRecord(metadata?.galette) ? metadata.galette : undefined;
  const xdp = galette?.xdp;
  if (xdp !== undefined && typeof xdp !== "boolean")
    fail("[package.metadata.galette] xdp must be true or false");
  return { edition, ...(typeof xdp === "boolean" ? { xdp } : {}) };
}

export type ManifestFail = (message: string, hint?: string, line?: number, column?: number) => never;

/** Throws an nf-manifest NfAnalysisError at `file` (line 1 unless told). */
export function manifestFail(file: string): ManifestFail {
  return (message, hint, line = 1, column = 1) => {
    throw new NfAnalysisError([
      { severity: "error", file, line, column, code: "nf-manifest", message, ...(hint ? { hint } : {}) },
    ]);
  };
}

/** Cargo.toml text as a table; invalid TOML fails at its line and column. */
export function parseCargoToml(text: string, fail: ManifestFail): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError)
      return fail(`invalid TOML: ${err.message.split("\n")[0]}`, undefined, err.line, err.column);
    throw err;
  }
}

/** Reads `<crateDir>/Cargo.toml` of a crate on this machine; throws NfAnalysisError naming the problem. */
export async function readCrateManifest(crateDir: string): Promise<CrateManifest> {
  const file = path.join(crateDir, "Cargo.toml");
  const fail = manifestFail(file);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    return fail(
      `cannot read the NF crate's manifest: ${errorText(err)}`,
      "is the path a Rust crate directory?",
    );
  }
  const toml = parseCargoToml(text, fail);
  const pkg = toml.package;
  const name = isRecord(pkg) ? pkg.name : undefined;
  if (typeof name !== "string" || name === "") return fail("missing [package] name");
  const lib = toml.lib;
  const libPath = isRecord(lib) && typeof lib.path === "string" ? lib.path : "src/lib.rs";
  const dependencies = toml.dependencies;
  const nf = isRecord(dependencies) ? dependencies.nf : undefined;
  const nfPath = isRecord(nf) && typeof nf.path === "string" ? nf.path : undefined;
  return {
    name,
    ...crateSettings(toml, fail),
    libFile: path.resolve(crateDir, libPath),
    ...(nfPath !== undefined ? { nfCrateDir: path.resolve(crateDir, nfPath) } : {}),
  };
}

/** The error for a crate whose library file cannot be read. */
export function unreadableLibError(libFile: string, err: unknown): NfAnalysisError {
  return new NfAnalysisError([
    {
      severity: "error",
      file: libFile,
      line: 1,
      column: 1,
      code: "nf-no-lib",
      message: `cannot read the crate's library source: ${errorText(err)}`,
      hint: "an NF crate is a library: put the NF in src/lib.rs",
    },
  ]);
}
