import { describe, expect, it } from "vitest";
import { nfRunCost } from "../src/cost";
import { sumSlots } from "../src/cost-maps";

const slot = (ns: bigint, runs: bigint) => {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(ns, 0);
  b.writeBigUInt64LE(runs, 8);
  return b;
};

describe("per-NF XDP cost arithmetic", () => {
  it("sums the per-CPU slots", () => {
    expect(sumSlots([slot(100n, 2n), slot(50n, 1n), slot(0n, 0n)])).toEqual({ ns: 150, runs: 3 });
    expect(sumSlots([])).toEqual({ ns: 0, runs: 0 });
  });

  it("refuses a value that is not a galette_nf_cost", () => {
    expect(() => sumSlots([Buffer.alloc(8)])).toThrow(/galette_nf_cost value of 8 bytes, expected 16/);
  });

  it("takes the window's difference and its ns per run", () => {
    expect(nfRunCost({ ns: 1000, runs: 10 }, { ns: 4000, runs: 30 }, 20)).toEqual({
      runCount: 20,
      runTimeNs: 3000,
      nsPerRun: 150,
    });
    // idle NF: no runs, no ns per run
    expect(nfRunCost({ ns: 5, runs: 1 }, { ns: 5, runs: 1 }, 0)).toEqual({ runCount: 0, runTimeNs: 0 });
  });

  it("reports nothing for an NF that ran without timing itself (an object built before per-NF timing)", () => {
    expect(nfRunCost({ ns: 0, runs: 0 }, { ns: 0, runs: 0 }, 12)).toBeUndefined();
  });

  it("reports nothing without slots (a userland NF, an installation without the cost maps)", () => {
    expect(nfRunCost(undefined, { ns: 1, runs: 1 }, 1)).toBeUndefined();
    expect(nfRunCost({ ns: 1, runs: 1 }, undefined, 1)).toBeUndefined();
  });
});
