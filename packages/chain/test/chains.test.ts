import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ChainPlan, loadChainFile, planChain } from "../src/index";

const chainsDir = join(import.meta.dirname, "../../../chains");

async function planOf(file: string): Promise<ChainPlan> {
  const { chain, diagnostics } = await loadChainFile(join(chainsDir, file));
  expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return planChain(chain!, { warnings: diagnostics });
}

describe("chains/ acceptance", () => {
  it("every example chain validates without errors or warnings", async () => {
    const files = readdirSync(chainsDir).filter((f) => f.endsWith(".toml"));
    expect(files).toEqual(expect.arrayContaining(["security.toml", "macswap.toml", "long-line.toml"]));
    for (const f of files) {
      const { chain, diagnostics } = await loadChainFile(join(chainsDir, f));
      expect(diagnostics, f).toEqual([]);
      expect(chain, f).toBeDefined();
    }
  });

  it("security.toml: classifiers in XDP, dpi in userland only, upcall edge", async () => {
    const p = await planOf("security.toml");
    const nf = (n: string) => p.nfs.find((x) => x.name === n)!;
    expect(nf("access-control")).toMatchObject({ xdp: true, userland: false });
    expect(nf("weak-classifier")).toMatchObject({ xdp: true, userland: false });
    expect(nf("dpi")).toMatchObject({ xdp: false, userland: true });
    expect(p.edges).toContainEqual(
      expect.objectContaining({ from: "weak-classifier", to: "dpi", kind: "upcall" }),
    );
    expect(p.maps.find((m) => m.id === "flow_state")).toMatchObject({
      shared: true,
      users: ["weak-classifier", "dpi"],
    });
    expect(nf("access-control").maps).toEqual([
      {
        name: "allow_list",
        map: "access-control.allow_list",
        type: "lpm_trie",
        maxEntries: 65535,
        shared: false,
      },
    ]);
  });

  it("macswap.toml: one XDP NF with one action to tx", async () => {
    const p = await planOf("macswap.toml");
    expect(p.nfs).toHaveLength(1);
    expect(p.nfs[0]).toMatchObject({ name: "macswap", xdp: true, userland: false, next: ["tx"] });
  });

  it("long-line.toml: 40 NFs, the first 33 in XDP, the rest in userland, and the warning says why", async () => {
    const p = await planOf("long-line.toml");
    expect(p.nfs).toHaveLength(40);
    p.nfs.forEach((n, i) => {
      expect({ name: n.name, xdp: n.xdp, userland: n.userland }).toEqual({
        name: n.name,
        xdp: i < 33,
        userland: i >= 33,
      });
    });
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]!.message).toMatch(
      /"ttl-34" runs in userland: reaching it from "ttl-33" would be tail call 34/,
    );
    expect(p.edges).toContainEqual(expect.objectContaining({ from: "ttl-33", to: "ttl-34", kind: "upcall" }));
  });
});
