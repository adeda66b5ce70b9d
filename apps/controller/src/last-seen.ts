import type { FastifyBaseLogger } from "fastify";
import type { Repository } from "./storage/repository";

/** How often the devices' last-seen times are written (ms). */
export const LAST_SEEN_FLUSH_MS = 2000;
/** devices written per transaction */
const FLUSH_SLICE = 100;

/**
 * Last-seen times of device requests, written in one batch every `everyMs` instead
 * of one UPDATE per request: with thousands of agents polling, a write per poll is most of
 * the controller's database work. `lastSeenAt` lags by at most one interval; a status
 * report still writes its own time at once.
 */
export class LastSeenBatch {
  readonly #pending = new Map<string, string>();
  readonly #timer: NodeJS.Timeout;
  #flushing: Promise<void> | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly log: FastifyBaseLogger,
    everyMs = LAST_SEEN_FLUSH_MS,
  ) {
    // one flush at a time: two overlapping batches of UPDATEs may lock the same rows in
    // different orders (a PostgreSQL deadlock, a second's wait for every writer of those rows)
    this.#timer = setInterval(() => {
      if (!this.#flushing) void this.flush();
    }, everyMs);
    this.#timer.unref();
  }

  touch(device: string, at = new Date().toISOString()): void {
    this.#pending.set(device, at);
  }

  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#pending.size === 0) return;
    this.#flushing = this.#write();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #write(): Promise<void> {
    const all = [...this.#pending];
    this.#pending.clear();
    // in slices with other work between them: one SQLite write of a whole fleet's times
    // blocks every request for its duration
    for (let i = 0; i < all.length; i += FLUSH_SLICE) {
      if (i > 0) await new Promise((r) => setImmediate(r));
      const entries = all.slice(i, i + FLUSH_SLICE);
      try {
        await this.repo.touchDevices(entries);
      } catch (err) {
        this.log.error(
          { err, devices: entries.length },
          "last-seen times not written; retrying with the next batch",
        );
        for (const [name, at] of entries) if (!this.#pending.has(name)) this.#pending.set(name, at);
      }
    }
  }

  close(): Promise<void> {
    clearInterval(this.#timer);
    return this.flush();
  }
}
