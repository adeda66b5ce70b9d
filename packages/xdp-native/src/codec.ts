/**
 * Small typed codecs for BPF map keys and values: fixed-size little-endian integers and
 * C structs laid out with natural alignment (as clang lays out the BPF side's structs).
 */
export interface Codec<T> {
  readonly size: number;
  readonly align: number;
  write(buf: Buffer, offset: number, value: T): void;
  read(buf: Buffer, offset: number): T;
}

export function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.write(buf, 0, value);
  return buf;
}

export function decode<T>(codec: Codec<T>, buf: Buffer, offset = 0): T {
  if (buf.length - offset < codec.size)
    throw new RangeError(
      `cannot decode ${codec.size} bytes from a ${buf.length}-byte buffer at offset ${offset}`,
    );
  return codec.read(buf, offset);
}

function uint(size: 1 | 2 | 4, name: string): Codec<number> {
  const max = 2 ** (size * 8) - 1;
  return {
    size,
    align: size,
    write(buf, offset, value) {
      if (!Number.isInteger(value) || value < 0 || value > max)
        throw new RangeError(`${name} value must be an integer in [0, ${max}], got ${value}`);
      buf.writeUIntLE(value, offset, size);
    },
    read: (buf, offset) => buf.readUIntLE(offset, size),
  };
}

export const u8 = uint(1, "u8");
export const u16 = uint(2, "u16");
export const u32 = uint(4, "u32");

export const i32: Codec<number> = {
  size: 4,
  align: 4,
  write(buf, offset, value) {
    if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31)
      throw new RangeError(`i32 value must be a 32-bit signed integer, got ${value}`);
    buf.writeInt32LE(value, offset);
  },
  read: (buf, offset) => buf.readInt32LE(offset),
};

export const u64: Codec<bigint> = {
  size: 8,
  align: 8,
  write(buf, offset, value) {
    if (typeof value !== "bigint" || value < 0n || value >= 1n << 64n)
      throw new RangeError(`u64 value must be a bigint in [0, 2^64), got ${String(value)}`);
    buf.writeBigUInt64LE(value, offset);
  },
  read: (buf, offset) => buf.readBigUInt64LE(offset),
};

/** u64 as a JS number, for counters that stay below 2^53. */
export const u64n: Codec<number> = {
  size: 8,
  align: 8,
  write(buf, offset, value) {
    if (!Number.isSafeInteger(value) || value < 0)
      throw new RangeError(`u64n value must be a non-negative safe integer, got ${value}`);
    buf.writeBigUInt64LE(BigInt(value), offset);
  },
  read(buf, offset) {
    const v = buf.readBigUInt64LE(offset);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`u64 value ${v} does not fit a JS number`);
    return Number(v);
  },
};

/** Raw bytes of a fixed length (MAC addresses, IPv6 addresses, opaque blobs). */
export function bytes(size: number): Codec<Buffer> {
  return {
    size,
    align: 1,
    write(buf, offset, value) {
      if (!Buffer.isBuffer(value) || value.length !== size)
        throw new RangeError(
          `expected ${size} bytes, got ${Buffer.isBuffer(value) ? value.length : typeof value}`,
        );
      value.copy(buf, offset);
    },
    read: (buf, offset) => Buffer.from(buf.subarray(offset, offset + size)),
  };
}

/** Big-endian u32, e.g. an IPv4 address in an LPM key. */
export const be32: Codec<number> = {
  size: 4,
  align: 4,
  write(buf, offset, value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
      throw new RangeError(`be32 value must be an integer in [0, 2^32), got ${value}`);
    buf.writeUInt32BE(value, offset);
  },
  read: (buf, offset) => buf.readUInt32BE(offset),
};

type FieldsOf<F extends Record<string, Codec<unknown>>> = {
  [K in keyof F]: F[K] extends Codec<infer T> ? T : never;
};

/** A C struct: fields in declaration order, each aligned to its own alignment, size padded. */
export function struct<F extends Record<string, Codec<unknown>>>(
  fields: F,
): Codec<FieldsOf<F>> & { offsets: Record<keyof F, number> } {
  const layout: Array<[keyof F & string, Codec<unknown>, number]> = [];
  let offset = 0;
  let align = 1;
  for (const [name, codec] of Object.entries(fields)) {
    offset = Math.ceil(offset / codec.align) * codec.align;
    layout.push([name, codec, offset]);
    offset += codec.size;
    align = Math.max(align, codec.align);
  }
  const size = Math.ceil(offset / align) * align;
  const offsets = Object.fromEntries(layout.map(([n, , o]) => [n, o])) as Record<keyof F, number>;
  return {
    size,
    align,
    offsets,
    write(buf, base, value) {
      for (const [name, codec, off] of layout) {
        if (!(name in (value as object))) throw new RangeError(`struct value is missing field '${name}'`);
        codec.write(buf, base + off, (value as Record<string, unknown>)[name]);
      }
    },
    read(buf, base) {
      const out: Record<string, unknown> = {};
      for (const [name, codec, off] of layout) out[name] = codec.read(buf, base + off);
      return out as FieldsOf<F>;
    },
  };
}

/** A fixed-length C array of one codec. */
export function array<T>(codec: Codec<T>, length: number): Codec<T[]> {
  return {
    size: codec.size * length,
    align: codec.align,
    write(buf, offset, value) {
      if (!Array.isArray(value) || value.length !== length)
        throw new RangeError(
          `expected an array of ${length} elements, got ${Array.isArray(value) ? value.length : typeof value}`,
        );
      for (const [i, v] of value.entries()) codec.write(buf, offset + i * codec.size, v);
    },
    read: (buf, offset) => Array.from({ length }, (_, i) => codec.read(buf, offset + i * codec.size)),
  };
}

/** struct galette_action { __u32 kind; __u32 arg; } */
export const galetteAction = struct({ kind: u32, arg: u32 });
export type GaletteAction = FieldsOf<{ kind: typeof u32; arg: typeof u32 }>;

/** struct galette_upcall_meta { __u32 instance; __u32 action; } */
export const upcallMeta = struct({ instance: u32, action: u32 });
