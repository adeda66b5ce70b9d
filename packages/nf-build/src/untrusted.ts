/**
 * What a crate written by someone else (an upload to the controller, a `--sandbox` build)
 * must be before it is analysed or compiled: a manifest that names the crate by the NF-name
 * rules, a library file inside the crate, no build script, no proc macro, no dependency but
 * `nf`. The analyser then reads the nf crate shipped with Galette, never a path the manifest
 * names.
 */
import { lstat, readFile, realpath } from "node:fs/promises";
import path from "node:path";
import { analyzeCrate } from "./analyze";
import { crateSettings, isRecord, manifestFail, parseCargoToml } from "./crate-manifest";
import { NF_CRATE_ROOT } from "./toolchain";
import type { CrateSettings, NfAnalysis } from "./types";

/** NF names: a Rust crate name that is also a Galette name (paths, URLs, certificate CNs). */
export const NF_NAME_PATTERN = /^[a-zA-Z][a-zA-Z0-9_-]{0,62}$/;
export const NF_NAME_RULE =
  "1 to 63 letters, digits, '_' and '-', starting with a letter (it is both a Rust crate name and a Galette name)";

/** Cargo.toml and lib.rs above this size are refused before they are parsed (on the event loop). */
export const MAX_SOURCE_BYTES = 1024 * 1024;

export interface UntrustedManifest extends CrateSettings {
  name: string;
  /** absolute path of the library file, inside the crate */
  libFile: string;
}

/** Reads and checks `<crateDir>/Cargo.toml`; throws NfAnalysisError naming the first problem. */
export async function checkUntrustedManifest(crateDir: string): Promise<UntrustedManifest> {
  const dir = path.resolve(crateDir);
  const file = path.join(dir, "Cargo.toml");
  const fail = manifestFail(file);
  const text = await readRegularFile(file).catch((err: Error) =>
    fail(`cannot read the NF crate's manifest: ${err.message}`),
  );
  const toml = parseCargoToml(text, fail);
  const pkg = isRecord(toml.package) ? toml.package : undefined;
  const name = pkg?.name;
  if (typeof name !== "string" || !NF_NAME_PATTERN.test(name))
    return fail(
      typeof name === "string"
        ? `[package] name ${JSON.stringify(name)} is not a valid NF name`
        : "missing [package] name",
      `an NF name is ${NF_NAME_RULE}`,
    );
  if (pkg?.build !== undefined && pkg.build !== false)
    return fail(
      "[package] build: NF crates cannot have a build script",
      "NFs are compiled with rustc alone and none of their code runs at build time; remove `build`",
    );
  if (pkg?.build !== false && (await exists(path.join(dir, "build.rs"))))
    return fail(
      "build.rs: NF crates cannot have a build script",
      "NFs are compiled with rustc alone and none of their code runs at build time; delete build.rs",
    );
  const lib = isRecord(toml.lib) ? toml.lib : undefined;
  if (lib?.["proc-macro"] === true) return fail("[lib] proc-macro: an NF crate cannot be a procedural macro");
  let libFile = path.join(dir, "src", "lib.rs");
  if (lib?.path !== undefined) {
    const p = lib.path;
    if (typeof p !== "string" || p === "" || path.isAbsolute(p) || p.split(/[\\/]/).includes(".."))
      return fail(
        `[lib] path ${JSON.stringify(p)} is outside the crate`,
        "give a path relative to the crate directory, without '..'",
      );
    libFile = path.resolve(dir, p);
  }
  // a link inside the crate could still point out of it (an upload has none; a local crate may)
  const real = await realpath(libFile).catch(() => libFile);
  const realDir = await realpath(dir).catch(() => dir);
  if (!real.startsWith(`${realDir}${path.sep}`))
    return fail(`[lib] path resolves outside the crate (${path.relative(dir, libFile)})`);
  for (const table of ["dependencies", "build-dependencies"] as const) {
    const deps = isRecord(toml[table]) ? Object.keys(toml[table] as object) : [];
    const other = table === "dependencies" ? deps.filter((d) => d !== "nf") : deps;
    if (other.length)
      return fail(
        `[${table}] ${other.join(", ")}: an NF crate may depend only on \`nf\``,
        "NFs are compiled without cargo or crates.io; put the code in the crate",
      );
  }
  return { name, libFile, ...crateSettings(toml, fail) };
}

/** Analyses an untrusted crate: its manifest checked, the nf crate's types taken from Galette's own copy. */
export async function analyzeUntrustedNf(crateDir: string): Promise<NfAnalysis> {
  const dir = path.resolve(crateDir);
  const manifest = await checkUntrustedManifest(dir);
  return analyzeCrate(dir, { ...manifest, nfCrateDir: path.join(NF_CRATE_ROOT, "nf") }, readRegularFile);
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** A regular file's text (not through a link, not a device or fifo), at most MAX_SOURCE_BYTES. */
async function readRegularFile(file: string): Promise<string> {
  const st = await lstat(file).catch(() => {
    throw new Error("no such file");
  });
  if (!st.isFile()) throw new Error("not a regular file");
  if (st.size > MAX_SOURCE_BYTES) throw new Error(`larger than ${MAX_SOURCE_BYTES} bytes`);
  return readFile(file, "utf8");
}
