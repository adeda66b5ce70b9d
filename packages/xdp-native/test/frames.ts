import { randomBytes } from "node:crypto";
import { udpFrame, type VethPair } from "@galette/testkit";

/** Payload layout the test NFs understand (offsets are from the start of the frame). */
export const STAMP_OFFSET = 42;
export const VARIANT_OFFSET = 43;
export const SEQ_OFFSET = 44;

export interface TestFrames {
  frames: Buffer[];
  /** bytes unique to this batch, to pick our frames out of a capture */
  tag: Buffer;
}

/** UDP frames A -> B carrying [stamp=0, variant, seq u32 LE, tag]. */
export function testFrames(
  v: VethPair,
  count: number,
  variant: (seq: number) => number = () => 0,
  firstSeq = 0,
): TestFrames {
  const tag = Buffer.concat([Buffer.from("GAL"), randomBytes(5)]);
  const frames = Array.from({ length: count }, (_, i) => {
    const payload = Buffer.alloc(6 + tag.length);
    payload[1] = variant(firstSeq + i);
    payload.writeUInt32LE(firstSeq + i, 2);
    tag.copy(payload, 6);
    return udpFrame({
      dstMac: v.macB,
      srcMac: v.macA,
      srcIp: v.ipA,
      dstIp: v.ipB,
      srcPort: 4000,
      dstPort: 5000,
      payload,
    });
  });
  return { frames, tag };
}

export const macOf = (f: Buffer, at: 0 | 6): string =>
  [...f.subarray(at, at + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
export const seqOf = (f: Buffer): number => f.readUInt32LE(SEQ_OFFSET);
