import { describe, expect, it } from "vitest";
import { type ChainPlan, instanceUuid, KERNEL_MAX_TAIL_CALLS, parseChain, planChain } from "../src/index";

function plan(src: string, maxTailCalls?: number): ChainPlan {
  const { chain, diagnostics } = parseChain(src, "p.toml");
  if (!chain) throw new Error(diagnostics.map((d) => d.message).join("\n"));
  return planChain(chain, { maxTailCalls, warnings: diagnostics });
}

/**
 * A chain's TOML: `[functions.NAME]` and its extra lines per NF, in order, then one
 * `[[links]]` per entry of `links` (from → to).
 */
function chainToml(functions: Record<string, string>, links: Record<string, string[]>): string {
  return (
    Object.entries(functions)
      .map(([name, extra]) => `[functions.${name}]\n${extra}`)
      .join("") +
    Object.entries(links)
      .map(([from, to]) => `[[links]]\nfrom = "${from}"\nto = ${JSON.stringify(to)}\n`)
      .join("")
  );
}

/** a line of n NFs, each `to = [next, drop]`, last → tx */
function line(n: number): string {
  const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  return chainToml(Object.fromEntries(names.map((x) => [x, 'path = "nf-examples/decrement-ttl"\n'])), {
    rx: ["n1"],
    ...Object.fromEntries(names.map((x, i) => [x, [names[i + 1] ?? "tx", "drop"]])),
  });
}

const place = (p: ChainPlan, nf: string) => {
  const n = p.nfs.find((x) => x.name === nf)!;
  return { xdp: n.xdp, userland: n.userland };
};
const edge = (p: ChainPlan, from: string, to: string) =>
  p.edges.filter((e) => e.from === from && e.to === to);

describe("planChain", () => {
  it("uses the kernel's 33 tail calls", () => {
    expect(KERNEL_MAX_TAIL_CALLS).toBe(33);
  });

  it("keeps an NF at the depth limit in XDP and moves the next one to userland, with a warning", () => {
    const p = plan(line(KERNEL_MAX_TAIL_CALLS + 1));
    expect(place(p, "n33")).toEqual({ xdp: true, userland: false });
    expect(p.nfs.find((n) => n.name === "n33")!.xdpDepth).toBe(33);
    expect(place(p, "n34")).toEqual({ xdp: false, userland: true });
    expect(edge(p, "n32", "n33")).toEqual([expect.objectContaining({ kind: "tailcall" })]);
    expect(edge(p, "n33", "n34")).toEqual([
      expect.objectContaining({ kind: "upcall", fromPlacement: "xdp", toPlacement: "userland", action: 0 }),
    ]);
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]).toMatchObject({ code: "tail-call-limit", severity: "warning" });
    expect(p.warnings[0]!.message).toContain('"n34" runs in userland');
    expect(p.warnings[0]!.message).toContain("would be tail call 34");
    expect(p.warnings[0]!.message).toContain("allows 33 tail calls per packet");
  });

  it("fits exactly 33 NFs in XDP without warnings", () => {
    const p = plan(line(33));
    expect(p.nfs.every((n) => n.xdp && !n.userland)).toBe(true);
    expect(p.warnings).toEqual([]);
  });

  it("honours a smaller budget and keeps everything after the limit in userland", () => {
    const p = plan(line(6), 3);
    expect(p.nfs.map((n) => (n.xdp ? "x" : "u")).join("")).toBe("xxxuuu");
    expect(edge(p, "n4", "n5")[0]!.kind).toBe("call");
    expect(edge(p, "n6", "tx")[0]).toMatchObject({ kind: "exit", fromPlacement: "userland" });
  });

  it("classifies entry, tailcall, upcall, call and exit edges", () => {
    const p = plan(
      chainToml(
        { a: "", b: "", c: "disable_xdp = true\n", d: "" },
        { rx: ["a"], a: ["b", "drop"], b: ["c", "tx"], c: ["d"], d: ["pass"] },
      ),
    );
    expect(p.edges).toEqual([
      { from: "rx", to: "a", kind: "entry", action: 0, fromPlacement: "xdp", toPlacement: "xdp" },
      { from: "a", to: "b", kind: "tailcall", action: 0, fromPlacement: "xdp", toPlacement: "xdp" },
      { from: "a", to: "drop", kind: "exit", action: 1, fromPlacement: "xdp" },
      { from: "b", to: "c", kind: "upcall", action: 0, fromPlacement: "xdp", toPlacement: "userland" },
      { from: "b", to: "tx", kind: "exit", action: 1, fromPlacement: "xdp" },
      { from: "c", to: "d", kind: "call", action: 0, fromPlacement: "userland", toPlacement: "userland" },
      { from: "d", to: "pass", kind: "exit", action: 0, fromPlacement: "userland" },
    ]);
    expect(place(p, "c")).toEqual({ xdp: false, userland: true });
    expect(place(p, "d")).toEqual({ xdp: false, userland: true });
    // the decided action tables: what the wire format and the installer carry unchanged
    expect(p.entry).toEqual({ kind: "tailcall", target: "a" });
    expect(Object.fromEntries(p.nfs.map((n) => [n.name, n.actions]))).toEqual({
      a: [{ kind: "tailcall", target: "b" }, { kind: "drop" }],
      b: [{ kind: "upcall", target: "c" }, { kind: "tx" }],
      c: [{ kind: "tailcall", target: "d" }],
      d: [{ kind: "pass" }],
    });
  });

  it("places an NF reached both in XDP and through an upcall in both", () => {
    const p = plan(
      chainToml({ split: "", shared: "" }, { rx: ["split"], split: ["shared", "!shared"], shared: ["tx"] }),
    );
    expect(place(p, "shared")).toEqual({ xdp: true, userland: true });
    expect(edge(p, "shared", "tx").map((e) => e.fromPlacement)).toEqual(["xdp", "userland"]);
    expect(p.nfs.find((n) => n.name === "split")!.actions).toEqual([
      { kind: "tailcall", target: "shared" },
      { kind: "upcall", target: "shared" },
    ]);
  });

  it("uses the longest XDP path to an NF for its depth", () => {
    // d is reachable at depth 2 (a → d) and depth 3 (a → b → d); with 2 tail calls d must go to userland
    const p = plan(chainToml({ a: "", b: "", d: "" }, { rx: ["a"], a: ["d", "b"], b: ["d"], d: ["tx"] }), 2);
    expect(place(p, "d")).toEqual({ xdp: true, userland: true });
    expect(edge(p, "a", "d")[0]!.kind).toBe("tailcall");
    expect(edge(p, "b", "d")[0]!.kind).toBe("upcall");
  });

  it("puts a disable_xdp or upcalled entry in userland", () => {
    const src = (entry: string, extra: string) => chainToml({ e: extra }, { rx: [entry], e: ["tx"] });
    for (const p of [plan(src("e", "disable_xdp = true\n")), plan(src("!e", ""))]) {
      expect(place(p, "e")).toEqual({ xdp: false, userland: true });
      expect(p.edges[0]).toMatchObject({ from: "rx", kind: "entry", toPlacement: "userland" });
      expect(p.entry).toEqual({ kind: "upcall", target: "e" });
    }
  });

  it("gives each instance its UUID, with the build hash when known, and lists maps", () => {
    const src = chainToml(
      { "m.maps": 'counters = { type = "array", size = 1 }\n' },
      { rx: ["m"], m: ["tx"] },
    );
    const { chain } = parseChain(src, "chains/mac.toml");
    const p = planChain(chain!, { buildHashes: new Map([["m", "h1"]]) });
    expect(p.nfs[0]!.uuid).toBe(instanceUuid("mac", "m", "h1"));
    expect(p.nfs[0]!.maps).toEqual([
      { name: "counters", map: "m.counters", type: "array", maxEntries: 1, shared: false },
    ]);
    expect(p.maps).toEqual([
      {
        id: "m.counters",
        name: "counters",
        type: "array",
        maxEntries: 1,
        shared: false,
        owner: "m",
        users: ["m"],
      },
    ]);
  });

  it("leaves unreachable NFs unplaced and carries the validation warning", () => {
    const p = plan(chainToml({ a: "", b: "" }, { rx: ["a"], a: ["tx"], b: ["tx"] }));
    expect(place(p, "b")).toEqual({ xdp: false, userland: false });
    expect(p.warnings.map((w) => w.code)).toEqual(["unreachable"]);
  });

  it("rejects a nonsensical tail-call budget", () => {
    const { chain } = parseChain(line(1), "x.toml");
    expect(() => planChain(chain!, { maxTailCalls: 0 })).toThrow(/maxTailCalls/);
  });
});
