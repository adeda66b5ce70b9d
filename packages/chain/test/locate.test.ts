import { describe, expect, it } from "vitest";
import { indexToml } from "../src/index";

const at = (line: number, column: number) => ({ line, column });

describe("indexToml (key path → line:col)", () => {
  it("locates table headers, keys and values", () => {
    const idx = indexToml('[maps.flow-state]\ntype = "hash_map"\nsize = 1024\n');
    expect(idx.key(["maps"])).toEqual(at(1, 2));
    expect(idx.key(["maps", "flow-state"])).toEqual(at(1, 7));
    expect(idx.key(["maps", "flow-state", "type"])).toEqual(at(2, 1));
    expect(idx.value(["maps", "flow-state", "type"])).toEqual(at(2, 8));
    expect(idx.value(["maps", "flow-state", "size"])).toEqual(at(3, 8));
  });

  it("counts arrays of tables and indexes array elements", () => {
    const src =
      '[[links]]\nfrom = "rx"\nto = ["a"]\n\n[[links]]\nfrom = "a"\nto = [\n  "tx", # ok\n  "!b",\n]\n';
    const idx = indexToml(src);
    expect(idx.key(["links", 0])).toEqual(at(1, 3));
    expect(idx.key(["links", 1])).toEqual(at(5, 3));
    expect(idx.value(["links", 1, "from"])).toEqual(at(6, 8));
    expect(idx.value(["links", 1, "to", 0])).toEqual(at(8, 3));
    expect(idx.value(["links", 1, "to", 1])).toEqual(at(9, 3));
  });

  it("handles dotted keys, quoted keys and inline tables", () => {
    const src = [
      "functions.dpi.disable_xdp = true",
      '[functions."weak classifier".maps]',
      '\'flow.state\' = { type = "hash_map", "size" = 5 }',
      "x = { a = { b = [1, { c = 2 }] } }",
    ].join("\n");
    const idx = indexToml(src);
    expect(idx.key(["functions", "dpi"])).toEqual(at(1, 11));
    expect(idx.key(["functions", "dpi", "disable_xdp"])).toEqual(at(1, 15));
    expect(idx.value(["functions", "dpi", "disable_xdp"])).toEqual(at(1, 29));
    expect(idx.key(["functions", "weak classifier"])).toEqual(at(2, 12));
    expect(idx.key(["functions", "weak classifier", "maps", "flow.state"])).toEqual(at(3, 1));
    expect(idx.value(["functions", "weak classifier", "maps", "flow.state", "size"])).toEqual(at(3, 46));
    expect(idx.value(["functions", "weak classifier", "maps", "x", "a", "b", 1, "c"])).toEqual(at(4, 27));
  });

  it("decodes escapes in quoted keys so paths match the parsed document", () => {
    const idx = indexToml('"a\\u0062" = 1\n');
    expect(idx.key(["ab"])).toEqual(at(1, 1));
  });

  it("skips multi-line strings and comments without losing track", () => {
    const src = "a = \"\"\"\nline [not.a.table]\nb = 1\n\"\"\"\n# [also.not]\nc = '''x\n'''\nd = 4\n";
    const idx = indexToml(src);
    expect(idx.hasKey(["not"])).toBe(false);
    expect(idx.hasKey(["b"])).toBe(false);
    expect(idx.key(["d"])).toEqual(at(8, 1));
  });

  it("falls back to the nearest located ancestor, then 1:1", () => {
    const idx = indexToml("[functions.dpi]\n");
    expect(idx.key(["functions", "dpi", "maps", "x"])).toEqual(at(1, 12));
    expect(idx.value(["nothing", "here"])).toEqual(at(1, 1));
  });

  it("resolves sub-tables of the current [[array]] element", () => {
    const idx = indexToml("[[a]]\nx = 1\n[[a]]\n[a.b]\ny = 2\n");
    expect(idx.key(["a", 1, "b", "y"])).toEqual(at(5, 1));
  });
});
