import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { checkNfInterfaces, formatDiagnostic, loadChainFile, parseChain } from "@galette/chain";
import { describe, expect, it } from "vitest";
import {
  analyzeNf,
  NfAnalysisError,
  nfInterfaceFromAnalysis,
  resolveChainInterfaces,
  resolveChainInterfacesWithWarnings,
} from "../src/index";

const FIXTURES = path.join(import.meta.dirname, "fixtures/analyze");
const REPO = path.resolve(import.meta.dirname, "../../..");

describe("nfInterfaceFromAnalysis", () => {
  it("keeps actions in order and maps with sizes, canonical map type and #[map] size, dropping unknown sizes", async () => {
    const a = await analyzeNf(path.join(FIXTURES, "layouts"));
    const nf = nfInterfaceFromAnalysis(a);
    expect(nf.file).toBe(a.libFile);
    expect(nf.actions).toEqual(a.actions);
    expect(nf.maps[1]).toEqual({
      name: "flows",
      keySize: 16,
      valueSize: 8,
      mapType: "lru_hash",
      maxEntries: 65_536,
      location: a.maps[1]?.location,
    });
    const v6 = nf.maps.find((m) => m.name === "v6");
    expect(v6).toEqual({ name: "v6", keySize: 20, location: a.maps.find((m) => m.name === "v6")?.location });
    expect("valueSize" in (v6 ?? {})).toBe(false);
  });
});

describe("resolveChainInterfaces", () => {
  it("analyses each distinct crate once and maps every instance to its crate's interface", async () => {
    const chain = {
      functions: [
        { name: "swap-a", path: "listing2" },
        { name: "swap-b", path: "./listing2/" },
        { name: "tables", path: path.join(FIXTURES, "layouts") },
      ],
    };
    const interfaces = await resolveChainInterfaces(chain, FIXTURES);
    expect([...interfaces.keys()]).toEqual(["swap-a", "swap-b", "tables"]);
    // same crate (paths differ only in spelling): one analysis, one shared object
    expect(interfaces.get("swap-a")).toBe(interfaces.get("swap-b"));
    expect(interfaces.get("swap-a")?.actions.map((x) => x.name)).toEqual(["Tx", "Drop"]);
    expect(interfaces.get("tables")?.maps).toHaveLength(11);
  });

  it("returns the warnings of each crate once", async () => {
    const { warnings } = await resolveChainInterfacesWithWarnings(
      {
        functions: [
          { name: "a", path: "layouts" },
          { name: "b", path: "layouts" },
        ],
      },
      FIXTURES,
    );
    expect(warnings.map((w) => w.line)).toEqual([70, 74, 75, 76]);
  });

  it("throws one error carrying every failing crate's diagnostics", async () => {
    const err = await resolveChainInterfaces(
      {
        functions: [
          { name: "ok", path: "listing2" },
          { name: "no-packet", path: "no-packet" },
          { name: "bad-fields", path: "non-tuple-field" },
          { name: "missing", path: "nowhere" },
        ],
      },
      FIXTURES,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NfAnalysisError);
    const diagnostics = (err as NfAnalysisError).diagnostics;
    expect(diagnostics.map((d) => [path.relative(FIXTURES, d.file), d.code])).toEqual([
      ["no-packet/src/lib.rs", "nf-no-packet-fn"],
      ["non-tuple-field/src/lib.rs", "nf-map-field-shape"],
      ["non-tuple-field/src/lib.rs", "nf-map-field-shape"],
      ["nowhere/Cargo.toml", "nf-manifest"],
    ]);
  });
});

describe("with @galette/chain's checkNfInterfaces", () => {
  it("an arity mismatch against a fixture crate names both the TOML and lib.rs", async () => {
    const toml = [
      '[chain]\nname = "t"',
      '[functions.swap]\npath = "listing2"',
      '[functions.swap.maps]\ncounter = { type = "array", size = 1 }',
      '[[links]]\nfrom = "rx"\nto = ["swap"]',
      '[[links]]\nfrom = "swap"\nto = ["tx"]',
    ].join("\n");
    const parsed = parseChain(toml, path.join(FIXTURES, "t.toml"));
    expect(parsed.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const interfaces = await resolveChainInterfaces(parsed.chain!, FIXTURES);
    const text = checkNfInterfaces(parsed.chain!, interfaces)
      .map((d) => formatDiagnostic(d))
      .join("\n");
    // listing2 has Action { Tx, Drop } and the map field `counters`
    expect(text).toContain("has 1 link target(s) (tx) but its Action enum in");
    expect(text).toContain(`${path.join(FIXTURES, "listing2/src/lib.rs")}:12:5`);
    expect(text).toContain("counter");
  });

  // The repository's chains against the real example crates (crate paths are relative to the repo root).
  const chainFiles = existsSync(path.join(REPO, "chains"))
    ? readdirSync(path.join(REPO, "chains"))
        .filter((f) => f.endsWith(".toml"))
        .map((f) => path.join(REPO, "chains", f))
    : [];
  for (const file of chainFiles) {
    it(`chains/${path.basename(file)} matches its crates`, async () => {
      const parsed = await loadChainFile(file);
      if (!parsed.chain) throw new Error(parsed.diagnostics.map((d) => formatDiagnostic(d)).join("\n"));
      const crates = parsed.chain.functions.filter((f) => existsSync(path.join(REPO, f.path, "Cargo.toml")));
      const interfaces = await resolveChainInterfaces({ functions: crates }, REPO);
      const errors = checkNfInterfaces(parsed.chain, interfaces).filter((d) => d.severity === "error");
      expect(errors.map((d) => formatDiagnostic(d))).toEqual([]);
    });
  }
});
