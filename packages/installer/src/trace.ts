/**
 * Packet tracing of an installation (`galette trace`), from any process on the device: it
 * switches the root program's trace filter on (the pinned galette_trace_cfg), drains the
 * XDP ring buffer and the workers' queue, and joins their records by frame id into one
 * path per frame, across the upcall (see @galette/xdp-native's galette_trace.h).
 */
import { existsSync } from "node:fs";
import type { TracedFrame, TraceStep } from "@galette/protocol";
import { ACTION_CODES } from "@galette/vocabulary";
import {
  BpfMap,
  decodeTraceConfig,
  decodeTraceRecord,
  encodeTraceConfig,
  popQueue,
  RingBufferReader,
  Trace,
  type TraceRecord,
} from "@galette/xdp-native";
import { InstallError } from "./errors";
import { DEFAULT_STATE_DIR, processAlive, readRecord } from "./record";
import { type InstanceSpec, type InterfaceTarget, interfaceScope, RX_INSTANCE } from "./spec";
import { compileTraceFilter } from "./trace-filter";
import { tracePins } from "./trace-maps";

const KIND_NAMES = new Map<number, TraceStep["action"]>(
  [...Object.entries(ACTION_CODES), ["redirect", 4] as const].map(([k, v]) => [v, k as TraceStep["action"]]),
);
const FINAL = (kind: number) => kind < ACTION_CODES.tailcall;

export interface TraceInstances {
  /** by instance id */
  instances: ReadonlyMap<number, Pick<InstanceSpec, "id" | "name" | "variants">>;
  /** ifindex → port name */
  ports: ReadonlyMap<number, string>;
}

interface Pending {
  root?: TraceRecord;
  steps: TraceRecord[];
  firstSeen: number;
}

/**
 * Joins trace records (in any order, from both tiers) into frames. A frame is complete
 * when a record with a final verdict arrived after its root record; one whose records
 * stop (a lost record, an upcall no worker took) is flushed as `incomplete` after
 * `staleMs`.
 */
export class TraceJoiner {
  #pending = new Map<number, Pending>();
  readonly #info: TraceInstances;
  readonly #staleMs: number;
  readonly #withData: boolean;
  /** monotonic ns → wall clock: taken once (both clocks advance together) */
  readonly #wallOffsetMs: number;

  constructor(info: TraceInstances, options: { staleMs?: number; withData?: boolean } = {}) {
    this.#info = info;
    this.#staleMs = options.staleMs ?? 2000;
    this.#withData = options.withData ?? true;
    this.#wallOffsetMs = Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
  }

  add(rec: TraceRecord, nowMs = Date.now()): void {
    let p = this.#pending.get(rec.frame);
    if (!p) {
      p = { steps: [], firstSeen: nowMs };
      this.#pending.set(rec.frame, p);
    }
    if (rec.instance === Trace.rootInstance) p.root = rec;
    else p.steps.push(rec);
  }

  /** Frames complete now (in arrival order), and stale ones as incomplete. */
  take(nowMs = Date.now()): TracedFrame[] {
    const out: Array<{ at: bigint; frame: TracedFrame }> = [];
    for (const [id, p] of this.#pending) {
      const done = p.root !== undefined && p.steps.some((s) => FINAL(s.kind));
      const stale = nowMs - p.firstSeen >= this.#staleMs;
      if (!done && !stale) continue;
      this.#pending.delete(id);
      // a frame whose root record was lost (ring full) is not reported: nothing says where it came from
      if (!p.root) continue;
      out.push({ at: p.root.ts, frame: this.#frame(id, p.root, p.steps, done) });
    }
    return out.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).map((x) => x.frame);
  }

  get pending(): number {
    return this.#pending.size;
  }

  #frame(id: number, root: TraceRecord, steps: TraceRecord[], done: boolean): TracedFrame {
    const ordered = [...steps].sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    const path: TraceStep[] = ordered.map((s) => {
      const inst = this.#info.instances.get(s.instance);
      const action = KIND_NAMES.get(s.kind) ?? "abort";
      const step: TraceStep = {
        nf: inst?.name ?? `#${s.instance}`,
        instance: s.instance,
        tier: s.tier,
        variant: inst?.variants[s.variant] ?? `#${s.variant}`,
        action,
        elapsedNs: Number(s.ts - root.ts),
      };
      if (action === "tailcall" || action === "upcall")
        step.target = s.arg === RX_INSTANCE ? "rx" : (this.#info.instances.get(s.arg)?.name ?? `#${s.arg}`);
      return step;
    });
    const last = ordered.at(-1);
    const verdict: TracedFrame["verdict"] =
      done && last ? ((KIND_NAMES.get(last.kind) ?? "abort") as TracedFrame["verdict"]) : "incomplete";
    const names = path.map((s) => (s.tier === "userland" ? `${s.nf} (userland)` : s.nf));
    const frame: TracedFrame = {
      frame: id,
      iface: this.#info.ports.get(root.ifindex) ?? `ifindex ${root.ifindex}`,
      time: new Date(this.#wallOffsetMs + Number(root.ts / 1_000_000n)).toISOString(),
      monotonicNs: root.ts.toString(),
      len: root.len,
      path,
      verdict,
      summary: [...names, verdict].join("→"),
    };
    if (this.#withData && root.data) frame.data = root.data.toString("base64");
    return frame;
  }
}

export interface TraceOptions {
  /** filter expression (trace-filter.ts); empty: every frame */
  filter?: string;
  /** trace 1 in N matching frames */
  sample?: number;
  stateDir?: string;
  /** keep the frames' first bytes (packet contents) */
  withData?: boolean;
  staleMs?: number;
}

/**
 * A running trace on one installation. start() takes the filter slot (one tracer per
 * installation; a slot held by a dead process is taken over), poll() returns the frames
 * completed since, stop() switches marking off.
 */
export class Tracer {
  readonly #cfg: BpfMap;
  readonly #ring: RingBufferReader;
  readonly #queue: BpfMap;
  readonly #joiner: TraceJoiner;
  readonly #ringMap: BpfMap;
  readonly #scope: string;
  #on = false;

  private constructor(
    scope: string,
    cfg: BpfMap,
    ringMap: BpfMap,
    ring: RingBufferReader,
    queue: BpfMap,
    joiner: TraceJoiner,
  ) {
    this.#scope = scope;
    this.#cfg = cfg;
    this.#ringMap = ringMap;
    this.#ring = ring;
    this.#queue = queue;
    this.#joiner = joiner;
  }

  static start(target: InterfaceTarget, options: TraceOptions = {}): Tracer {
    const compiled = compileTraceFilter(options.filter ?? "");
    const sample = options.sample ?? 1;
    if (!Number.isInteger(sample) || sample < 1)
      throw new InstallError(`sample must be a positive integer, got ${sample}`);
    const record = readRecord(target, options.stateDir ?? DEFAULT_STATE_DIR);
    if (!record)
      throw new InstallError(`no chain is installed on ${interfaceScope(target)}: nothing to trace`);
    const pins = tracePins(record.spec.pins.dir);
    if (!existsSync(pins.cfg) || !existsSync(pins.ring) || !existsSync(pins.queue))
      throw new InstallError(
        `the installation on ${interfaceScope(target)} was made by a Galette without packet tracing (no ${pins.cfg}); reinstall the chain to trace it`,
      );
    const instances = new Map(record.spec.instances.map((i) => [i.id, i] as const));
    const ports = new Map<number, string>([[record.ifindex, record.spec.target.iface]]);
    if (record.peerIfindex && record.spec.target.peer) ports.set(record.peerIfindex, record.spec.target.peer);
    const cfg = BpfMap.openPinned(pins.cfg);
    const opened: Array<{ close(): void }> = [cfg];
    try {
      const queue = BpfMap.openPinned(pins.queue);
      opened.push(queue);
      const ringMap = BpfMap.openPinned(pins.ring);
      opened.push(ringMap);
      const ring = new RingBufferReader(ringMap);
      opened.push(ring);
      const current = decodeTraceConfig(cfg.lookup(key0())!);
      if (current.on && current.owner > 0 && current.owner !== process.pid && processAlive(current.owner))
        throw new InstallError(
          `a trace is already running on ${interfaceScope(target)} (pid ${current.owner}); one tracer per interface`,
        );
      const tracer = new Tracer(
        interfaceScope(target),
        cfg,
        ringMap,
        ring,
        queue,
        new TraceJoiner(
          { instances, ports },
          {
            ...(options.withData !== undefined ? { withData: options.withData } : {}),
            ...(options.staleMs !== undefined ? { staleMs: options.staleMs } : {}),
          },
        ),
      );
      // records of an earlier trace still in the ring or the queue are not this trace's
      tracer.#drain(false);
      cfg.update(
        key0(),
        encodeTraceConfig({
          ...compiled,
          on: true,
          owner: process.pid,
          sample,
          seq: current.seq ?? 0,
          lost: 0,
        }),
      );
      tracer.#on = true;
      return tracer;
    } catch (err) {
      for (const o of opened.reverse()) o.close();
      throw err;
    }
  }

  /**
   * Frames completed (or given up) since the last poll, in arrival order. Throws once
   * another tracer holds the slot: two started at the same moment can both find it free,
   * and two readers of one ring would each get a share of the records.
   */
  poll(): TracedFrame[] {
    const b = this.#cfg.lookup(key0());
    const owner = b ? decodeTraceConfig(b).owner : 0;
    if (this.#on && owner !== process.pid)
      throw new InstallError(
        `the trace slot on ${this.#scope} is now held by ${owner ? `pid ${owner}` : "no tracer"}; this trace stopped (one tracer per interface)`,
      );
    this.#drain(true);
    return this.#joiner.take();
  }

  /** Records the XDP side had no room for since start. */
  lost(): number {
    const b = this.#cfg.lookup(key0());
    return b ? (decodeTraceConfig(b).lost ?? 0) : 0;
  }

  /** Switches marking off (if this process still holds the slot) and closes the maps. */
  stop(): void {
    if (this.#on) {
      const b = this.#cfg.lookup(key0());
      if (b) {
        const c = decodeTraceConfig(b);
        if (c.owner === process.pid)
          this.#cfg.update(key0(), encodeTraceConfig({ ...c, on: false, owner: 0 }));
      }
      this.#on = false;
    }
    this.#ring.close();
    this.#ringMap.close();
    this.#queue.close();
    this.#cfg.close();
  }

  #drain(keep: boolean): void {
    for (let round = 0; round < 64; round++) {
      const xdp = this.#ring.consume();
      const userland = popQueue(this.#queue, 1024);
      if (keep) for (const b of [...xdp, ...userland]) this.#joiner.add(decodeTraceRecord(b));
      if (xdp.length === 0 && userland.length === 0) return;
    }
  }
}

const key0 = () => Buffer.alloc(4);
