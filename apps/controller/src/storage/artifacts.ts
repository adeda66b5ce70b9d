import { createHash, randomBytes } from "node:crypto";
import type { ReadStream } from "node:fs";
import { createReadStream, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Content-addressed artifact files: DIR/artifacts/sha256/ab/abcdef…. Written to a temp
 * file then renamed, so a crash never leaves a partial file under its digest.
 */
export class ArtifactStore {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, "artifacts", "sha256");
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  pathOf(digest: string): string {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
    return join(this.root, digest.slice(0, 2), digest);
  }

  /** Stores bytes and returns their digest; storing the same bytes twice is a no-op. */
  put(bytes: Uint8Array): { digest: string; size: number } {
    const digest = sha256Hex(bytes);
    const path = this.pathOf(digest);
    if (!existsSync(path)) {
      mkdirSync(join(this.root, digest.slice(0, 2)), { recursive: true, mode: 0o700 });
      const temp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
      writeFileSync(temp, bytes, { mode: 0o600 });
      renameSync(temp, path);
    }
    return { digest, size: bytes.byteLength };
  }

  has(digest: string): boolean {
    return existsSync(this.pathOf(digest));
  }

  size(digest: string): number {
    return statSync(this.pathOf(digest)).size;
  }

  open(digest: string): ReadStream {
    return createReadStream(this.pathOf(digest));
  }
}
