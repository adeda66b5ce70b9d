import { describe, expect, it } from "vitest";
import { backoffMs } from "../src/agent";

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
});
