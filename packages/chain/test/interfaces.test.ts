import { describe, expect, it } from "vitest";
import {
  checkNfInterfaces,
  formatDiagnostic,
  type NfInterface,
  parseChain,
  planChain,
  withAttributeMaps,
} from "../src/index";

const SRC = `[functions.access-control.maps]
allow_list = { type = "lpm-trie", size = 1024 }
[functions.weak-classifier]
maps = { flow_state = "_" }
[functions.dpi]
maps = { flow_state = "_" }
disable_xdp = true
[maps.flow_state]
type = "hash_map"
size = 1024
[[links]]
from = "rx"
to = ["access-control"]
[[links]]
from = "access-control"
to = ["weak-classifier", "drop"]
[[links]]
from = "weak-classifier"
to = ["tx", "!dpi", "drop"]
[[links]]
from = "dpi"
to = ["tx", "drop"]
`;

const chain = parseChain(SRC, "chains/security.toml").chain!;
const at = (file: string, line: number) => ({ file, line, column: 5 });

function iface(
  crate: string,
  actions: string[],
  maps: Array<{ name: string; keySize?: number; valueSize?: number; mapType?: string; maxEntries?: number }>,
): NfInterface {
  const file = `nf-examples/${crate}/src/lib.rs`;
  return {
    file,
    actions: actions.map((name, i) => ({ name, location: at(file, 20 + i) })),
    maps: maps.map((m, i) => ({ ...m, location: at(file, 10 + i) })),
  };
}

const good = () =>
  new Map<string, NfInterface>([
    [
      "access-control",
      iface("access-control", ["Allowed", "Denied"], [{ name: "allow_list", keySize: 8, valueSize: 4 }]),
    ],
    [
      "weak-classifier",
      iface(
        "weak-classifier",
        ["Normal", "Suspicious", "Malicious"],
        [{ name: "flow_state", keySize: 16, valueSize: 8 }],
      ),
    ],
    ["dpi", iface("dpi", ["Clean", "Matched"], [{ name: "flow_state", keySize: 16, valueSize: 8 }])],
  ]);

describe("checkNfInterfaces", () => {
  it("accepts matching NFs", () => {
    expect(checkNfInterfaces(chain, good())).toEqual([]);
  });

  it("skips instances without an interface", () => {
    expect(checkNfInterfaces(chain, new Map())).toEqual([]);
  });

  it("names both counts and the variants when `to` and Action disagree", () => {
    const ifaces = good();
    ifaces.set(
      "weak-classifier",
      iface("weak-classifier", ["Normal", "Malicious"], [{ name: "flow_state" }]),
    );
    const [d, ...rest] = checkNfInterfaces(chain, ifaces);
    expect(rest).toEqual([]);
    expect(d).toMatchObject({ code: "action-count", file: "chains/security.toml", line: 19, column: 6 });
    expect(d!.message).toBe(
      '"weak-classifier" has 3 link target(s) (tx, !dpi, drop) but its Action enum in nf-examples/weak-classifier/src/lib.rs has 2 variant(s) (Normal, Malicious)',
    );
    expect(formatDiagnostic(d!)).toContain(
      "nf-examples/weak-classifier/src/lib.rs:20:5: note: Action variants",
    );
  });

  it("finds missing, extra and misnamed maps with a suggestion", () => {
    const ifaces = good();
    ifaces.set(
      "access-control",
      iface("access-control", ["Allowed", "Denied"], [{ name: "allow_lst" }, { name: "stats" }]),
    );
    const ds = checkNfInterfaces(chain, ifaces);
    expect(ds.map((d) => `${d.code}@${d.line}:${d.column}`).sort()).toEqual(
      ["map-extra@2:1", "map-missing@1:12", "map-missing@1:12"].sort(),
    );
    const extra = ds.find((d) => d.code === "map-extra")!;
    expect(extra.message).toContain(
      'declares map "allow_list" but nf-examples/access-control/src/lib.rs has no #[maps] field',
    );
    expect(extra.message).toContain('did you mean "allow_lst"?');
    const missing = ds.find((d) => d.message.includes('"stats"'))!;
    expect(missing.message).toContain(
      'does not declare map "stats" that nf-examples/access-control/src/lib.rs:11:5 uses',
    );
  });

  it("lets the chain omit an owned map that #[map(type, size)] describes; the plan creates it from the attribute", () => {
    const ifaces = good();
    const limiter = { name: "buckets", keySize: 4, valueSize: 16, mapType: "lru-hash", maxEntries: 4096 };
    ifaces.set(
      "access-control",
      iface(
        "access-control",
        ["Allowed", "Denied"],
        [{ name: "allow_list", keySize: 8, valueSize: 4 }, limiter],
      ),
    );
    expect(checkNfInterfaces(chain, ifaces)).toEqual([]);
    const completed = withAttributeMaps(chain, ifaces);
    expect(chain.maps.some((m) => m.name === "buckets")).toBe(false); // the input is left alone
    expect(completed.maps.find((m) => m.name === "buckets")).toMatchObject({
      id: "access-control.buckets",
      type: "lru_hash",
      maxEntries: 4096,
      shared: false,
      owner: "access-control",
    });
    expect(checkNfInterfaces(completed, ifaces)).toEqual([]);
    const plan = planChain(completed);
    const nf = plan.nfs.find((n) => n.name === "access-control")!;
    expect(nf.maps.map((m) => [m.name, m.type, m.maxEntries])).toEqual([
      ["allow_list", "lpm_trie", 1024],
      ["buckets", "lru_hash", 4096],
    ]);
  });

  it("still requires a map the attribute does not fully describe, with a hint from the attribute", () => {
    for (const [field, hint] of [
      [{ name: "stats", mapType: "lru_hash" }, 'stats = { type = "lru_hash", size = 1024 }'],
      [{ name: "stats", maxEntries: 4096 }, 'stats = { type = "hash_map", size = 4096 }'],
      [{ name: "stats", mapType: "no-such-type", maxEntries: 8 }, 'stats = { type = "hash_map", size = 8 }'],
      [{ name: "stats", mapType: "lru_hash", maxEntries: 0 }, 'stats = { type = "lru_hash", size = 1024 }'],
    ] as const) {
      const ifaces = good();
      ifaces.set(
        "access-control",
        iface("access-control", ["Allowed", "Denied"], [{ name: "allow_list" }, field]),
      );
      const ds = checkNfInterfaces(withAttributeMaps(chain, ifaces), ifaces);
      expect(
        ds.map((d) => d.code),
        JSON.stringify(field),
      ).toEqual(["map-missing"]);
      expect(ds[0]!.hint).toContain(hint);
    }
  });

  it("binds TOML map names to Rust fields with - equal to _", () => {
    const src = SRC.replace("allow_list = {", "allow-list = {");
    const c = parseChain(src, "x.toml").chain!;
    expect(checkNfInterfaces(c, good())).toEqual([]);
  });

  it("enforces kernel key sizes per map type", () => {
    const ifaces = good();
    ifaces.set(
      "access-control",
      iface("access-control", ["Allowed", "Denied"], [{ name: "allow_list", keySize: 4, valueSize: 4 }]),
    );
    const [d] = checkNfInterfaces(chain, ifaces);
    expect(d).toMatchObject({ code: "map-key-value-size", line: 2, column: 1 });
    expect(d!.message).toContain(
      "lpm-trie keys are a u32 prefix length plus 1..256 data bytes (5..260 bytes), the key type has 4",
    );
    expect(d!.message).toContain("nf-examples/access-control/src/lib.rs:10:5");

    const arr = parseChain(
      `[functions.m.maps]\ncounters = { type = "array", size = 1 }\n[[links]]\nfrom = "rx"\nto = ["m"]\n[[links]]\nfrom = "m"\nto = ["tx"]\n`,
      "m.toml",
    ).chain!;
    const bad = checkNfInterfaces(
      arr,
      new Map([["m", iface("macswap", ["Tx"], [{ name: "counters", keySize: 8, valueSize: 0 }])]]),
    );
    expect(bad.map((x) => x.message)).toEqual([
      expect.stringContaining("the value type has size 0"),
      expect.stringContaining("array keys must be 4 bytes (u32), the key type has 8"),
    ]);
  });

  it("requires NFs sharing a map to agree on key and value sizes", () => {
    const ifaces = good();
    ifaces.set(
      "dpi",
      iface("dpi", ["Clean", "Matched"], [{ name: "flow_state", keySize: 13, valueSize: 8 }]),
    );
    const [d, ...rest] = checkNfInterfaces(chain, ifaces);
    expect(rest).toEqual([]);
    expect(d).toMatchObject({ code: "map-size-conflict", line: 8, column: 7 });
    expect(d!.message).toBe(
      'shared map "flow_state": "weak-classifier" uses a 16-byte key (nf-examples/weak-classifier/src/lib.rs:10:5) but "dpi" uses 13 bytes (nf-examples/dpi/src/lib.rs:10:5)',
    );
  });

  it("compares a map type given in the source with the chain's", () => {
    const ifaces = good();
    ifaces.set(
      "weak-classifier",
      iface(
        "weak-classifier",
        ["Normal", "Suspicious", "Malicious"],
        [{ name: "flow_state", mapType: "lru-hash" }],
      ),
    );
    const [d] = checkNfInterfaces(chain, ifaces);
    expect(d).toMatchObject({ code: "map-type-mismatch", line: 4, column: 10 });
    expect(d!.message).toContain(
      "is hash_map in the chain but lru-hash in nf-examples/weak-classifier/src/lib.rs:10:5",
    );
  });
});
