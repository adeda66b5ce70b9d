import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CHAIN_INPUT_LIMITS,
  checkNfInterfaces,
  DEFAULT_DEVICE_LIMITS,
  type Diagnostic,
  type NfInterface,
  parseChain,
  planChain,
} from "../src/index";

/**
 * Inputs far larger than any real chain: every one must end in located diagnostics or a
 * plan, never an exception (a stack overflow from recursion over the input was one).
 */
function expectCleanOutcome(text: string): Diagnostic[] {
  const lines = text.split("\n").length;
  const result = parseChain(text, "big.toml");
  for (const d of result.diagnostics) {
    expect(d.file).toBe("big.toml");
    expect(d.code).toMatch(/^[a-z]+(-[a-z]+)*$/);
    expect(d.line >= 1 && d.line <= lines + 1).toBe(true);
    expect(d.message.length).toBeLessThan(2000);
  }
  if (result.chain) planChain(result.chain);
  else expect(result.diagnostics.some((d) => d.severity === "error")).toBe(true);
  return result.diagnostics;
}

type Shape = "line" | "fan" | "cycle" | "upcalls";

/** A chain of `n` NFs; names are `prefix` + index. */
function chainText(n: number, shape: Shape, prefix = "n"): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`[functions.${prefix}${i}]`);
  out.push(`[[links]]\nfrom = "rx"\nto = ["${prefix}0"]`);
  for (let i = 0; i < n; i++) {
    const next = i + 1 < n ? `${prefix}${i + 1}` : "tx";
    const to =
      shape === "fan"
        ? [i * 2 + 1 < n ? `${prefix}${i * 2 + 1}` : "tx", i * 2 + 2 < n ? `${prefix}${i * 2 + 2}` : "drop"]
        : shape === "cycle" && i + 1 === n
          ? [`${prefix}0`]
          : shape === "upcalls"
            ? [i + 1 < n ? `!${next}` : "tx"]
            : [next, "drop"];
    out.push(`[[links]]\nfrom = "${prefix}${i}"\nto = [${to.map((t) => JSON.stringify(t)).join(", ")}]`);
  }
  return `${out.join("\n")}\n`;
}

describe("limits: no input size crashes validation", () => {
  it("sized chains up to 100 000 NFs, four shapes: a clean diagnostic or a plan", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 33, 255, 256, 300, 8000, 16_385, 100_000),
        fc.constantFrom<Shape>("line", "fan", "cycle", "upcalls"),
        fc.constantFrom("n", "x"),
        (n, shape, prefix) => {
          const diagnostics = expectCleanOutcome(chainText(n, shape, prefix));
          if (n > 255) expect(diagnostics.some((d) => d.severity === "error")).toBe(true);
        },
      ),
      { numRuns: 12, seed: 17 },
    );
  });

  it("deep nesting and long dotted keys: a clean diagnostic", () => {
    fc.assert(
      fc.property(fc.constantFrom(65, 1000, 100_000), fc.integer({ min: 0, max: 4 }), (depth, kind) => {
        const dotted = Array(depth).fill("a").join(".");
        const text = [
          `x = ${"[".repeat(depth)}${"]".repeat(depth)}`,
          `x = ${"{a=".repeat(depth)}1${"}".repeat(depth)}`,
          `[${dotted}]`,
          `${dotted} = 1`,
          `[functions.f.maps.${dotted}]\n[[links]]\nfrom = "rx"\nto = ["f"]`,
        ][kind]!;
        expectCleanOutcome(`${text}\n`);
      }),
      { numRuns: 10, seed: 17 },
    );
  });

  it("long names and long strings everywhere a name goes: the name-length limit, no slow suggestions", () => {
    fc.assert(
      fc.property(fc.constantFrom(64, 5000, 200_000), fc.integer({ min: 0, max: 4 }), (length, where) => {
        const long = "a".repeat(length);
        const text = [
          `[functions.${long}]\n[[links]]\nfrom = "rx"\nto = ["${long}"]\n[[links]]\nfrom = "${long}"\nto = ["tx"]`,
          `[functions.f]\n[[links]]\nfrom = "rx"\nto = ["f"]\n[[links]]\nfrom = "f"\nto = ["${long}"]`,
          `[functions.f]\nmaps = { ${long} = "_" }\n[[links]]\nfrom = "rx"\nto = ["f"]\n[[links]]\nfrom = "f"\nto = ["tx"]`,
          `[chain]\nname = "${long}"`,
          `[functions.f]\npath = "${long}"\n[[links]]\nfrom = "rx"\nto = ["f"]\n[[links]]\nfrom = "f"\nto = ["tx"]`,
        ][where]!;
        const diagnostics = expectCleanOutcome(`${text}\n`);
        if (length > CHAIN_INPUT_LIMITS.pathLength || (where !== 4 && length > CHAIN_INPUT_LIMITS.nameLength))
          expect(diagnostics.map((d) => d.code)).toContain("input-limit");
      }),
      { numRuns: 15, seed: 17 },
    );
  });

  it("many unknown targets: each reported, suggestions bounded", () => {
    const n = 10_000;
    const out = [`[functions.f]`, `[[links]]\nfrom = "rx"\nto = ["f"]`];
    for (let i = 0; i < n; i++) out.push(`[functions.g${i}]\n[[links]]\nfrom = "g${i}"\nto = ["h${i}"]`);
    out.push(`[[links]]\nfrom = "f"\nto = ["tx"]`);
    const diagnostics = expectCleanOutcome(`${out.join("\n")}\n`);
    expect(diagnostics.filter((d) => d.code === "unknown-target")).toHaveLength(n);
  });
});

describe("limits: input limits name the limit and the place", () => {
  it("refuses a file over the TOML byte limit before parsing it", () => {
    const text = `# ${"x".repeat(CHAIN_INPUT_LIMITS.tomlBytes)}\n`;
    const [d] = parseChain(text, "big.toml").diagnostics;
    expect(d).toMatchObject({ code: "input-limit", line: 1 });
    expect(d!.message).toMatch(/limited to 1 MiB \(input limit: TOML bytes\)/);
  });

  it("refuses more functions than the NF-count limit, at the first one past it", () => {
    const n = CHAIN_INPUT_LIMITS.functions + 1;
    const text = Array.from({ length: n }, (_, i) => `[functions.f${i}]`).join("\n");
    const [d, ...rest] = parseChain(text, "many.toml").diagnostics;
    expect(rest.filter((x) => x.code === "input-limit")).toEqual([]);
    expect(d).toMatchObject({ code: "input-limit", line: n });
    expect(d!.message).toMatch(
      new RegExp(`${n} functions; at most ${n - 1} are accepted \\(input limit: NF count\\)`),
    );
  });

  it("refuses more links and more targets per link than accepted", () => {
    const links = Array.from(
      { length: CHAIN_INPUT_LIMITS.links + 1 },
      () => `[[links]]\nfrom = "a"\nto = ["tx"]`,
    );
    expect(parseChain(links.join("\n"), "l.toml").diagnostics[0]!.message).toMatch(/input limit: link count/);
    const to = Array.from({ length: CHAIN_INPUT_LIMITS.targetsPerLink + 1 }, () => '"tx"').join(",");
    const d = parseChain(
      `[functions.a]\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = [${to}]\n`,
      "t.toml",
    ).diagnostics[0]!;
    expect(d).toMatchObject({ code: "input-limit", line: 7 });
    expect(d.message).toMatch(
      /257 targets in one link; at most 256 are accepted \(input limit: targets per link\)/,
    );
  });
});

describe("limits: device limits are errors at validation, with file:line and the limit", () => {
  it("a 300-NF line: the 256-instance limit, at the 256th function", () => {
    const d = parseChain(chainText(300, "line"), "line.toml").diagnostics.filter(
      (x) => x.severity === "error",
    );
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ code: "limit-instances", line: 256 });
    expect(d[0]!.message).toMatch(/300 NF instances, but a device holds at most 255: the 256-instance limit/);
  });

  it("255 NFs fit", () => {
    expect(parseChain(chainText(255, "line"), "line.toml").chain).toBeDefined();
  });

  it("more Action variants than an action table holds", () => {
    const to = Array.from({ length: 17 }, () => '"drop"').join(", ");
    const d = parseChain(
      `[functions.a]\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = [${to}]\n`,
      "a.toml",
    ).diagnostics[0]!;
    expect(d).toMatchObject({ code: "limit-actions", line: 7 });
    expect(d.message).toMatch(
      /17 link targets, but an NF has at most 16 Action variants \(GALETTE_MAX_ACTIONS/,
    );
  });

  it("a map larger than a map may be, and maps larger than the memory budget", () => {
    const one = (size: number, type = "hash_map") =>
      `[functions.a.maps]\nm = { type = "${type}", size = ${size} }\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = ["tx"]\n`;
    const big = parseChain(one(DEFAULT_DEVICE_LIMITS.entriesPerMap + 1), "m.toml").diagnostics;
    expect(big.map((d) => [d.code, d.line])).toContainEqual(["limit-map-entries", 2]);
    // 4 Mi entries of a hash map: at least 4 Mi × (48 + 8 + 8) bytes = 256 MiB > 128 MiB
    const heavy = parseChain(one(4 * 1024 * 1024), "m.toml").diagnostics;
    expect(heavy[0]).toMatchObject({ code: "limit-map-memory", line: 2 });
    expect(heavy[0]!.message).toMatch(/at least 256 MiB .* 128 MiB .* \(limit: map memory per chain\)/);
    // with the NFs' real key/value sizes, the estimate becomes exact
    const fits = parseChain(one(1024 * 1024), "m.toml");
    expect(fits.chain).toBeDefined();
    const iface: NfInterface = {
      file: "lib.rs",
      actions: [{ name: "Tx", location: { file: "lib.rs", line: 1, column: 1 } }],
      maps: [{ name: "m", keySize: 64, valueSize: 1024, location: { file: "lib.rs", line: 2, column: 1 } }],
    };
    const exact = checkNfInterfaces(fits.chain!, new Map([["a", iface]]));
    expect(exact.map((d) => d.code)).toEqual(["limit-map-memory"]);
    expect(exact[0]!.message).toMatch(/about 1\.1 GiB|about 11\d\d(\.\d)? MiB/);
  });

  it("more userland NFs than a device runs", () => {
    const limits = { ...DEFAULT_DEVICE_LIMITS, userlandNfs: 4 };
    const d = parseChain(chainText(6, "upcalls"), "u.toml", { limits }).diagnostics.filter(
      (x) => x.severity === "error",
    );
    expect(d.map((x) => [x.code, x.line])).toEqual([["limit-userland-nfs", 6]]);
    expect(d[0]!.message).toMatch(/5 NF instances of the chain run in userland, but a device runs at most 4/);
  });

  it("the limits can be a device's own (the seam for reported capabilities)", () => {
    const small = { ...DEFAULT_DEVICE_LIMITS, instanceSlots: 8 };
    const d = parseChain(chainText(10, "line"), "s.toml", { limits: small }).diagnostics;
    expect(d[0]).toMatchObject({ code: "limit-instances", line: 8 });
  });
});
