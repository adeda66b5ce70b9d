import { readFileSync } from "node:fs";
import path, { join } from "node:path";
import { type ChainPlan, parseChain, planChain } from "@galette/chain";
import { INSTALLATION_PINS_ROOT, ownsScope } from "@galette/testkit";
import { describe, expect, it } from "vitest";
import {
  devicePins,
  InstallSpecError,
  interfaceScope,
  type NfArtifacts,
  planInstallation,
  RX_INSTANCE,
} from "../src/spec";

const repo = join(__dirname, "..", "..", "..");

function plan(text: string, file = "inline.toml", hashes?: Record<string, string>): ChainPlan {
  const parsed = parseChain(text, file);
  if (!parsed.chain) throw new Error(parsed.diagnostics.map((d) => d.message).join("\n"));
  return planChain(parsed.chain, hashes ? { buildHashes: new Map(Object.entries(hashes)) } : {});
}
const chainFile = (name: string, hashes?: Record<string, string>) =>
  plan(readFileSync(join(repo, "chains", name), "utf8"), `chains/${name}`, hashes);

const art = (hash: string, variants: string[], maps: NfArtifacts["maps"] = []): NfArtifacts => ({
  hash,
  variants,
  maps,
  bpfObject: `/cache/${hash}.bpf.o`,
  library: `/cache/${hash}.x86_64-unknown-linux-gnu.so`,
});
const flow = { name: "flow_state", type: "hash_map", maxEntries: 65535, keySize: 16, valueSize: 8 };
const securityArtifacts = (wcHash = "wc1", acHash = "ac1") =>
  new Map<string, NfArtifacts>([
    [
      "access-control",
      art(
        acHash,
        ["Allowed", "Denied"],
        [{ name: "allow_list", type: "lpm-trie", maxEntries: 65535, keySize: 8, valueSize: 1 }],
      ),
    ],
    ["weak-classifier", art(wcHash, ["Normal", "Suspicious", "Malicious"], [flow])],
    ["dpi", art("dpi1", ["Clean", "Matched"], [flow])],
  ]);
const target = { iface: "veth0", netns: "dut" };

describe("planInstallation: fresh install", () => {
  it("macswap: one XDP instance, entry in the root slot, owned map pinned under the instance uuid", () => {
    const p = chainFile("macswap.toml");
    const r = planInstallation(
      p,
      new Map([
        [
          "macswap",
          art("m1", ["Tx"], [{ name: "counters", type: "array", maxEntries: 1, keySize: 4, valueSize: 8 }]),
        ],
      ]),
      target,
    );
    const [nf] = r.spec.instances;
    expect(r.spec.entry).toBe(0);
    expect(nf).toMatchObject({
      id: 0,
      name: "macswap",
      xdp: true,
      userland: false,
      actions: [{ kind: "tx", arg: 0 }],
    });
    expect(nf!.library).toBeUndefined();
    expect(nf!.pins).toEqual({
      prog: "/sys/fs/bpf/galette/veth0@dut/nf/0/prog",
      actions: "/sys/fs/bpf/galette/veth0@dut/tables/0",
      counts: "/sys/fs/bpf/galette/veth0@dut/nf/0/counts",
    });
    expect(r.spec.maps).toEqual([
      expect.objectContaining({
        key: "macswap.counters.array-1-4x8",
        type: "array",
        flags: 1024, // BPF_F_MMAPABLE: the native build reads it without bpf()
        pin: "/sys/fs/bpf/galette/veth0@dut/maps/macswap~counters~array-1-4x8",
      }),
    ]);
    expect(r).toMatchObject({ created: [0], reused: [], retired: [] });
  });

  it("an array a live installation created without BPF_F_MMAPABLE is kept as it is", () => {
    const arts = new Map([
      [
        "macswap",
        art("m1", ["Tx"], [{ name: "counters", type: "array", maxEntries: 1, keySize: 4, valueSize: 8 }]),
      ],
    ]);
    const fresh = planInstallation(chainFile("macswap.toml"), arts, target).spec;
    const live = { ...fresh, maps: fresh.maps.map((m) => ({ ...m, flags: 0 })) };
    const r = planInstallation(chainFile("macswap.toml"), arts, target, { live });
    expect(r.spec.maps[0]!.flags).toBe(0);
    expect(r.maps).toMatchObject({ created: [], retired: [] });
  });

  it("security: tail call, upcall and exits resolve to instance ids; shared map once; lpm gets NO_PREALLOC", () => {
    const r = planInstallation(chainFile("security.toml"), securityArtifacts(), target);
    const by = Object.fromEntries(r.spec.instances.map((i) => [i.name, i]));
    const ac = by["access-control"]!;
    const wc = by["weak-classifier"]!;
    const dpi = by.dpi!;
    expect(r.spec.entry).toBe(ac.id);
    expect(ac.actions.map((a) => [a.kind, a.arg])).toEqual([
      ["tailcall", wc.id],
      ["drop", 0],
    ]);
    expect(wc.actions.map((a) => [a.kind, a.arg])).toEqual([
      ["tx", 0],
      ["upcall", dpi.id],
      ["drop", 0],
    ]);
    expect(dpi).toMatchObject({ xdp: false, userland: true });
    expect(dpi.bpfObject).toBeUndefined();
    expect(dpi.library).toContain(".so");
    expect(new Set(r.spec.instances.map((i) => i.id)).size).toBe(3);
    const shared = r.spec.maps.filter((m) => m.shared);
    expect(shared.map((m) => m.key)).toEqual(["shared.flow_state"]);
    expect(wc.maps).toEqual(["shared.flow_state"]);
    expect(dpi.maps).toEqual(["shared.flow_state"]);
    expect(r.spec.maps.find((m) => m.type === "lpm_trie")!.flags).toBe(1);
    expect(r.spec.rx).toBeUndefined();
  });

  it("long-line: 33 tail-called instances, then a userland tail reached by one upcall", () => {
    const p = chainFile("long-line.toml");
    const arts = new Map(p.nfs.map((nf) => [nf.name, art("ttl", ["Next", "Expired"])]));
    const r = planInstallation(p, arts, target);
    expect(r.spec.instances).toHaveLength(40);
    const by = Object.fromEntries(r.spec.instances.map((i) => [i.name, i]));
    expect(by["ttl-33"]!.actions[0]).toMatchObject({ kind: "upcall", arg: by["ttl-34"]!.id });
    expect(by["ttl-32"]!.actions[0]).toMatchObject({ kind: "tailcall", arg: by["ttl-33"]!.id });
    expect(by["ttl-35"]!.actions[0]).toMatchObject({ kind: "tailcall", arg: by["ttl-36"]!.id });
    expect(by["ttl-40"]!.actions[0]).toMatchObject({ kind: "tx" });
    expect(r.spec.instances.filter((i) => i.xdp)).toHaveLength(33);
  });

  it("a userland-only entry goes through the rx pseudo-instance", () => {
    const p = plan(`
[chain]
name = "u"
[functions.dpi]
disable_xdp = true
[[links]]
from = "rx"
to = ["dpi"]
[[links]]
from = "dpi"
to = ["tx", "drop"]
`);
    const r = planInstallation(p, new Map([["dpi", art("d", ["Clean", "Matched"])]]), target);
    expect(r.spec.entry).toBe(RX_INSTANCE);
    expect(r.spec.rx!.actions).toEqual([{ kind: "upcall", arg: r.spec.instances[0]!.id, target: "dpi" }]);
    expect(r.spec.instances[0]!.id).not.toBe(RX_INSTANCE);
  });
});

describe("planInstallation: bad input names the NF and the mismatch", () => {
  const p = () => chainFile("security.toml");
  it("missing artifacts", () => {
    const a = securityArtifacts();
    a.delete("dpi");
    expect(() => planInstallation(p(), a, target)).toThrow(
      /NF "dpi" \(nf-examples\/dpi\): no build artifacts/,
    );
  });
  it("XDP NF without an eBPF object", () => {
    const a = securityArtifacts();
    delete a.get("access-control")!.bpfObject;
    expect(() => planInstallation(p(), a, target)).toThrow(
      /"access-control".*runs in XDP but has no eBPF object/,
    );
  });
  it("userland NF without a native library", () => {
    const a = securityArtifacts();
    delete a.get("dpi")!.library;
    expect(() => planInstallation(p(), a, target)).toThrow(
      /"dpi".*runs in userland but has no native library/,
    );
  });
  it("variant count differs from the chain's links", () => {
    const a = securityArtifacts();
    a.get("dpi")!.variants = ["Clean"];
    expect(() => planInstallation(p(), a, target)).toThrow(
      /"dpi".*1 Action variants \(Clean\) but the chain links 2 \(tx, drop\)/,
    );
  });
  it("map fields differ from the chain's bindings", () => {
    const a = securityArtifacts();
    a.get("dpi")!.maps = [{ ...flow, name: "other" }];
    expect(() => planInstallation(p(), a, target)).toThrow(
      /"dpi".*declares maps \[other\] but the chain binds \[flow_state\]/,
    );
  });
  it("a build made for another map size", () => {
    const a = securityArtifacts();
    a.get("dpi")!.maps = [{ ...flow, maxEntries: 10 }];
    expect(() => planInstallation(p(), a, target)).toThrow(
      /map "flow_state" is hash_map\[10\] in the build but hash_map\[65535\]/,
    );
  });
  it("users of one shared map disagree on its key size", () => {
    const a = securityArtifacts();
    a.get("dpi")!.maps = [{ ...flow, keySize: 4 }];
    expect(() => planInstallation(p(), a, target)).toThrow(InstallSpecError);
    expect(() => planInstallation(p(), a, target)).toThrow(
      /shared map "flow_state": NF "dpi" needs hash_map\[65535\] with 4-byte keys/,
    );
  });
  it("a shared map that conflicts with the live one", () => {
    const live = planInstallation(p(), securityArtifacts(), target).spec;
    const a = securityArtifacts();
    for (const nf of ["weak-classifier", "dpi"]) a.get(nf)!.maps = [{ ...flow, valueSize: 16 }];
    expect(() => planInstallation(p(), a, target, { live })).toThrow(
      /map "shared.flow_state" conflicts with the live installation: the new chain needs hash_map\[65535\] with 16-byte keys.*8-byte values/s,
    );
  });
  it("interface and netns names are checked before they become paths", () => {
    expect(() => interfaceScope({ iface: "../x" })).toThrow(/invalid interface name/);
    expect(() => devicePins({ iface: "eth0", netns: "a/b" })).toThrow(/invalid network namespace/);
    expect(devicePins({ iface: "eth0" }).dir).toBe("/sys/fs/bpf/galette/eth0");
  });
  it("the test topologies' leftover check looks where installations are pinned, by the same names", () => {
    const own = { ifaces: ["p1x.7", "p2x"], namespaces: ["dut.1"] };
    const scope = (t: Parameters<typeof devicePins>[0]) => path.basename(devicePins(t).dir);
    expect(path.dirname(devicePins({ iface: "eth0" }).dir)).toBe(INSTALLATION_PINS_ROOT);
    for (const t of [{ iface: "p1x.7" }, { iface: "p2x", peer: "q" }, { iface: "eth0", netns: "dut.1" }])
      expect(ownsScope(own, scope(t)), JSON.stringify(t)).toBe(true);
    expect(ownsScope(own, scope({ iface: "eth0", netns: "dut" }))).toBe(false);
  });
});

describe("planInstallation: reconfiguration diff", () => {
  const secText = readFileSync(join(repo, "chains", "security.toml"), "utf8");
  const live = planInstallation(chainFile("security.toml"), securityArtifacts(), target).spec;
  const idOf = (spec: typeof live, name: string) => spec.instances.find((i) => i.name === name)!.id;

  it("the same plan reuses everything", () => {
    const r = planInstallation(chainFile("security.toml"), securityArtifacts(), target, { live });
    expect(r.created).toEqual([]);
    expect(r.retired).toEqual([]);
    expect(r.reused).toEqual(live.instances.map((i) => i.id));
    expect(r.spec.entry).toBe(live.entry);
    expect(r.maps).toMatchObject({ created: [], retired: [] });
  });

  it("re-pointing weak-classifier rebuilds it and its XDP ancestor in fresh slots, keeps dpi and maps", () => {
    const repointed = secText.replace('to = ["tx", "!dpi", "drop"]', 'to = ["!dpi", "tx", "drop"]');
    const r = planInstallation(plan(repointed, "chains/security.toml"), securityArtifacts(), target, {
      live,
    });
    expect(r.reused).toEqual([idOf(live, "dpi")]);
    expect(r.retired.sort()).toEqual([idOf(live, "access-control"), idOf(live, "weak-classifier")].sort());
    const liveIds = new Set(live.instances.map((i) => i.id));
    for (const id of r.created) expect(liveIds.has(id)).toBe(false);
    expect(r.spec.entry).toBe(idOf(r.spec, "access-control"));
    expect(r.spec.entry).not.toBe(live.entry);
    // owned and shared maps survive: state (allow-list, flow state) is kept
    expect(r.maps.created).toEqual([]);
    expect(r.maps.retired).toEqual([]);
  });

  it("a new build of a leaf NF changes its UUID and rebuilds the XDP path to it", () => {
    const hashes = { "access-control": "ac1", "weak-classifier": "wc1", dpi: "dpi1" };
    const base = planInstallation(chainFile("security.toml", hashes), securityArtifacts(), target).spec;
    const r = planInstallation(
      chainFile("security.toml", { ...hashes, dpi: "dpi2" }),
      new Map([...securityArtifacts(), ["dpi", art("dpi2", ["Clean", "Matched"], [flow])]]),
      target,
      { live: base },
    );
    expect(r.reused).toEqual([]);
    expect(r.created).toHaveLength(3);
    expect(r.retired).toHaveLength(3);
    expect(r.maps.reused).toContain("shared.flow_state");
  });

  it("replacing the entry NF's build keeps its children", () => {
    const hashes = { "access-control": "ac1", "weak-classifier": "wc1", dpi: "dpi1" };
    const base = planInstallation(chainFile("security.toml", hashes), securityArtifacts(), target).spec;
    const r = planInstallation(
      chainFile("security.toml", { ...hashes, "access-control": "ac2" }),
      securityArtifacts("wc1", "ac2"),
      target,
      { live: base },
    );
    expect(r.created).toHaveLength(1);
    expect(r.reused).toHaveLength(2);
    const newAc = r.spec.instances.find((i) => i.name === "access-control")!;
    expect(r.spec.entry).toBe(newAc.id);
    // a new build of the same instance keeps its owned allow-list (same shape)
    expect(r.maps.created).toEqual([]);
    expect(r.maps.retired).toEqual([]);
    expect(newAc.maps).toEqual(["access-control.allow_list.lpm_trie-65535-8x1"]);
  });

  it("an owned map whose shape changes is a new map; the old one retires", () => {
    const a = securityArtifacts();
    a.get("access-control")!.maps[0]!.valueSize = 4;
    const r = planInstallation(chainFile("security.toml"), a, target, { live });
    expect(r.maps.created).toEqual(["access-control.allow_list.lpm_trie-65535-8x4"]);
    expect(r.maps.retired).toEqual(["access-control.allow_list.lpm_trie-65535-8x1"]);
    expect(r.created).toHaveLength(1);
    expect(r.retired).toEqual([idOf(live, "access-control")]);
  });

  it("runs out of slots with a clear error", () => {
    const p = chainFile("long-line.toml");
    const arts = new Map(p.nfs.map((nf) => [nf.name, art("ttl", ["Next", "Expired"])]));
    const fake = {
      instances: Array.from({ length: 230 }, (_, id) => ({ ...live.instances[0]!, id, uuid: `x${id}` })),
      maps: [],
      entry: 0,
    };
    expect(() => planInstallation(p, arts, target, { live: fake })).toThrow(/no free NF slot for "ttl-\d+"/);
  });
});
