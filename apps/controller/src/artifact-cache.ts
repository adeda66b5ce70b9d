/**
 * Artifact bytes kept in memory for device downloads. After a push every device fetches
 * the same few objects within seconds; artifacts are content-addressed (a digest's bytes
 * never change), so the small ones are read once and served from memory, with no
 * invalidation to get wrong. Larger ones are streamed from the store as before.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { ArtifactStore } from "./storage/artifacts";

export interface ArtifactCacheOptions {
  /** bytes kept at most; the least recently served go first (default 64 MiB) */
  maxBytes?: number;
  /** larger artifacts are never kept, only streamed (default 4 MiB) */
  maxItemBytes?: number;
}

export type ArtifactBody = { bytes: Buffer; size: number } | { stream: Readable; size: number };

export class ArtifactCache {
  readonly #store: ArtifactStore;
  readonly #maxBytes: number;
  readonly #maxItemBytes: number;
  readonly #entries = new Map<string, Buffer>();
  #bytes = 0;

  constructor(store: ArtifactStore, options: ArtifactCacheOptions = {}) {
    this.#store = store;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#maxItemBytes = options.maxItemBytes ?? 4 * 1024 * 1024;
  }

  /** The artifact's bytes (from memory) or a stream of them; undefined when the store lacks it. */
  async open(digest: string): Promise<ArtifactBody | undefined> {
    const hit = this.#entries.get(digest);
    if (hit) {
      // most recently served last: the oldest is evicted first
      this.#entries.delete(digest);
      this.#entries.set(digest, hit);
      return { bytes: hit, size: hit.length };
    }
    if (!(await this.#store.has(digest))) return undefined;
    const opened = await this.#store.open(digest);
    if (opened.size > this.#maxItemBytes) return opened;
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    // Only bytes that are what their name says are kept: a file damaged in the store is
    // served as it is (the device checks the digest and names the corruption) and read
    // again next time, so repairing the store is enough.
    if (createHash("sha256").update(bytes).digest("hex") === digest) this.#remember(digest, bytes);
    return { bytes, size: bytes.length };
  }

  #remember(digest: string, bytes: Buffer): void {
    if (this.#entries.has(digest)) return;
    this.#entries.set(digest, bytes);
    this.#bytes += bytes.length;
    for (const [oldest, kept] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= kept.length;
    }
  }
}
