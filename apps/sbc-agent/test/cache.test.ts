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

  it("prunes artifacts nothing references", () => {
    const keep = cache.put(digest, bytes, "NF x");
    const other = Buffer.from("old build");
    cache.put(sha256(other), other, "NF y");
    expect(cache.prune(new Set([digest]))).toEqual([sha256(other)]);
    expect(readFileSync(keep)).toEqual(bytes);
  });
});
