import { BpfMap } from "./maps";
import { type NativeMapSummary, type NativeProgramInfo, native, type ObjectHandle } from "./native";

export interface ObjectOpenOptions {
  /** object name for Buffer sources (libbpf derives map name prefixes from it) */
  name?: string;
}

export interface ObjectLoadOptions extends ObjectOpenOptions {
  /** `const volatile` globals to set before load: number = u32, bigint = u64, Buffer = exact bytes */
  rodata?: Record<string, number | bigint | Buffer>;
  /** maps to take from elsewhere instead of creating (map name -> map or fd) */
  reuseMaps?: Record<string, BpfMap | number>;
  /** like reuseMaps, for maps the object may not declare (skipped when it does not) */
  reuseMapsIfDeclared?: Record<string, BpfMap | number>;
  /** maps to pin (or reuse if already pinned and compatible) at these bpffs paths */
  pinMaps?: Record<string, string>;
  /** verifier log level; 0 (default) still returns the log when a load fails */
  logLevel?: number;
}

export function rodataBytes(name: string, value: number | bigint | Buffer): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === "bigint") {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    return b;
  }
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new RangeError(
      `rodata '${name}': a number value must be a u32, got ${value} (use a bigint or Buffer)`,
    );
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
}

/**
 * A BPF ELF object: open, prepare (rodata, map reuse/pinning), load, then read program and
 * map fds. Those fds belong to the object: close() releases every program and map that is
 * not held elsewhere (attached, pinned, in a PROG_ARRAY, or reused by another object).
 */
export class BpfObject {
  #handle: ObjectHandle | undefined;
  #loaded = false;

  private constructor(
    handle: ObjectHandle,
    readonly source: string,
  ) {
    this.#handle = handle;
  }

  static open(src: string | Buffer, opts: ObjectOpenOptions = {}): BpfObject {
    const handle = native().objectOpen(src, opts.name);
    return new BpfObject(handle, typeof src === "string" ? src : `<buffer:${opts.name ?? "galette_obj"}>`);
  }

  /** open + rodata + reuse/pin maps + load; the object is closed again if any step fails. */
  static load(src: string | Buffer, opts: ObjectLoadOptions = {}): BpfObject {
    const obj = BpfObject.open(src, opts);
    try {
      for (const [name, value] of Object.entries(opts.rodata ?? {})) obj.setRodata(name, value);
      for (const [name, map] of Object.entries(opts.reuseMaps ?? {})) obj.reuseMap(name, map);
      const optional = Object.entries(opts.reuseMapsIfDeclared ?? {});
      if (optional.length) {
        const declared = new Set(obj.maps().map((m) => m.name));
        for (const [name, map] of optional) if (declared.has(name)) obj.reuseMap(name, map);
      }
      for (const [name, path] of Object.entries(opts.pinMaps ?? {})) obj.pinMap(name, path);
      obj.load(opts.logLevel);
      return obj;
    } catch (err) {
      obj.close();
      throw err;
    }
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  setRodata(name: string, value: number | bigint | Buffer): void {
    native().objectSetRodata(this.#h(), name, rodataBytes(name, value));
  }

  reuseMap(name: string, map: BpfMap | number): void {
    native().objectReuseMap(this.#h(), name, typeof map === "number" ? map : map.fd);
  }

  pinMap(name: string, path: string): void {
    native().objectPinMap(this.#h(), name, path);
  }

  load(logLevel = 0): void {
    native().objectLoad(this.#h(), logLevel);
    this.#loaded = true;
  }

  programs(): NativeProgramInfo[] {
    return native().objectPrograms(this.#h());
  }

  maps(): NativeMapSummary[] {
    return native().objectMaps(this.#h());
  }

  programFd(name: string): number {
    return native().objectProgramFd(this.#h(), name);
  }

  /** Kernel id of a loaded program (what XDP queries report). */
  programId(name: string): number {
    return native().progInfo(this.programFd(name)).id;
  }

  /** A loaded map of this object; its fd is borrowed and valid until close(). */
  map(name: string): BpfMap {
    return BpfMap.fromFd(native().objectMapFd(this.#h(), name), false);
  }

  close(): void {
    if (this.#handle) native().objectClose(this.#handle);
    this.#handle = undefined;
  }

  #h(): ObjectHandle {
    if (!this.#handle) throw new Error(`BPF object ${this.source} is closed`);
    return this.#handle;
  }
}

/** Kernel info of any program fd (id, name, tag). */
export function programInfo(fd: number) {
  return native().progInfo(fd);
}

/** Opens a pinned program or map path as a new fd (caller closes it with closeFd). */
export function openPinned(path: string): number {
  return native().objGet(path);
}

export function pinFd(fd: number, path: string): void {
  native().objPin(fd, path);
}

export function closeFd(fd: number): void {
  native().closeFd(fd);
}

/**
 * Gives the C heap's free pages back to the kernel. glibc keeps what was freed for reuse;
 * a long-running process that allocated much once (start-up, an install) calls this after.
 * (Every BPF object load already does, once it is done.)
 */
export function trimHeap(): void {
  native().heapTrim();
}
