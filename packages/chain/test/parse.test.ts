import { describe, expect, it } from "vitest";
import { closestMatch, editDistance, formatDiagnostic, parseChain } from "../src/index";

const SECURITY = `
[functions.access-control.maps]
allow-list = { type = "lpm-trie", size = 65535 }
[functions.weak-classifier]
maps = { flow-state = "_" }
[functions.dpi]
maps = { flow_state = "_" }
disable_xdp = true
[maps.flow-state]
type = "hash_map"
size = 65535
[[links]]
from = "rx"
to = ["access-control"]
[[links]]
from = "access-control"
to = ["weak-classifier", "drop"]
[[links]]
from = "weak-classifier"
to = ["tx", "!dpi", "drop"]
[[links]]
from = "dpi"
to = ["tx", "drop"]
`;

describe("parseChain", () => {
  it("builds the typed model of the security chain (with - spellings)", () => {
    const { chain, diagnostics } = parseChain(SECURITY, "chains/sec.toml");
    expect(diagnostics).toEqual([]);
    expect(chain).toBeDefined();
    expect(chain!.name).toBe("sec");
    expect(chain!.entry).toMatchObject({ kind: "nf", nf: "access-control", upcall: false });
    expect(chain!.functions.map((f) => f.name)).toEqual(["access-control", "weak-classifier", "dpi"]);
    const ac = chain!.functions[0]!;
    expect(ac.path).toBe("nf-examples/access-control");
    expect(ac.pathIsDefault).toBe(true);
    expect(ac.maps).toEqual([
      expect.objectContaining({
        name: "allow_list",
        tomlName: "allow-list",
        map: "access-control.allow_list",
        shared: false,
      }),
    ]);
    const wc = chain!.functions[1]!;
    expect(wc.targets.map((t) => (t.kind === "exit" ? t.exit : `${t.upcall ? "!" : ""}${t.nf}`))).toEqual([
      "tx",
      "!dpi",
      "drop",
    ]);
    expect(wc.linkLocation).toMatchObject({ line: 20, column: 6 });
    expect(chain!.functions[2]!.disableXdp).toBe(true);
    const shared = chain!.maps.find((m) => m.id === "flow_state")!;
    expect(shared).toMatchObject({
      type: "hash_map",
      maxEntries: 65535,
      shared: true,
      users: ["weak-classifier", "dpi"],
    });
    expect(shared.location).toMatchObject({ file: "chains/sec.toml", line: 9, column: 7 });
    expect(chain!.maps.find((m) => m.id === "access-control.allow_list")).toMatchObject({
      type: "lpm_trie",
      owner: "access-control",
    });
  });

  it("accepts every map type in both spellings", () => {
    for (const [written, canonical] of [
      ["hash-map", "hash_map"],
      ["array", "array"],
      ["lpm_trie", "lpm_trie"],
      ["percpu-array", "percpu_array"],
      ["percpu_hash", "percpu_hash"],
      ["lru-hash", "lru_hash"],
    ]) {
      const src = `[functions.x.maps]\nm = { type = "${written}", size = 1 }\n[[links]]\nfrom = "rx"\nto = ["x"]\n[[links]]\nfrom = "x"\nto = ["pass"]\n`;
      const { chain, diagnostics } = parseChain(src, "t.toml");
      expect(diagnostics).toEqual([]);
      expect(chain!.maps[0]!.type).toBe(canonical);
    }
  });

  it("supports several instances of one crate via path, each with its own maps", () => {
    const src = `
[chain]
name = "two-lb"
[functions.lb1]
path = "nf-examples/load-balance"
maps = { config = { type = "array", size = 1 } }
[functions.lb2]
path = "nf-examples/load-balance"
maps = { config = { type = "array", size = 1 } }
[[links]]
from = "rx"
to = ["lb1"]
[[links]]
from = "lb1"
to = ["lb2", "lb2"]
[[links]]
from = "lb2"
to = ["tx", "drop"]
`;
    const { chain, diagnostics } = parseChain(src, "x.toml");
    expect(diagnostics).toEqual([]);
    expect(chain!.name).toBe("two-lb");
    expect(chain!.functions.map((f) => [f.name, f.path, f.pathIsDefault])).toEqual([
      ["lb1", "nf-examples/load-balance", false],
      ["lb2", "nf-examples/load-balance", false],
    ]);
    expect(chain!.maps.map((m) => m.id)).toEqual(["lb1.config", "lb2.config"]);
  });

  it("lets the caller override the chain name", () => {
    expect(parseChain(SECURITY, "a.toml", { chainName: "prod" }).chain!.name).toBe("prod");
  });

  it("reports a cycle through an upcall too, and a self-loop", () => {
    const src = `[functions.a]\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = ["!a"]\n`;
    const { diagnostics } = parseChain(src, "c.toml");
    expect(diagnostics.map(formatDiagnostic)).toEqual([
      expect.stringContaining("c.toml:7:7: error: cycle: a → a"),
    ]);
  });

  it("reports an empty document as having no rx link", () => {
    const { chain, diagnostics } = parseChain("", "empty.toml");
    expect(chain).toBeUndefined();
    expect(diagnostics).toEqual([expect.objectContaining({ code: "missing-rx-link", line: 1, column: 1 })]);
  });

  it("formats diagnostics like a compiler", () => {
    const src = `[maps.flow-state]\ntpye = "hash_map"\nsize = 1\n`;
    const text = parseChain(src, "chains/x.toml").diagnostics.map(formatDiagnostic).join("\n");
    expect(text).toContain(
      'chains/x.toml:2:1: error: unknown key "tpye" in [maps.flow-state] — did you mean "type"?',
    );
    expect(text).toContain("  hint: valid keys here: type, size");
  });

  it("rejects names that cannot be pinned or bound", () => {
    const src = `[functions."bad name"]\n[functions.x.maps]\n"9lives" = { type = "array", size = 1 }\n`;
    const codes = parseChain(src, "n.toml").diagnostics.map((d) => `${d.code}@${d.line}:${d.column}`);
    expect(codes).toContain("invalid-name@1:12");
    expect(codes).toContain("invalid-name@3:1");
  });
});

describe("suggestions", () => {
  it("counts a transposition as one edit", () => {
    expect(editDistance("tpye", "type")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });
  it("suggests only plausible matches", () => {
    expect(closestMatch("disable-xdp", ["path", "maps", "disable_xdp"])).toBe("disable_xdp");
    expect(closestMatch("zzz", ["path", "maps"])).toBeUndefined();
  });
});
