import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { enhancedPacket, interfaceDescription, PcapngWriter, sectionHeader } from "../src/pcapng";

const dir = mkdtempSync(path.join(tmpdir(), "galette-pcapng-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Walks the blocks of a pcapng buffer (little-endian), checking both length fields. */
function blocks(b: Buffer): Array<{ type: number; body: Buffer }> {
  const out: Array<{ type: number; body: Buffer }> = [];
  for (let off = 0; off < b.length; ) {
    const type = b.readUInt32LE(off);
    const len = b.readUInt32LE(off + 4);
    expect(len % 4).toBe(0);
    expect(b.readUInt32LE(off + len - 4)).toBe(len);
    out.push({ type, body: b.subarray(off + 8, off + len - 4) });
    off += len;
  }
  return out;
}

/** A 60-byte Ethernet/IPv4/UDP frame 10.0.0.1:1234 → 10.0.0.2:5678. */
function udp(): Buffer {
  const f = Buffer.alloc(60);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(46, 16);
  f[22] = 64;
  f[23] = 17;
  Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(f, 26);
  f.writeUInt16BE(1234, 34);
  f.writeUInt16BE(5678, 36);
  f.writeUInt16BE(26, 38);
  return f;
}

describe("pcapng writer", () => {
  it("lays out SHB, IDB (if_name, ns resolution) and EPB (padded data, comments) per the specification", () => {
    const shb = blocks(sectionHeader())[0]!;
    expect(shb.type).toBe(0x0a0d0d0a);
    expect(shb.body.readUInt32LE(0)).toBe(0x1a2b3c4d);
    expect([shb.body.readUInt16LE(4), shb.body.readUInt16LE(6)]).toEqual([1, 0]);
    expect(shb.body.readBigInt64LE(8)).toBe(-1n);

    const idb = blocks(interfaceDescription("veth0"))[0]!;
    expect(idb.type).toBe(1);
    expect(idb.body.readUInt16LE(0)).toBe(1); // Ethernet
    expect(idb.body.readUInt16LE(8)).toBe(2); // if_name
    expect(idb.body.subarray(12, 17).toString()).toBe("veth0");
    expect(idb.body.readUInt16LE(20)).toBe(9); // if_tsresol
    expect(idb.body[24]).toBe(9);

    const epb = blocks(
      enhancedPacket({
        interfaceId: 0,
        timestampNs: 0x1_0000_0002n,
        data: Buffer.from([1, 2, 3]),
        originalLength: 99,
        comments: ["é"],
      }),
    )[0]!;
    expect(epb.type).toBe(6);
    expect([epb.body.readUInt32LE(4), epb.body.readUInt32LE(8)]).toEqual([1, 2]);
    expect([epb.body.readUInt32LE(12), epb.body.readUInt32LE(16)]).toEqual([3, 99]);
    expect(epb.body.subarray(20, 24)).toEqual(Buffer.from([1, 2, 3, 0]));
    expect(epb.body.readUInt16LE(24)).toBe(1); // opt_comment
    expect(epb.body.readUInt16LE(26)).toBe(2); // UTF-8 bytes of "é"
    expect(epb.body.subarray(28, 30).toString()).toBe("é");
    expect(epb.body.subarray(32, 36)).toEqual(Buffer.alloc(4)); // opt_endofopt
  });

  it("writes a file tshark reads: frames, interfaces, nanosecond timestamps and comments", () => {
    const file = path.join(dir, "t.pcapng");
    const w = new PcapngWriter(file);
    w.write("veth0", {
      timestampNs: 1_700_000_000_123_456_789n,
      data: udp(),
      comments: ["a→b→tx", "second line"],
    });
    w.write("veth1", {
      timestampNs: 1_700_000_001_000_000_000n,
      data: udp().subarray(0, 42),
      originalLength: 60,
    });
    w.write("veth0", { timestampNs: 1_700_000_002_000_000_000n, data: udp(), comments: ["a→drop"] });
    w.close();
    expect(blocks(readFileSync(file)).map((b) => b.type)).toEqual([0x0a0d0d0a, 1, 6, 1, 6, 6]);
    const out = execFileSync(
      "tshark",
      [
        "-r",
        file,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
        "-e",
        "udp.dstport",
        "-e",
        "frame.comment",
      ],
      { encoding: "utf8" },
    )
      .trim()
      .split("\n");
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^veth0\|1700000000\.123456789\|60\|60\|5678\|a→b→tx,second line$/);
    expect(out[1]).toMatch(/^veth1\|1700000001\.000000000\|60\|42\|5678\|$/);
    expect(out[2]).toMatch(/^veth0\|1700000002\.000000000\|60\|60\|5678\|a→drop$/);
  });
});
