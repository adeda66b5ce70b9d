/**
 * A minimal pcapng writer (little-endian): one Section Header Block, one Interface
 * Description Block per interface (Ethernet, nanosecond timestamps), and one Enhanced
 * Packet Block per frame with optional packet comments (opt_comment), which Wireshark and
 * tshark show per frame (`frame.comment`). Blocks and options per the pcapng
 * specification (draft-ietf-opsawg-pcapng).
 */
import { closeSync, openSync, writeSync } from "node:fs";

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const LINKTYPE_ETHERNET = 1;
const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const IF_NAME = 2;
const IF_TSRESOL = 9;

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function option(code: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + value.length + pad4(value.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function options(list: Array<[number, Buffer]>): Buffer {
  if (list.length === 0) return Buffer.alloc(0);
  return Buffer.concat([...list.map(([c, v]) => option(c, v)), option(OPT_ENDOFOPT, Buffer.alloc(0))]);
}

function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const b = Buffer.alloc(total);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(total, 4);
  body.copy(b, 8);
  b.writeUInt32LE(total, total - 4);
  return b;
}

export function sectionHeader(): Buffer {
  const body = Buffer.alloc(16);
  body.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  body.writeUInt16LE(1, 4);
  body.writeUInt16LE(0, 6);
  body.writeBigInt64LE(-1n, 8); // section length not given
  return block(SHB, body);
}

export function interfaceDescription(name: string, snaplen = 0): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(LINKTYPE_ETHERNET, 0);
  fixed.writeUInt32LE(snaplen, 4);
  const opts = options([
    [IF_NAME, Buffer.from(name, "utf8")],
    [IF_TSRESOL, Buffer.from([9])], // 10^-9 s
  ]);
  return block(IDB, Buffer.concat([fixed, opts]));
}

export interface PcapngPacket {
  interfaceId: number;
  /** ns since the epoch */
  timestampNs: bigint;
  data: Buffer;
  /** the frame's length on the wire (≥ data.length) */
  originalLength?: number;
  comments?: string[];
}

export function enhancedPacket(p: PcapngPacket): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(p.interfaceId, 0);
  fixed.writeUInt32LE(Number(p.timestampNs >> 32n), 4);
  fixed.writeUInt32LE(Number(p.timestampNs & 0xffffffffn), 8);
  fixed.writeUInt32LE(p.data.length, 12);
  fixed.writeUInt32LE(Math.max(p.originalLength ?? p.data.length, p.data.length), 16);
  const data = Buffer.concat([p.data, Buffer.alloc(pad4(p.data.length))]);
  const opts = options((p.comments ?? []).map((c) => [OPT_COMMENT, Buffer.from(c, "utf8")]));
  return block(EPB, Buffer.concat([fixed, data, opts]));
}

/** Writes a pcapng file as frames come (interfaces declared on first use). */
export class PcapngWriter {
  readonly #fd: number;
  readonly #interfaces = new Map<string, number>();

  constructor(path: string) {
    this.#fd = openSync(path, "w");
    writeSync(this.#fd, sectionHeader());
  }

  write(iface: string, packet: Omit<PcapngPacket, "interfaceId">): void {
    let id = this.#interfaces.get(iface);
    if (id === undefined) {
      id = this.#interfaces.size;
      this.#interfaces.set(iface, id);
      writeSync(this.#fd, interfaceDescription(iface));
    }
    writeSync(this.#fd, enhancedPacket({ ...packet, interfaceId: id }));
  }

  close(): void {
    closeSync(this.#fd);
  }
}
