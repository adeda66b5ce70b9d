import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { ArtifactStore, sha256Hex } from "../src/storage/artifacts";
import { DATABASE_FILE, openSqliteRepository, SCHEMA_VERSION } from "../src/storage/sqlite";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "galette-store-"));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const device = (name: string, serial: string) => ({
  name,
  labels: { role: "edge" },
  serial,
  certPem: "-----BEGIN CERTIFICATE-----",
  enrolledAt: "2026-01-01T00:00:00.000Z",
  notAfter: "2028-01-01T00:00:00.000Z",
});

describe("SQLite repository", () => {
  it("migrates a new database and refuses one from a newer controller", () => {
    const dir = tempDir();
    openSqliteRepository(dir).close();
    const db = new Database(join(dir, DATABASE_FILE));
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    db.pragma("user_version = 99");
    db.close();
    expect(() => openSqliteRepository(dir)).toThrow(/schema version 99 is newer/);
  });

  it("rolls a failed transaction back", () => {
    const repo = openSqliteRepository(tempDir());
    repo.insertDevice(device("a", "01"));
    expect(() =>
      repo.transaction(() => {
        repo.insertDevice(device("b", "02"));
        repo.assignChain(["a", "missing"], "chain", null);
      }),
    ).toThrow(/device missing is not enrolled/);
    expect(repo.getDevice("b")).toBeUndefined();
    expect(repo.getDevice("a")?.assignedChain).toBeNull();
    repo.close();
  });

  it("keeps a revoked serial revoked after the name is enrolled again", () => {
    const repo = openSqliteRepository(tempDir());
    repo.insertDevice(device("a", "01"));
    expect(() => repo.insertDevice(device("a", "02"))).toThrow(/already enrolled/);
    repo.revokeDevice("a", "2026-01-02T00:00:00.000Z");
    repo.insertDevice(device("a", "02"));
    expect(repo.isSerialRevoked("01")).toBe(true);
    expect(repo.isSerialRevoked("02")).toBe(false);
    expect(repo.getDevice("a")).toMatchObject({ serial: "02", revokedAt: null });
    repo.close();
  });

  it("numbers chain versions and sees another connection's writes at once", () => {
    const dir = tempDir();
    const server = openSqliteRepository(dir);
    const cli = openSqliteRepository(dir);
    const chain = {
      name: "c",
      toml: "",
      file: "c.toml",
      graph: {
        entry: { kind: "tailcall" as const, target: "00000000-0000-4000-8000-000000000000" },
        nfs: [],
        maps: [],
      },
      warnings: [],
      createdAt: "t",
    };
    expect(server.insertChainVersion(chain)).toBe(1);
    expect(cli.insertChainVersion(chain)).toBe(2);
    expect(server.getChainVersion("c")?.version).toBe(2);
    cli.insertDevice(device("d", "0a"));
    cli.revokeDevice("d", "t");
    expect(server.isSerialRevoked("0a")).toBe(true);
    server.close();
    cli.close();
    const reopened = openSqliteRepository(dir);
    expect(reopened.listChains()).toEqual([{ name: "c", latestVersion: 2, createdAt: "t" }]);
    reopened.close();
  });

  it("resolves a device's assignment: explicit first, else the newest matching selector rule", () => {
    const dir = tempDir();
    const repo = openSqliteRepository(dir);
    repo.insertDevice({ ...device("a", "01"), labels: { role: "edge", site: "lab" } });
    repo.insertDevice({ ...device("b", "02"), labels: { role: "core" } });
    const older = repo.addSelectorRule(
      "one",
      null,
      { site: "lab", role: "edge" },
      "2026-01-01T00:00:00.000Z",
    );
    expect(repo.getDevice("a")).toMatchObject({ assignedChain: "one", assignedVersion: null });
    const newer = repo.addSelectorRule("two", 3, { role: "edge" }, "2026-01-02T00:00:00.000Z");
    expect(repo.getDevice("a")).toMatchObject({
      assignedChain: "two",
      assignedVersion: 3,
      assignedBy: { kind: "selector", rule: newer.id, selector: { role: "edge" } },
    });
    expect(repo.getDevice("b")).toMatchObject({ assignedChain: null, assignedBy: null });
    // Same selector in another key order replaces the older rule and becomes the newest.
    const replaced = repo.addSelectorRule(
      "three",
      null,
      { role: "edge", site: "lab" },
      "2026-01-03T00:00:00.000Z",
    );
    expect(replaced.id).toBeGreaterThan(newer.id);
    expect(repo.listSelectorRules().map((r) => r.chain)).toEqual(["two", "three"]);
    expect(repo.listSelectorRules().some((r) => r.id === older.id)).toBe(false);
    expect(repo.devicesAssignedTo("three").map((d) => d.name)).toEqual(["a"]);
    repo.assignChain(["a"], "own", null);
    expect(repo.getDevice("a")).toMatchObject({ assignedChain: "own", assignedBy: { kind: "explicit" } });
    repo.clearExplicitAssignment(["a"]);
    expect(repo.getDevice("a")?.assignedChain).toBe("three");
    repo.close();

    const reopened = openSqliteRepository(dir);
    expect(reopened.getDevice("a")?.assignedChain).toBe("three");
    expect(reopened.removeSelectorRule({ site: "lab", role: "edge" }).map((r) => r.chain)).toEqual(["three"]);
    expect(reopened.removeSelectorRule({ site: "lab", role: "edge" })).toEqual([]);
    expect(reopened.getDevice("a")?.assignedChain).toBe("two");
    reopened.close();
  });

  it("keeps an audit row per call, completes it when answered, and lists the newest ones oldest first", () => {
    const repo = openSqliteRepository(tempDir());
    const ids = [1, 2, 3, 4, 5].map((n) =>
      repo.insertAudit({
        at: `2026-01-0${n}T00:00:00.000Z`,
        actor: `op-${n}`,
        method: "POST",
        route: "/v1/chains",
        target: null,
        status: 0,
        remote: "127.0.0.1",
      }),
    );
    repo.finishAudit(ids[4]!, 201, "acl v3");
    expect(repo.listAudit({ limit: 2 }).map((e) => [e.actor, e.status, e.target])).toEqual([
      ["op-4", 0, null],
      ["op-5", 201, "acl v3"],
    ]);
    expect(repo.listAudit({ since: "2026-01-02T00:00:00.000Z", limit: 10 }).map((e) => e.actor)).toEqual([
      "op-2",
      "op-3",
      "op-4",
      "op-5",
    ]);
    repo.close();
  });

  it("stores artifacts by content", () => {
    const store = new ArtifactStore(tempDir());
    const bytes = Buffer.from("object code");
    const { digest } = store.put(bytes);
    expect(digest).toBe(sha256Hex(bytes));
    expect(store.put(bytes).digest).toBe(digest);
    expect(store.has(digest)).toBe(true);
    expect(() => store.pathOf("../../etc/passwd")).toThrow(/not a sha256 digest/);
  });
});
