import { type Codec, decode, encode } from "./codec";
import { type NativeMapInfo, native } from "./native";

/** BPF_MAP_TYPE_* values for the map types Galette uses. */
export const MapType = {
  hash: 1,
  array: 2,
  prog_array: 3,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lru_percpu_hash: 10,
  lpm_trie: 11,
  devmap: 14,
  devmap_hash: 25,
  xskmap: 17,
} as const;
export type MapTypeName = keyof typeof MapType;

export const MapFlags = {
  /** BPF_F_NO_PREALLOC: required by LPM tries, optional for hash maps. */
  noPrealloc: 1,
} as const;

/** bpf_map_update_elem flags. */
export const UpdateFlag = { any: 0, noexist: 1, exist: 2 } as const;
export type UpdateFlagName = keyof typeof UpdateFlag;

const PERCPU_TYPES = new Set<number>([MapType.percpu_hash, MapType.percpu_array, MapType.lru_percpu_hash]);

export interface MapSpec {
  type: MapTypeName | number;
  /** kernel map name (at most 15 characters are kept) */
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
}

let cpus: number | undefined;
/** Number of possible CPUs: the length of every per-CPU value array. */
export function possibleCpus(): number {
  cpus ??= native().numPossibleCpus();
  return cpus;
}

function typeNumber(type: MapTypeName | number): number {
  if (typeof type === "number") return type;
  const n = MapType[type];
  if (n === undefined)
    throw new TypeError(`unknown map type '${type}' (known: ${Object.keys(MapType).join(", ")})`);
  return n;
}

/**
 * A BPF map reached through an fd. Maps created or opened here own their fd (close()
 * releases it); maps borrowed from a BpfObject live as long as the object.
 */
export class BpfMap {
  readonly info: Readonly<NativeMapInfo>;
  #fd: number;
  readonly #owned: boolean;

  private constructor(fd: number, owned: boolean) {
    this.#fd = fd;
    this.#owned = owned;
    try {
      this.info = native().mapInfo(fd);
    } catch (err) {
      if (owned) native().closeFd(fd);
      throw err;
    }
  }

  static create(spec: MapSpec): BpfMap {
    const type = typeNumber(spec.type);
    let flags = spec.flags ?? 0;
    // The kernel refuses preallocated LPM tries; spare every caller that surprise.
    if (type === MapType.lpm_trie) flags |= MapFlags.noPrealloc;
    const fd = native().mapCreate(type, spec.name, spec.keySize, spec.valueSize, spec.maxEntries, flags);
    return new BpfMap(fd, true);
  }

  /** Opens a map pinned on bpffs (the returned map owns a new fd). */
  static openPinned(path: string): BpfMap {
    return new BpfMap(native().objGet(path), true);
  }

  static fromId(id: number): BpfMap {
    return new BpfMap(native().mapFdById(id), true);
  }

  /** Wraps an fd; with owned=true close() closes it. */
  static fromFd(fd: number, owned = false): BpfMap {
    return new BpfMap(fd, owned);
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error(`map '${this.info.name}' (id ${this.info.id}) is closed`);
    return this.#fd;
  }
  get name(): string {
    return this.info.name;
  }
  get id(): number {
    return this.info.id;
  }
  get isPerCpu(): boolean {
    return PERCPU_TYPES.has(this.info.type);
  }
  /** Bytes of one lookup of a per-CPU map: each CPU's value padded to 8 bytes. */
  get perCpuStride(): number {
    return Math.ceil(this.info.valueSize / 8) * 8;
  }

  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  lookup(key: Buffer): Buffer | undefined {
    this.#notPerCpu("lookup");
    return native().mapLookup(this.fd, key, this.info.keySize, this.info.valueSize) ?? undefined;
  }

  /** The value of every possible CPU, in CPU order. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    this.#perCpu("lookupPerCpu");
    const stride = this.perCpuStride;
    const raw = native().mapLookup(this.fd, key, this.info.keySize, stride * possibleCpus());
    if (!raw) return undefined;
    return Array.from({ length: possibleCpus() }, (_, i) =>
      Buffer.from(raw.subarray(i * stride, i * stride + this.info.valueSize)),
    );
  }

  update(key: Buffer, value: Buffer, flag: UpdateFlagName = "any"): void {
    this.#notPerCpu("update");
    native().mapUpdate(this.fd, key, this.info.keySize, value, this.info.valueSize, UpdateFlag[flag]);
  }

  /** Sets every CPU's value: one Buffer per possible CPU, or one Buffer for all. */
  updatePerCpu(key: Buffer, values: Buffer | Buffer[], flag: UpdateFlagName = "any"): void {
    this.#perCpu("updatePerCpu");
    const n = possibleCpus();
    const list = Array.isArray(values) ? values : Array.from({ length: n }, () => values);
    if (list.length !== n)
      throw new RangeError(`per-CPU update of '${this.name}' needs ${n} values, got ${list.length}`);
    const stride = this.perCpuStride;
    const raw = Buffer.alloc(stride * n);
    list.forEach((v, i) => {
      if (v.length !== this.info.valueSize)
        throw new RangeError(
          `per-CPU value ${i} for '${this.name}' is ${v.length} bytes, the map needs ${this.info.valueSize}`,
        );
      v.copy(raw, i * stride);
    });
    native().mapUpdate(this.fd, key, this.info.keySize, raw, raw.length, UpdateFlag[flag]);
  }

  /** Returns false when there was no such entry. */
  delete(key: Buffer): boolean {
    return native().mapDelete(this.fd, key, this.info.keySize);
  }

  /** Every key (get_next_key walk); bounded so a map filled concurrently cannot loop forever. */
  keys(limit = this.info.maxEntries * 2 + 16): Buffer[] {
    return native().mapKeys(this.fd, this.info.keySize, limit);
  }

  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]);
    }
    return out;
  }

  /** A view that encodes keys and decodes values with codecs. */
  typed<K, V>(key: Codec<K>, value: Codec<V>): TypedMap<K, V> {
    return new TypedMap(this, key, value);
  }

  close(): void {
    if (this.#fd >= 0 && this.#owned) native().closeFd(this.#fd);
    this.#fd = -1;
  }

  #perCpu(op: string): void {
    if (!this.isPerCpu)
      throw new TypeError(`${op} on '${this.name}': map type ${this.info.type} is not per-CPU`);
  }
  #notPerCpu(op: string): void {
    if (this.isPerCpu) throw new TypeError(`${op} on per-CPU map '${this.name}': use ${op}PerCpu`);
  }
}

export class TypedMap<K, V> {
  constructor(
    readonly map: BpfMap,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
  ) {
    const { keySize, valueSize, name } = map.info;
    if (key.size !== keySize)
      throw new RangeError(`key codec is ${key.size} bytes, map '${name}' keys are ${keySize}`);
    if (value.size !== valueSize)
      throw new RangeError(`value codec is ${value.size} bytes, map '${name}' values are ${valueSize}`);
  }

  get(key: K): V | undefined {
    const v = this.map.lookup(encode(this.key, key));
    return v && decode(this.value, v);
  }
  getPerCpu(key: K): V[] | undefined {
    return this.map.lookupPerCpu(encode(this.key, key))?.map((b) => decode(this.value, b));
  }
  set(key: K, value: V, flag: UpdateFlagName = "any"): void {
    this.map.update(encode(this.key, key), encode(this.value, value), flag);
  }
  /** One value per possible CPU. */
  setPerCpu(key: K, values: V[], flag: UpdateFlagName = "any"): void {
    this.map.updatePerCpu(
      encode(this.key, key),
      values.map((v) => encode(this.value, v)),
      flag,
    );
  }
  delete(key: K): boolean {
    return this.map.delete(encode(this.key, key));
  }
  keys(): K[] {
    return this.map.keys().map((k) => decode(this.key, k));
  }
  entries(): Array<[K, V]> {
    return this.map.entries().map(([k, v]) => [decode(this.key, k), decode(this.value, v)]);
  }
}
