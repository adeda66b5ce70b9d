import { describe, expect, it } from "vitest";
import { formatDiagnostic, parseChain, planChain } from "../src/index";

const functions = `[functions.firewall]
path = "nf-examples/access-control"
maps = { allow-list = { type = "lpm-trie", size = 64 } }
[functions.ttl]
path = "nf-examples/decrement-ttl"
[functions.shared-ttl]
path = "nf-examples/decrement-ttl"
`;

const directions = `${functions}
[[links]]
from = "rx.a"
to = ["firewall"]
[[links]]
from = "rx.b"
to = ["ttl"]
[[links]]
from = "firewall"
to = ["shared-ttl", "drop"]
[[links]]
from = "ttl"
to = ["tx", "drop"]
[[links]]
from = "shared-ttl"
to = ["tx", "drop"]
`;

function errors(src: string, file = "dir.toml") {
  const { chain, diagnostics } = parseChain(src, file);
  expect(chain).toBeUndefined();
  return diagnostics.filter((d) => d.severity === "error");
}

describe("a chain per direction (rx.a / rx.b)", () => {
  it("parses both entries and plans each as one tail call from the root", () => {
    const { chain, diagnostics } = parseChain(directions, "dir.toml");
    expect(diagnostics).toEqual([]);
    expect(chain!.entry.nf).toBe("firewall");
    expect(chain!.entryB!.nf).toBe("ttl");
    expect(chain!.rxBLocation!.line).toBe(13);
    const plan = planChain(chain!);
    expect(plan.entry).toEqual({
      kind: "tailcall",
      target: "firewall",
      b: { kind: "tailcall", target: "ttl" },
    });
    expect(plan.edges.filter((e) => e.kind === "entry")).toEqual([
      expect.objectContaining({ from: "rx.a", to: "firewall", toPlacement: "xdp" }),
      expect.objectContaining({ from: "rx.b", to: "ttl", toPlacement: "xdp" }),
    ]);
    const ttl = plan.nfs.find((n) => n.name === "ttl")!;
    expect(ttl).toMatchObject({ xdp: true, userland: false, xdpDepth: 1 });
    expect(plan.nfs.find((n) => n.name === "shared-ttl")).toMatchObject({ xdp: true, xdpDepth: 2 });
    expect(plan.nfs.find((n) => n.name === "firewall")!.actions).toEqual([
      { kind: "tailcall", target: "shared-ttl" },
      { kind: "drop" },
    ]);
  });

  it("keeps one rx for both directions unchanged (no b)", () => {
    const src = directions
      .replace('from = "rx.a"', 'from = "rx"')
      .replace(/\[\[links\]\]\nfrom = "rx.b"\nto = \["ttl"\]\n/, "");
    const { chain, diagnostics } = parseChain(src, "one.toml");
    expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(chain!.entryB).toBeUndefined();
    const plan = planChain(chain!);
    expect(plan.entry).toEqual({ kind: "tailcall", target: "firewall" });
    expect(plan.edges.find((e) => e.kind === "entry")!.from).toBe("rx");
  });

  it("decides each direction's entry kind: an upcalled rx.b entry runs in userland, rx.a stays in XDP", () => {
    const src = directions.replace('to = ["ttl"]', 'to = ["!ttl"]');
    const plan = planChain(parseChain(src, "dir.toml").chain!);
    expect(plan.entry).toEqual({
      kind: "tailcall",
      target: "firewall",
      b: { kind: "upcall", target: "ttl" },
    });
    expect(plan.nfs.find((n) => n.name === "ttl")).toMatchObject({ xdp: false, userland: true });
    expect(plan.nfs.find((n) => n.name === "ttl")!.reasons).toContain("entry, upcalled by rx.b (!)");
  });

  it("lets both directions share an NF (one instance, one action table)", () => {
    const src = directions
      .replace('to = ["ttl"]', 'to = ["shared-ttl"]')
      .replace(/\[\[links\]\]\nfrom = "ttl"\nto = \["tx", "drop"\]\n/, "");
    const { chain, diagnostics } = parseChain(
      src.replace(/\[functions\.ttl\]\npath = "nf-examples\/decrement-ttl"\n/, ""),
      "s.toml",
    );
    expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const plan = planChain(chain!);
    expect(plan.entry.b).toEqual({ kind: "tailcall", target: "shared-ttl" });
    // reached at depth 1 (rx.b) and 2 (after firewall): the deepest path decides
    expect(plan.nfs.find((n) => n.name === "shared-ttl")!.xdpDepth).toBe(2);
  });

  it("warns about an NF neither direction reaches", () => {
    const src = `${directions}[functions.lonely]\npath = "nf-examples/decrement-ttl"\n[[links]]\nfrom = "lonely"\nto = ["tx", "drop"]\n`;
    const { chain, diagnostics } = parseChain(src, "dir.toml");
    expect(chain).toBeDefined();
    expect(diagnostics).toEqual([
      expect.objectContaining({ code: "unreachable", message: expect.stringContaining("rx.a and rx.b") }),
    ]);
  });
});

describe("malformed directions: file, line and key named", () => {
  it("refuses rx.a without rx.b", () => {
    const src = directions.replace(/\[\[links\]\]\nfrom = "rx.b"\nto = \["ttl"\]\n/, "");
    const [e, ...rest] = errors(
      src
        .replace(/\[functions\.ttl\][^[]*/, "")
        .replace(/\[\[links\]\]\nfrom = "ttl"\nto = \["tx", "drop"\]\n/, ""),
    );
    expect(rest).toEqual([]);
    expect(e).toMatchObject({ code: "missing-rx-direction", file: "dir.toml", line: 8 });
    expect(formatDiagnostic(e!)).toContain(
      "dir.toml:8:8: error: there is a link from rx.a but none from rx.b: frames arriving on the second port would have no chain",
    );
  });

  it("refuses rx next to rx.a / rx.b", () => {
    const src = directions.replace(
      '[[links]]\nfrom = "rx.a"',
      '[[links]]\nfrom = "rx"\nto = ["firewall"]\n[[links]]\nfrom = "rx.a"',
    );
    const [e] = errors(src);
    expect(e).toMatchObject({ code: "mixed-rx-links", line: 13 });
    expect(e!.message).toContain('from = "rx.a" next to from = "rx" (line 10)');
  });

  it("names an unknown entry with the ones that exist", () => {
    const src = directions.replace('from = "rx.b"', 'from = "rx.c"');
    const list = errors(src);
    const bad = list.find((d) => d.code === "invalid-link-source")!;
    expect(bad).toMatchObject({ file: "dir.toml", line: 13, column: 8 });
    expect(bad.message).toContain('from = "rx.c" is no entry');
    expect(bad.message).toContain('"rx.a" (frames arriving on the first port)');
    const upper = errors(directions.replace('from = "rx.b"', 'from = "RX.B"')).find(
      (d) => d.code === "invalid-link-source",
    )!;
    expect(upper.message).toContain('did you mean "rx.b"?');
  });

  it("refuses two rx.b links, an rx.b straight to an exit, and rx.a as a target", () => {
    const twice = `${directions}[[links]]\nfrom = "rx.b"\nto = ["firewall"]\n`;
    expect(errors(twice)).toEqual([
      expect.objectContaining({
        code: "multiple-rx-links",
        line: 25,
        message: expect.stringContaining("from rx.b (first at line 13)"),
      }),
    ]);
    const exit = directions.replace('to = ["ttl"]', 'to = ["tx"]');
    expect(errors(exit)).toContainEqual(
      expect.objectContaining({
        code: "rx-target-exit",
        line: 14,
        message: expect.stringContaining('rx.b links straight to the exit "tx"'),
      }),
    );
    const back = directions.replace('to = ["tx", "drop"]', 'to = ["rx.a", "drop"]');
    expect(errors(back)).toContainEqual(
      expect.objectContaining({ code: "invalid-target", message: '"rx.a": a link cannot lead back to rx.a' }),
    );
  });
});
