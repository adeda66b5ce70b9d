/*
 * The in-process worker pool: AF_XDP worker threads inside the calling process, running
 * native NF code with the caller's privileges. Kept ONLY as the baseline of the bench row
 * that compares it with the out-of-process WorkerPool (pool.ts); nothing else may use it.
 */

import { awaitQuiesced, diffInstances } from "./instance-update";
import { type NativePoolEvent, native, type PoolHandle } from "./native";
import {
  asLibraryError,
  fdOf,
  type InstanceUpdate,
  type NfInstanceConfig,
  type PoolStats,
  retryWhileQueueBusy,
  stoppedError,
  summarise,
  toNative,
  type UpdateInstancesOptions,
  WorkerError,
  type WorkerPoolOptions,
} from "./pool";

/**
 * AF_XDP workers running native NFs as threads of this process. Benchmark baseline only
 * (see the file comment): NF code runs with this process's privileges and a crashing NF
 * takes the process down.
 */
export class InProcessWorkerPool {
  #handle: PoolHandle | undefined;
  readonly #errors: WorkerError[] = [];
  #instances: readonly NfInstanceConfig[];

  private constructor(readonly options: Readonly<WorkerPoolOptions>) {
    this.#instances = [...options.instances];
  }

  static start(options: WorkerPoolOptions): Promise<InProcessWorkerPool> {
    if (options.peer)
      throw new Error(
        `the in-process pool (a benchmark baseline) serves one port; ${options.ifname},${options.peer} needs the worker process`,
      );
    if (options.queues !== undefined && options.queues !== 1)
      throw new Error(
        `the in-process pool (a benchmark baseline) serves RX queue 0 only; ${options.queues} queues on ${options.ifname} need the worker process`,
      );
    return retryWhileQueueBusy(options, async () => {
      const pool = new InProcessWorkerPool(options);
      await pool.#start();
      return pool;
    });
  }

  #start(): Promise<void> {
    const o = this.options;
    let ready = 0;
    let settle: ((err?: Error) => void) | undefined;
    const started = new Promise<void>((resolve, reject) => {
      settle = (err) => {
        settle = undefined;
        if (err) reject(err);
        else resolve();
      };
    });
    const onEvent = (e: NativePoolEvent) => {
      if (e.type === "ready") {
        if (++ready === o.workers) settle?.();
        return;
      }
      const err = new WorkerError(e, o.ifname);
      this.#errors.push(err);
      if (settle) settle(err);
      else o.onError?.(err);
    };
    try {
      this.#handle = native().poolStart(
        {
          ifname: o.ifname,
          netns: o.netns,
          workers: o.workers,
          busyPoll: o.mode === "busy-poll",
          pollTimeoutMs: o.pollTimeoutMs,
          frameSize: o.frameSize,
          frameCount: o.frameCount,
          ringSize: o.ringSize,
          batchSize: o.batchSize,
          xskMapFd: fdOf(o.xskMap),
          xskCountMapFd: fdOf(o.xskCountMap),
          instances: o.instances.map(toNative),
        },
        onEvent,
      );
    } catch (err) {
      throw asLibraryError(err, o.ifname);
    }
    const timeoutMs = o.startTimeoutMs ?? 10_000;
    const timer = setTimeout(
      () =>
        settle?.(
          new Error(`AF_XDP workers on ${o.ifname}: only ${ready}/${o.workers} ready after ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    return started.then(
      () => clearTimeout(timer),
      (err: unknown) => {
        clearTimeout(timer);
        this.stop();
        throw err;
      },
    );
  }

  get running(): boolean {
    return this.#handle !== undefined;
  }

  /** Errors workers reported so far (also passed to onError). */
  get errors(): readonly WorkerError[] {
    return this.#errors;
  }

  /** Counters read atomically from the running workers (no syscalls). */
  stats(): PoolStats {
    if (!this.#handle) throw stoppedError(this.options.ifname);
    return withTotals(native().poolStats(this.#handle));
  }

  /**
   * Re-reads every instance's action table and hands the new table to the workers (they
   * pick it up at their next batch). Call after changing action entries: XDP sees map
   * updates at once, userland only through this. Returns the new generation.
   */
  reloadActions(): number {
    if (!this.#handle) throw stoppedError(this.options.ifname);
    return native().poolReload(this.#handle);
  }

  /** The instance set the workers run (the start options' until the first update). */
  get instances(): readonly NfInstanceConfig[] {
    return this.#instances;
  }

  /**
   * As WorkerPool.updateInstances, but the work happens here, synchronously: every action
   * map and NF map is checked, every library dlopened and ABI-checked and every action
   * table read (so this subsumes reloadActions) before one immutable table is published to
   * the worker threads; any error leaves the pool exactly as it was.
   */
  async updateInstances(
    instances: NfInstanceConfig[],
    options: UpdateInstancesOptions = {},
  ): Promise<InstanceUpdate> {
    const h = this.#handle;
    const ifname = this.options.ifname;
    if (!h) throw stoppedError(ifname, "update its NF instances");
    let generation: number;
    try {
      generation = native().poolUpdate(h, instances.map(toNative));
    } catch (err) {
      throw asLibraryError(err, ifname);
    }
    const result = diffInstances(this.#instances, instances, generation);
    this.#instances = [...instances];
    // Workers switch at their next batch (idle ones hold nothing), so this is usually
    // done at the first or second look; a stopped pool has freed every table.
    await awaitQuiesced({
      ifname,
      generation,
      timeoutMs: options.quiesceTimeoutMs,
      quiesced: () => this.#handle !== h || native().poolQuiesced(h, generation),
      workers: () => native().poolStats(h).workers,
    });
    return result;
  }

  /** Final counters stay readable through lastStats after stop. */
  lastStats: PoolStats | undefined;

  /** Clears the XSKMAP slots and socket count, joins the threads, frees sockets and UMEM. */
  stop(): void {
    const h = this.#handle;
    if (!h) return;
    this.#handle = undefined;
    try {
      native().poolStop(h);
    } finally {
      this.lastStats = withTotals(native().poolStats(h));
    }
  }
}

function withTotals(s: ReturnType<ReturnType<typeof native>["poolStats"]>): PoolStats {
  return { ...s, totals: summarise(s) };
}
