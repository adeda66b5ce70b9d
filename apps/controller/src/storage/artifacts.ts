import { createHash, randomBytes } from "node:crypto";
import type { ReadStream } from "node:fs";
import { createReadStream, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Where artifacts live when several controllers share them (the PostgreSQL repository
 * keeps them in the database, keyed by digest). Content-addressed: a digest's bytes never change.
 */
export interface SharedArtifacts {
  put(digest: string, bytes: Uint8Array): Promise<void>;
  /** the bytes, or undefined when nothing is stored under `digest` */
  get(digest: string): Promise<Buffer | undefined>;
  has(digest: string): Promise<boolean>;
}

/**
 * Content-addressed artifact files: DIR/artifacts/sha256/ab/abcdef…. Written to a temp
 * file then renamed, so a crash never leaves a partial file under its digest. With a
 * shared store (several replicas), that store is the truth and DIR a local cache of it:
 * an artifact another replica stored is fetched once, checked against its digest, then
 * served from the file.
 */
export class ArtifactStore {
  readonly root: string;

  constructor(
    dataDir: string,
    private readonly shared?: SharedArtifacts,
  ) {
    this.root = join(dataDir, "artifacts", "sha256");
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  pathOf(digest: string): string {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
    return join(this.root, digest.slice(0, 2), digest);
  }

  #writeLocal(digest: string, bytes: Uint8Array): void {
    const path = this.pathOf(digest);
    if (existsSync(path)) return;
    mkdirSync(join(this.root, digest.slice(0, 2)), { recursive: true, mode: 0o700 });
    const temp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
    writeFileSync(temp, bytes, { mode: 0o600 });
    renameSync(temp, path);
  }

  /** Stores bytes and returns their digest; storing the same bytes twice is a no-op. */
  async put(bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha256Hex(bytes);
    this.#writeLocal(digest, bytes);
    await this.shared?.put(digest, bytes);
    return { digest, size: bytes.byteLength };
  }

  /** Makes the local file exist if the shared store has the artifact; false when nobody has it. */
  async #local(digest: string): Promise<boolean> {
    const path = this.pathOf(digest);
    if (existsSync(path)) return true;
    if (!this.shared) return false;
    const bytes = await this.shared.get(digest);
    if (!bytes) return false;
    if (sha256Hex(bytes) !== digest) throw new Error(`shared artifact ${digest} does not match its digest`);
    this.#writeLocal(digest, bytes);
    return true;
  }

  async has(digest: string): Promise<boolean> {
    if (existsSync(this.pathOf(digest))) return true;
    return this.shared ? this.shared.has(digest) : false;
  }

  async read(digest: string): Promise<Buffer> {
    if (!(await this.#local(digest))) throw new Error(`artifact ${digest} is not in the store`);
    return readFile(this.pathOf(digest));
  }

  /** The artifact as a stream, with its size (for content-length). */
  async open(digest: string): Promise<{ stream: ReadStream; size: number }> {
    if (!(await this.#local(digest))) throw new Error(`artifact ${digest} is not in the store`);
    const path = this.pathOf(digest);
    return { stream: createReadStream(path), size: statSync(path).size };
  }
}
