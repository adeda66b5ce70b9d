/**
 * The assignment cache across controller replicas on one PostgreSQL database (real
 * PostgreSQL 15): a change published through another replica's repository (NOTIFY) drops
 * this replica's cache, so its next answer is the new assignment.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AssignmentCache } from "../src/assignment-cache";
import { ArtifactStore } from "../src/storage/artifacts";
import { openPostgresRepository } from "../src/storage/postgres";
import { usePostgres } from "./helpers";

const postgres = usePostgres();
const dir = mkdtempSync(join(tmpdir(), "galette-assignment-cache-pg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("assignment cache on PostgreSQL replicas", () => {
  it("drops what it holds when another replica publishes a change", async () => {
    const url = postgres().createDatabase("assignment_cache");
    const [a, b] = await Promise.all([openPostgresRepository(url), openPostgresRepository(url)]);
    const cache = new AssignmentCache(a, new ArtifactStore(dir, a.blobs), { ttlMs: 60_000 });
    try {
      await b.insertDevice({
        name: "d",
        labels: {},
        serial: "0d",
        certPem: "-----BEGIN CERTIFICATE-----",
        enrolledAt: "2026-01-01T00:00:00.000Z",
        notAfter: "2028-01-01T00:00:00.000Z",
      });
      await b.assignChain(["d"], "c", null);
      const device = async () => (await a.getDevice("d"))!;
      // chain c has no version yet: nothing to serve, and that answer is cached
      expect(JSON.parse((await cache.assignment(await device(), "x86_64")).body).chain).toBeNull();
      await b.insertChainVersion({
        name: "c",
        toml: "",
        file: "c.toml",
        graph: {
          entry: { kind: "tailcall", target: "00000000-0000-4000-8000-000000000000" },
          nfs: [],
          maps: [],
        },
        warnings: [],
        createdAt: "t",
      });
      // not published: replica A still answers from its cache
      expect(JSON.parse((await cache.assignment(await device(), "x86_64")).body).chain).toBeNull();
      await b.publishAssignmentChanged(["d"], "push");
      const deadline = Date.now() + 5000;
      let chain: { name: string; version: number } | null = null;
      while (!chain && Date.now() < deadline) {
        chain = JSON.parse((await cache.assignment(await device(), "x86_64")).body).chain;
        if (!chain) await new Promise((r) => setTimeout(r, 50));
      }
      expect(chain).toMatchObject({ name: "c", version: 1 });
    } finally {
      cache.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});
