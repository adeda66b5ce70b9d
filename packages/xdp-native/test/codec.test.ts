import { describe, expect, it } from "vitest";
import {
  array,
  be32,
  bytes,
  decode,
  encode,
  galetteAction,
  i32,
  struct,
  u8,
  u16,
  u32,
  u64,
  u64n,
  upcallMeta,
} from "../src/codec";

describe("codec", () => {
  it("encodes little-endian integers of each width", () => {
    expect(encode(u8, 0xab)).toEqual(Buffer.from([0xab]));
    expect(encode(u16, 0x1234)).toEqual(Buffer.from([0x34, 0x12]));
    expect(encode(u32, 0x01020304)).toEqual(Buffer.from([4, 3, 2, 1]));
    expect(encode(u64, 0x0102030405060708n)).toEqual(Buffer.from([8, 7, 6, 5, 4, 3, 2, 1]));
    expect(encode(i32, -2)).toEqual(Buffer.from([0xfe, 0xff, 0xff, 0xff]));
    expect(encode(be32, 0x0a000001)).toEqual(Buffer.from([10, 0, 0, 1]));
    expect(decode(u64n, encode(u64n, 2 ** 40))).toBe(2 ** 40);
  });

  it("rejects values that do not fit, naming the type", () => {
    expect(() => encode(u32, -1)).toThrow(/u32 value must be an integer in \[0, 4294967295\], got -1/);
    expect(() => encode(u8, 256)).toThrow(/u8/);
    expect(() => encode(u32, 1.5)).toThrow(/u32/);
    expect(() => encode(u64, 1n << 64n)).toThrow(/u64/);
    expect(() => encode(bytes(6), Buffer.alloc(5))).toThrow(/expected 6 bytes, got 5/);
    expect(() => decode(u64, Buffer.alloc(4))).toThrow(/cannot decode 8 bytes from a 4-byte buffer/);
    expect(() => decode(u64n, Buffer.alloc(8, 0xff))).toThrow(/does not fit a JS number/);
  });

  it("lays structs out like C (natural alignment, padded size)", () => {
    const s = struct({ a: u8, b: u32, c: u16, d: u64 });
    expect(s.offsets).toEqual({ a: 0, b: 4, c: 8, d: 16 });
    expect(s.size).toBe(24);
    const v = { a: 1, b: 2, c: 3, d: 4n };
    expect(decode(s, encode(s, v))).toEqual(v);
    expect(() => encode(s, { a: 1, b: 2, c: 3 } as unknown as typeof v)).toThrow(/missing field 'd'/);
  });

  it("matches the ABI structs", () => {
    expect(galetteAction.size).toBe(8);
    expect(encode(galetteAction, { kind: 101, arg: 7 })).toEqual(Buffer.from([101, 0, 0, 0, 7, 0, 0, 0]));
    expect(upcallMeta.size).toBe(8);
    expect(decode(upcallMeta, Buffer.from([5, 0, 0, 0, 2, 0, 0, 0]))).toEqual({ instance: 5, action: 2 });
  });

  it("encodes fixed arrays and checks their length", () => {
    const a = array(u16, 3);
    expect(encode(a, [1, 2, 3])).toEqual(Buffer.from([1, 0, 2, 0, 3, 0]));
    expect(() => encode(a, [1, 2])).toThrow(/3 elements, got 2/);
  });
});
