/**
 * Frames through the emulated device for test-devices/run.sh: sends COUNT UDP frames, each a
 * flow of its own (source ports PORT_BASE, PORT_BASE + 1, ...: the weak classifier calls a
 * flow dpi has not judged Suspicious, so every one goes through dpi), or, with kind "xdp",
 * COUNT IP protocol 1 frames the weak classifier calls Normal, which stay in XDP, from IFACE
 * in NS at PPS, and prints JSON {sent, received, seconds} where received counts the frames
 * carrying TAG that came back and seconds runs from the first frame sent to the last one back;
 * with a pace, pacedUntil is when the last frame was due (epoch ms, the exchange's start plus
 * COUNT / PPS): a step checks the traffic still flowed when something happened on the device.
 */
import { exchangeFrames, udpFrame } from "@galette/testkit/frames";

const args = process.argv.slice(2);
if (args.length < 10)
  throw new Error(
    "usage: traffic.ts NS IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT TAG xdp|userland PPS [PORT_BASE]",
  );
const [ns, iface, srcMac, dstMac, srcIp, dstIp, count, tag, kind, pps, portBase] = args as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string | undefined,
];
const n = Number(count);
const base = Number(portBase ?? 20000);
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(base) || base < 1024 || base + n > 65536)
  throw new Error(`COUNT ${count} and PORT_BASE ${portBase} must give source ports within 1024..65535`);
const frame = (srcPort: number) => {
  const f = udpFrame({ srcMac, dstMac, srcIp, dstIp, srcPort, payload: Buffer.from(tag) });
  // IP protocol 1 (not TCP/UDP): the weak classifier calls it Normal and it stays in XDP
  if (kind === "xdp") f[23] = 1;
  return f;
};
const send = kind === "xdp" ? [frame(base)] : Array.from({ length: n }, (_, i) => frame(base + i));
const listenMs = 5000;
const startedAt = Date.now();
const started = process.hrtime.bigint();
const r = await exchangeFrames(ns, iface, {
  send,
  repeat: kind === "xdp" ? n : 1,
  pps: Number(pps),
  expect: n,
  listenMs,
  match: Buffer.from(tag),
});
// the capture waits listenMs after the last frame sent when some never come back: not
// forwarding time
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
const seconds = r.received.length < n ? Math.max(elapsed - listenMs / 1000, 0.001) : elapsed;
const pace = Number(pps);
console.log(
  JSON.stringify({
    sent: r.sent,
    received: r.received.length,
    seconds,
    ...(pace > 0 ? { pacedUntil: startedAt + Math.round((n / pace) * 1000) } : {}),
  }),
);
