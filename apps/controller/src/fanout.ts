/**
 * Paced fan-out of "assignment changed" notifications. Every notified device polls at once
 * and downloads what changed, so telling a whole fleet in one loop queues that many
 * requests behind each other (and every other device's poll behind them). The queue
 * delivers at most `perSecond` a second, in small batches; a device queued again before
 * its turn is told once, with the newest payload, at its original place.
 */
import type { Logger } from "@galette/log";

/** Default pace: a controller serves several hundred device requests a second besides. */
export const DEFAULT_FANOUT_PER_SECOND = 200;
const TICK_MS = 50;

export interface PacedFanoutOptions<T> {
  perSecond?: number;
  /** delivers one item; a throw (or rejection) is logged and the rest go on */
  deliver: (key: string, item: T) => void | Promise<void>;
  log: Pick<Logger, "warn">;
}

export class PacedFanout<T> {
  readonly perSecond: number;
  readonly #deliver: PacedFanoutOptions<T>["deliver"];
  readonly #log: PacedFanoutOptions<T>["log"];
  readonly #queue = new Map<string, T>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #closed = false;

  constructor(options: PacedFanoutOptions<T>) {
    const perSecond = options.perSecond ?? DEFAULT_FANOUT_PER_SECOND;
    if (!Number.isFinite(perSecond) || perSecond < 1)
      throw new Error(`fan-out pace must be at least 1 a second, got ${perSecond}`);
    this.perSecond = perSecond;
    this.#deliver = options.deliver;
    this.#log = options.log;
  }

  /** Items waiting for their turn. */
  get pending(): number {
    return this.#queue.size;
  }

  /** Queue `item` for `key`; the first batch goes out on the next turn of the event loop. */
  enqueue(key: string, item: T): void {
    if (this.#closed) return;
    this.#queue.set(key, item);
    if (!this.#running && this.#timer === undefined) this.#timer = setTimeout(() => void this.#tick(), 0);
  }

  /** Drops what is queued and stops. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.clear();
  }

  async #tick(): Promise<void> {
    this.#timer = undefined;
    this.#running = true;
    const started = Date.now();
    const batch = Math.max(1, Math.round((this.perSecond * TICK_MS) / 1000));
    const work: Array<Promise<void>> = [];
    for (const [key, item] of this.#queue) {
      if (work.length >= batch) break;
      this.#queue.delete(key);
      work.push(
        Promise.resolve()
          .then(() => this.#deliver(key, item))
          .catch((err: unknown) =>
            this.#log.warn({ key, err: (err as Error).message }, "fan-out delivery failed"),
          ),
      );
    }
    await Promise.all(work);
    this.#running = false;
    if (this.#closed || this.#queue.size === 0) return;
    // the batch's own time counts toward the tick: the pace holds when delivering is slow
    this.#timer = setTimeout(() => void this.#tick(), Math.max(0, TICK_MS - (Date.now() - started)));
  }
}
