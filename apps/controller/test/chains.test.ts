import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import { AssignedChain } from "@galette/protocol";
import { DEFAULT_DEVICE_LIMITS } from "@galette/vocabulary";
import { afterAll, describe, expect, it } from "vitest";
import { graphFitsDevice, nfNameOf, planChainForPush, STATIC_DEVICE_CAPABILITIES } from "../src/chains";
import type { Repository } from "../src/storage/repository";
import { openSqliteRepository } from "../src/storage/sqlite";

const root = join(import.meta.dirname, "../../..");
const dir = mkdtempSync(join(tmpdir(), "galette-chains-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const at = (line: number) => ({ file: "lib.rs", line, column: 1 });
function iface(actions: string[], maps: Array<[string, number, number]>): NfInterface {
  return {
    file: "lib.rs",
    actions: actions.map((name, i) => ({ name, location: at(i + 1) })),
    maps: maps.map(([name, keySize, valueSize], i) => ({ name, keySize, valueSize, location: at(i + 20) })),
  };
}
function publish(repo: Repository, name: string, nfInterface: NfInterface) {
  // SQLite runs the insert before the first await: the NF is there when this returns
  void repo.insertNf({
    name,
    sourceDigest: "0".repeat(64),
    build: "stored-unbuilt",
    buildMessage: null,
    buildHash: `hash-of-${name}`,
    interface: nfInterface,
    artifacts: [],
    publishedAt: "t",
  });
}

describe("chain push planning", () => {
  const repo = openSqliteRepository(dir);
  publish(repo, "access-control", iface(["Allowed", "Denied"], [["allow_list", 8, 1]]));
  publish(repo, "weak-classifier", iface(["Normal", "Suspicious", "Malicious"], [["flow_state", 16, 8]]));
  publish(repo, "dpi", iface(["Clean", "Matched"], [["flow_state", 16, 8]]));

  it("turns the paper's security chain into a UUID graph with upcalls, shared maps and sizes", async () => {
    const toml = readFileSync(join(root, "chains/security.toml"), "utf8");
    const planned = await planChainForPush(repo, toml, "chains/security.toml");
    const graph = AssignedChain.parse({
      ...planned.graph,
      nfs: planned.graph.nfs.map((nf) => ({ ...nf, artifacts: {} })),
      name: planned.name,
      version: 1,
      mapEntries: [],
    });
    const uuid = (instance: string) => graph.nfs.find((n) => n.instance === instance)!.uuid;
    expect(graph.nfs.map((n) => [n.instance, n.xdp, n.userland])).toEqual([
      ["access-control", true, false],
      ["weak-classifier", true, false],
      ["dpi", false, true],
    ]);
    // the planner's decision per Action variant, with the variant names and UUID targets
    expect(graph.entry).toEqual({ kind: "tailcall", target: uuid("access-control") });
    expect(graph.nfs.map((n) => n.actions)).toEqual([
      [
        { variant: "Allowed", kind: "tailcall", target: uuid("weak-classifier") },
        { variant: "Denied", kind: "drop" },
      ],
      [
        { variant: "Normal", kind: "tx" },
        { variant: "Suspicious", kind: "upcall", target: uuid("dpi") },
        { variant: "Malicious", kind: "drop" },
      ],
      [
        { variant: "Clean", kind: "tx" },
        { variant: "Matched", kind: "drop" },
      ],
    ]);
    const flowState = graph.maps.find((m) => m.name === "flow_state")!;
    expect(flowState).toEqual({
      id: "flow_state",
      name: "flow_state",
      type: "hash_map",
      keySize: 16,
      valueSize: 8,
      maxEntries: 65535,
      shared: true,
    });
    const allow = graph.maps.find((m) => m.name === "allow_list")!;
    expect(allow.owner).toBe(uuid("access-control"));
    expect(allow.type).toBe("lpm_trie");
  });

  it("checks a graph against a device's capabilities, naming each limit (the per-device seam)", async () => {
    const toml = readFileSync(join(root, "chains/security.toml"), "utf8");
    const { graph } = await planChainForPush(repo, toml, "chains/security.toml");
    expect(graphFitsDevice(graph, STATIC_DEVICE_CAPABILITIES)).toEqual([]);
    const tiny = {
      limits: {
        ...DEFAULT_DEVICE_LIMITS,
        instanceSlots: 3,
        actionsPerNf: 2,
        entriesPerMap: 1000,
        mapMemoryBytes: 1024 * 1024,
        userlandNfs: 0,
      },
    };
    const problems = graphFitsDevice(graph, tiny);
    expect(problems).toEqual([
      "3 NF instances; the device holds at most 2 (3-instance limit, one slot kept for rx)",
      'NF "weak-classifier" has 3 Action variants; at most 2',
      'map "flow_state" has 65535 entries; at most 1000 per map',
      'map "access-control.allow_list" has 65535 entries; at most 1000 per map',
      expect.stringMatching(/^the maps need about \d+(\.\d)? MiB; the device gives a chain's maps 1 MiB$/),
      "1 userland NFs; the device runs at most 0",
    ]);
  });

  it("keeps NF UUIDs across pushes while the NF build is unchanged", async () => {
    const toml = readFileSync(join(root, "chains/security.toml"), "utf8");
    const a = await planChainForPush(repo, toml, "security.toml");
    const b = await planChainForPush(
      repo,
      toml.replace('to = ["tx", "drop"]', 'to = ["pass", "drop"]'),
      "security.toml",
    );
    expect(b.graph.nfs.map((n) => n.uuid)).toEqual(a.graph.nfs.map((n) => n.uuid));
  });

  it("names a map whose key size the NF source does not give", async () => {
    const sizeless = openSqliteRepository(mkdtempSync(join(dir, "x-")));
    publish(sizeless, "macswap", {
      file: "lib.rs",
      actions: [{ name: "Tx", location: at(1) }],
      maps: [{ name: "counters", valueSize: 8, location: at(2) }],
    });
    const toml = readFileSync(join(root, "chains/macswap.toml"), "utf8");
    await expect(planChainForPush(sizeless, toml, "macswap.toml")).rejects.toThrow(
      /map "macswap.counters" of chain macswap: the NF source does not give a computable key size/,
    );
    await sizeless.close();
  });

  it("creates an owned map the chain omits from the NF's #[map(type, size)]; refuses one the attribute leaves open", async () => {
    const limiter: NfInterface = {
      ...iface(["Pass", "Drop"], []),
      maps: [
        {
          name: "buckets",
          keySize: 4,
          valueSize: 16,
          mapType: "lru_hash",
          maxEntries: 4096,
          location: at(20),
        },
      ],
    };
    publish(repo, "rate-limiter", limiter);
    const toml = [
      "[functions.rate-limiter]",
      "[[links]]",
      'from = "rx"',
      'to = ["rate-limiter"]',
      "[[links]]",
      'from = "rate-limiter"',
      'to = ["tx", "drop"]',
    ].join("\n");
    const planned = await planChainForPush(repo, toml, "limiter.toml");
    expect(planned.graph.maps).toEqual([
      expect.objectContaining({
        name: "buckets",
        type: "lru_hash",
        maxEntries: 4096,
        keySize: 4,
        valueSize: 16,
      }),
    ]);
    publish(repo, "rate-limiter", { ...limiter, maps: [{ ...limiter.maps[0]!, maxEntries: undefined }] });
    await expect(planChainForPush(repo, toml, "limiter.toml")).rejects.toThrow(/does not match its NFs/);
  });

  it("finds the published NF by the crate directory's name", async () => {
    expect(nfNameOf("nf-examples/access-control")).toBe("access-control");
    expect(nfNameOf("../crates/dpi/")).toBe("dpi");
  });
});
