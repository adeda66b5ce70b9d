import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  analyzeNf,
  NfAnalysisError,
  nfInterfaceFromAnalysis,
  resolveChainInterfaces,
  resolveChainInterfacesWithWarnings,
} from "../src/index";

const FIXTURES = path.join(import.meta.dirname, "fixtures/analyze");

describe("nfInterfaceFromAnalysis", () => {
  it("keeps actions in order and maps with sizes and canonical map type, dropping unknown sizes", async () => {
    const a = await analyzeNf(path.join(FIXTURES, "layouts"));
    const nf = nfInterfaceFromAnalysis(a);
    expect(nf.file).toBe(a.libFile);
    expect(nf.actions).toEqual(a.actions);
    expect(nf.maps[1]).toEqual({
      name: "flows",
      keySize: 16,
      valueSize: 8,
      mapType: "lru_hash",
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
