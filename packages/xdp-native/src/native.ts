import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** Where node-gyp puts the addon and the compiled root program (same dir from src/ and dist/). */
export const buildDir = fileURLToPath(new URL("../build/Release/", import.meta.url));
export const addonPath = `${buildDir}galette_xdp.node`;

/**
 * The NF worker executable (galette-nf-worker), found beside the addon: whoever ships the
 * addon ships this file in the same directory.
 */
export function workerExecutablePath(): string {
  return `${buildDir}galette-nf-worker`;
}

export type ObjectHandle = { readonly __brand: "BpfObjectHandle" };
export type PoolHandle = { readonly __brand: "PoolHandle" };
export type WorkerPoolHandle = { readonly __brand: "WorkerPoolHandle" };
export type RingbufHandle = { readonly __brand: "RingbufHandle" };

export interface NativeProgramInfo {
  name: string;
  section: string;
  type: number;
  fd: number;
}
export interface NativeMapSummary {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  fd: number;
}
export interface NativeMapInfo {
  id: number;
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}
export interface NativeProgInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
  /** kernel bpf_stats since load (grow only while stats are enabled; a tail-called program's stay 0) */
  runTimeNs: number;
  runCount: number;
}
export interface NativeXdpQuery {
  ifindex: number;
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
  attachMode: number;
}
export interface NativePoolEvent {
  type: "ready" | "error";
  worker: number;
  message: string;
  errno?: number;
  code?: string;
}
export interface NativePoolConfig {
  ifname: string;
  netns?: string;
  /** RX queues per port (worker pool only; default: all the driver reports) */
  queues?: number;
  /** second port (worker pool only) */
  peer?: string;
  workers: number;
  busyPoll: boolean;
  pollTimeoutMs?: number;
  frameSize?: number;
  frameCount?: number;
  ringSize?: number;
  batchSize?: number;
  xskMapFd: number;
  xskCountMapFd: number;
  instances: NativeInstanceConfig[];
}
export interface NativeInstanceConfig {
  id: number;
  actionsMapFd: number;
  library?: string;
  mapFds?: number[];
}
export interface NativeWorkerStats {
  index: number;
  state: "starting" | "running" | "failed" | "stopped";
  generation: number;
  rx: number;
  tx: number;
  drop: number;
  abort: number;
  passUnsupported: number;
  /** PASS verdicts handed to the host stack (the port's TAP device); worker process only */
  passed?: number;
  redirectUnsupported: number;
  badMeta: number;
  hopLimit: number;
  noNf: number;
  badVariant: number;
  badPacket: number;
  txRingFull: number;
  txErrors: number;
  wakeups: number;
  batches: number;
  nfCalls: number;
  nfNanoseconds: number;
  /** the kernel's XDP_STATISTICS for this socket (absent once stopped) */
  kernel?: {
    rxDropped: number;
    rxInvalidDescs: number;
    txInvalidDescs: number;
    rxRingFull: number;
    rxFillRingEmpty: number;
    txRingEmpty: number;
  };
  error?: string;
  errno?: number;
}
export interface NativeInstanceStats {
  id: number;
  calls: number;
  nanoseconds: number;
  variants: number[];
}
export interface NativePoolStats {
  generation: number;
  running: boolean;
  retiredTables: number;
  workers: NativeWorkerStats[];
  instances: NativeInstanceStats[];
}

/** The addon's raw surface; the typed classes in this package are the API to use. */
export interface NativeAddon {
  libbpfGlobal: boolean;
  objectOpen(src: string | Buffer, name?: string): ObjectHandle;
  objectPrograms(h: ObjectHandle): NativeProgramInfo[];
  objectMaps(h: ObjectHandle): NativeMapSummary[];
  objectReuseMap(h: ObjectHandle, map: string, fd: number): void;
  objectPinMap(h: ObjectHandle, map: string, path: string): void;
  objectSetRodata(h: ObjectHandle, variable: string, value: Buffer): void;
  objectLoad(h: ObjectHandle, logLevel?: number): void;
  objectProgramFd(h: ObjectHandle, program: string): number;
  objectMapFd(h: ObjectHandle, map: string): number;
  objectClose(h: ObjectHandle): void;
  heapTrim(): void;
  mapCreate(
    type: number,
    name: string,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    flags: number,
  ): number;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  mapFdById(id: number): number;
  closeFd(fd: number): void;
  mapInfo(fd: number): NativeMapInfo;
  progInfo(fd: number): NativeProgInfo;
  /** BPF_ENABLE_STATS: bpf_stats stay on until the returned fd is closed */
  enableStats(): number;
  mapLookup(fd: number, key: Buffer, keySize: number, valueSize: number): Buffer | null;
  mapUpdate(fd: number, key: Buffer, keySize: number, value: Buffer, valueSize: number, flags: number): void;
  mapDelete(fd: number, key: Buffer, keySize: number): boolean;
  mapKeys(fd: number, keySize: number, limit: number): Buffer[];
  numPossibleCpus(): number;
  xdpAttach(
    netns: string,
    iface: string | number,
    progFd: number,
    flags: number,
    expectedOldFd: number,
  ): number;
  xdpDetach(netns: string, iface: string | number, flags: number, expectedOldFd: number): void;
  xdpQuery(netns: string, iface: string | number): NativeXdpQuery;
  ifIndex(netns: string, ifname: string): number;
  devmapSet(netns: string, mapFd: number, key: number, ifindex: number): void;
  poolStart(config: NativePoolConfig, onEvent: (e: NativePoolEvent) => void): PoolHandle;
  poolStop(h: PoolHandle): void;
  poolReload(h: PoolHandle): number;
  poolUpdate(h: PoolHandle, instances: NativeInstanceConfig[]): number;
  poolQuiesced(h: PoolHandle, generation: number): boolean;
  poolStats(h: PoolHandle): NativePoolStats;
  workerPoolOpen(
    config: Omit<NativePoolConfig, "instances" | "busyPoll"> & { rebuildSockets?: boolean },
  ): WorkerPoolHandle;
  workerPoolChildFds(h: WorkerPoolHandle): number[];
  workerPoolSpawned(h: WorkerPoolHandle, pid: number): void;
  workerPoolExited(h: WorkerPoolHandle): void;
  workerPoolKill(h: WorkerPoolHandle): void;
  workerPoolSend(h: WorkerPoolHandle, instances: NativeInstanceConfig[], generation: number): void;
  workerPoolRebuild(h: WorkerPoolHandle): void;
  workerPoolPublish(h: WorkerPoolHandle): void;
  workerPoolQuiesced(h: WorkerPoolHandle, generation: number): boolean;
  workerPoolCrashSite(h: WorkerPoolHandle): number[];
  workerPoolStats(h: WorkerPoolHandle): NativePoolStats & {
    crashRecovered: number;
    keepsCapBpf: boolean;
    rxPerQueue: number[][];
    takeover: "remap" | "rebuild";
    socketRebuilds: number;
    framesLostInRebuilds: number;
  };
  workerPoolClose(h: WorkerPoolHandle): void;
  ringbufOpen(mapFd: number): RingbufHandle;
  ringbufConsume(h: RingbufHandle): Buffer[];
  ringbufClose(h: RingbufHandle): void;
  queuePop(mapFd: number, valueSize: number, max: number): Buffer[];
}

let loaded: NativeAddon | undefined;

/** Loads build/Release/galette_xdp.node on first use, so the codec works without it. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  if (!existsSync(addonPath))
    throw new Error(
      `native addon not built: ${addonPath} is missing (run \`pnpm --filter @galette/xdp-native build:native\` or \`make setup\`)`,
    );
  loaded = createRequire(import.meta.url)(addonPath) as NativeAddon;
  return loaded;
}

/** Errors thrown by the addon carry the errno, its symbolic code and context fields. */
export interface BpfError extends Error {
  errno: number;
  code: string;
  object?: string;
  program?: string;
  map?: string;
  path?: string;
  ifname?: string;
  verifierLog?: string;
  libbpfLog?: string;
}

export function isBpfError(err: unknown): err is BpfError {
  return (
    err instanceof Error &&
    typeof (err as BpfError).errno === "number" &&
    typeof (err as BpfError).code === "string"
  );
}
