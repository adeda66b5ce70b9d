/*
 * What both worker pools (the worker process and the in-process benchmark baseline) do
 * around publishing a new instance table: report which ids it added, removed and kept, and
 * wait until no worker can still run an older table.
 */

/** updateInstances() published its table, but a worker kept running an older one too long. */
export class UpdateNotQuiescedError extends Error {
  /** the generation that is live (workers run it from their next batch) */
  readonly generation: number;
  constructor(message: string, generation: number) {
    super(message);
    this.name = "UpdateNotQuiescedError";
    this.generation = generation;
  }
}

export interface InstanceUpdate {
  /** generation of the published table (PoolStats.generation) */
  generation: number;
  /** instance ids by what the update did to them, each ascending */
  added: number[];
  removed: number[];
  kept: number[];
}

export interface UpdateInstancesOptions {
  /** how long to wait for every worker to leave the previous tables (default 5000 ms) */
  quiesceTimeoutMs?: number;
}

/** Which instance ids a table of `generation` adds, removes and keeps against `previous`. */
export function diffInstances(
  previous: readonly { id: number }[],
  next: readonly { id: number }[],
  generation: number,
): InstanceUpdate {
  const before = new Set(previous.map((i) => i.id));
  const after = new Set(next.map((i) => i.id));
  const asc = (ids: Iterable<number>) => [...ids].sort((a, b) => a - b);
  return {
    generation,
    added: asc([...after].filter((id) => !before.has(id))),
    removed: asc([...before].filter((id) => !after.has(id))),
    kept: asc([...after].filter((id) => before.has(id))),
  };
}

export interface QuiesceWait {
  ifname: string;
  generation: number;
  /** default 5000 ms */
  timeoutMs: number | undefined;
  /** true once no worker can run a table older than `generation` (or the pool stopped) */
  quiesced: () => boolean;
  /** each worker's current generation, to name the laggards */
  workers: () => readonly { index: number; generation: number }[];
}

/**
 * Polls every millisecond until `quiesced()`; past the timeout, throws
 * UpdateNotQuiescedError naming the workers still behind.
 */
export async function awaitQuiesced(w: QuiesceWait): Promise<void> {
  const timeoutMs = w.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (w.quiesced()) return;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  const lagging = w
    .workers()
    .filter((x) => x.generation < w.generation)
    .map((x) => `worker ${x.index} (generation ${x.generation})`);
  throw new UpdateNotQuiescedError(
    `AF_XDP workers on ${w.ifname}: instance table ${w.generation} is live, but after ${timeoutMs} ms ` +
      `${lagging.join(", ") || "a worker"} may still run an older one; its retired instances stay loaded`,
    w.generation,
  );
}
