import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import {
  analyzeNf,
  analyzeNfSource,
  formatNfDiagnostic,
  MAX_ACTIONS,
  MAX_MAPS,
  NF_CRATE_TYPES,
  type NfAnalysis,
  NfAnalysisError,
  type NfDiagnostic,
  parseIntegerLiteral,
} from "../src/index";

const execFileAsync = promisify(execFile);
const FIXTURES = path.join(import.meta.dirname, "fixtures/analyze");
const REPO = path.resolve(import.meta.dirname, "../../..");
const NF_CRATE = path.join(REPO, "packages/nf/nf");

const fixture = (name: string) => path.join(FIXTURES, name);
const libOf = (name: string) => path.join(FIXTURES, name, "src/lib.rs");

/** The diagnostics analyzeNf throws for a fixture crate (fails the test if it does not throw). */
async function failureOf(crate: string): Promise<NfDiagnostic[]> {
  try {
    await analyzeNf(fixture(crate));
  } catch (err) {
    if (err instanceof NfAnalysisError) return err.diagnostics;
    throw err;
  }
  throw new Error(`expected ${crate} to fail analysis`);
}

const brief = (d: NfDiagnostic) => ({ code: d.code, line: d.line, column: d.column });
const errorsOf = (ds: NfDiagnostic[]) => ds.filter((d) => d.severity === "error");

describe("analyzeNf: Listing 2 (macswap)", () => {
  it("reads the crate name, the (K, V) map field and the action variants with exact locations", async () => {
    const a = await analyzeNf(fixture("listing2"));
    const file = libOf("listing2");
    expect(a).toEqual<NfAnalysis>({
      name: "listing2",
      crateDir: fixture("listing2"),
      libFile: file,
      maps: [
        {
          name: "counters",
          key: { text: "u32", size: 4 },
          value: { text: "u64", size: 8 },
          location: { file, line: 8, column: 9 },
        },
      ],
      mapsStructName: "Maps",
      actionEnum: "Action",
      actions: [
        { name: "Tx", location: { file, line: 12, column: 5 } },
        { name: "Drop", location: { file, line: 13, column: 5 } },
      ],
      usesStd: false,
      settings: { edition: "2021" },
      warnings: [],
    });
  });

  it("accepts a relative crate path and reports absolute files", async () => {
    const relative = path.relative(process.cwd(), fixture("listing2"));
    const a = await analyzeNf(relative);
    expect(a.libFile).toBe(libOf("listing2"));
  });
});

describe("analyzeNf: key/value layouts", () => {
  const sizes = async () => {
    const a = await analyzeNf(fixture("layouts"));
    return { a, byName: new Map(a.maps.map((m) => [m.name, m])) };
  };

  it("computes C layout sizes for repr(C) structs (with padding), arrays, aliases, tuple structs, packed, align, enums", async () => {
    const { a, byName } = await sizes();
    const table = a.maps.map((m) => [m.name, m.key.text, m.key.size, m.value.text, m.value.size]);
    expect(table).toEqual([
      ["padded", "u32", 4, "Padded", 24],
      ["flows", "FlowKey", 16, "Counter", 8],
      ["macs", "Mac", 6, "MacPair", 12],
      ["packed", "Packed", 9, "Wrapped", 4],
      ["aligned", "Aligned", 16, "[Aligned; 2]", 32],
      ["verdicts", "[u8; MAC_LEN * 2 + 4]", 16, "Verdict", 2],
      ["allow", "LpmKeyV4", 8, "u8", 1],
      ["v6", "nf::LpmKeyV6", 20, "(u8, u8)", undefined],
      ["unsized_value", "u32", 4, "NotC", undefined],
      ["padded_key", "Padded", 24, "bool", 1],
      ["generic", "nf::LpmKey<{ 2 * 4 }>", 12, "Pair<u16, 3>", 12],
    ]);
    expect(a.mapsStructName).toBe("Tables");
    expect(a.actionEnum).toBe("Out");
    expect(a.actions.map((x) => x.name)).toEqual(["Tx", "Drop", "Pass"]);
    expect(byName.get("flows")).toMatchObject({ mapType: "lru_hash", maxEntries: 65536 });
    expect(byName.get("allow")).toMatchObject({ mapType: "lpm_trie", maxEntries: 1024 });
    expect(byName.get("padded")?.mapType).toBeUndefined();
  });

  it("warns (size undefined) for types without a fixed layout, and for padded keys, at the type's position", async () => {
    const { a } = await sizes();
    const file = libOf("layouts");
    expect(a.warnings?.map((w) => ({ ...brief(w), severity: w.severity, file: w.file }))).toEqual([
      { code: "nf-map-key-padding", line: 70, column: 19, severity: "warning", file },
      { code: "nf-map-type-size", line: 74, column: 28, severity: "warning", file },
      { code: "nf-map-type-size", line: 75, column: 30, severity: "warning", file },
      { code: "nf-map-key-padding", line: 76, column: 22, severity: "warning", file },
    ]);
    expect(a.warnings?.[1]?.message).toBe(
      "map field `v6`: value type `(u8, u8)`: Rust tuples have no fixed layout; its size cannot be checked against the chain",
    );
    expect(a.warnings?.[2]?.message).toContain("struct `NotC` is not #[repr(C)]");
    expect(a.warnings?.[3]?.message).toContain("has 9 padding byte(s)");
  });

  it("agrees with rustc's size_of for every computed size (x86_64)", async () => {
    const { a } = await sizes();
    const lib = await readFile(libOf("layouts"), "utf8");
    // The fixture minus what needs the real nf crate (inner attributes, the proc-macro attributes),
    // with a stand-in `nf` module that includes the real crate's LPM key definitions.
    const body = lib
      .split("\n")
      .filter((line) => !/^\s*#!\[|^\s*#\[(nf::)?maps\]|^\s*#\[map\(/.test(line))
      .join("\n");
    const checks = a.maps.flatMap((m) =>
      [m.key, m.value]
        .filter((t) => t.size !== undefined)
        .map(
          (t) =>
            `const _: () = assert!(core::mem::size_of::<${t.text}>() == ${t.size}, "${m.name}: ${t.text.replaceAll("{", "{{").replaceAll("}", "}}")}");`,
        ),
    );
    expect(checks.length).toBeGreaterThan(15);
    const source = [
      "#![allow(dead_code, unused_imports)]",
      `mod nf { pub trait Packet {} include!(${JSON.stringify(path.join(NF_CRATE, "src/lpm.rs"))}); }`,
      body,
      ...checks,
    ].join("\n");
    const dir = await mkdtemp(path.join(os.tmpdir(), "nf-analyze-layout-"));
    try {
      await writeFile(path.join(dir, "check.rs"), source);
      await execFileAsync("/usr/bin/rustc", [
        "--edition",
        "2021",
        "--crate-type",
        "lib",
        "--emit=metadata",
        "-o",
        path.join(dir, "check.rmeta"),
        path.join(dir, "check.rs"),
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("knows the nf crate's LPM key sizes without its source (built-in table matches the crate)", async () => {
    const source = [
      "#![no_std]",
      "use nf::LpmKeyV4;",
      "#[maps] pub struct Maps { pub v4: (LpmKeyV4, u8), pub v6: (nf::LpmKeyV6, u8) }",
      "pub enum Action { Tx }",
      "pub fn packet(_p: &mut nf::Packet, _m: &Maps) -> Action { Action::Tx }",
    ].join("\n");
    const withoutSource = await analyzeNfSource(source, { file: "/virtual/src/lib.rs", crateName: "t" });
    const withSource = await analyzeNfSource(source, {
      file: "/virtual/src/lib.rs",
      crateName: "t",
      nfCrateDir: NF_CRATE,
    });
    expect(withoutSource.maps.map((m) => m.key.size)).toEqual([
      NF_CRATE_TYPES.LpmKeyV4?.size,
      NF_CRATE_TYPES.LpmKeyV6?.size,
    ]);
    expect(withSource.maps.map((m) => m.key.size)).toEqual(withoutSource.maps.map((m) => m.key.size));
    expect(withSource.warnings).toEqual([]);
  });

  it("warns when the nf path dependency cannot be read, and falls back to the built-in sizes", async () => {
    const source =
      "use nf::LpmKeyV4;\n#[maps] pub struct M { pub a: (LpmKeyV4, u8) }\npub enum A { Tx }\npub fn packet(_p: &mut nf::Packet, _m: &M) -> A { A::Tx }";
    const a = await analyzeNfSource(source, {
      file: "/virtual/src/lib.rs",
      crateName: "t",
      nfCrateDir: "/nonexistent/nf",
    });
    expect(a.maps[0]?.key.size).toBe(8);
    expect(a.warnings?.map((w) => w.code)).toEqual(["nf-crate-unreadable"]);
    expect(a.warnings?.[0]?.message).toContain("/nonexistent/nf");
  });
});

describe("analyzeNf: std detection", () => {
  it.each([
    ["listing2", false], // #![no_std]
    ["layouts", false], // #![cfg_attr(not(test), no_std)]
    ["uses-std", true],
  ])("%s usesStd = %s", async (crate, usesStd) => {
    expect((await analyzeNf(fixture(crate))).usesStd).toBe(usesStd);
  });

  it("reads the lib file from [lib] path", async () => {
    const a = await analyzeNf(fixture("custom-lib-path"));
    expect(a.name).toBe("custom-lib");
    expect(a.libFile).toBe(path.join(fixture("custom-lib-path"), "nf/main.rs"));
    expect(a.maps).toEqual([]);
    expect(a.mapsStructName).toBeUndefined();
    expect(a.actions.map((x) => x.name)).toEqual(["Tx", "Drop"]);
  });
});

describe("analyzeNf: Cargo.toml settings, read once with the source", () => {
  /** listing2's source under a Cargo.toml with `extra` in its [package] */
  const withManifest = async (extra: string) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "nf-analyze-settings-"));
    const nf = JSON.stringify(NF_CRATE);
    await writeFile(
      path.join(dir, "Cargo.toml"),
      `[package]\nname = "settings"\nversion = "0.1.0"\n${extra}\n[lib]\npath = "lib.rs"\n\n[dependencies]\nnf = { path = ${nf} }\n`,
    );
    await writeFile(path.join(dir, "lib.rs"), await readFile(libOf("listing2"), "utf8"));
    return dir;
  };

  it("carries the edition and [package.metadata.galette] xdp into the analysis", async () => {
    const dir = await withManifest('edition = "2024"\n[package.metadata.galette]\nxdp = false\n');
    try {
      expect((await analyzeNf(dir)).settings).toEqual({ edition: "2024", xdp: false });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses an xdp setting that is not a boolean, naming Cargo.toml", async () => {
    const dir = await withManifest('[package.metadata.galette]\nxdp = "no"\n');
    try {
      const err = await analyzeNf(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NfAnalysisError);
      expect((err as NfAnalysisError).diagnostics).toEqual([
        expect.objectContaining({
          code: "nf-manifest",
          file: path.join(dir, "Cargo.toml"),
          message: "[package.metadata.galette] xdp must be true or false",
        }),
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("analyzeNf: errors name file:line:col", () => {
  it("no packet function", async () => {
    const ds = await failureOf("no-packet");
    expect(ds.map(brief)).toEqual([{ code: "nf-no-packet-fn", line: 1, column: 1 }]);
    expect(formatNfDiagnostic(ds[0]!, FIXTURES)).toBe(
      "no-packet/src/lib.rs:1:1: error: no `packet` function in the crate's lib file\n" +
        "  hint: an NF defines `pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action` at the top level of src/lib.rs",
    );
  });

  it("map fields that are not (K, V) tuples", async () => {
    const ds = await failureOf("non-tuple-field");
    expect(ds.map(brief)).toEqual([
      { code: "nf-map-field-shape", line: 7, column: 14 },
      { code: "nf-map-field-shape", line: 8, column: 17 },
    ]);
    expect(ds[0]?.message).toBe(
      "map field `bad` has type `Map<u32, u64>`; #[maps] fields must be `(Key, Value)` tuples",
    );
    expect(ds[1]?.message).toContain("`(u32, u64, u8)`");
  });

  it(`more than ${MAX_ACTIONS} action variants`, async () => {
    const ds = await failureOf("too-many-variants");
    expect(ds.map(brief)).toEqual([{ code: "nf-too-many-actions", line: 20, column: 5 }]);
    expect(ds[0]?.message).toBe(
      "enum `Action` has more than 16 variants (GALETTE_MAX_ACTIONS); `V17` is number 17",
    );
  });

  it(`more than ${MAX_MAPS} maps`, async () => {
    const ds = await failureOf("too-many-maps");
    expect(ds.map(brief)).toEqual([{ code: "nf-too-many-maps", line: 21, column: 5 }]);
  });

  it("packet returning a struct", async () => {
    const ds = await failureOf("returns-struct");
    expect(ds.map(brief)).toEqual([{ code: "nf-packet-return", line: 7, column: 41 }]);
    expect(ds[0]?.message).toBe(
      "`packet` must return an enum defined in src/lib.rs, not `Action` (`Action` is a struct)",
    );
  });

  it("packet takes maps but no struct is #[maps]", async () => {
    const ds = await failureOf("maps-not-annotated");
    expect(ds.map(brief)).toEqual([{ code: "nf-no-maps-struct", line: 11, column: 38 }]);
    expect(ds[0]?.hint).toBe("annotate `struct Maps` with #[maps] (or #[nf::maps])");
  });

  it("usize (4 bytes on armv7) and pointers in map types", async () => {
    const ds = await failureOf("usize-in-map");
    expect(ds.map(brief)).toEqual([
      { code: "nf-map-usize", line: 6, column: 15 },
      { code: "nf-map-pointer", line: 12, column: 25 },
    ]);
    expect(ds[0]?.message).toContain("map field `entries`: value type `Entry`: `usize` is 8 bytes on bpf");
    expect(ds[0]?.message).toContain("4 on armv7");
  });

  it("action variants with data or explicit discriminants", async () => {
    const ds = await failureOf("bad-actions");
    expect(ds.map(brief)).toEqual([
      { code: "nf-action-discriminant", line: 4, column: 10 },
      { code: "nf-action-data", line: 5, column: 5 },
    ]);
  });

  it("Rust syntax errors", async () => {
    const ds = await failureOf("syntax-error");
    expect(errorsOf(ds)[0]).toMatchObject({ code: "nf-syntax", line: 8 });
  });

  it("bad #[map(...)] attributes", async () => {
    const ds = await failureOf("bad-map-attribute");
    expect(ds.map(brief)).toEqual([
      { code: "nf-map-type", line: 5, column: 18 },
      { code: "nf-map-size", line: 5, column: 34 },
      { code: "nf-map-attribute", line: 7, column: 11 },
    ]);
    expect(ds[0]?.message).toBe('unknown map type "btree" on `a`');
  });

  it("invalid Cargo.toml (position from the TOML parser) and a missing crate", async () => {
    const ds = await failureOf("bad-manifest");
    expect(ds).toMatchObject([
      { code: "nf-manifest", file: path.join(fixture("bad-manifest"), "Cargo.toml"), line: 1 },
    ]);
    expect(ds[0]?.message).toMatch(/^invalid TOML: /);
    const missing = await failureOf("does-not-exist");
    expect(missing).toMatchObject([
      { code: "nf-manifest", file: path.join(fixture("does-not-exist"), "Cargo.toml") },
    ]);
    expect(missing[0]?.message).toContain("cannot read the NF crate's manifest");
  });

  it("the error message lists every error in compiler format", async () => {
    const err = await analyzeNf(fixture("non-tuple-field")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NfAnalysisError);
    const lines = (err as Error).message.split("\n").filter((l) => !l.startsWith("  "));
    expect(lines).toEqual([
      `${libOf("non-tuple-field")}:7:14: error: map field \`bad\` has type \`Map<u32, u64>\`; #[maps] fields must be \`(Key, Value)\` tuples`,
      `${libOf("non-tuple-field")}:8:17: error: map field \`triple\` has type \`(u32, u64, u8)\`; #[maps] fields must be \`(Key, Value)\` tuples`,
    ]);
  });
});

describe("analyzeNfSource: smaller cases", () => {
  const analyse = (source: string) =>
    analyzeNfSource(source, { file: "/virtual/src/lib.rs", crateName: "t" });
  const fails = async (source: string) => {
    const err = await analyse(source).catch((e: unknown) => e);
    if (!(err instanceof NfAnalysisError)) throw new Error(`expected NfAnalysisError, got ${String(err)}`);
    return err.diagnostics;
  };

  it("follows crate:: paths and aliases of the action enum; #[nf::maps] is accepted", async () => {
    const a = await analyse(
      "#![no_std]\nenum Verdict { A, B }\ntype Action = Verdict;\n#[nf::maps]\nstruct M { x: (u8, u8) }\nfn packet(p: &mut nf::Packet, m: &M) -> crate::Action { Verdict::A }",
    );
    expect(a.actionEnum).toBe("Verdict");
    expect(a.actions.map((x) => x.name)).toEqual(["A", "B"]);
    expect(a.maps.map((m) => m.name)).toEqual(["x"]);
  });

  it("an NF without maps", async () => {
    const a = await analyse(
      "pub enum Action { Tx }\npub fn packet(p: &mut nf::Packet) -> Action { Action::Tx }",
    );
    expect(a.maps).toEqual([]);
  });

  it("packet returning nothing, an enum defined elsewhere, or an empty enum", async () => {
    expect((await fails("pub fn packet(p: &mut nf::Packet) {}")).map((d) => d.code)).toEqual([
      "nf-packet-return",
    ]);
    const elsewhere = await fails(
      "use other::Action;\npub fn packet(p: &mut nf::Packet) -> Action { todo!() }",
    );
    expect(elsewhere[0]?.message).toBe(
      "`packet` must return an enum defined in src/lib.rs, not `Action` (it is not defined in src/lib.rs)",
    );
    expect(elsewhere[0]).toMatchObject({ line: 2, column: 38 });
    expect((await fails("enum Action {}\nfn packet() -> Action { loop {} }")).map((d) => d.code)).toEqual([
      "nf-no-actions",
    ]);
  });

  it("two #[maps] structs", async () => {
    const ds = await fails(
      "#[maps] struct A { x: (u8, u8) }\n#[maps] struct B { y: (u8, u8) }\nenum Action { Tx }\nfn packet(p: &mut nf::Packet, m: &A) -> Action { Action::Tx }",
    );
    expect(ds.map(brief)).toEqual([{ code: "nf-maps-duplicate", line: 2, column: 16 }]);
  });

  it("warns for array lengths it cannot evaluate and for generic types of unknown origin", async () => {
    const a = await analyse(
      "#[maps] struct M { x: ([u8; LEN], u8), y: (Foo<u8>, u8) }\nenum Action { Tx }\nfn packet(p: &mut nf::Packet, m: &M) -> Action { Action::Tx }",
    );
    expect(a.maps.map((m) => m.key.size)).toEqual([undefined, undefined]);
    expect(a.warnings?.map((w) => [w.code, w.line, w.column])).toEqual([
      ["nf-map-type-size", 1, 29],
      ["nf-map-type-size", 1, 44],
    ]);
  });

  it("a recursive alias does not hang", async () => {
    const a = await analyse(
      "type A = B;\ntype B = A;\n#[maps] struct M { x: (A, u8) }\nenum Action { Tx }\nfn packet(p: &mut nf::Packet, m: &M) -> Action { Action::Tx }",
    );
    expect(a.maps[0]?.key.size).toBeUndefined();
  });

  it("parses Rust integer literals", () => {
    expect(
      ["1_024", "0x10", "0o17", "0b101", "6usize", "7u8", "abc", "1.5"].map(parseIntegerLiteral),
    ).toEqual([1024, 16, 15, 5, 6, 7, undefined, undefined]);
  });
});

describe("limits match the dataplane ABI header", () => {
  it("MAX_ACTIONS and MAX_MAPS equal GALETTE_MAX_ACTIONS and GALETTE_MAX_MAPS", async () => {
    const header = await readFile(path.join(REPO, "packages/xdp-native/include/galette_abi.h"), "utf8");
    const define = (name: string) => Number(new RegExp(`#define ${name}\\s+(\\d+)`).exec(header)?.[1]);
    expect(MAX_ACTIONS).toBe(define("GALETTE_MAX_ACTIONS"));
    expect(MAX_MAPS).toBe(define("GALETTE_MAX_MAPS"));
  });
});

// Every example NF in the repository analyses cleanly, with every map size known.
const exampleDirs = existsSync(path.join(REPO, "nf-examples"))
  ? readdirSync(path.join(REPO, "nf-examples"))
      .map((name) => path.join(REPO, "nf-examples", name))
      .filter((dir) => existsSync(path.join(dir, "Cargo.toml")))
  : [];

describe("nf-examples", () => {
  for (const dir of exampleDirs) {
    it(`${path.basename(dir)} analyses with known map sizes`, async () => {
      const a = await analyzeNf(dir);
      expect(a.actions.length).toBeGreaterThan(0);
      for (const action of a.actions) expect(action.location.file).toBe(a.libFile);
      for (const m of a.maps) {
        expect(m.key.size, `${a.name}.${m.name} key ${m.key.text}`).toBeGreaterThan(0);
        expect(m.value.size, `${a.name}.${m.name} value ${m.value.text}`).toBeGreaterThan(0);
      }
      expect(a.warnings?.filter((w) => w.code === "nf-map-type-size")).toEqual([]);
    });
  }
});
