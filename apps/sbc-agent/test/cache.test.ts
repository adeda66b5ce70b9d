import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentCache, DigestMismatchError, sha256 } from "../src/cache";

const dir = mkdtempSync(join(tmpdir(), "galette-agent-cache-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("agent cache", () => {
  const cache = new AgentCache(dir);
  const bytes = Buffer.from("an eBPF object");
  const digest = sha256(bytes);

  it("stores artifacts by digest and refuses bytes that do not match", () => {
    expect(() => cache.put(digest, Buffer.from("tampered"), "NF x")).toThrow(DigestMismatchError);
    expect(() => cache.put(digest, Buffer.from("tampered"), "NF x")).toThrow(
      /NF x: artifact [0-9a-f]{64} as downloaded \(8 bytes\) has sha256/,
    );
    expect(cache.has(digest)).toBe(false);
    const file = cache.put(digest, bytes, "NF x");
    expect(readFileSync(file)).toEqual(bytes);
    expect(cache.verify(digest, "NF x")).toBe(file);
  });

  it("removes a cached artifact corrupted on disk and says so", () => {
    writeFileSync(cache.artifactPath(digest), "bit rot");
    expect(() => cache.verify(digest, "NF x")).toThrow(
      /cached artifact .* has sha256 .*, expected .*; removed it, refusing to load/,
    );
    expect(cache.has(digest)).toBe(false);
  });

  it("round-trips the last good assignment and rejects a broken one", () => {
    const entry = {
      etag: '"abc"',
      savedAt: "now",
      assignment: { protocolVersion: 1, device: "pi-1", chain: null },
      appliedKeys: { allow_list: ["00"] },
    };
    cache.saveAssignment(entry);
    expect(cache.loadAssignment()).toEqual(entry);
    writeFileSync(cache.assignmentFile, '{"etag": 1}');
    expect(() => cache.loadAssignment()).toThrow(/assignment\.json: invalid cached assignment: /);
  });

  it("keeps the previous assignment and the held-back version, and names a broken file", () => {
    const entry = {
      etag: '"prev"',
      savedAt: "then",
      assignment: { protocolVersion: 2, device: "pi-1", chain: null },
      appliedKeys: {},
    };
    expect(cache.loadPrevious()).toBeUndefined();
    cache.savePrevious(entry);
    expect(cache.loadPrevious()).toEqual(entry);
    cache.savePrevious(undefined);
    expect(cache.loadPrevious()).toBeUndefined();

    const held = {
      chain: "security",
      version: 4,
      reason: 'chain "security" v4 cut this device off the controller',
      at: "2026-01-01T00:00:00.000Z",
      restored: { chain: "security", version: 3 },
    };
    cache.saveHeld(held);
    expect(cache.loadHeld()).toEqual(held);
    writeFileSync(cache.heldFile, '{"chain": "security", "version": "four"}');
    expect(() => cache.loadHeld()).toThrow(/held\.json: invalid held version: version: /);
    writeFileSync(cache.heldFile, "{not json");
    expect(() => cache.loadHeld()).toThrow(/held\.json: not valid JSON: /);
    cache.saveHeld(undefined);
    expect(cache.loadHeld()).toBeUndefined();
  });

  it("prunes artifacts nothing references", () => {
    const keep = cache.put(digest, bytes, "NF x");
    const other = Buffer.from("old build");
    cache.put(sha256(other), other, "NF y");
    expect(cache.prune(new Set([digest]))).toEqual([sha256(other)]);
    expect(readFileSync(keep)).toEqual(bytes);
  });
});
