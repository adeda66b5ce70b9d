import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Diagnostic, parseChain, planChain } from "../src/index";

const seeds = ["security.toml", "macswap.toml", "branching.toml", "compute.toml"].map((f) =>
  readFileSync(join(import.meta.dirname, "../../../chains", f), "utf8"),
);

/** A clean diagnostic: located, coded, with a one-line message. Never a crash. */
function expectClean(text: string): void {
  const result = parseChain(text, "fuzz.toml");
  const lines = text.split("\n").length;
  for (const d of result.diagnostics as Diagnostic[]) {
    expect(d.file).toBe("fuzz.toml");
    expect(["error", "warning"]).toContain(d.severity);
    expect(d.code).toMatch(/^[a-z]+(-[a-z]+)*$/);
    expect(d.message.length).toBeGreaterThan(0);
    expect(d.message).not.toMatch(/undefined|\[object Object\]|NaN/);
    expect(Number.isInteger(d.line) && d.line >= 1 && d.line <= lines + 1).toBe(true);
    expect(Number.isInteger(d.column) && d.column >= 1).toBe(true);
  }
  if (result.chain) {
    expect(result.diagnostics.every((d) => d.severity === "warning")).toBe(true);
    const plan = planChain(result.chain);
    expect(plan.nfs.length).toBe(result.chain.functions.length);
  }
}

/** Fragments a chain file is made of, so random documents often reach the validator. */
const fragment = fc.oneof(
  fc.constantFrom(
    "[functions.a]",
    "[functions.b]",
    "[functions.a.maps]",
    "[maps.m]",
    "[[links]]",
    "[links]",
    "[chain]",
    'from = "rx"',
    'from = "a"',
    'from = "b"',
    'to = ["a"]',
    'to = ["b", "!a", "tx"]',
    'to = ["tx"]',
    "to = []",
    'type = "hash_map"',
    'type = "lpm-trie"',
    "size = 0",
    "size = 10",
    'm = "_"',
    'm = { type = "array", size = 1 }',
    "disable_xdp = true",
    'path = "nf-examples/x"',
    'name = "c"',
    'functions.a.maps = { m = "_" }',
    "a.b.c = [1, [2, {x = 3}]]",
    "# comment",
    "",
  ),
  fc.string({ maxLength: 20 }),
);

describe("fuzzing: any input gives clean diagnostics, never a throw", () => {
  it("random documents built from chain fragments", () => {
    fc.assert(
      fc.property(fc.array(fragment, { maxLength: 25 }), (parts) => expectClean(parts.join("\n"))),
      { numRuns: 200 },
    );
  });

  it("mutated example chains (delete, insert, replace characters; swap lines)", () => {
    const mutation = fc.record({
      seed: fc.nat({ max: seeds.length - 1 }),
      edits: fc.array(
        fc.record({
          kind: fc.constantFrom("delete", "insert", "replace", "swap-lines"),
          at: fc.nat(),
          text: fc.oneof(
            fc.string({ maxLength: 4 }),
            fc.constantFrom('"', "[", "]", "=", ",", "\n", "{", "}", "!", "-", "_"),
          ),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    });
    fc.assert(
      fc.property(mutation, ({ seed, edits }) => {
        let text = seeds[seed]!;
        for (const e of edits) {
          const at = text.length === 0 ? 0 : e.at % text.length;
          if (e.kind === "delete") text = text.slice(0, at) + text.slice(at + 1 + (e.at % 5));
          else if (e.kind === "insert") text = text.slice(0, at) + e.text + text.slice(at);
          else if (e.kind === "replace") text = text.slice(0, at) + e.text + text.slice(at + e.text.length);
          else {
            const lines = text.split("\n");
            const i = e.at % lines.length;
            const j = (e.at * 7 + 3) % lines.length;
            [lines[i], lines[j]] = [lines[j]!, lines[i]!];
            text = lines.join("\n");
          }
        }
        expectClean(text);
      }),
      { numRuns: 200 },
    );
  });

  it("arbitrary unicode text", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), expectClean), { numRuns: 200 });
  });
});
