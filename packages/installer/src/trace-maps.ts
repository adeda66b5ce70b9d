/**
 * The maps of packet tracing on an installation (see @galette/xdp-native's Trace): the
 * root program's filter config and the XDP ring buffer (created with the root object and
 * pinned), and the queue the workers push their records to (created here and pinned), so
 * that `galette trace`, another process, finds all three from the installation's pins.
 */
import { existsSync } from "node:fs";
import { BpfMap, Trace } from "@galette/xdp-native";

export interface TracePins {
  cfg: string;
  ring: string;
  queue: string;
}

export const tracePins = (pinsDir: string): TracePins => ({
  cfg: `${pinsDir}/trace_cfg`,
  ring: `${pinsDir}/trace_ring`,
  queue: `${pinsDir}/trace_queue`,
});

/** BPF_MAP_TYPE_RINGBUF */
const RINGBUF = 27;

export function createTraceQueue(): BpfMap {
  return BpfMap.create({
    type: Trace.queueMapType,
    name: Trace.names.queue,
    keySize: 0,
    valueSize: Trace.recordSize,
    maxEntries: Trace.queueEntries,
  });
}

/**
 * The ring and queue of an installation being adopted. An installation made before
 * tracing existed has no pins: unshared maps stand in (its root program marks nothing).
 */
export function openTraceMaps(pins: TracePins): { traceRing: BpfMap; traceQueue: BpfMap } {
  const traceRing = existsSync(pins.ring)
    ? BpfMap.openPinned(pins.ring)
    : BpfMap.create({
        type: RINGBUF,
        name: Trace.names.ring,
        keySize: 0,
        valueSize: 0,
        maxEntries: Trace.ringSize,
      });
  try {
    const traceQueue = existsSync(pins.queue) ? BpfMap.openPinned(pins.queue) : createTraceQueue();
    return { traceRing, traceQueue };
  } catch (err) {
    traceRing.close();
    throw err;
  }
}
