import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  awaitQuiesced,
  diffInstances,
  type InstanceUpdate,
  type UpdateInstancesOptions,
} from "./instance-update";
import type { BpfMap } from "./maps";
import {
  isBpfError,
  type NativeInstanceConfig,
  type NativeInstanceStats,
  type NativePoolEvent,
  type NativeWorkerStats,
  native,
  type WorkerPoolHandle,
  workerExecutablePath,
} from "./native";

export {
  type InstanceUpdate,
  type UpdateInstancesOptions,
  UpdateNotQuiescedError,
} from "./instance-update";

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
  /**
   * RX queues served per port: queues 0..queues-1. Default: every RX queue the driver
   * reports (ethtool channels). Every worker thread holds one AF_XDP socket per (port,
   * queue), each queue with its own UMEM registration, fill and completion rings over the
   * same memory; a frame is upcalled to a socket bound to the queue it arrived on.
   * More than one queue needs galette_xsk_count with 4 entries.
   */
  queues?: number;
  /**
   * The second port of a two-port installation (same namespace). Every worker thread then
   * also holds a socket on each of its queues (same UMEM): `tx` leaves through the other
   * port, `reflect` through the one the frame came in on. galette_xsk_count needs 2
   * entries (4 with more than one queue).
   */
  peer?: string;
  /**
   * Hand frames a userland NF passes to the host stack: the pool creates one TAP device per
   * port (`galh<port ifindex>`, the port's MAC, in its namespace, gone with the pool) and the
   * worker writes passed frames to it. Without it they are dropped (`passUnsupported`).
   */
  hostTap?: boolean;
  /**
   * A BPF queue map (value: struct galette_trace_record) the worker pushes a record to for
   * every NF call on a frame XDP marked for tracing (galette_trace.h). Without it traced
   * frames are processed untraced.
   */
  traceQueue?: BpfMap;
  /** number of worker threads = AF_XDP sockets per (port, RX queue) */
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
  /** errors a worker hits after start, crashes included (start() rejects with startup errors) */
  onError?: (err: WorkerError) => void;
  /** how long start() waits for the worker process to be ready */
  startTimeoutMs?: number;
  /** how long start() retries while the queue is still bound to a just-closed UMEM (EBUSY) */
  queueBusyRetryMs?: number;
  /**
   * The unprivileged identity NF code runs as. Default: the `galette-nf` system user when
   * it exists, else nobody/nogroup (65534).
   */
  user?: { uid: number; gid: number };
  /**
   * Whether the worker keeps CAP_BPF (and nothing else): "auto" (default) only where the
   * kernel refuses bpf() on map fds without it (before Linux 6.5 with
   * kernel.unprivileged_bpf_disabled set); "always" exercises that configuration on any
   * kernel (tests).
   */
  keepCapBpf?: "auto" | "always";
  /**
   * What the next worker gets after a death: "auto" (default) the same sockets where the
   * kernel maps a bound socket's rings (probed after the first bind), else new ones;
   * "rebuild" always new ones (the only way on Linux 6.1; tests force it on any kernel).
   * New ones: this process closes the dead worker's sockets and UMEM and creates new ones for
   * every queue of the pool, the new worker binds them and they take the XSKMAP slots of the
   * old ones. The XDP programs stay as they are.
   */
  socketTakeover?: "auto" | "rebuild";
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
 * other ABI version, outside the worker's readable directories). Found before the library
 * serves a frame; code is ENOENT (dlopen/dlsym), EPROTO (ABI version) or EACCES.
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

/**
 * The NF worker process died: a crash (signal), a forbidden system call (SIGSYS from the
 * seccomp filter) or an exit. `instances` are the NF instances a worker thread was running
 * at that moment (empty when the worker died outside NF code).
 */
export class WorkerCrashError extends WorkerError {
  readonly instances: number[];
  readonly signal: string | null;
  readonly exitCode: number | null;
  readonly at: Date;
  /** how long the supervisor waits before starting the next worker (backoff) */
  restartInMs = 0;
  constructor(
    ifname: string,
    info: { instances: number[]; signal: string | null; exitCode: number | null; detail?: string },
  ) {
    const how = info.signal
      ? `killed by ${info.signal}${info.signal === "SIGSYS" ? " (seccomp: forbidden system call)" : ""}`
      : `exited with code ${info.exitCode}`;
    const where = info.instances.length
      ? ` while running NF instance ${info.instances.join(", ")}`
      : " outside NF code";
    super(
      {
        type: "error",
        worker: -1,
        message: `NF worker process ${how}${where}${info.detail ? `: ${info.detail}` : ""}`,
        errno: 0,
        code: info.signal === "SIGSYS" ? "ESECCOMP" : "ECRASH",
      },
      ifname,
    );
    this.name = "WorkerCrashError";
    this.instances = info.instances;
    this.signal = info.signal;
    this.exitCode = info.exitCode;
    this.at = new Date();
  }
}

export type WorkerStats = NativeWorkerStats;

export interface InstanceStats extends NativeInstanceStats {}

/** How the supervisor sees the worker process. */
export interface WorkerHealth {
  /** "running"; "restarting" right after a death; "backoff" while waiting after repeated ones */
  state: "running" | "restarting" | "backoff" | "stopped";
  pid: number | undefined;
  /** worker processes started after the first one */
  restarts: number;
  /** worker deaths seen (crashes, seccomp kills, exits) */
  crashes: number;
  /** crashes per NF instance id (the instance a thread was running when the process died) */
  crashesByInstance: Record<number, number>;
  /** frames found in a dead worker's hands, dropped and returned to the fill ring */
  framesLostInCrashes: number;
  /**
   * How a worker takes over after a death: "remap" maps the dead one's sockets, "rebuild"
   * gets new ones (kernels that map a socket's rings only before bind, or socketTakeover)
   */
  socketTakeover: "remap" | "rebuild";
  /** times the sockets were replaced after a death */
  socketRebuilds: number;
  /**
   * frames lost with replaced sockets: waiting in their RX rings, unsent TX descriptors, and
   * what the kernel dropped on them after the death. Frames XDP upcalls while no socket
   * is bound (from the close to the new worker's bind) are dropped by the upcall unseen.
   */
  framesLostInRebuilds: number;
  /** from a death to the next worker running the instance table again, last restart */
  lastRestartMs: number | undefined;
  /** the delay before the next restart when backing off */
  backoffMs: number;
  lastCrash: WorkerCrashError | undefined;
  /** whether this kernel made the worker keep CAP_BPF (see docs/security.md) */
  keepsCapBpf: boolean;
}

export interface PoolStats {
  /** table generation the pool publishes (1 at start, +1 per reloadActions/updateInstances) */
  generation: number;
  running: boolean;
  /** replaced tables not freed yet because a worker may still hold them (0 when settled) */
  retiredTables: number;
  workers: WorkerStats[];
  /** frames received per RX queue of each port ([port][queue]; worker process pool only) */
  rxPerQueue?: number[][];
  /**
   * per NF instance of the current set, summed over workers: calls, time inside the NF,
   * per-variant counts. Counters belong to the instance id for the pool's life, so they
   * carry on across updates that keep the id (and across worker restarts).
   */
  instances: InstanceStats[];
  totals: {
    rx: number;
    tx: number;
    drop: number;
    abort: number;
    passUnsupported: number;
    /** frames a userland NF passed, written to the host stack (hostTap) */
    passed: number;
    /** every outcome but tx and passed: tx + passed + dropped == rx once idle */
    dropped: number;
  };
}

export const fdOf = (m: BpfMap | number): number => (typeof m === "number" ? m : m.fd);

export const toNative = (i: NfInstanceConfig): NativeInstanceConfig => ({
  id: i.id,
  actionsMapFd: fdOf(i.actions),
  library: i.library,
  mapFds: (i.maps ?? []).map(fdOf),
});

type BpfErrorWithLibrary = Error & { errno: number; code: string; instance: number; library: string };

export function asLibraryError(err: unknown, ifname: string): unknown {
  const e = err as { instance?: unknown; library?: unknown };
  if (isBpfError(err) && typeof e.instance === "number" && typeof e.library === "string")
    return new NfLibraryError(err as BpfErrorWithLibrary, ifname);
  return err;
}

export function summarise(s: { workers: NativeWorkerStats[] }): PoolStats["totals"] {
  const sum = (k: keyof NativeWorkerStats) =>
    s.workers.reduce((a, w) => a + ((w[k] as number | undefined) ?? 0), 0);
  return {
    rx: sum("rx"),
    tx: sum("tx"),
    drop: sum("drop"),
    abort: sum("abort"),
    passUnsupported: sum("passUnsupported"),
    passed: sum("passed"),
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
}

/** The `galette-nf` system user when present, else nobody/nogroup. */
export function defaultWorkerUser(): { uid: number; gid: number } {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === "galette-nf" && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no passwd file: fall through to nobody
  }
  return { uid: 65534, gid: 65534 };
}

/**
 * Runs `attempt` (a pool start) again while it fails because the queue is still bound to a
 * just-closed UMEM: the kernel releases it asynchronously after its last socket closes, so
 * a pool started right after another stopped can see EBUSY for some ms
 * (`queueBusyRetryMs`, 2 s by default).
 */
export async function retryWhileQueueBusy<T>(
  options: Pick<WorkerPoolOptions, "queueBusyRetryMs">,
  attempt: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + (options.queueBusyRetryMs ?? 2000);
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      const busy = isBpfError(err) && err.code === "EBUSY" && err.message.includes("create AF_XDP socket");
      if (!busy || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** The refusal of a call on a stopped pool. */
export function stoppedError(ifname: string, what = ""): Error {
  return new Error(`worker pool on ${ifname} is stopped${what ? `: cannot ${what}` : ""}`);
}

/** Restarts within this window count towards backing off. */
const CRASH_WINDOW_MS = 10_000;
/** This many deaths within the window restart at once; more back off exponentially. */
const IMMEDIATE_RESTARTS = 3;
const MAX_BACKOFF_MS = 30_000;
/** Longest status line accepted from a worker (they are a few hundred bytes). */
const MAX_STATUS_LINE = 64 * 1024;

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * AF_XDP workers running native NFs in a separate, unprivileged process
 * (galette-nf-worker) that this object starts and supervises. This process keeps the
 * UMEM, the AF_XDP sockets and the XSKMAP entries, so a worker that crashes or is killed
 * is replaced without touching XDP: the next one takes the sockets over, or, where the
 * kernel does not let it (6.1), gets new ones in the same XSKMAP slots (socketTakeover).
 * See docs/dataplane.md.
 */
export class WorkerPool {
  #handle: WorkerPoolHandle | undefined;
  #child: ChildProcess | undefined;
  readonly #errors: WorkerError[] = [];
  /** the last instance set sent (what stats() lists and the next update is compared with) */
  #instances: readonly NfInstanceConfig[];
  /** the last generation sent */
  #generation = 0;
  /** the last set the worker published, and its generation: what a restarted worker gets */
  #confirmed: { instances: readonly NfInstanceConfig[]; generation: number } = {
    instances: [],
    generation: 0,
  };
  #stopping = false;
  /** false until start() succeeded: a worker dying before that fails start(), no restart */
  #started = false;
  #ready: Waiter | undefined;
  #published = new Map<number, Waiter>();
  #fatal = "";
  #stderr = "";
  #deaths: number[] = [];
  #restartTimer: NodeJS.Timeout | undefined;
  #diedAt = 0;
  /** a worker could not map its inherited sockets' rings: replace them from now on */
  #mapRefused = false;
  /**
   * The worker's only readable directory besides the system libraries: every NF library
   * is copied here (content-addressed, read-only) before the worker may load it, so the
   * worker can read exactly the code it runs, wherever the caller keeps its artifacts.
   */
  readonly #stageDir: string;
  /** staged path -> the caller's path (for messages) */
  readonly #staged = new Map<string, string>();
  readonly #user: { uid: number; gid: number };
  #health: WorkerHealth = {
    state: "running",
    pid: undefined,
    restarts: 0,
    crashes: 0,
    crashesByInstance: {},
    framesLostInCrashes: 0,
    socketTakeover: "remap",
    socketRebuilds: 0,
    framesLostInRebuilds: 0,
    lastRestartMs: undefined,
    backoffMs: 0,
    lastCrash: undefined,
    keepsCapBpf: false,
  };
  /** resolves when the current worker runs the current table (pending during a restart) */
  #up: Promise<void> = Promise.resolve();

  private constructor(readonly options: Readonly<WorkerPoolOptions>) {
    this.#instances = [...options.instances];
    this.#user = options.user ?? defaultWorkerUser();
    this.#stageDir = mkdtempSync(path.join(tmpdir(), "galette-nf-libs-"));
    chmodSync(this.#stageDir, 0o755);
  }

  static start(options: WorkerPoolOptions): Promise<WorkerPool> {
    return retryWhileQueueBusy(options, async () => {
      const pool = new WorkerPool(options);
      await pool.#start();
      return pool;
    });
  }

  async #start(): Promise<void> {
    const o = this.options;
    try {
      this.#handle = native().workerPoolOpen({
        ifname: o.ifname,
        netns: o.netns,
        ...(o.queues !== undefined ? { queues: o.queues } : {}),
        ...(o.peer ? { peer: o.peer } : {}),
        ...(o.hostTap ? { hostTap: true } : {}),
        workers: o.workers,
        pollTimeoutMs: o.pollTimeoutMs,
        frameSize: o.frameSize,
        frameCount: o.frameCount,
        ringSize: o.ringSize,
        batchSize: o.batchSize,
        xskMapFd: fdOf(o.xskMap),
        xskCountMapFd: fdOf(o.xskCountMap),
        ...(o.socketTakeover === "rebuild" ? { rebuildSockets: true } : {}),
      });
    } catch (err) {
      rmSync(this.#stageDir, { recursive: true, force: true });
      throw err;
    }
    try {
      this.#generation = 1;
      this.#confirmed = { instances: this.#instances, generation: 1 };
      await this.#launch();
      native().workerPoolPublish(this.#handle);
      this.#readHealth();
      this.#started = true;
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /**
   * Copies the libraries of `instances` into the staging directory (once per content) and
   * returns the instances with the staged paths. An unreadable library is an NfLibraryError.
   */
  #stage(instances: readonly NfInstanceConfig[]): NfInstanceConfig[] {
    return instances.map((i) => {
      if (!i.library) return i;
      let data: Buffer;
      try {
        data = readFileSync(i.library);
      } catch (e) {
        const ee = e as NodeJS.ErrnoException;
        const err = Object.assign(
          new Error(`NF instance ${i.id} library ${i.library}: dlopen failed: cannot read it: ${ee.message}`),
          { errno: -(ee.errno ?? -2), code: ee.code ?? "ENOENT", instance: i.id, library: i.library },
        );
        throw new NfLibraryError(err, this.options.ifname);
      }
      const digest = createHash("sha256").update(data).digest("hex").slice(0, 16);
      const staged = path.join(this.#stageDir, `${digest}-${path.basename(i.library)}`);
      if (!existsSync(staged)) {
        const tmp = `${staged}.tmp`;
        writeFileSync(tmp, data, { mode: 0o444 });
        renameSync(tmp, staged);
      }
      this.#staged.set(staged, i.library);
      return { ...i, library: staged };
    });
  }

  /** The caller's library path in a message about a staged one. */
  #unstage(text: string): string {
    let out = text;
    for (const [staged, original] of this.#staged) out = out.split(staged).join(original);
    return out;
  }

  /** Starts a worker process, waits until it runs, and hands it the current instance set. */
  async #launch(bindWaitMs = 3000): Promise<void> {
    const h = this.#handle!;
    const o = this.options;
    const fds = native().workerPoolChildFds(h);
    // the trace queue goes after the pool's own fds (the child sees stdio index = fd number)
    if (o.traceQueue) fds.push(o.traceQueue.fd);
    const args = [
      ...(o.traceQueue ? ["--trace-fd", String(3 + fds.length - 1)] : []),
      "--workers",
      String(o.workers),
      "--ports",
      o.peer ? "2" : "1",
      ...(o.hostTap ? ["--taps"] : []),
      "--frame-size",
      String(o.frameSize ?? 4096),
      "--frame-count",
      String(o.frameCount ?? 4096),
      "--ring-size",
      String(o.ringSize ?? 2048),
      "--batch",
      String(o.batchSize ?? 64),
      "--poll-timeout-ms",
      String(o.pollTimeoutMs ?? 1000),
      "--uid",
      String(this.#user.uid),
      "--gid",
      String(this.#user.gid),
      "--bind-wait-ms",
      String(bindWaitMs),
      "--keep-cap-bpf",
      o.keepCapBpf === "always" ? "yes" : "auto",
      ...(o.mode === "busy-poll" ? ["--busy-poll"] : []),
      "--read-dir",
      this.#stageDir,
    ];
    this.#fatal = "";
    this.#stderr = "";
    const exe = workerExecutablePath();
    if (!existsSync(exe))
      throw new Error(
        `NF worker executable ${exe} is missing: it is built and shipped beside the addon (run \`make setup\`)`,
      );
    const child = spawn(exe, args, {
      stdio: ["ignore", "pipe", "pipe", ...fds],
      env: {},
    });
    this.#child = child;
    const ready = new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    child.on("error", (err) => this.#ready?.reject(err));
    if (child.pid === undefined) {
      await ready; // rejects with the spawn error
      return;
    }
    native().workerPoolSpawned(h, child.pid);
    this.#health.pid = child.pid;
    // Neither the process nor its pipes keep Node alive: stop() or exit ends the pool.
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => {
      this.#stderr = (this.#stderr + s).slice(-2000);
    });
    // Status lines come from the process NF code runs in: bounded, or it is killed.
    let pending = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      pending += chunk;
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        this.#onLine(child, pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
      }
      if (pending.length > MAX_STATUS_LINE && child === this.#child) {
        this.#fatal = `status line longer than ${MAX_STATUS_LINE} bytes`;
        pending = "";
        native().workerPoolKill(this.#handle!);
      }
    });
    child.on("exit", (code, signal) => this.#onExit(child, code, signal));
    const timeoutMs = o.startTimeoutMs ?? 10_000;
    await withTimeout(ready, timeoutMs, `NF worker on ${o.ifname} not ready after ${timeoutMs} ms`);
    this.#ready = undefined;
    this.#readHealth();
    await this.#sendAndWait(this.#confirmed.instances, this.#confirmed.generation, timeoutMs);
  }

  #sendAndWait(instances: readonly NfInstanceConfig[], generation: number, timeoutMs: number): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.#published.set(generation, { resolve, reject });
    });
    try {
      native().workerPoolSend(this.#handle!, this.#stage(instances).map(toNative), generation);
    } catch (err) {
      this.#published.delete(generation);
      throw err;
    }
    return withTimeout(
      done,
      timeoutMs,
      `NF worker on ${this.options.ifname} did not load instance table ${generation} within ${timeoutMs} ms`,
    ).finally(() => this.#published.delete(generation));
  }

  #onLine(child: ChildProcess, line: string): void {
    if (process.env.GALETTE_DEBUG_WORKER) console.error("worker:", line);
    if (child !== this.#child) return;
    let m: {
      type?: string;
      generation?: number;
      message?: string;
      errno?: number;
      code?: string;
      instance?: number;
      library?: string;
    };
    try {
      m = JSON.parse(line);
    } catch {
      this.#fatal = `unreadable status line: ${line.slice(0, 200)}`;
      return;
    }
    if (m.type === "ready") this.#ready?.resolve();
    else if (m.type === "published") this.#published.get(m.generation ?? -1)?.resolve();
    else if (m.type === "rejected") {
      const base = Object.assign(new Error(this.#unstage(m.message ?? "rejected")), {
        errno: m.errno ?? 0,
        code: m.code ?? "EUNKNOWN",
        instance: m.instance ?? -1,
        library: this.#unstage(m.library ?? ""),
      });
      const err =
        m.instance !== undefined
          ? new NfLibraryError(base, this.options.ifname)
          : new WorkerError(
              { type: "error", worker: -1, message: base.message, errno: base.errno, code: base.code },
              this.options.ifname,
            );
      this.#published.get(m.generation ?? -1)?.reject(err);
    } else if (m.type === "fatal") this.#fatal = m.message ?? "fatal error";
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.#child) return;
    this.#child = undefined;
    const h = this.#handle;
    if (h) native().workerPoolExited(h);
    if (this.#stopping || !h) return;
    this.#diedAt = Date.now();
    // a kernel that maps a socket's rings only before bind (the probe should have said so)
    if (this.#fatal.includes("of a bound AF_XDP socket")) this.#mapRefused = true;
    const instances = native().workerPoolCrashSite(h);
    const detail = this.#fatal || this.#stderr.trim().split("\n").slice(-1)[0] || undefined;
    const err = new WorkerCrashError(this.options.ifname, { instances, signal, exitCode: code, detail });
    this.#errors.push(err);
    this.#health.crashes++;
    this.#health.lastCrash = err;
    for (const id of instances)
      this.#health.crashesByInstance[id] = (this.#health.crashesByInstance[id] ?? 0) + 1;
    this.#ready?.reject(err);
    for (const w of this.#published.values()) w.reject(err);
    this.#published.clear();
    if (!this.#started) return; // start() fails with err
    err.restartInMs = this.#scheduleRestart();
    this.options.onError?.(err);
  }

  /** Returns the delay before the restart (0 unless backing off). */
  #scheduleRestart(): number {
    const now = Date.now();
    this.#deaths = [...this.#deaths.filter((t) => now - t < CRASH_WINDOW_MS), now];
    const over = this.#deaths.length - IMMEDIATE_RESTARTS;
    const delay = over <= 0 ? 0 : Math.min(MAX_BACKOFF_MS, 250 * 2 ** (over - 1));
    this.#health.backoffMs = delay;
    this.#health.state = delay ? "backoff" : "restarting";
    this.#health.pid = undefined;
    let settle: (() => void) | undefined;
    this.#up = new Promise<void>((r) => {
      settle = r;
    });
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#stopping) return settle!();
      this.#relaunch().then(
        () => {
          this.#health.restarts++;
          this.#health.lastRestartMs = Date.now() - this.#diedAt;
          this.#health.state = "running";
          this.#health.backoffMs = 0;
          settle!();
        },
        (err: unknown) => {
          // A worker that cannot come up is one more death: #onExit (if it ran) or we
          // schedule the next attempt, backing off.
          settle!();
          if (this.#stopping) return;
          if (this.#child) {
            native().workerPoolKill(this.#handle!);
            return; // its exit schedules the next attempt
          }
          if (!(err instanceof WorkerCrashError)) {
            const e = new WorkerError(
              {
                type: "error",
                worker: -1,
                message: `restarting the NF worker: ${(err as Error).message}`,
                code: "ERESTART",
              },
              this.options.ifname,
            );
            this.#errors.push(e);
            this.options.onError?.(e);
            this.#scheduleRestart();
          }
        },
      );
    }, delay);
    this.#restartTimer.unref();
    return delay;
  }

  /**
   * The next worker: on the dead one's sockets, or on new ones that then take their XSKMAP
   * slots (see socketTakeover).
   */
  async #relaunch(): Promise<void> {
    const h = this.#handle!;
    const rebuild = this.#mapRefused || native().workerPoolStats(h).takeover === "rebuild";
    if (rebuild) native().workerPoolRebuild(h);
    // New sockets bind once the kernel released the old ones: it waits for every frame they
    // transmitted to be freed, which a slow receiver can hold for seconds.
    await this.#launch(rebuild ? Math.max(3000, (this.options.startTimeoutMs ?? 10_000) - 1000) : 3000);
    native().workerPoolPublish(h);
    this.#readHealth();
  }

  #readHealth(): void {
    const s = native().workerPoolStats(this.#handle!);
    this.#health.keepsCapBpf = s.keepsCapBpf;
    this.#health.framesLostInCrashes = s.crashRecovered;
    this.#health.socketTakeover = this.#mapRefused ? "rebuild" : s.takeover;
    this.#health.socketRebuilds = s.socketRebuilds;
    this.#health.framesLostInRebuilds = s.framesLostInRebuilds;
  }

  #confirm(instances: readonly NfInstanceConfig[], generation: number): void {
    if (generation > this.#confirmed.generation) this.#confirmed = { instances: [...instances], generation };
  }

  get running(): boolean {
    return this.#handle !== undefined;
  }

  /** The worker process id (undefined while it restarts). */
  get workerPid(): number | undefined {
    return this.#child?.pid;
  }

  /** Errors and worker deaths reported so far (also passed to onError). */
  get errors(): readonly WorkerError[] {
    return this.#errors;
  }

  /** The supervisor's view: restarts, crashes per NF instance, backoff, restart cost. */
  health(): WorkerHealth {
    if (this.#handle) this.#readHealth();
    return { ...this.#health, crashesByInstance: { ...this.#health.crashesByInstance } };
  }

  /** Resolves once a worker runs the current table (at once unless it is restarting). */
  whenRunning(): Promise<void> {
    return this.#up;
  }

  /** Counters read from memory shared with the worker (no syscalls but the kernel's socket stats). */
  stats(): PoolStats {
    if (!this.#handle) throw stoppedError(this.options.ifname);
    return this.#stats(this.#handle);
  }

  #stats(h: WorkerPoolHandle): PoolStats {
    const s = native().workerPoolStats(h);
    const ids = new Set(this.#instances.map((i) => i.id));
    const workers = this.#child
      ? s.workers
      : s.workers.map((w) => ({ ...w, state: this.#handle ? ("starting" as const) : ("stopped" as const) }));
    return {
      generation: s.generation,
      running: s.running,
      retiredTables: s.retiredTables,
      workers,
      rxPerQueue: s.rxPerQueue,
      instances: s.instances.filter((i) => ids.has(i.id)),
      totals: summarise(s),
    };
  }

  /**
   * Re-reads every instance's action table and hands the new table to the worker (it picks
   * it up at its next batch). Call after changing action entries: XDP sees map updates at
   * once, userland only through this. Returns the new generation.
   */
  reloadActions(): number {
    if (!this.#handle) throw stoppedError(this.options.ifname);
    const g = ++this.#generation;
    // A restarting worker gets the current tables when it comes up.
    const instances = this.#instances;
    if (this.#child && this.#health.state === "running")
      this.#sendAndWait(instances, g, 10_000).then(
        () => this.#confirm(instances, g),
        (err: unknown) => {
          const e = new WorkerError(
            {
              type: "error",
              worker: -1,
              message: `reloading action tables: ${(err as Error).message}`,
              code: "ERELOAD",
            },
            this.options.ifname,
          );
          this.#errors.push(e);
          this.options.onError?.(e);
        },
      );
    return g;
  }

  /** The instance set the workers run (the start options' until the first update). */
  get instances(): readonly NfInstanceConfig[] {
    return this.#instances;
  }

  /**
   * Replaces the set of NF instances while the workers keep running (no socket is closed,
   * no frame is dropped for it). Action tables and maps are checked here, libraries are
   * loaded by the worker; the worker publishes the result as one immutable table between
   * two batches, or rejects it whole (NfLibraryError for a bad library, an Error naming the
   * instance/map otherwise) and keeps the old one. The promise then resolves once no
   * worker thread can still run an older table and the worker has dlclosed the retired
   * libraries and closed its copies of their map fds. Counters of kept ids carry on.
   * A library already loaded under the same path is reused, not reloaded: give a new
   * build a new path. If the worker dies meanwhile the update rejects (WorkerCrashError)
   * and the restarted worker runs the previous set.
   */
  async updateInstances(
    instances: NfInstanceConfig[],
    options: UpdateInstancesOptions = {},
  ): Promise<InstanceUpdate> {
    const h = this.#handle;
    const ifname = this.options.ifname;
    if (!h) throw stoppedError(ifname, "update its NF instances");
    if (!this.#child || this.#health.state !== "running") await this.#up;
    if (this.#handle !== h) throw stoppedError(ifname, "update its NF instances");
    // Sent synchronously, in call order: overlapping updates are applied in that order.
    const generation = this.#generation + 1;
    const previous = this.#instances;
    const done = this.#sendAndWait(instances, generation, 10_000);
    this.#generation = generation;
    this.#instances = [...instances];
    try {
      await done;
    } catch (err) {
      if (this.#generation === generation) {
        this.#generation = generation - 1;
        this.#instances = previous;
      }
      throw asLibraryError(err, ifname);
    }
    this.#confirm(instances, generation);
    const result = diffInstances(previous, instances, generation);
    await awaitQuiesced({
      ifname,
      generation,
      timeoutMs: options.quiesceTimeoutMs,
      quiesced: () => this.#handle !== h || native().workerPoolQuiesced(h, generation),
      workers: () => native().workerPoolStats(h).workers,
    });
    return result;
  }

  /** Final counters stay readable through lastStats after stop. */
  lastStats: PoolStats | undefined;

  /** Kills the worker, clears the XSKMAP slots and socket count, frees sockets and UMEM. */
  stop(): void {
    const h = this.#handle;
    if (!h) return;
    this.#stopping = true;
    this.#health.state = "stopped";
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    const err = stoppedError(this.options.ifname);
    this.#ready?.reject(err);
    for (const w of this.#published.values()) w.reject(err);
    this.#published.clear();
    this.#handle = undefined;
    try {
      native().workerPoolClose(h);
    } finally {
      rmSync(this.#stageDir, { recursive: true, force: true });
      this.lastStats = this.#stats(h);
      this.lastStats.workers = this.lastStats.workers.map((w) => ({ ...w, state: "stopped" }));
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
