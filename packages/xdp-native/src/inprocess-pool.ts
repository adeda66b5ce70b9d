import type { BpfMap } from "./maps";
import {
  isBpfError,
  type NativeInstanceConfig,
  type NativeInstanceStats,
  type NativePoolEvent,
  type NativeWorkerStats,
  native,
  type PoolHandle,
} from "./native";

export interface NfInstanceConfig {
  /** instance id = PROG_ARRAY slot, < GALETTE_MAX_INSTANCES */
  id: number;
  /** the instance's galette_actions map */
  actions: BpfMap | number;
  /** native NF library (.so); omit for XDP-only instances whose tables resolve upcalls */
  library?: string;
  /** one map per #[maps] field, in declaration order, handed to galette_nf_packet */
  maps?: Array<BpfMap | number>;
}

export interface WorkerPoolOptions {
  ifname: string;
  /** network namespace of the interface, e.g. /run/netns/NAME */
  netns?: string;
  /** interface queue the sockets bind to (veth has one: 0) */
  queue?: number;
  /** number of worker threads = AF_XDP sockets (XSKMAP slots 0..workers-1) */
  workers: number;
  /** "blocking": poll() until frames arrive; "busy-poll": spin on the rings (one core each) */
  mode: "blocking" | "busy-poll";
  /** poll() timeout in blocking mode (only bounds how long an idle worker sleeps) */
  pollTimeoutMs?: number;
  /** UMEM frame size (2048 or 4096) */
  frameSize?: number;
  /** UMEM frames shared by all workers (power of two) */
  frameCount?: number;
  /** RX/TX ring entries per socket (power of two) */
  ringSize?: number;
  /** frames a worker takes from its RX ring at once */
  batchSize?: number;
  /** the shared galette_xsks XSKMAP and galette_xsk_count map */
  xskMap: BpfMap | number;
  xskCountMap: BpfMap | number;
  instances: NfInstanceConfig[];
  /** errors a worker hits after start (start() itself rejects with startup errors) */
  onError?: (err: WorkerError) => void;
  /** how long start() waits for every worker thread to report ready */
  startTimeoutMs?: number;
  /** how long start() retries while the queue is still bound to a just-closed UMEM (EBUSY) */
  queueBusyRetryMs?: number;
}

export class WorkerError extends Error {
  readonly errno: number;
  readonly code: string;
  /** the worker that reported it; -1 when found on the calling thread before any worker ran */
  readonly worker: number;
  constructor(e: NativePoolEvent, ifname: string) {
    super(`AF_XDP worker on ${ifname}: ${e.message}`);
    this.name = "WorkerError";
    this.errno = e.errno ?? 0;
    this.code = e.code ?? "EUNKNOWN";
    this.worker = e.worker;
  }
}

/**
 * A native NF library the pool cannot use (missing file or symbol, unresolved dependency,
 * other ABI version). Found on the calling thread by start() and updateInstances(), before
 * any worker sees the library; code is ENOENT (dlopen/dlsym) or EPROTO (ABI version).
 */
export class NfLibraryError extends WorkerError {
  readonly instance: number;
  readonly library: string;
  constructor(
    err: Error & { errno: number; code: string; instance: number; library: string },
    ifname: string,
  ) {
    super({ type: "error", worker: -1, message: err.message, errno: err.errno, code: err.code }, ifname);
    this.name = "NfLibraryError";
    this.instance = err.instance;
    this.library = err.library;
  }
}

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

export type WorkerStats = NativeWorkerStats;

export interface InstanceStats extends NativeInstanceStats {}

export interface PoolStats {
  /** table generation the pool publishes (1 at start, +1 per reloadActions/updateInstances) */
  generation: number;
  running: boolean;
  /** replaced tables not freed yet because a worker may still hold them (0 when settled) */
  retiredTables: number;
  workers: WorkerStats[];
  /**
   * per NF instance of the current set, summed over workers: calls, time inside the NF,
   * per-variant counts. Counters belong to the instance id for the pool's life, so they
   * carry on across updates that keep the id.
   */
  instances: InstanceStats[];
  totals: { rx: number; tx: number; drop: number; abort: number; passUnsupported: number; dropped: number };
}

const fdOf = (m: BpfMap | number): number => (typeof m === "number" ? m : m.fd);

const toNative = (i: NfInstanceConfig): NativeInstanceConfig => ({
  id: i.id,
  actionsMapFd: fdOf(i.actions),
  library: i.library,
  mapFds: (i.maps ?? []).map(fdOf),
});

function asLibraryError(err: unknown, ifname: string): unknown {
  const e = err as { instance?: unknown; library?: unknown };
  if (isBpfError(err) && typeof e.instance === "number" && typeof e.library === "string")
    return new NfLibraryError(err as BpfErrorWithLibrary, ifname);
  return err;
}
type BpfErrorWithLibrary = Error & { errno: number; code: string; instance: number; library: string };

/**
 * AF_XDP workers running native NFs. See docs/dataplane.md for the worker model. The
 * pool never runs on the JS thread; stats() and reloadActions() are cheap sync calls.
 */
export class WorkerPool {
  #handle: PoolHandle | undefined;
  readonly #errors: WorkerError[] = [];
  #instances: readonly NfInstanceConfig[];

  private constructor(readonly options: Readonly<WorkerPoolOptions>) {
    this.#instances = [...options.instances];
  }

  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    // The kernel releases a queue's UMEM asynchronously after its last socket closes, so a
    // pool started right after another stopped can see EBUSY for some ms: retry briefly.
    const deadline = Date.now() + (options.queueBusyRetryMs ?? 2000);
    for (;;) {
      const pool = new WorkerPool(options);
      try {
        await pool.#start();
        return pool;
      } catch (err) {
        const busy = isBpfError(err) && err.code === "EBUSY" && err.message.includes("create AF_XDP socket");
        if (!busy || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
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
          queue: o.queue,
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
    if (!this.#handle) throw new Error(`worker pool on ${this.options.ifname} is stopped`);
    return summarise(native().poolStats(this.#handle));
  }

  /**
   * Re-reads every instance's action table and hands the new table to the workers (they
   * pick it up at their next batch). Call after changing action entries: XDP sees map
   * updates at once, userland only through this. Returns the new generation.
   */
  reloadActions(): number {
    if (!this.#handle) throw new Error(`worker pool on ${this.options.ifname} is stopped`);
    return native().poolReload(this.#handle);
  }

  /** The instance set the workers run (the start options' until the first update). */
  get instances(): readonly NfInstanceConfig[] {
    return this.#instances;
  }

  /**
   * Replaces the set of NF instances while the workers keep running (no socket is closed,
   * no frame is dropped for it). Synchronously, on this thread: checks every action map
   * and NF map, dlopens and ABI-checks every library, reads every instance's action table
   * (so this subsumes reloadActions), and publishes the result to the workers as one
   * immutable table. Each worker switches between two batches: a frame runs entirely on
   * the old table or entirely on the new one. Any error rejects (NfLibraryError for a bad
   * library, an Error naming the instance/map otherwise) and leaves the pool exactly as it
   * was. The promise then resolves once no worker can still run an older table: retired
   * instances' libraries are dlclosed and the pool's duplicates of their map fds closed, so
   * the caller may now delete what only they used. Counters of kept ids carry on.
   * A library already loaded under the same path is reused, not reloaded: give a new
   * build a new path.
   */
  async updateInstances(
    instances: NfInstanceConfig[],
    options: UpdateInstancesOptions = {},
  ): Promise<InstanceUpdate> {
    const h = this.#handle;
    const ifname = this.options.ifname;
    if (!h) throw new Error(`worker pool on ${ifname} is stopped: cannot update its NF instances`);
    let generation: number;
    try {
      generation = native().poolUpdate(h, instances.map(toNative));
    } catch (err) {
      throw asLibraryError(err, ifname);
    }
    const before = new Set(this.#instances.map((i) => i.id));
    const after = new Set(instances.map((i) => i.id));
    this.#instances = [...instances];
    const asc = (ids: Iterable<number>) => [...ids].sort((a, b) => a - b);
    const result: InstanceUpdate = {
      generation,
      added: asc([...after].filter((id) => !before.has(id))),
      removed: asc([...before].filter((id) => !after.has(id))),
      kept: asc([...after].filter((id) => before.has(id))),
    };
    const timeoutMs = options.quiesceTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    // Workers switch at their next batch (idle ones hold nothing), so this is usually
    // done at the first or second look.
    for (;;) {
      // A stopped pool has freed every table.
      if (this.#handle !== h || native().poolQuiesced(h, generation)) return result;
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 1));
    }
    const lagging = native()
      .poolStats(h)
      .workers.filter((w) => w.generation < generation)
      .map((w) => `worker ${w.index} (generation ${w.generation})`);
    throw new UpdateNotQuiescedError(
      `AF_XDP workers on ${ifname}: instance table ${generation} is live, but after ${timeoutMs} ms ` +
        `${lagging.join(", ") || "a worker"} may still run an older one; its retired instances stay loaded`,
      generation,
    );
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
      this.lastStats = summarise(native().poolStats(h));
    }
  }
}

function summarise(s: ReturnType<ReturnType<typeof native>["poolStats"]>): PoolStats {
  const sum = (k: keyof NativeWorkerStats) => s.workers.reduce((a, w) => a + (w[k] as number), 0);
  const totals = {
    rx: sum("rx"),
    tx: sum("tx"),
    drop: sum("drop"),
    abort: sum("abort"),
    passUnsupported: sum("passUnsupported"),
    dropped:
      sum("drop") +
      sum("abort") +
      sum("passUnsupported") +
      sum("redirectUnsupported") +
      sum("badMeta") +
      sum("hopLimit") +
      sum("noNf") +
      sum("badVariant") +
      sum("badPacket") +
      sum("txRingFull"),
  };
  return { ...s, totals };
}
