import type { BpfMap } from "./maps";
import {
  isBpfError,
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
  /** how long start() waits for every worker to load its libraries */
  startTimeoutMs?: number;
  /** how long start() retries while the queue is still bound to a just-closed UMEM (EBUSY) */
  queueBusyRetryMs?: number;
}

export class WorkerError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly worker: number;
  constructor(e: NativePoolEvent, ifname: string) {
    super(`AF_XDP worker on ${ifname}: ${e.message}`);
    this.name = "WorkerError";
    this.errno = e.errno ?? 0;
    this.code = e.code ?? "EUNKNOWN";
    this.worker = e.worker;
  }
}

export type WorkerStats = NativeWorkerStats;

export interface InstanceStats extends NativeInstanceStats {}

export interface PoolStats {
  /** action-table generation the pool publishes (1 at start, +1 per reloadActions) */
  generation: number;
  running: boolean;
  workers: WorkerStats[];
  /** per NF instance, summed over workers: calls, time inside the NF, per-variant counts */
  instances: InstanceStats[];
  totals: { rx: number; tx: number; drop: number; abort: number; passUnsupported: number; dropped: number };
}

const fdOf = (m: BpfMap | number): number => (typeof m === "number" ? m : m.fd);

/**
 * AF_XDP workers running native NFs. See docs/dataplane.md for the worker model. The
 * pool never runs on the JS thread; stats() and reloadActions() are cheap sync calls.
 */
export class WorkerPool {
  #handle: PoolHandle | undefined;
  readonly #errors: WorkerError[] = [];

  private constructor(readonly options: Readonly<WorkerPoolOptions>) {}

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
        instances: o.instances.map((i) => ({
          id: i.id,
          actionsMapFd: fdOf(i.actions),
          library: i.library,
          mapFds: (i.maps ?? []).map(fdOf),
        })),
      },
      onEvent,
    );
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
   * Re-reads every instance's action table and hands the snapshot to the workers (they
   * pick it up at their next batch). Call after changing action entries: XDP sees map
   * updates at once, userland only through this. Returns the new generation.
   */
  reloadActions(): number {
    if (!this.#handle) throw new Error(`worker pool on ${this.options.ifname} is stopped`);
    return native().poolReload(this.#handle);
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
