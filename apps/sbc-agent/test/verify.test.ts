/**
 * The agent's release checks on hand-made assignments: every way to alter what an
 * operator signed (and the encodings of the same attack) must be refused with a reason.
 * The end-to-end proof on a real controller, agent and kernel is trust.e2e.test.ts.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  type AssignedChain,
  type AssignmentTrust,
  type ChainVersionDocument,
  canonicalJson,
  documentDigest,
  encodeReleasePublicKey,
  type MapSpec,
  type NfReleaseManifest,
  releaseDigest,
  SIGNATURE_DOMAINS,
  signDocument,
  verifiedBy,
} from "@galette/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { TrustError, TrustStore, verifyAssignment } from "../src/verify";

const newKey = () => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    pem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    pub: encodeReleasePublicKey(publicKey),
  };
};
const k1 = newKey();
const stranger = newKey();
const clone = <T>(v: T): T => structuredClone(v);
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const UUID = "11111111-2222-4333-8444-555555555555";
const d = (c: string) => c.repeat(64);
const manifest: NfReleaseManifest = {
  nf: "macswap",
  sourceDigest: d("a"),
  buildHash: "b".repeat(64),
  interface: { actions: ["Swapped"], maps: [] },
  artifacts: [
    { kind: "bpf-object", digest: d("c"), size: 100 },
    { kind: "native-lib", triple: "x86_64-unknown-linux-gnu", digest: d("e"), size: 200 },
  ],
};
const chain: AssignedChain = {
  name: "macswap",
  version: 2,
  entry: { kind: "tailcall", target: UUID },
  nfs: [
    {
      uuid: UUID,
      instance: "macswap",
      nf: "macswap",
      buildHash: "b".repeat(64),
      xdp: true,
      userland: false,
      actions: [{ variant: "Swapped", kind: "tx" }],
      maps: [],
      artifacts: { bpfObject: { digest: d("c"), size: 100 } },
    },
  ],
  maps: [],
  mapEntries: [],
};
const doc: ChainVersionDocument = {
  chain: "macswap",
  version: 2,
  entry: UUID,
  nfs: [
    {
      uuid: UUID,
      instance: "macswap",
      nf: "macswap",
      release: releaseDigest(manifest),
      actions: ["Swapped"],
      next: ["tx"],
      maps: [],
    },
  ],
  maps: [],
};
const trustBy = (key: { pem: string }, c = doc, m = manifest): AssignmentTrust => ({
  chain: { document: c, signatures: [signDocument(SIGNATURE_DOMAINS.chainVersion, c, key.pem)] },
  releases: [{ manifest: m, signatures: [signDocument(SIGNATURE_DOMAINS.nfRelease, m, key.pem)] }],
  keySet: null,
  mapEntries: [],
});
const refused = (
  c: AssignedChain,
  t: AssignmentTrust | undefined,
  why: RegExp,
  keys: readonly string[] = [k1.pub],
) => expect(() => verifyAssignment(c, t, keys)).toThrow(why);

describe("canonical JSON and signatures", () => {
  it("serialises with sorted keys and no whitespace, whatever the insertion order", () => {
    expect(canonicalJson({ b: 1, a: [{ d: "x", c: null }], e: undefined })).toBe(
      '{"a":[{"c":null,"d":"x"}],"b":1}',
    );
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
    expect(() => canonicalJson({ x: Number.NaN })).toThrow(/no JSON form/);
    expect(() => canonicalJson({ x: 1n })).toThrow(/no JSON form/);
  });
  it("a signature over one document type is not valid as another (domain separation)", () => {
    const sig = signDocument(SIGNATURE_DOMAINS.nfRelease, manifest, k1.pem);
    expect(verifiedBy(SIGNATURE_DOMAINS.nfRelease, manifest, [sig], [k1.pub])).toBeDefined();
    expect(verifiedBy(SIGNATURE_DOMAINS.chainVersion, manifest, [sig], [k1.pub])).toBeUndefined();
    expect(documentDigest(SIGNATURE_DOMAINS.nfRelease, manifest)).not.toBe(
      documentDigest(SIGNATURE_DOMAINS.keySet, manifest),
    );
    // a key id claimed by another key's signature does not verify
    const forged = { ...signDocument(SIGNATURE_DOMAINS.nfRelease, manifest, stranger.pem), keyId: sig.keyId };
    expect(verifiedBy(SIGNATURE_DOMAINS.nfRelease, manifest, [forged], [k1.pub])).toBeUndefined();
  });
});

describe("verifyAssignment", () => {
  it("accepts exactly what was signed, with any placement", () => {
    expect(verifyAssignment(chain, trustBy(k1), [k1.pub]).document).toEqual(doc);
    // the same graph placed in userland (upcall, native library from the same release)
    const userland = clone(chain);
    userland.entry.kind = "upcall";
    userland.nfs[0]!.xdp = false;
    userland.nfs[0]!.userland = true;
    userland.nfs[0]!.artifacts = { native: { digest: d("e"), size: 200 } };
    expect(() => verifyAssignment(userland, trustBy(k1), [k1.pub])).not.toThrow();
  });
  it("refuses without pinned keys, without signatures, or signed by another key", () => {
    refused(chain, trustBy(k1), /no release key is pinned/, []);
    refused(chain, undefined, /v2 is not signed/);
    refused(chain, { ...trustBy(k1), chain: null }, /v2 is not signed/);
    refused(chain, trustBy(stranger), /is not signed by a pinned release key/);
  });
  it("refuses an NF build without a release signed by a pinned key", () => {
    const t = trustBy(k1);
    t.releases = [];
    refused(chain, t, /build [0-9a-f]{12} is not covered by a release signed by a pinned key/);
    const byStranger = trustBy(k1);
    byStranger.releases = [
      { manifest, signatures: [signDocument(SIGNATURE_DOMAINS.nfRelease, manifest, stranger.pem)] },
    ];
    refused(chain, byStranger, /is not covered by a release signed by a pinned key/);
  });
  it("refuses an artifact the signed manifest does not list (swapped digest, other kind)", () => {
    const swapped = clone(chain);
    swapped.nfs[0]!.artifacts.bpfObject = { digest: d("f"), size: 100 };
    refused(swapped, trustBy(k1), new RegExp(`artifact ${d("f")} \\(bpf-object .*not covered`));
    // the native library's digest offered as the eBPF object
    const kind = clone(chain);
    kind.nfs[0]!.artifacts.bpfObject = { digest: d("e"), size: 200 };
    refused(kind, trustBy(k1), /not covered by a release signed by a pinned key/);
  });
  it("refuses a graph, target, entry, map or version that differs from the signed one", () => {
    const target = clone(chain);
    target.nfs[0]!.actions = [{ variant: "Swapped", kind: "drop" }];
    refused(target, trustBy(k1), /Action variant Swapped leads to drop, the signed chain says tx/);
    const renamed = clone(chain);
    renamed.nfs[0]!.actions = [{ variant: "Dropped", kind: "tx" }];
    refused(renamed, trustBy(k1), /Action variants are not the signed ones/);
    const entry = clone(chain);
    entry.entry.target = "11111111-2222-4333-8444-666666666666";
    refused(entry, trustBy(k1), /rx leads to/);
    const extraMap = clone(chain);
    extraMap.maps = [
      { id: "m", name: "m", type: "hash_map", keySize: 4, valueSize: 4, maxEntries: 1, shared: true },
    ];
    refused(extraMap, trustBy(k1), /map specs are not the signed ones/);
    const build = clone(chain);
    build.nfs[0]!.buildHash = "9".repeat(64);
    refused(build, trustBy(k1), /runs build 9999999999999999, the signed chain names macswap build/);
    const version = clone(chain);
    version.version = 3;
    refused(version, trustBy(k1), /the signature covers chain "macswap" v2, not this version/);
    const extraNf = clone(chain);
    extraNf.nfs.push({
      ...clone(chain.nfs[0]!),
      uuid: "11111111-2222-4333-8444-777777777777",
      instance: "x",
    });
    refused(extraNf, trustBy(k1), /NF instances are not the signed ones; not signed: x/);
  });
  it("refuses unsigned or altered map entries", () => {
    const withEntries = clone(chain);
    withEntries.mapEntries = [{ map: "m", entries: [{ key: "01", value: "02" }] }];
    refused(withEntries, trustBy(k1), /entries of map "m" are not signed/);
    const t = trustBy(k1);
    const entries = { chain: "macswap", map: "m", seq: 1, entries: [{ key: "01", value: "03" }] };
    t.mapEntries = [
      { document: entries, signatures: [signDocument(SIGNATURE_DOMAINS.mapEntries, entries, k1.pem)] },
    ];
    refused(withEntries, t, /entries of map "m" are not the signed ones/);
  });
});

/**
 * A chain whose NF has an owned map (allow_list) and a shared one (flow_state), as the
 * planner makes it; two instances of the same build, so one can reach for the other's map.
 */
describe("verifyAssignment: maps against the NF's signed release", () => {
  const U1 = "11111111-2222-4333-8444-000000000001";
  const U2 = "11111111-2222-4333-8444-000000000002";
  const acl: NfReleaseManifest = {
    nf: "access-control",
    sourceDigest: d("a"),
    buildHash: "c".repeat(64),
    interface: {
      actions: ["Allowed", "Denied"],
      maps: [
        { name: "allow_list", keySize: 8, valueSize: 4, mapType: "lpm-trie" },
        { name: "flow_state", keySize: 16, valueSize: 24, mapType: null },
      ],
    },
    artifacts: [{ kind: "bpf-object", digest: d("c"), size: 100 }],
  };
  const owned = (uuid: string, instance: string) => ({
    id: `${instance}.allow_list`,
    name: "allow_list",
    type: "lpm_trie" as const,
    keySize: 8,
    valueSize: 4,
    maxEntries: 1024,
    shared: false,
    owner: uuid,
  });
  const shared = {
    id: "flow_state",
    name: "flow_state",
    type: "hash_map" as const,
    keySize: 16,
    valueSize: 24,
    maxEntries: 4096,
    shared: true,
  };
  const signedNf = (uuid: string, instance: string) => ({
    uuid,
    instance,
    nf: "access-control",
    release: releaseDigest(acl),
    actions: ["Allowed", "Denied"],
    next: [uuid === U1 ? U2 : "tx", "drop"],
    maps: [
      { field: "allow_list", map: `${instance}.allow_list` },
      { field: "flow_state", map: "flow_state" },
    ],
  });
  const doc2: ChainVersionDocument = {
    chain: "security",
    version: 1,
    entry: U1,
    nfs: [signedNf(U1, "ac"), signedNf(U2, "ac2")],
    maps: [owned(U1, "ac"), owned(U2, "ac2"), shared],
  };
  /** What a controller sends for `doc`: exactly the signed graph and maps, placed in XDP. */
  const assigned = (doc: ChainVersionDocument): AssignedChain => ({
    name: doc.chain,
    version: doc.version,
    entry: { kind: "tailcall", target: doc.entry },
    nfs: doc.nfs.map((n) => ({
      uuid: n.uuid,
      instance: n.instance,
      nf: n.nf,
      buildHash: acl.buildHash,
      xdp: true,
      userland: false,
      actions: n.actions.map((variant, i) => {
        const next = n.next[i]!;
        return next === "tx" || next === "drop"
          ? { variant, kind: next }
          : { variant, kind: "tailcall" as const, target: next };
      }),
      maps: clone(n.maps),
      artifacts: { bpfObject: { digest: d("c"), size: 100 } },
    })),
    maps: clone(doc.maps),
    mapEntries: [],
  });
  /** `doc` changed by `edit` and signed with the pinned key: the signature is valid. */
  const signed = (edit: (doc: ChainVersionDocument) => void) => {
    const doc = clone(doc2);
    edit(doc);
    return { chain: assigned(doc), trust: trustBy(k1, doc, acl) };
  };
  const refusedSigned = (edit: (doc: ChainVersionDocument) => void, why: RegExp) => {
    const { chain: c, trust } = signed(edit);
    refused(c, trust, why);
  };
  const map = (doc: ChainVersionDocument, id: string) => doc.maps.find((m) => m.id === id)!;

  it("accepts the chain as planned", () => {
    expect(verifyAssignment(assigned(doc2), trustBy(k1, doc2, acl), [k1.pub]).document).toEqual(doc2);
    // a release that does not state a field's type or sizes leaves them to the chain
    const vague = clone(acl);
    vague.interface.maps[0] = { name: "allow_list", keySize: null, valueSize: null, mapType: null };
    const doc = clone(doc2);
    for (const n of doc.nfs) n.release = releaseDigest(vague);
    expect(() => verifyAssignment(assigned(doc), trustBy(k1, doc, vague), [k1.pub])).not.toThrow();
  });

  it("refuses a map omitted, renamed, retyped or resized after signing (the signed document unchanged)", () => {
    const t = trustBy(k1, doc2, acl);
    const omittedSpec = assigned(doc2);
    omittedSpec.maps = omittedSpec.maps.filter((m) => m.id !== "ac.allow_list");
    refused(omittedSpec, t, /map specs are not the signed ones/);
    const omittedBinding = assigned(doc2);
    omittedBinding.nfs[0]!.maps = omittedBinding.nfs[0]!.maps.slice(1);
    refused(omittedBinding, t, /NF "ac" \(access-control\): its map bindings are not the signed ones/);
    const renamed = assigned(doc2);
    renamed.maps[0]!.id = "ac.allow";
    renamed.nfs[0]!.maps[0]!.map = "ac.allow";
    refused(renamed, t, /map bindings are not the signed ones/);
    const renamedSpec = assigned(doc2);
    renamedSpec.maps[0]!.name = "allow";
    refused(renamedSpec, t, /map specs are not the signed ones/);
    for (const change of [
      (m: MapSpec) => {
        m.type = "hash_map";
      },
      (m: MapSpec) => {
        m.keySize = 4;
      },
      (m: MapSpec) => {
        m.valueSize = 64;
      },
      (m: MapSpec) => {
        m.maxEntries = 1;
      },
      (m: MapSpec) => {
        m.shared = true;
      },
      (m: MapSpec) => {
        m.owner = U2;
      },
    ]) {
      const c = assigned(doc2);
      change(c.maps[0]!);
      refused(c, t, /map specs are not the signed ones/);
    }
    // another NF instance's owned map bound in place of its own
    const crossed = assigned(doc2);
    crossed.nfs[1]!.maps[0]!.map = "ac.allow_list";
    refused(crossed, t, /NF "ac2" \(access-control\): its map bindings are not the signed ones/);
  });

  it("refuses a signed chain that does not bind every map its NF's signed release declares", () => {
    refusedSigned((doc) => {
      doc.nfs[0]!.maps = doc.nfs[0]!.maps.filter((b) => b.field !== "allow_list");
      doc.maps = doc.maps.filter((m) => m.id !== "ac.allow_list");
    }, /NF "ac" \(access-control\): the signed chain binds map fields \[flow_state\], its signed release declares \[allow_list, flow_state\]; not bound: allow_list/);
    // renamed: the field the build uses is not bound, another name is
    refusedSigned((doc) => {
      doc.nfs[0]!.maps[0]!.field = "allow_lists";
    }, /not bound: allow_list; not in the release: allow_lists/);
    refusedSigned((doc) => {
      doc.nfs[0]!.maps.push({ field: "flow_state", map: "flow_state" });
    }, /bound twice: flow_state/);
  });

  it("refuses a signed chain whose signature does not define a map it binds", () => {
    refusedSigned((doc) => {
      doc.maps = doc.maps.filter((m) => m.id !== "flow_state");
    }, /NF "ac" \(access-control\): map field "flow_state" is bound to map "flow_state", which the signed chain does not define/);
    refusedSigned((doc) => {
      doc.maps = doc.maps.filter((m) => m.id !== "ac2.allow_list");
    }, /NF "ac2" .*map field "allow_list" is bound to map "ac2.allow_list", which the signed chain does not define/);
  });

  it("refuses a signed map of another type or key/value size than the release was built for", () => {
    refusedSigned((doc) => {
      map(doc, "ac.allow_list").type = "hash_map";
    }, /map "ac.allow_list" is hash_map in the signed chain, lpm-trie in the signed release/);
    refusedSigned((doc) => {
      map(doc, "ac.allow_list").keySize = 4;
    }, /map "ac.allow_list" has 4-byte keys in the signed chain, the signed release was built for 8-byte keys/);
    // a shared map is checked against every NF that binds it
    refusedSigned((doc) => {
      map(doc, "flow_state").valueSize = 8;
    }, /NF "ac" .*map "flow_state" has 8-byte values in the signed chain, the signed release was built for 24-byte values/);
  });

  it("refuses an owned map bound by another instance, or whose owner does not bind it", () => {
    // ac2 uses ac's allow-list (and ac2's own stays unbound)
    refusedSigned((doc) => {
      doc.nfs[1]!.maps[0]!.map = "ac.allow_list";
    }, /owned map "ac2.allow_list" is not bound by the NF instance that owns it/);
    // …with ac2's own spec gone as well
    refusedSigned((doc) => {
      doc.nfs[1]!.maps[0]!.map = "ac.allow_list";
      doc.maps = doc.maps.filter((m) => m.id !== "ac2.allow_list");
    }, /NF "ac2" .*map field "allow_list" is bound to map "ac.allow_list", owned by another NF instance/);
    refusedSigned((doc) => {
      map(doc, "ac.allow_list").owner = "11111111-2222-4333-8444-000000000009";
    }, /owned map "ac.allow_list" is not bound by the NF instance that owns it/);
    refusedSigned((doc) => {
      delete map(doc, "ac.allow_list").owner;
    }, /owned map "ac.allow_list" is not bound by the NF instance that owns it/);
    // an owned map under another field's name
    refusedSigned((doc) => {
      map(doc, "ac.allow_list").name = "flow_state";
    }, /map field "allow_list" is bound to map "ac.allow_list", owned by this instance's field "flow_state"/);
  });
});

describe("TrustStore", () => {
  const store = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "galette-trust-"));
    dirs.push(dir);
    return { dir, s: new TrustStore(dir, [k1.pub]) };
  };
  const installed = (s: TrustStore, version: number) => s.recordInstalled({ ...chain, version }, undefined);

  it("versions move forward; only the one that ran immediately before comes back; it survives restarts", () => {
    const { dir, s } = store();
    installed(s, 1);
    installed(s, 3);
    expect(() => s.checkVersion("macswap", 3)).not.toThrow();
    expect(() => s.checkVersion("macswap", 4)).not.toThrow();
    expect(() => s.checkVersion("macswap", 1)).not.toThrow(); // ran right before v3
    expect(() => s.checkVersion("macswap", 2)).toThrow(/v2 is older than v3/);
    expect(() => s.checkVersion("other", 1)).not.toThrow();
    const again = new TrustStore(dir, [k1.pub]);
    expect(() => again.checkVersion("macswap", 2)).toThrow(TrustError);
  });
  it("adopts a newer key set only when a trusted key signed it", () => {
    const { dir, s } = store();
    const k2 = newKey();
    const forged = { seq: 1, keys: [stranger.pub] };
    expect(() =>
      s.adoptKeySet({
        document: forged,
        signatures: [signDocument(SIGNATURE_DOMAINS.keySet, forged, stranger.pem)],
      }),
    ).toThrow(/not signed by a key this device trusts now/);
    expect(s.keys).toEqual([k1.pub]);
    const both = { seq: 1, keys: [k1.pub, k2.pub] };
    expect(
      s.adoptKeySet({ document: both, signatures: [signDocument(SIGNATURE_DOMAINS.keySet, both, k1.pem)] }),
    ).toMatchObject({ seq: 1 });
    const onlyK2 = { seq: 2, keys: [k2.pub] };
    s.adoptKeySet({ document: onlyK2, signatures: [signDocument(SIGNATURE_DOMAINS.keySet, onlyK2, k2.pem)] });
    expect(new TrustStore(dir, [k1.pub]).keys).toEqual([k2.pub]);
    // an older set (replayed) is ignored, even though it is validly signed
    expect(
      s.adoptKeySet({ document: both, signatures: [signDocument(SIGNATURE_DOMAINS.keySet, both, k1.pem)] }),
    ).toBeUndefined();
    expect(s.keys).toEqual([k2.pub]);
    // k1 no longer counts
    refused(chain, trustBy(k1), /is not signed by a pinned release key/, s.keys);
  });
});
