/**
 * Packet-trace records (include/galette_trace.h): the XDP side writes them to the ring
 * buffer galette_trace_ring, the workers to a BPF queue map. This module reads both and
 * decodes the records; joining them into paths is the installer's job.
 */
import type { BpfMap } from "./maps";
import { native, type RingbufHandle } from "./native";

/** Mirror of include/galette_trace.h (the C header is the source of truth). */
export const Trace = {
  magic: 0x43525447,
  upcallTraced: 0x80000000,
  ringSize: 256 * 1024,
  snap: 128,
  rootInstance: 0xffffffff,
  recordSize: 40,
  cfgSize: 64,
  /** BPF_MAP_TYPE_QUEUE: the workers' records */
  queueMapType: 22,
  /** entries of the workers' queue the installer creates */
  queueEntries: 4096,
  names: { ring: "galette_trace_ring", cfg: ".data.trace", queue: "galette_trace_q" },
} as const;

export const TraceTerm = {
  ethertype: 1 << 0,
  proto: 1 << 1,
  src: 1 << 2,
  dst: 1 << 3,
  host: 1 << 4,
  sport: 1 << 5,
  dport: 1 << 6,
  port: 1 << 7,
} as const;
export type TraceTermName = keyof typeof TraceTerm;

export interface TraceRecord {
  /** CLOCK_MONOTONIC ns */
  ts: bigint;
  frame: number;
  instance: number;
  variant: number;
  kind: number;
  arg: number;
  tier: "xdp" | "userland";
  len: number;
  ifindex: number;
  /** the frame's first bytes (root record only) */
  data?: Buffer;
}

export function decodeTraceRecord(b: Buffer): TraceRecord {
  if (b.length < Trace.recordSize)
    throw new Error(`trace record of ${b.length} bytes, expected at least ${Trace.recordSize}`);
  const caplen = b.readUInt16LE(30);
  const rec: TraceRecord = {
    ts: b.readBigUInt64LE(0),
    frame: b.readUInt32LE(8),
    instance: b.readUInt32LE(12),
    variant: b.readUInt32LE(16),
    kind: b.readUInt32LE(20),
    arg: b.readUInt32LE(24),
    tier: b.readUInt16LE(28) === 1 ? "userland" : "xdp",
    len: b.readUInt32LE(32),
    ifindex: b.readUInt32LE(36),
  };
  if (caplen > 0) rec.data = Buffer.from(b.subarray(Trace.recordSize, Trace.recordSize + caplen));
  return rec;
}

/** struct galette_trace_cfg */
export interface TraceConfig {
  on: boolean;
  owner: number;
  terms: number;
  negate: number;
  sample: number;
  seq?: number;
  lost?: number;
  ethertype: number;
  proto: number;
  /** IPv4 addresses and masks as 4 bytes in network order */
  src: Buffer;
  srcMask: Buffer;
  dst: Buffer;
  dstMask: Buffer;
  host: Buffer;
  hostMask: Buffer;
  sport: number;
  dport: number;
  port: number;
}

export function encodeTraceConfig(c: TraceConfig): Buffer {
  const b = Buffer.alloc(Trace.cfgSize);
  b.writeUInt32LE(c.on ? 1 : 0, 0);
  b.writeUInt32LE(c.owner >>> 0, 4);
  b.writeUInt32LE(c.terms >>> 0, 8);
  b.writeUInt32LE(c.negate >>> 0, 12);
  b.writeUInt32LE(c.sample >>> 0, 16);
  b.writeUInt32LE((c.seq ?? 0) >>> 0, 20);
  b.writeUInt32LE((c.lost ?? 0) >>> 0, 24);
  b.writeUInt16LE(c.ethertype, 28);
  b.writeUInt8(c.proto, 30);
  const addrs = [c.src, c.srcMask, c.dst, c.dstMask, c.host, c.hostMask];
  addrs.forEach((a, i) => {
    a.copy(b, 32 + i * 4, 0, 4);
  });
  b.writeUInt16LE(c.sport, 56);
  b.writeUInt16LE(c.dport, 58);
  b.writeUInt16LE(c.port, 60);
  return b;
}

export function decodeTraceConfig(b: Buffer): TraceConfig {
  const addr = (i: number) => Buffer.from(b.subarray(32 + i * 4, 36 + i * 4));
  return {
    on: b.readUInt32LE(0) !== 0,
    owner: b.readUInt32LE(4),
    terms: b.readUInt32LE(8),
    negate: b.readUInt32LE(12),
    sample: b.readUInt32LE(16),
    seq: b.readUInt32LE(20),
    lost: b.readUInt32LE(24),
    ethertype: b.readUInt16LE(28),
    proto: b.readUInt8(30),
    src: addr(0),
    srcMask: addr(1),
    dst: addr(2),
    dstMask: addr(3),
    host: addr(4),
    hostMask: addr(5),
    sport: b.readUInt16LE(56),
    dport: b.readUInt16LE(58),
    port: b.readUInt16LE(60),
  };
}

/** Drains a BPF ring buffer map without blocking (poll it on a timer). */
export class RingBufferReader {
  #h: RingbufHandle | undefined;
  constructor(map: BpfMap | number) {
    this.#h = native().ringbufOpen(typeof map === "number" ? map : map.fd);
  }
  consume(): Buffer[] {
    if (!this.#h) throw new Error("ring buffer reader is closed");
    return native().ringbufConsume(this.#h);
  }
  close(): void {
    if (this.#h) native().ringbufClose(this.#h);
    this.#h = undefined;
  }
}

/** Pops up to `max` values off a BPF queue map (empty array when it is empty). */
export function popQueue(map: BpfMap, max = 1024): Buffer[] {
  return native().queuePop(map.fd, map.info.valueSize, max);
}
