import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PacedFanout } from "../src/fanout";

describe("paced fan-out", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const log = { warn: vi.fn() };

  it("delivers at most its pace, in order, each key once with its newest item", async () => {
    const delivered: Array<[string, number]> = [];
    const fanout = new PacedFanout<number>({
      perSecond: 100,
      deliver: (key, item) => {
        delivered.push([key, item]);
      },
      log,
    });
    for (let i = 0; i < 20; i++) fanout.enqueue(`d${i}`, 1);
    fanout.enqueue("d3", 2); // queued again before its turn: told once, newest item, same place
    expect(fanout.pending).toBe(20);
    await vi.advanceTimersByTimeAsync(0);
    // 100 a second in 50 ms ticks: 5 a tick
    expect(delivered.map(([k]) => k)).toEqual(["d0", "d1", "d2", "d3", "d4"]);
    expect(delivered[3]).toEqual(["d3", 2]);
    await vi.advanceTimersByTimeAsync(50);
    expect(delivered).toHaveLength(10);
    await vi.advanceTimersByTimeAsync(100);
    expect(delivered).toHaveLength(20);
    expect(new Set(delivered.map(([k]) => k)).size).toBe(20);
    expect(fanout.pending).toBe(0);
    // idle, then one more: out at once, not a tick later
    fanout.enqueue("late", 3);
    await vi.advanceTimersByTimeAsync(0);
    expect(delivered.at(-1)).toEqual(["late", 3]);
  });

  it("logs a failed delivery and goes on with the others", async () => {
    const delivered: string[] = [];
    const warn = vi.fn();
    const fanout = new PacedFanout<null>({
      perSecond: 1000,
      deliver: async (key) => {
        if (key === "bad") throw new Error("socket gone");
        delivered.push(key);
      },
      log: { warn },
    });
    for (const k of ["a", "bad", "c"]) fanout.enqueue(k, null);
    await vi.advanceTimersByTimeAsync(0);
    expect(delivered).toEqual(["a", "c"]);
    expect(warn).toHaveBeenCalledWith({ key: "bad", err: "socket gone" }, "fan-out delivery failed");
  });

  it("drops what is queued when closed, and refuses a pace below one a second", async () => {
    const deliver = vi.fn();
    const fanout = new PacedFanout<null>({ perSecond: 20, deliver, log });
    for (let i = 0; i < 10; i++) fanout.enqueue(`d${i}`, null);
    await vi.advanceTimersByTimeAsync(0);
    expect(deliver).toHaveBeenCalledTimes(1);
    fanout.close();
    await vi.advanceTimersByTimeAsync(1000);
    expect(deliver).toHaveBeenCalledTimes(1);
    expect(() => new PacedFanout({ perSecond: 0, deliver, log })).toThrow(/at least 1 a second/);
    expect(() => new PacedFanout({ perSecond: Number.NaN, deliver, log })).toThrow(/at least 1 a second/);
  });
});
