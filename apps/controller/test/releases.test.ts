/**
 * Release signing on a real controller (TLS, SQLite): the controller stores and relays
 * signatures, refuses ones that do not match what it holds (and then stores nothing), and
 * a pushed version keeps the NF builds it was pushed with.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type NfReleaseResponse,
  releaseDigest,
  SIGNATURE_DOMAINS,
  type SignedDeviceAssignment,
  signDocument,
} from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeDeviceBundle } from "../src/bundle";
import {
  initReleaseKey,
  loadReleaseKey,
  readReleasePublicKey,
  signAndPushChain,
  signAndSetMapEntries,
} from "../src/commands/release";
import { OperatorClient } from "../src/operator-client";
import {
  ACL_RS,
  ACL_TOML,
  fakeBuilder,
  type Harness,
  MACSWAP_RS,
  MACSWAP_TOML,
  startHarness,
} from "./helpers";

describe("release signing through the controller", () => {
  let h: Harness;
  let scratch: string;
  let client: OperatorClient;
  let key: ReturnType<typeof loadReleaseKey>;
  let keyFile: string;
  let other: ReturnType<typeof loadReleaseKey>;

  const release = (name: string) => client.getNfRelease(name);
  const sign = async (name: string, k = key) => {
    const r = await release(name);
    return client.signNfRelease(name, {
      digest: r.digest,
      signature: signDocument(SIGNATURE_DOMAINS.nfRelease, r.manifest, k.pem),
      publicKey: k.publicKey,
    });
  };
  const assignment = async (device: string) => {
    const res = await h.call("/v1/device/assignment?arch=x86_64", { client: h.asDevice(device) });
    expect(res.status).toBe(200);
    return res.json<SignedDeviceAssignment>();
  };

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder });
    scratch = mkdtempSync(join(tmpdir(), "galette-releases-"));
    client = new OperatorClient({ url: h.controller.url, token: h.token, caFile: join(h.dir, "ca.crt") });
    keyFile = initReleaseKey(join(scratch, "k1")).keyFile;
    key = loadReleaseKey(keyFile);
    other = loadReleaseKey(initReleaseKey(join(scratch, "k2")).keyFile);
    await h.enrol("pi-1");
    await h.publishNf("macswap", MACSWAP_RS);
    await h.publishNf("acl", ACL_RS);
  });
  afterAll(async () => {
    await h?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("serves a build's manifest under its release digest and stores a matching signature", async () => {
    const r = await release("macswap");
    expect(r.digest).toBe(releaseDigest(r.manifest));
    expect(r.manifest).toMatchObject({ nf: "macswap", interface: { actions: ["Tx"] } });
    expect(r.manifest.artifacts.map((a) => a.kind)).toEqual(["bpf-object", "native-lib", "native-lib"]);
    expect(r.signatures).toEqual([]);
    const signed = await sign("macswap");
    expect(signed.signatures).toEqual([expect.objectContaining({ keyId: key.keyId })]);
    // by a prefix of the release or source digest too
    expect((await client.getNfRelease("macswap", r.digest.slice(0, 12))).digest).toBe(r.digest);
    expect((await client.getNfRelease("macswap", r.manifest.sourceDigest.slice(0, 8))).digest).toBe(r.digest);
    await expect(client.getNfRelease("macswap", "0123abcd")).rejects.toThrow(
      /has no build 0123abcd \(HTTP 404\)/,
    );
  });

  it("refuses signatures that do not match, and stores nothing", async () => {
    const r = await release("acl");
    const wrongDoc = signDocument(SIGNATURE_DOMAINS.nfRelease, { ...r.manifest, nf: "other" }, key.pem);
    await expect(
      client.signNfRelease("acl", { digest: r.digest, signature: wrongDoc, publicKey: key.publicKey }),
    ).rejects.toThrow(/does not match the manifest of acl build .* \(HTTP 409\)/);
    // a chain-version signature over the same bytes is not a release signature (domains)
    const otherDomain = signDocument(SIGNATURE_DOMAINS.chainVersion, r.manifest, key.pem);
    await expect(
      client.signNfRelease("acl", { digest: r.digest, signature: otherDomain, publicKey: key.publicKey }),
    ).rejects.toThrow(/HTTP 409/);
    const good = signDocument(SIGNATURE_DOMAINS.nfRelease, r.manifest, key.pem);
    await expect(
      client.signNfRelease("acl", { digest: r.digest, signature: good, publicKey: other.publicKey }),
    ).rejects.toThrow(/is not the id of publicKey \([0-9a-f]{64}\) \(HTTP 400\)/);
    await expect(
      client.signNfRelease("acl", { digest: "0".repeat(64), signature: good, publicKey: key.publicKey }),
    ).rejects.toThrow(/acl has no build whose release digest is 0{64} \(HTTP 404\)/);
    const bad = await h.call("/v1/nfs/acl/release", {
      method: "POST",
      token: h.token,
      body: { digest: "x" },
    });
    expect(bad.status).toBe(400);
    expect((await release("acl")).signatures).toEqual([]);
    await expect(client.getNfRelease("nope")).rejects.toThrow(/NF nope is not published \(HTTP 404\)/);
  });

  it("a signed push carries the signed document; a stale signature stores no version", async () => {
    const pushed = await signAndPushChain(client, { file: "macswap.toml", toml: MACSWAP_TOML }, keyFile);
    expect(pushed.version).toBe(1);
    await client.assignChain({ chain: "macswap", devices: ["pi-1"] });
    const a = await assignment("pi-1");
    expect(a.trust?.chain?.document).toMatchObject({ chain: "macswap", version: 1 });
    expect(a.trust?.chain?.signatures).toEqual([expect.objectContaining({ keyId: key.keyId })]);
    expect(a.trust?.releases.map((r) => r.manifest.nf)).toEqual(["macswap"]);
    // signed for version 2, but another push takes version 2 first
    const plan = await client.planChain({ file: "macswap.toml", toml: MACSWAP_TOML });
    expect(plan.document.version).toBe(2);
    await client.pushChain({ file: "macswap.toml", toml: MACSWAP_TOML });
    const stale = signDocument(SIGNATURE_DOMAINS.chainVersion, plan.document, key.pem);
    await expect(
      client.pushChain({
        file: "macswap.toml",
        toml: MACSWAP_TOML,
        signed: { signature: stale, publicKey: key.publicKey },
      }),
    ).rejects.toThrow(/does not match chain macswap version 3 .* \(HTTP 409\)/);
    expect((await client.listChains()).chains.find((c) => c.name === "macswap")?.latestVersion).toBe(2);
    // the unsigned v2 goes out without a signature: devices refuse it
    expect((await assignment("pi-1")).trust?.chain?.signatures).toEqual([]);
  });

  it("republishing an NF does not change what a pushed version runs", async () => {
    await client.assignChain({ chain: "macswap", version: 1, devices: ["pi-1"] });
    const before = await assignment("pi-1");
    await h.publishNf("macswap", `${MACSWAP_RS}\n// a new build\n`);
    const after = await assignment("pi-1");
    expect(after.chain?.nfs[0]?.artifacts).toEqual(before.chain?.nfs[0]?.artifacts);
    expect(after.chain?.nfs[0]?.buildHash).toBe(before.chain?.nfs[0]?.buildHash);
    const latest: NfReleaseResponse = await release("macswap");
    expect(after.trust?.releases[0]?.manifest.buildHash).not.toBe(latest.manifest.buildHash);
  });

  it("signed map entries: exact, newer, and a signed map takes no unsigned change", async () => {
    expect((await signAndPushChain(client, { file: "acl.toml", toml: ACL_TOML }, keyFile)).version).toBe(1);
    const map = "acl.allow_list";
    const entry = { key: "180000000a000000", value: "01" };
    await signAndSetMapEntries(client, "acl", map, [entry], [], keyFile);
    const signed = (await client.getSignedMapEntries("acl", map)).signed!;
    expect(signed.document).toMatchObject({ seq: 1, entries: [entry] });
    await expect(client.setMapEntries("acl", map, { set: [{ ...entry, value: "02" }] })).rejects.toThrow(
      /entries of acl\/acl.allow_list are signed .* \(HTTP 409\)/,
    );
    // a signature over entries other than the result of the change
    const lie = { chain: "acl", map, seq: 2, entries: [entry] };
    await expect(
      client.setMapEntries("acl", map, {
        set: [{ ...entry, value: "03" }],
        signed: {
          document: lie,
          signature: signDocument(SIGNATURE_DOMAINS.mapEntries, lie, key.pem),
          publicKey: key.publicKey,
        },
      }),
    ).rejects.toThrow(/are not what the map holds after this change .* \(HTTP 409\)/);
    // a replay of an older sequence number
    const old = { chain: "acl", map, seq: 1, entries: [] };
    await expect(
      client.setMapEntries("acl", map, {
        delete: [entry.key],
        signed: {
          document: old,
          signature: signDocument(SIGNATURE_DOMAINS.mapEntries, old, key.pem),
          publicKey: key.publicKey,
        },
      }),
    ).rejects.toThrow(/signed set #1 is not newer than #1: sign again \(HTTP 409\)/);
    expect((await client.getMapEntries("acl", map)).entries).toEqual([entry]);
    await signAndSetMapEntries(client, "acl", map, [], [entry.key], keyFile);
    expect((await client.getSignedMapEntries("acl", map)).signed?.document).toMatchObject({
      seq: 2,
      entries: [],
    });
  });

  it("key sets: the first is signed by one of its keys, later ones by a key of the current set, seq grows", async () => {
    const first = { seq: 1, keys: [key.publicKey] };
    const bySelfOther = signDocument(SIGNATURE_DOMAINS.keySet, first, other.pem);
    await expect(client.putReleaseKeySet({ document: first, signatures: [bySelfOther] })).rejects.toThrow(
      /is not signed by a key of itself \(HTTP 400\)/,
    );
    await client.putReleaseKeySet({
      document: first,
      signatures: [signDocument(SIGNATURE_DOMAINS.keySet, first, key.pem)],
    });
    const second = { seq: 2, keys: [other.publicKey] };
    await expect(
      client.putReleaseKeySet({
        document: second,
        signatures: [signDocument(SIGNATURE_DOMAINS.keySet, second, other.pem)],
      }),
    ).rejects.toThrow(/is not signed by a key of key set #1 \(HTTP 400\)/);
    await expect(
      client.putReleaseKeySet({
        document: first,
        signatures: [signDocument(SIGNATURE_DOMAINS.keySet, first, key.pem)],
      }),
    ).rejects.toThrow(/not newer than the controller's #1 \(HTTP 409\)/);
    expect((await client.getReleaseKeySet()).keySet?.document.seq).toBe(1);
    expect((await assignment("pi-1")).trust?.keySet?.document).toEqual(first);
  });

  it("release key files: never overwritten, refused when others can read them, public keys checked", async () => {
    const dir = join(scratch, "k3");
    const { keyFile, pubFile } = initReleaseKey(dir);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(() => initReleaseKey(dir)).toThrow(/exists: refusing to overwrite a release key/);
    chmodSync(keyFile, 0o640);
    expect(() => loadReleaseKey(keyFile)).toThrow(/readable by others \(mode 640\): chmod 600/);
    chmodSync(keyFile, 0o600);
    expect(readReleasePublicKey(pubFile)).toBe(loadReleaseKey(keyFile).publicKey);
    const notAKey = join(scratch, "not-a-key.pub");
    writeFileSync(notAKey, "hello\n");
    expect(() => readReleasePublicKey(notAKey)).toThrow(/not-a-key\.pub: not an Ed25519 release public key/);
    expect(() => readReleasePublicKey(join(scratch, "missing.pub"))).toThrow(
      /cannot read the release public key/,
    );
    // the bundle pins the keys in agent.json and keeps a copy of each
    const bundle = join(scratch, "bundle");
    const files = writeDeviceBundle(bundle, await h.enrol("pi-keys"), [key.publicKey, other.publicKey]);
    const config = JSON.parse(readFileSync(join(bundle, "agent.json"), "utf8")) as { releaseKeys: string[] };
    expect(config.releaseKeys).toEqual([key.publicKey, other.publicKey]);
    expect(files.filter((f) => /release-[0-9a-f]{16}\.pub$/.test(f))).toHaveLength(2);
  });
});
