import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileBpfObject } from "./build";
import { nsRun, run } from "./netns";

const toolsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "tools");

export const macBytes = (mac: string): Buffer =>
  Buffer.from(mac.split(":").map((h) => Number.parseInt(h, 16)));
export const ipv4Bytes = (ip: string): Buffer =>
  Buffer.from(ip.split(".").map((o) => Number.parseInt(o, 10)));

/** RFC 1071 one's-complement checksum. */
export function inetChecksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

export interface EthOpts {
  dst: string;
  src: string;
  ethertype: number;
  payload: Buffer;
}

export function ethFrame({ dst, src, ethertype, payload }: EthOpts): Buffer {
  const hdr = Buffer.alloc(14);
  macBytes(dst).copy(hdr, 0);
  macBytes(src).copy(hdr, 6);
  hdr.writeUInt16BE(ethertype, 12);
  const frame = Buffer.concat([hdr, payload]);
  // pad to the 60-byte Ethernet minimum (64 with FCS)
  return frame.length < 60 ? Buffer.concat([frame, Buffer.alloc(60 - frame.length)]) : frame;
}

export interface UdpOpts {
  dstMac: string;
  srcMac: string;
  srcIp: string;
  dstIp: string;
  srcPort?: number;
  dstPort?: number;
  ttl?: number;
  payload?: Buffer;
}

/** An Ethernet/IPv4/UDP frame with a valid IPv4 header checksum (UDP checksum 0 = none). */
export function udpFrame(o: UdpOpts): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(o.srcPort ?? 9, 0);
  udp.writeUInt16BE(o.dstPort ?? 9, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip[8] = o.ttl ?? 64;
  ip[9] = 17;
  ipv4Bytes(o.srcIp).copy(ip, 12);
  ipv4Bytes(o.dstIp).copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  return ethFrame({
    dst: o.dstMac,
    src: o.srcMac,
    ethertype: 0x0800,
    payload: Buffer.concat([ip, udp, payload]),
  });
}

export interface ExchangeSpec {
  send: Buffer[];
  repeat?: number;
  listenMs?: number;
  expect?: number;
  /** keep only received frames containing these bytes */
  match?: Buffer;
  pps?: number;
}

export interface ExchangeResult {
  sent: number;
  received: Buffer[];
}

/** Send frames from `iface` inside `ns` and return the frames that came back on it. */
export async function exchangeFrames(ns: string, iface: string, spec: ExchangeSpec): Promise<ExchangeResult> {
  const input = JSON.stringify({
    send: spec.send.map((b) => b.toString("hex")),
    repeat: spec.repeat ?? 1,
    listen_ms: spec.listenMs ?? 300,
    expect: spec.expect,
    match: spec.match?.toString("hex"),
    pps: spec.pps ?? 0,
  });
  // Bounded, but never shorter than the paced sending itself plus the listening after it.
  const frames = spec.send.length * (spec.repeat ?? 1);
  const pacedMs = spec.pps ? (frames / spec.pps) * 1000 : 0;
  const { stdout } = await nsRun(ns, "python3", [join(toolsDir, "frames.py"), iface], {
    input,
    timeoutMs: Math.max(120_000, pacedMs + (spec.listenMs ?? 300) + 60_000),
  });
  const out = JSON.parse(stdout) as { sent: number; received: string[] };
  return { sent: out.sent, received: out.received.map((h) => Buffer.from(h, "hex")) };
}

/** The XDP_PASS program for the sink side of a veth (compiled once per content). */
export function xdpPassObject(): Promise<string> {
  return compileBpfObject(join(toolsDir, "xdp_pass.bpf.c"));
}

/** Attach XDP_PASS in native mode on the sink interface so XDP_TX frames from the peer arrive. */
export async function attachXdpPass(ns: string, iface: string): Promise<void> {
  const obj = await xdpPassObject();
  // ip(8) pins the object's maps under a bpffs it looks up in the mount table: name ours, or
  // it may take another one listed first (e.g. a sysfs bound into a chroot, without bpffs)
  await run("ip", ["-n", ns, "link", "set", "dev", iface, "xdpdrv", "obj", obj, "sec", "xdp"], {
    env: { TC_BPF_MNT: "/sys/fs/bpf" },
  });
}
