import { describe, expect, it } from "vitest";
import { backoffMs, jitteredDelayMs } from "../src/agent";

describe("backoff", () => {
  it("doubles from 0.5 s with ±20 % jitter and stops at the cap", () => {
    for (let i = 0; i < 50; i++) {
      expect(backoffMs(1, 30_000)).toBeGreaterThanOrEqual(400);
      expect(backoffMs(1, 30_000)).toBeLessThanOrEqual(600);
      expect(backoffMs(4, 30_000)).toBeGreaterThanOrEqual(3200);
      expect(backoffMs(4, 30_000)).toBeLessThanOrEqual(4800);
      expect(backoffMs(40, 3000)).toBeLessThanOrEqual(3600);
      expect(backoffMs(40, 3000)).toBeGreaterThanOrEqual(2400);
    }
  });

  it("spreads regular polls and status reports over the interval ±10 %, so a fleet delayed or started together does not stay in step", () => {
    const delays = Array.from({ length: 200 }, () => jitteredDelayMs(5000));
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(4500);
      expect(d).toBeLessThanOrEqual(5500);
    }
    expect(new Set(delays).size).toBeGreaterThan(50);
  });
});
