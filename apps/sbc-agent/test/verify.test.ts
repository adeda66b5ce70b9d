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
