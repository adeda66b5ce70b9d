/**
 * The diagnostic classifiers on tool output as the tools print it (the end-to-end cases, with
 * the real toolchain and kernel, are in nf-test.test.ts).
 */
import { describe, expect, it } from "vitest";
import {
  demangle,
  llcDiagnostics,
  recursiveFunctions,
  renderDiagnostics,
  verifierDiagnostic,
} from "../src/diagnostics";

const log = (body: string) =>
  `libbpf: prog 'galette_nf': BPF program load failed: Permission denied\nlibbpf: prog 'galette_nf': -- BEGIN PROG LOAD LOG --\n${body}\n-- END PROG LOAD LOG --\nlibbpf: failed to load object\n`;

describe("verifier refusals", () => {
  it.each([
    [
      "helper",
      "0: R1=ctx() R10=fp0\n; let t = now(); @ lib.rs:9\n1: (85) call bpf_ktime_get_coarse_ns#160\nunknown func bpf_ktime_get_coarse_ns#160",
      9,
    ],
    [
      "helper",
      "; x @ lib.rs:4\n1: (85) call bpf_probe_read#4\nprogram of this type cannot use helper bpf_probe_read#4",
      4,
    ],
    [
      "packet",
      "; let b = data[n]; @ lib.rs:12\n7: (71) r3 = *(u8 *)(r2 +0)\ninvalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)",
      12,
    ],
    ["recursion", "the call stack of 8 frames is too deep !", undefined],
    ["stack", "; let big = [0u8; 600]; @ lib.rs:3\ncombined stack size of 2 calls is 544. Too large", 3],
    [
      "loop",
      "; while x != 1 { @ lib.rs:15\n19: (15) if r1 == 0x1 goto pc+8\nThe sequence of 8193 jumps is too complex.",
      15,
    ],
    ["loop", "; loop { @ lib.rs:7\nBPF program is too large. Processed 1000001 insn", 7],
    [
      "loop",
      "; while x != 1 { @ lib.rs:15\n19: (15) if r1 == 0x1 goto pc+8\n; wrapping_add(self, rhs) @ uint_macros.rs:2511\nThe sequence of 8193 jumps is too complex.",
      15,
    ],
  ] as const)("%s", (cls, body, line) => {
    const d = verifierDiagnostic(
      log(`${body}\nprocessed 10 insns (limit 1000000) max_states_per_insn 0`),
      "src/lib.rs",
    );
    expect(d.class).toBe(cls);
    expect(d.at.map((a) => a.line)).toEqual(line === undefined ? [] : [line]);
    if (line !== undefined) expect(d.at[0]?.file).toBe("src/lib.rs");
    expect(d.lastLines.length).toBeGreaterThan(0);
    const text = renderDiagnostics("x", [d], (f) => f);
    expect(text).toContain("hint: ");
  });
});

describe("llc failures", () => {
  it("a built-in called from inlined core code is located through the inlined-at chain", () => {
    const ir = [
      '!1 = !DIFile(filename: "src/lib.rs", directory: "/crate")',
      '!2 = !DIFile(filename: "/rustc/core/src/num/uint_macros.rs", directory: "")',
      '!3 = distinct !DISubprogram(name: "packet", scope: null, file: !1, line: 18)',
      '!4 = distinct !DISubprogram(name: "saturating_mul", scope: null, file: !2, line: 3100)',
      "!5 = !DILocation(line: 22, column: 41, scope: !3)",
      "!6 = !DILocation(line: 3105, column: 26, scope: !4, inlinedAt: !5)",
    ].join("\n");
    const stderr =
      "error: /rustc/core/src/num/uint_macros.rs:3105:26: in function galette_nf i32 (ptr): A call to built-in function '__multi3' is not supported.\n\n" +
      "error: /rustc/core/src/num/uint_macros.rs:3105:26: in function galette_nf i32 (ptr): only small returns supported\n";
    const ds = llcDiagnostics(stderr, { ir, crateDir: "/crate" });
    expect(ds).toEqual([
      {
        class: "int128",
        detail: "calls __multi3",
        at: [{ file: "/crate/src/lib.rs", line: 22, column: 41 }],
      },
    ]);
  });

  it("classifies float and other built-ins, and says nothing about messages it does not know", () => {
    const at = "error: /crate/src/lib.rs:3:1: in function f i32 (ptr): ";
    const ir = "";
    expect(
      llcDiagnostics(`${at}A call to built-in function '__gtdf2' is not supported.`, {
        ir,
        crateDir: "/crate",
      })[0]?.class,
    ).toBe("float");
    expect(
      llcDiagnostics(`${at}A call to built-in function '__udivti3' is not supported.`, {
        ir,
        crateDir: "/crate",
      })[0]?.class,
    ).toBe("int128");
    expect(
      llcDiagnostics(`${at}A call to built-in function '__popcountdi2' is not supported.`, {
        ir,
        crateDir: "/crate",
      })[0]?.class,
    ).toBe("builtin");
    expect(llcDiagnostics(`${at}something else entirely`, { ir, crateDir: "/crate" })).toEqual([]);
  });

  it("demangles Rust's legacy symbols", () => {
    expect(demangle("_ZN9recursion6weight17h0123456789abcdefE")).toBe("recursion::weight");
    expect(demangle("plain")).toBe("plain");
  });
});

describe("recursion in the call graph", () => {
  const graph = (edges: Record<string, string[]>) =>
    new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));

  it("finds self and mutual recursion, not a shared callee or an undefined one", () => {
    expect(recursiveFunctions(graph({ a: ["a"], b: ["c"], c: [] }))).toEqual(new Set(["a"]));
    expect(recursiveFunctions(graph({ main: ["f"], f: ["g"], g: ["h", "f"], h: ["ext"] }))).toEqual(
      new Set(["f", "g"]),
    );
    expect(recursiveFunctions(graph({ main: ["x", "y"], x: ["z"], y: ["z"], z: [] }))).toEqual(new Set());
  });

  it("handles a large graph: a long chain closed into one cycle, every node fanning out", () => {
    const n = 50_000;
    const edges: Record<string, string[]> = {};
    for (let i = 0; i < n; i++) edges[`f${i}`] = [`f${(i + 1) % n}`, `f${(i + 7) % n}`, `f${(i + 13) % n}`];
    const found = recursiveFunctions(graph(edges));
    expect(found.size).toBe(n);
  });

  it("a flood of llc messages is looked up a bounded number of times", () => {
    const lines = Array.from(
      { length: 20_000 },
      (_, i) =>
        `error: /rustc/core/x.rs:${i + 1}:1: in function f i32 (ptr): A call to built-in function '__multi3' is not supported.`,
    ).join("\n");
    const ds = llcDiagnostics(lines, { ir: "", crateDir: "/crate" });
    expect(ds.map((d) => d.class)).toEqual(["int128"]);
  });
});
