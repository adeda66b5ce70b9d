/**
 * Frames through the emulated device for test-devices/run.sh: sends COUNT UDP frames (or,
 * with kind "xdp", IP protocol 1 frames the weak classifier calls Normal, which stay in
 * XDP) from IFACE in NS at PPS, and prints JSON {sent, received, seconds} where received
 * counts the frames carrying TAG that came back and seconds runs from the first frame sent
 * to the last one back.
 */
import { exchangeFrames, udpFrame } from "@galette/testkit/frames";

const args = process.argv.slice(2);
if (args.length < 10)
  throw new Error("usage: traffic.ts NS IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT TAG xdp|userland PPS");
const [ns, iface, srcMac, dstMac, srcIp, dstIp, count, tag, kind, pps] = args as [
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
];
const frame = udpFrame({
  srcMac,
  dstMac,
  srcIp,
  dstIp,
  srcPort: 4000 + (tag.length % 100),
  payload: Buffer.from(tag),
});
// IP protocol 1 (not TCP/UDP): the weak classifier calls it Normal and it stays in XDP
if (kind === "xdp") frame[23] = 1;
const listenMs = 5000;
const started = process.hrtime.bigint();
const r = await exchangeFrames(ns, iface, {
  send: [frame],
  repeat: Number(count),
  pps: Number(pps),
  expect: Number(count),
  listenMs,
  match: Buffer.from(tag),
});
// the capture waits listenMs after the last frame sent when some never come back: not
// forwarding time
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
const seconds = r.received.length < Number(count) ? Math.max(elapsed - listenMs / 1000, 0.001) : elapsed;
console.log(JSON.stringify({ sent: r.sent, received: r.received.length, seconds }));
