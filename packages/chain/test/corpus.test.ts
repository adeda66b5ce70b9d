import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseChain } from "../src/index";

/**
 * Malformed chains under test/corpus/. Each expected diagnostic names its code, where it
 * points (line:col of the key or value concerned) and a substring of its message. The
 * errors of a file must be exactly the listed ones: all reported at once, no cascades.
 */
type Expected = { code: string; at: string; message: string; severity?: "error" | "warning" };

const corpus: Record<string, Expected[]> = {
  "toml-syntax-header.toml": [{ code: "toml-syntax", at: "1:19", message: "TOML syntax error" }],
  "toml-syntax-value.toml": [{ code: "toml-syntax", at: "3:7", message: "invalid value" }],
  "unknown-top-level-key.toml": [
    {
      code: "unknown-key",
      at: "1:2",
      message: 'unknown key "function" in the top level — did you mean "functions"?',
    },
    { code: "rx-target-exit", at: "6:7", message: 'rx links straight to the exit "tx"' },
  ],
  "unknown-function-key.toml": [
    {
      code: "unknown-key",
      at: "2:1",
      message: 'unknown key "disable-xdp" in [functions.dpi] — did you mean "disable_xdp"?',
    },
  ],
  "unknown-map-key.toml": [
    { code: "missing-key", at: "4:7", message: 'missing key "type" in [maps.flow_state]' },
    {
      code: "unknown-key",
      at: "5:1",
      message: 'unknown key "tpye" in [maps.flow_state] — did you mean "type"?',
    },
  ],
  "unknown-map-type.toml": [
    {
      code: "unknown-map-type",
      at: "5:8",
      message: 'unknown map type "hashmap" in [maps.flow_state] — did you mean "hash_map"?',
    },
  ],
  "unknown-map-type-inline.toml": [
    {
      code: "unknown-map-type",
      at: "2:23",
      message:
        'unknown map type "lpm-tree" in functions.access-control.maps.allow_list — did you mean "lpm_trie"?',
    },
  ],
  "map-size-zero.toml": [
    {
      code: "invalid-map-size",
      at: "2:37",
      message: "must be a positive integer no larger than 4294967295, not the number 0",
    },
  ],
  "map-size-float.toml": [{ code: "invalid-map-size", at: "6:8", message: "not the float 1.5" }],
  "map-size-string.toml": [{ code: "invalid-map-size", at: "2:37", message: 'not the string "1"' }],
  "map-size-too-large.toml": [{ code: "invalid-map-size", at: "2:37", message: "not the number 4294967296" }],
  "map-size-missing.toml": [
    { code: "missing-key", at: "4:7", message: 'missing key "size" in [maps.flow_state]' },
  ],
  "no-rx-link.toml": [{ code: "missing-rx-link", at: "3:3", message: "no link from rx" }],
  "two-rx-links.toml": [
    { code: "multiple-rx-links", at: "8:8", message: "more than one link from rx (first at line 4)" },
  ],
  "rx-two-targets.toml": [{ code: "rx-target-count", at: "6:6", message: "exactly one target, it has 2" }],
  "rx-to-exit.toml": [{ code: "rx-target-exit", at: "5:7", message: 'rx links straight to the exit "tx"' }],
  "link-from-undeclared.toml": [
    { code: "no-outgoing-link", at: "1:12", message: 'function "macswap" has no outgoing link' },
    {
      code: "unknown-function",
      at: "8:8",
      message: 'link from undeclared function "macswp" — did you mean "macswap"?',
    },
  ],
  "unknown-target.toml": [
    {
      code: "unknown-target",
      at: "10:7",
      message: 'unknown link target "weak-clasifier" — did you mean "weak-classifier"?',
    },
  ],
  "unknown-upcall-target.toml": [
    { code: "unknown-target", at: "11:13", message: 'unknown link target "!dpl" — did you mean "!dpi"?' },
  ],
  "upcall-to-exit.toml": [{ code: "invalid-target", at: "9:7", message: '"!tx": exits cannot be upcalled' }],
  "link-back-to-rx.toml": [{ code: "invalid-target", at: "9:7", message: "cannot lead back to rx" }],
  "no-outgoing-link.toml": [
    { code: "no-outgoing-link", at: "2:12", message: 'function "weak-classifier" has no outgoing link' },
  ],
  "duplicate-link.toml": [
    { code: "duplicate-link", at: "12:8", message: 'function "macswap" already has a link (line 8)' },
  ],
  "cycle.toml": [{ code: "cycle", at: "19:13", message: "cycle: a → b → c → a" }],
  "shared-map-undeclared.toml": [
    {
      code: "shared-map-undeclared",
      at: "2:23",
      message: 'there is no [maps.flow_state] — did you mean "flow_stat"?',
    },
    {
      code: "unused-map",
      at: "4:7",
      message: "[maps.flow_stat] is not bound by any function",
      severity: "warning",
    },
  ],
  "invalid-map-binding.toml": [
    { code: "invalid-map-binding", at: "2:23", message: 'must be "_" or { type = ..., size = ... }' },
  ],
  "reserved-name.toml": [
    { code: "reserved-name", at: "1:12", message: '"tx" cannot name a function' },
    { code: "rx-target-exit", at: "5:7", message: "rx links straight to the exit" },
  ],
  "links-not-array.toml": [
    { code: "invalid-type", at: "3:2", message: '"links" in the top level must be an array of tables' },
  ],
  "link-unknown-key.toml": [
    { code: "missing-key", at: "3:3", message: 'missing key "to" in [[links]] #1' },
    { code: "unknown-key", at: "5:1", message: 'unknown key "too" in [[links]] #1 — did you mean "to"?' },
  ],
  "to-not-array.toml": [
    {
      code: "invalid-type",
      at: "5:6",
      message: '"to" in [[links]] #1 must be an array of strings, not the string "macswap"',
    },
  ],
  "empty-to.toml": [{ code: "empty-link-targets", at: "9:6", message: '"to" in [[links]] #2 is empty' }],
  "disable-xdp-not-bool.toml": [
    {
      code: "invalid-type",
      at: "2:15",
      message: '"disable_xdp" in [functions.dpi] must be a boolean, not the string "yes"',
    },
  ],
  "duplicate-map.toml": [
    { code: "duplicate-map", at: "8:7", message: 'map "flow_state" is declared twice in [maps]' },
  ],
  "function-not-table.toml": [
    { code: "invalid-type", at: "1:21", message: "[functions.macswap] must be a table, not the number 3" },
  ],
  "quoted-keys.toml": [
    { code: "missing-key", at: "2:1", message: 'missing key "size"' },
    {
      code: "unknown-key",
      at: "2:39",
      message: 'unknown key "sise" in functions.weak-classifier.maps.flow_state — did you mean "size"?',
    },
  ],
  "dotted-keys.toml": [
    { code: "invalid-type", at: "1:29", message: '"disable_xdp" in [functions.dpi] must be a boolean' },
    { code: "invalid-map-size", at: "3:38", message: "not the number -1" },
  ],
  "many-errors-at-once.toml": [
    { code: "shared-map-undeclared", at: "6:23", message: "there is no [maps.flow_state]" },
    {
      code: "unknown-key",
      at: "7:1",
      message: 'unknown key "disabel_xdp" in [functions.weak-classifier] — did you mean "disable_xdp"?',
    },
    { code: "unknown-target", at: "15:26", message: 'unknown link target "dorp" — did you mean "drop"?' },
  ],
  "link-from-exit.toml": [
    { code: "invalid-link-source", at: "12:8", message: 'a link cannot start from "drop"' },
  ],
  "empty-path.toml": [
    { code: "invalid-value", at: "2:8", message: '"path" in [functions.macswap] must not be empty' },
  ],
  "unreachable-warning.toml": [
    {
      code: "unreachable",
      at: "2:12",
      message: 'function "orphan" is unreachable from rx',
      severity: "warning",
    },
  ],
};

const dir = join(import.meta.dirname, "corpus");

describe("malformed chain corpus", () => {
  it("has at least 25 malformed chains, each listed here", () => {
    const files = readdirSyncToml();
    expect(files.length).toBeGreaterThanOrEqual(25);
    expect(Object.keys(corpus).sort()).toEqual(files);
  });

  for (const [file, expected] of Object.entries(corpus)) {
    it(file, () => {
      const result = parseChain(readFileSync(join(dir, file), "utf8"), `corpus/${file}`);
      const got = result.diagnostics.map((d) => ({
        code: d.code,
        at: `${d.line}:${d.column}`,
        message: d.message,
        severity: d.severity,
      }));
      for (const e of expected) {
        expect(got, `${file}: expected ${e.code} at ${e.at}`).toContainEqual(
          expect.objectContaining({
            code: e.code,
            at: e.at,
            severity: e.severity ?? "error",
            message: expect.stringContaining(e.message),
          }),
        );
      }
      // exactly the expected findings: nothing cascades from them
      expect(got.map((g) => `${g.code}@${g.at}`).sort()).toEqual(
        expected.map((e) => `${e.code}@${e.at}`).sort(),
      );
      for (const d of result.diagnostics) expect(d.file).toBe(`corpus/${file}`);
      const hasError = expected.some((e) => (e.severity ?? "error") === "error");
      expect(result.chain === undefined).toBe(hasError);
    });
  }
});

function readdirSyncToml(): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".toml"))
    .sort();
}
