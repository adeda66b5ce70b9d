/**
 * Cached device assignments (assignment-cache.ts) on a real controller (TLS, SQLite): a
 * device never gets another device's fields, and every change that alters an assignment
 * (assignment, push, map entries, NF release, capabilities, revocation) is seen on the
 * next poll with a new ETag, never the cached one.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DeviceCapabilities,
  PROTOCOL_VERSION,
  SIGNATURE_DOMAINS,
  type SignedDeviceAssignment,
  signDocument,
} from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactCache } from "../src/artifact-cache";
import { AssignmentCache } from "../src/assignment-cache";
import { initReleaseKey, loadReleaseKey } from "../src/commands/release";
import { DataDir } from "../src/control";
import { OperatorClient } from "../src/operator-client";
import { ArtifactStore, sha256Hex } from "../src/storage/artifacts";
import {
  ACL_RS,
  ACL_TOML,
  fakeBuilder,
  type Harness,
  MACSWAP_TOML,
  PROBED_CAPABILITIES,
  startHarness,
  statusReport,
} from "./helpers";

/** What a device's probe reports. */
const capabilities = PROBED_CAPABILITIES;

describe("cached device assignments", () => {
  let h: Harness;
  let scratch: string;
  let client: OperatorClient;

  const poll = async (device: string, arch = "x86_64", etag?: string) => {
    const res = await h.call(`/v1/device/assignment?arch=${arch}`, {
      client: h.asDevice(device),
      ...(etag ? { headers: { "if-none-match": etag } } : {}),
    });
    return { status: res.status, etag: res.headers.etag as string, body: res.body, res };
  };
  const assignmentOf = async (device: string, arch = "x86_64") => {
    const r = await poll(device, arch);
    expect(r.status, r.body.toString()).toBe(200);
    return { etag: r.etag, assignment: r.res.json<SignedDeviceAssignment>() };
  };
  const assign = async (body: Record<string, unknown>) => {
    const res = await h.call("/v1/assignments", { method: "POST", token: h.token, body });
    expect(res.status, res.body.toString()).toBe(200);
  };

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder });
    scratch = mkdtempSync(join(tmpdir(), "galette-assignment-cache-"));
    client = new OperatorClient({ url: h.controller.url, token: h.token, caFile: join(h.dir, "ca.crt") });
    for (const name of ["a-1", "a-2", "a-3"]) await h.enrol(name, { role: "cache" });
    await h.publishExamples();
  });
  afterAll(async () => {
    await h?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("never lets one device's fields reach another sharing the chain part", async () => {
    await assign({ chain: "acl", devices: ["a-1", "a-2", "a-3"] });
    await assign({ chain: "acl", devices: ["a-1"], graceSeconds: 120 });
    const one = await assignmentOf("a-1");
    const two = await assignmentOf("a-2");
    const three = await assignmentOf("a-3", "aarch64");
    expect(one.assignment.device).toBe("a-1");
    expect(one.assignment.deadMan).toEqual({ graceSeconds: 120 });
    expect(two.assignment.device).toBe("a-2");
    expect(two.assignment.deadMan).toEqual({ graceSeconds: 60 });
    expect(three.assignment.device).toBe("a-3");
    expect(three.assignment.triple).toBe("aarch64-unknown-linux-gnu");
    expect(two.assignment.triple).toBe("x86_64-unknown-linux-gnu");
    // the same chain part, each device's own fields around it
    expect(one.assignment.chain).toEqual(two.assignment.chain);
    expect(new Set([one.etag, two.etag, three.etag]).size).toBe(3);
    // a device's ETag is no other's: presenting a-1's gets a-2 its own body
    expect((await poll("a-2", "x86_64", one.etag)).status).toBe(200);
    expect((await poll("a-1", "x86_64", one.etag)).status).toBe(304);
    // the body is what the device would get without a cache (same fields, same order)
    expect(Object.keys(two.assignment)).toEqual([
      "protocolVersion",
      "device",
      "triple",
      "deadMan",
      "trust",
      "chain",
    ]);
    expect(two.assignment.protocolVersion).toBe(PROTOCOL_VERSION);
  });

  it("serves the new chain after an assignment change and a push", async () => {
    await assign({ chain: "acl", devices: ["a-1"] });
    const before = await assignmentOf("a-1");
    await assign({ chain: "macswap", devices: ["a-1"] });
    const moved = await poll("a-1", "x86_64", before.etag);
    expect(moved.status).toBe(200);
    expect(moved.res.json<SignedDeviceAssignment>().chain!.name).toBe("macswap");
    // following the latest version: a push moves it without any assignment call
    const v1 = (await assignmentOf("a-1")).assignment.chain!.version;
    const { version } = await h.pushChain(MACSWAP_TOML);
    expect(version).toBe(v1 + 1);
    expect((await assignmentOf("a-1")).assignment.chain!.version).toBe(version);
  });

  it("puts new map entries in at once", async () => {
    await assign({ chain: "acl", devices: ["a-2"] });
    const before = await assignmentOf("a-2");
    const key = "200000000a000009";
    const set = await h.call("/v1/chains/acl/maps/acl.allow_list/entries", {
      method: "PUT",
      token: h.token,
      body: { set: [{ key, value: "01" }] },
    });
    expect(set.status, set.body.toString()).toBe(200);
    const after = await poll("a-2", "x86_64", before.etag);
    expect(after.status).toBe(200);
    expect(after.res.json<SignedDeviceAssignment>().chain!.mapEntries).toEqual([
      { map: "acl.allow_list", entries: [{ key, value: "01" }] },
    ]);
  });

  it("carries an NF release signature made after the device polled", async () => {
    await assign({ chain: "acl", devices: ["a-3"] });
    const before = await assignmentOf("a-3");
    const releaseOf = () => before.assignment.trust!.releases.find((r) => r.manifest.nf === "acl")!;
    expect(releaseOf().signatures).toEqual([]);
    const key = loadReleaseKey(initReleaseKey(join(scratch, "k1")).keyFile);
    const r = await client.getNfRelease("acl");
    await client.signNfRelease("acl", {
      digest: r.digest,
      signature: signDocument(SIGNATURE_DOMAINS.nfRelease, r.manifest, key.pem),
      publicKey: key.publicKey,
    });
    const after = await poll("a-3", "x86_64", before.etag);
    expect(after.status).toBe(200);
    const release = after.res
      .json<SignedDeviceAssignment>()
      .trust!.releases.find((x) => x.manifest.nf === "acl")!;
    expect(release.signatures).toEqual([expect.objectContaining({ keyId: key.keyId })]);
  });

  it("applies each device's own capability refusal to the shared chain part, afresh on every report", async () => {
    await h.enrol("a-5", { role: "cache" });
    await assign({ chain: "macswap", devices: ["a-5"] });
    const macswap = (await assignmentOf("a-5")).assignment.chain!.version;
    await assign({ chain: "acl", devices: ["a-5", "a-2"] });
    expect((await assignmentOf("a-2")).assignment.chain!.name).toBe("acl");
    const report = async (mapTypes: DeviceCapabilities["mapTypes"] | undefined) => {
      const res = await h.call("/v1/device/status", {
        method: "POST",
        client: h.asDevice("a-5"),
        body: statusReport({
          kernelVersion: "6.18.0",
          installed: { chain: "macswap", version: macswap },
          state: "converged",
          ...(mapTypes ? { capabilities: { ...capabilities, mapTypes } } : {}),
        }),
      });
      expect(res.status, res.body.toString()).toBe(204);
    };
    // refused (the fake builder's BPF objects are not ELF: nothing shows they fit): it keeps macswap
    await report(capabilities.mapTypes);
    expect((await assignmentOf("a-5")).assignment.chain!.name).toBe("macswap");
    const other = await assignmentOf("a-2");
    expect(other.assignment.chain!.name).toBe("acl");
    // reported without capabilities: nothing to refuse by
    await report(undefined);
    expect((await assignmentOf("a-5")).assignment.chain!.name).toBe("acl");
    expect((await assignmentOf("a-2")).etag).toBe(other.etag);
  });

  it("refuses a revoked device whose assignment is cached, and its artifacts", async () => {
    await h.enrol("a-4", { role: "cache" });
    await assign({ chain: "acl", devices: ["a-4", "a-2"] });
    const { assignment } = await assignmentOf("a-4");
    const digest = assignment.chain!.nfs[0]!.artifacts.bpfObject!.digest;
    expect((await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("a-4") })).status).toBe(200);
    const revoke = await h.call("/v1/devices/a-4/revoke", { method: "POST", token: h.token });
    expect(revoke.status, revoke.body.toString()).toBe(200);
    expect((await poll("a-4")).status).toBe(403);
    expect((await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("a-4") })).status).toBe(403);
    // the others sharing the chain part are served as before
    expect((await assignmentOf("a-2")).assignment.device).toBe("a-2");
  });

  it("serves artifacts as immutable with their digest as ETag; 304 only after the assignment check", async () => {
    await assign({ chain: "acl", devices: ["a-2"] });
    await assign({ chain: "macswap", devices: ["a-3"] });
    const digest = (await assignmentOf("a-2")).assignment.chain!.nfs[0]!.artifacts.bpfObject!.digest;
    const ok = await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("a-2") });
    expect(ok.status).toBe(200);
    expect(ok.headers.etag).toBe(`"${digest}"`);
    expect(ok.headers["cache-control"]).toMatch(/immutable/);
    const again = await h.call(`/v1/device/artifacts/${digest}`, {
      client: h.asDevice("a-2"),
      headers: { "if-none-match": `"${digest}"` },
    });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    // the second download comes from memory: the same bytes
    const cached = await h.call(`/v1/device/artifacts/${digest}`, { client: h.asDevice("a-2") });
    expect(cached.status).toBe(200);
    expect(sha256Hex(cached.body)).toBe(digest);
    expect(cached.headers["content-length"]).toBe(String(ok.body.length));
    // a device not running it learns nothing from a conditional request
    for (const tag of [`"${digest}"`, "*"]) {
      const other = await h.call(`/v1/device/artifacts/${digest}`, {
        client: h.asDevice("a-3"),
        headers: { "if-none-match": tag },
      });
      expect(other.status, tag).toBe(403);
    }
  });
});

describe("AssignmentCache on the repository", () => {
  it("builds a chain part once for every device, and again only after a published change or the TTL", async () => {
    const h = await startHarness({ nfBuilder: fakeBuilder });
    try {
      await h.enrol("b-1");
      await h.enrol("b-2");
      await h.publishNf("acl", ACL_RS);
      await h.pushChain(ACL_TOML);
      const res = await h.call("/v1/assignments", {
        method: "POST",
        token: h.token,
        body: { chain: "acl", devices: ["b-1", "b-2"] },
      });
      expect(res.status).toBe(200);
      // a second handle on the same SQLite database, beside the running controller
      const data = DataDir.open(h.dir);
      let now = 0;
      const cache = new AssignmentCache(data.repo, data.artifacts, { ttlMs: 1000, now: () => now });
      try {
        const device = async (name: string) => (await data.repo.getDevice(name))!;
        const one = await cache.assignment(await device("b-1"), "x86_64");
        const two = await cache.assignment(await device("b-2"), "x86_64");
        expect(cache.builds).toBe(1);
        expect(JSON.parse(one.body).device).toBe("b-1");
        expect(JSON.parse(two.body).device).toBe("b-2");
        // a change made without telling the cache is not seen until the TTL...
        await data.repo.setMapEntries(
          "acl",
          "acl.allow_list",
          [{ key: "200000000a000001", value: "01" }],
          [],
          "t",
        );
        expect((await cache.assignment(await device("b-1"), "x86_64")).etag).toBe(one.etag);
        now = 1000;
        expect((await cache.assignment(await device("b-1"), "x86_64")).etag).not.toBe(one.etag);
        expect(cache.builds).toBe(2);
        // ...a published one at once
        await data.repo.setMapEntries("acl", "acl.allow_list", [], ["200000000a000001"], "t");
        await data.repo.publishAssignmentChanged(["b-1"], "map");
        expect((await cache.assignment(await device("b-2"), "x86_64")).etag).toBe(two.etag);
        expect(cache.builds).toBe(3);
      } finally {
        cache.close();
        await data.close();
      }
    } finally {
      await h.cleanup();
    }
  });
});

describe("ArtifactCache", () => {
  it("serves small artifacts from memory within its byte budget, streams large ones, and says when one is missing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "galette-artifact-cache-"));
    try {
      const store = new ArtifactStore(dir);
      const cache = new ArtifactCache(store, { maxBytes: 2048, maxItemBytes: 1024 });
      const small = await Promise.all([1, 2, 3].map((n) => store.put(Buffer.alloc(1000, n))));
      const large = await store.put(Buffer.alloc(4096, 9));
      for (const { digest } of small) {
        const body = await cache.open(digest);
        expect(body && "bytes" in body && sha256Hex(body.bytes)).toBe(digest);
      }
      // the budget holds two: the first was evicted, its file is read again (and still right)
      rmSync(store.pathOf(small[0]!.digest));
      expect(await cache.open(small[0]!.digest)).toBeUndefined();
      const kept = await cache.open(small[2]!.digest);
      expect(kept && "bytes" in kept && sha256Hex(kept.bytes)).toBe(small[2]!.digest);
      const streamed = await cache.open(large.digest);
      expect(streamed && "stream" in streamed && streamed.size).toBe(4096);
      const chunks: Buffer[] = [];
      if (streamed && "stream" in streamed)
        for await (const chunk of streamed.stream) chunks.push(chunk as Buffer);
      expect(sha256Hex(Buffer.concat(chunks))).toBe(large.digest);
      expect(await cache.open("0".repeat(64))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("never keeps bytes that do not match their digest: a repaired store file is served at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "galette-artifact-cache-"));
    try {
      const store = new ArtifactStore(dir);
      const cache = new ArtifactCache(store);
      const good = Buffer.alloc(1000, 7);
      const { digest } = await store.put(good);
      const bad = Buffer.from(good);
      bad[500] = 0;
      writeFileSync(store.pathOf(digest), bad);
      const served = await cache.open(digest);
      expect(served && "bytes" in served && sha256Hex(served.bytes)).not.toBe(digest);
      writeFileSync(store.pathOf(digest), good);
      const repaired = await cache.open(digest);
      expect(repaired && "bytes" in repaired && sha256Hex(repaired.bytes)).toBe(digest);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
