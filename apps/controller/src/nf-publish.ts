import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, posix } from "node:path";
import type { NfInterface } from "@galette/chain";
import { analyzeNf, type NfAnalysis, NfAnalysisError, nfInterfaceFromAnalysis } from "@galette/nf-build";
import type { ArtifactMeta, CpuTriple, PublishNfResponse } from "@galette/protocol";
import { extract, list } from "tar";
import { type DataDir, RequestError } from "./control";

export const DEFAULT_MAX_NF_ARCHIVE_BYTES = 8 * 1024 * 1024;
/** Uncompressed total: a gzip bomb stops here. */
export const MAX_NF_UNPACKED_BYTES = 64 * 1024 * 1024;
export const MAX_NF_ARCHIVE_ENTRIES = 4096;

export interface NfBuildInput {
  name: string;
  crateDir: string;
  analysis: NfAnalysis;
  sourceDigest: string;
}

export interface NfBuildOutput {
  /** hash of source + toolchain + targets; mixed into NF instance UUIDs */
  buildHash: string;
  artifacts: Array<{ kind: "bpf-object" | "native-lib"; triple?: CpuTriple; bytes: Uint8Array }>;
}

/**
 * Compiles a published crate to its BPF object and native libraries. The controller does
 * not compile by itself: the server is given a builder (`ControllerOptions.nfBuilder`);
 * the one backed by @galette/nf-build's compiler is wired in where the server is started
 * (`galette controller serve`). Without one, publish stores the crate and its interface
 * (enough to validate and push chains) and reports build "stored-unbuilt".
 */
export type NfBuilder = (input: NfBuildInput) => Promise<NfBuildOutput>;

/**
 * Checks every entry of a tar (optionally gzipped) before anything is written: regular
 * files and directories only, relative paths without `..`, bounded count and size.
 * node-tar would silently strip such paths; we refuse the whole archive instead.
 */
export function checkCrateArchive(archivePath: string): { entries: number; bytes: number } {
  const problems: string[] = [];
  let entries = 0;
  let bytes = 0;
  list({
    file: archivePath,
    sync: true,
    strict: true,
    onReadEntry: (entry) => {
      entries++;
      const path = entry.path;
      if (entry.type !== "File" && entry.type !== "OldFile" && entry.type !== "Directory") {
        const kind =
          entry.type === "SymbolicLink"
            ? "a symbolic link"
            : entry.type === "Link"
              ? "a hard link"
              : `a ${entry.type}`;
        problems.push(`${path}: is ${kind}; only regular files and directories are accepted`);
      }
      if (path.startsWith("/") || /^[a-zA-Z]:/.test(path)) problems.push(`${path}: absolute path`);
      if (posix.normalize(path).split("/").includes("..") || path.split(/[\\/]/).includes("..")) {
        problems.push(`${path}: path escapes the archive ('..')`);
      }
      bytes += entry.size ?? 0;
      entry.resume();
    },
  });
  if (entries === 0) problems.push("the archive is empty (or not a tar)");
  if (entries > MAX_NF_ARCHIVE_ENTRIES)
    problems.push(`the archive has ${entries} entries (limit ${MAX_NF_ARCHIVE_ENTRIES})`);
  if (bytes > MAX_NF_UNPACKED_BYTES)
    problems.push(`the archive unpacks to ${bytes} bytes (limit ${MAX_NF_UNPACKED_BYTES})`);
  if (problems.length > 0) throw new RequestError(400, `NF archive rejected: ${problems[0]}`, problems);
  return { entries, bytes };
}

/** Cargo.toml at the archive root, or under its single top-level directory. */
function findCrateRoot(dir: string): string {
  if (existsSync(join(dir, "Cargo.toml"))) return dir;
  const top = readdirSync(dir, { withFileTypes: true });
  if (top.length === 1 && top[0]!.isDirectory() && existsSync(join(dir, top[0]!.name, "Cargo.toml"))) {
    return join(dir, top[0]!.name);
  }
  throw new RequestError(
    400,
    "NF archive rejected: no Cargo.toml at its root or under a single top-level directory",
  );
}

/**
 * POST /v1/nfs: check → unpack into a staging dir → analyse (Action variants, #[maps]) →
 * build (when a builder is wired) → store archive, crate and artifacts → record. Any
 * failure before the record is written removes the staging dir: nothing is stored.
 */
export async function publishNf(
  data: DataDir,
  archive: Buffer,
  options: { expectedName?: string; builder?: NfBuilder },
): Promise<PublishNfResponse> {
  const staging = join(data.nfSourceRoot, `.staging-${randomBytes(8).toString("hex")}`);
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    const archivePath = join(staging, "upload.tar");
    writeFileSync(archivePath, archive, { mode: 0o600 });
    try {
      checkCrateArchive(archivePath);
    } catch (err) {
      if (err instanceof RequestError) throw err;
      throw new RequestError(400, `NF archive rejected: not a readable tar: ${(err as Error).message}`);
    }
    const unpacked = join(staging, "crate");
    mkdirSync(unpacked);
    extract({ file: archivePath, cwd: unpacked, sync: true, strict: true, preserveOwner: false });
    const crateDir = findCrateRoot(unpacked);

    let analysis: NfAnalysis;
    try {
      analysis = await analyzeNf(crateDir);
    } catch (err) {
      if (err instanceof NfAnalysisError) {
        const lines = err.message.split("\n").map((line) => line.replaceAll(`${unpacked}/`, ""));
        throw new RequestError(400, `NF crate rejected: ${lines[0]}`, lines);
      }
      throw err;
    }
    if (options.expectedName && options.expectedName !== analysis.name) {
      throw new RequestError(
        400,
        `NF name mismatch: the request names "${options.expectedName}" but Cargo.toml's [package] name is "${analysis.name}"`,
      );
    }
    const nfInterface: NfInterface = nfInterfaceFromAnalysis(analysis);
    // Locations in the stored interface point inside the crate, not at our staging dir.
    const relocate = (file: string) => file.replace(`${crateDir}/`, `${analysis.name}/`);
    nfInterface.file = relocate(nfInterface.file);
    for (const item of [...nfInterface.actions, ...nfInterface.maps])
      item.location.file = relocate(item.location.file);

    const source = data.artifacts.put(archive);
    let build: PublishNfResponse["build"] = "stored-unbuilt";
    let buildMessage: string | undefined = "no NF builder is configured on this controller";
    let buildHash = source.digest;
    const artifacts: ArtifactMeta[] = [];
    if (options.builder) {
      let output: NfBuildOutput;
      try {
        output = await options.builder({
          name: analysis.name,
          crateDir,
          analysis,
          sourceDigest: source.digest,
        });
      } catch (err) {
        throw new RequestError(422, `NF ${analysis.name} failed to build: ${(err as Error).message}`);
      }
      build = "built";
      buildMessage = undefined;
      buildHash = output.buildHash;
      for (const artifact of output.artifacts) {
        const stored = data.artifacts.put(artifact.bytes);
        artifacts.push({
          digest: stored.digest,
          size: stored.size,
          kind: artifact.kind,
          nf: analysis.name,
          ...(artifact.triple ? { triple: artifact.triple } : {}),
        });
      }
    }
    const sourceMeta: ArtifactMeta = {
      digest: source.digest,
      size: source.size,
      kind: "crate-source",
      nf: analysis.name,
    };
    const now = new Date().toISOString();
    const finalDir = join(data.nfSourceRoot, analysis.name, source.digest);
    data.repo.transaction(() => {
      for (const meta of [sourceMeta, ...artifacts]) data.repo.insertArtifact(meta, now);
      data.repo.insertNf({
        name: analysis.name,
        sourceDigest: source.digest,
        build,
        buildMessage: buildMessage ?? null,
        buildHash,
        interface: nfInterface,
        artifacts,
        publishedAt: now,
      });
    });
    if (!existsSync(finalDir)) {
      mkdirSync(join(data.nfSourceRoot, analysis.name), { recursive: true, mode: 0o700 });
      renameSync(crateDir, finalDir);
    }
    return {
      name: analysis.name,
      sourceDigest: source.digest,
      build,
      ...(buildMessage ? { buildMessage } : {}),
      artifacts,
    };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
