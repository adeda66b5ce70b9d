import type { TraceRecord } from "@galette/xdp-native";
import { describe, expect, it } from "vitest";
import { TraceJoiner } from "../src/trace";

const ROOT = 0xffffffff;
const info = {
  instances: new Map([
    [0, { id: 0, name: "access-control", variants: ["Allowed", "Denied"] }],
    [1, { id: 1, name: "weak-classifier", variants: ["Normal", "Suspicious", "Malicious"] }],
    [2, { id: 2, name: "dpi", variants: ["Clean", "Matched"] }],
  ]),
  ports: new Map([[7, "eth0"]]),
};
const rec = (
  frame: number,
  ts: number,
  instance: number,
  variant = 0,
  kind = 0,
  arg = 0,
  userland = false,
): TraceRecord => ({
  ts: BigInt(ts),
  frame,
  instance,
  variant,
  kind,
  arg,
  tier: userland ? "userland" : "xdp",
  len: instance === ROOT ? 60 : 0,
  ifindex: instance === ROOT ? 7 : 0,
  ...(instance === ROOT ? { data: Buffer.from([1, 2, 3]) } : {}),
});

describe("trace record joiner", () => {
  it("joins XDP and userland records of a frame by id, whatever order they arrive in", () => {
    const j = new TraceJoiner(info);
    // the worker's record drained before the XDP ones
    j.add(rec(5, 1900, 2, 0, 3, 0, true));
    j.add(rec(5, 1200, 1, 1, 101, 2));
    j.add(rec(5, 1000, ROOT));
    j.add(rec(5, 1100, 0, 0, 100, 1));
    const [f] = j.take();
    expect(f).toMatchObject({
      frame: 5,
      iface: "eth0",
      len: 60,
      verdict: "tx",
      summary: "access-control→weak-classifier→dpi (userland)→tx",
      monotonicNs: "1000",
      data: "AQID",
    });
    expect(f!.path).toEqual([
      {
        nf: "access-control",
        instance: 0,
        tier: "xdp",
        variant: "Allowed",
        action: "tailcall",
        target: "weak-classifier",
        elapsedNs: 100,
      },
      {
        nf: "weak-classifier",
        instance: 1,
        tier: "xdp",
        variant: "Suspicious",
        action: "upcall",
        target: "dpi",
        elapsedNs: 200,
      },
      { nf: "dpi", instance: 2, tier: "userland", variant: "Clean", action: "tx", elapsedNs: 900 },
    ]);
    expect(j.pending).toBe(0);
  });

  it("waits for the final verdict, returns frames in arrival order, and flushes stale ones as incomplete", () => {
    const j = new TraceJoiner(info, { staleMs: 1000, withData: false });
    j.add(rec(9, 5000, ROOT), 0);
    j.add(rec(9, 5100, 0, 0, 100, 1), 0);
    j.add(rec(9, 5200, 1, 1, 101, 2), 0); // upcalled; no worker record yet
    j.add(rec(8, 4000, ROOT), 0);
    j.add(rec(8, 4100, 0, 1, 1), 0);
    expect(j.take(10).map((f) => f.summary)).toEqual(["access-control→drop"]);
    expect(j.pending).toBe(1);
    const [stale] = j.take(1000);
    expect(stale).toMatchObject({
      frame: 9,
      verdict: "incomplete",
      summary: "access-control→weak-classifier→incomplete",
    });
    expect(stale!.data).toBeUndefined();
    // a frame whose root record was lost is dropped once stale (nothing says where it came from)
    j.add(rec(11, 1, 0, 1, 1), 2000);
    expect(j.take(2000)).toEqual([]);
    expect(j.take(3000)).toEqual([]);
    expect(j.pending).toBe(0);
  });

  it("names instances and variants the installation no longer knows by number", () => {
    const j = new TraceJoiner(info);
    j.add(rec(1, 10, ROOT));
    j.add(rec(1, 20, 40, 9, 100, 41));
    j.add(rec(1, 30, 41, 0, 1));
    expect(j.take()[0]).toMatchObject({
      summary: "#40→#41→drop",
      path: [
        { nf: "#40", variant: "#9", target: "#41" },
        { nf: "#41", action: "drop" },
      ],
    });
  });
});
