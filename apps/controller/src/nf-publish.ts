import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import {
  analyzeUntrustedNf,
  type NfAnalysis,
  NfAnalysisError,
  NfBuildError,
  nfInterfaceFromAnalysis,
  truncateMessage,
} from "@galette/nf-build";
import type { ArtifactMeta, CpuTriple, PublishNfResponse } from "@galette/protocol";
import { type DataDir, RequestError } from "./control";
import { CrateArchiveError, unpackCrateArchive } from "./crate-archive";

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
  const unpacked = join(staging, "crate");
  // paths in messages for the uploader: inside the crate, never the controller's
  const hidePaths = (text: string) => text.replaceAll(`${unpacked}/`, "");
  try {
    mkdirSync(unpacked);
    try {
      await unpackCrateArchive(archive, unpacked, {
        maxBytes: MAX_NF_UNPACKED_BYTES,
        maxEntries: MAX_NF_ARCHIVE_ENTRIES,
      });
    } catch (err) {
      if (err instanceof CrateArchiveError)
        throw new RequestError(400, `NF archive rejected: ${err.problems[0]}`, err.problems);
      throw err;
    }
    const crateDir = findCrateRoot(unpacked);

    let analysis: NfAnalysis;
    try {
      // the manifest's rules for uploads (NF name, [lib] path inside the crate, no build
      // script) and the nf crate's types from Galette's own copy, never a path it names
      analysis = await analyzeUntrustedNf(crateDir);
    } catch (err) {
      if (err instanceof NfAnalysisError) {
        const lines = err.message.split("\n").map(hidePaths);
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

    const source = await data.artifacts.put(archive);
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
        // the author's problem (compile error, a limit): 422 with the compiler's words; anything
        // else is the controller's own failure (500: logged, no host detail in the reply)
        if (!(err instanceof NfBuildError || (err instanceof Error && err.name === "NfAnalysisError")))
          throw err;
        throw new RequestError(
          422,
          `NF ${analysis.name} failed to build: ${truncateMessage(hidePaths((err as Error).message).replaceAll(crateDir, analysis.name))}`,
        );
      }
      build = "built";
      buildMessage = undefined;
      buildHash = output.buildHash;
      for (const artifact of output.artifacts) {
        const stored = await data.artifacts.put(artifact.bytes);
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
    await data.repo.transaction(async (tx) => {
      for (const meta of [sourceMeta, ...artifacts]) await tx.insertArtifact(meta, now);
      await tx.insertNf({
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
    await rm(staging, { recursive: true, force: true });
  }
}
