/**
 * The agent's disk cache in its data dir: artifacts by sha256 (`artifacts/<digest>`) and
 * the last assignment that was installed successfully (`assignment.json`, with the
 * signatures it was verified with), so a restart without a controller can reinstall what
 * ran before after checking it again; the one installed before it
 * (`previous-assignment.json`, with its artifacts kept) for a rollback without the
 * controller; and a version held back after a rollback (`held.json`).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { writeAtomic } from "@galette/files";
import { describeZodError, RollbackReport, SignedDeviceAssignment } from "@galette/protocol";
import { z } from "zod";

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/** An artifact whose bytes do not hash to its digest: never loaded. */
export class DigestMismatchError extends Error {
  override name = "DigestMismatchError";
}

const CachedAssignment = z.object({
  etag: z.string().optional(),
  savedAt: z.string(),
  /** with its trust material: a reinstall from the cache is verified like a fresh assignment */
  assignment: SignedDeviceAssignment,
  /** map entries applied with it (map id → hex keys), to delete the ones the operator removes */
  appliedKeys: z.record(z.string(), z.array(z.string())).default({}),
});
export type CachedAssignment = z.infer<typeof CachedAssignment>;

/** A chain version the dead-man's switch rolled back: not installed again until confirmed. */
export const HeldVersion = RollbackReport;
export type HeldVersion = z.infer<typeof HeldVersion>;

function readJson<T>(file: string, schema: z.ZodType<T>, what: string): T | undefined {
  if (!existsSync(file)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new Error(`${file}: invalid ${what}: ${describeZodError(parsed.error).join("; ")}`);
  return parsed.data;
}

export class AgentCache {
  readonly artifactsDir: string;
  readonly assignmentFile: string;
  readonly previousFile: string;
  readonly heldFile: string;

  constructor(readonly dataDir: string) {
    this.artifactsDir = path.join(dataDir, "artifacts");
    this.assignmentFile = path.join(dataDir, "assignment.json");
    this.previousFile = path.join(dataDir, "previous-assignment.json");
    this.heldFile = path.join(dataDir, "held.json");
    mkdirSync(this.artifactsDir, { recursive: true, mode: 0o700 });
  }

  artifactPath(digest: string): string {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`"${digest}" is not a sha256 digest`);
    return path.join(this.artifactsDir, digest);
  }

  has(digest: string): boolean {
    return existsSync(this.artifactPath(digest));
  }

  /**
   * Checks the cached file still hashes to its digest (disks and people corrupt files).
   * A corrupted entry is removed so the next attempt downloads it again.
   */
  verify(digest: string, what: string): string {
    const file = this.artifactPath(digest);
    const actual = sha256(readFileSync(file));
    if (actual !== digest) {
      rmSync(file, { force: true });
      throw new DigestMismatchError(
        `${what}: cached artifact ${file} has sha256 ${actual}, expected ${digest}; removed it, refusing to load`,
      );
    }
    return file;
  }

  /** Stores downloaded bytes after checking them against the digest they were asked by. */
  put(digest: string, bytes: Uint8Array, what: string): string {
    const actual = sha256(bytes);
    if (actual !== digest)
      throw new DigestMismatchError(
        `${what}: artifact ${digest} as downloaded (${bytes.length} bytes) has sha256 ${actual}: corrupted or tampered with, refusing to load`,
      );
    const file = this.artifactPath(digest);
    writeAtomic(file, bytes, { mode: 0o600 });
    return file;
  }

  loadAssignment(): CachedAssignment | undefined {
    return readJson(this.assignmentFile, CachedAssignment, "cached assignment");
  }

  saveAssignment(entry: CachedAssignment): void {
    writeAtomic(this.assignmentFile, `${JSON.stringify(entry, null, 2)}\n`);
  }

  /** The assignment installed before the current one (what a rollback restores). */
  loadPrevious(): CachedAssignment | undefined {
    return readJson(this.previousFile, CachedAssignment, "previous assignment");
  }

  savePrevious(entry: CachedAssignment | undefined): void {
    if (entry) writeAtomic(this.previousFile, `${JSON.stringify(entry, null, 2)}\n`);
    else rmSync(this.previousFile, { force: true });
  }

  loadHeld(): HeldVersion | undefined {
    return readJson(this.heldFile, HeldVersion, "held version");
  }

  saveHeld(held: HeldVersion | undefined): void {
    if (held) writeAtomic(this.heldFile, `${JSON.stringify(held, null, 2)}\n`);
    else rmSync(this.heldFile, { force: true });
  }

  /** Removes cached artifacts no longer referenced by `keep` (after a successful install). */
  prune(keep: Set<string>): string[] {
    const removed: string[] = [];
    for (const name of readdirSync(this.artifactsDir)) {
      if (!keep.has(name)) {
        rmSync(path.join(this.artifactsDir, name), { force: true });
        removed.push(name);
      }
    }
    return removed;
  }
}
