import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostgres, type TestPostgres } from "@galette/testkit/postgres";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { ArtifactStore, sha256Hex } from "../src/storage/artifacts";
import { openPostgresRepository, type PostgresRepository } from "../src/storage/postgres";
import type { Repository } from "../src/storage/repository";
import { DATABASE_FILE, openSqliteRepository, SCHEMA_VERSION } from "../src/storage/sqlite";

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "galette-store-"));
  dirs.push(dir);
  return dir;
};
let server: TestPostgres;
let databases = 0;
beforeAll(async () => {
  server = await startPostgres();
}, 120_000);
afterAll(() => {
  server?.stop();
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

/**
 * One backend under the contract: `fresh()` is an empty store; `second()` another
 * connection to the last one made (the CLI beside a server, or another replica).
 */
interface Backend {
  name: string;
  fresh(): Promise<{ repo: Repository; second: () => Promise<Repository> }>;
}

const BACKENDS: Backend[] = [
  {
    name: "SQLite",
    async fresh() {
      const dir = tempDir();
      return { repo: openSqliteRepository(dir), second: async () => openSqliteRepository(dir) };
    },
  },
  {
    name: "PostgreSQL",
    async fresh() {
      const url = server.createDatabase(`contract_${++databases}`);
      return { repo: await openPostgresRepository(url), second: () => openPostgresRepository(url) };
    },
  },
];

describe("SQLite schema", () => {
  it("migrates a new database and refuses one from a newer controller", async () => {
    const dir = tempDir();
    await openSqliteRepository(dir).close();
    const db = new Database(join(dir, DATABASE_FILE));
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    db.pragma("user_version = 99");
    db.close();
    expect(() => openSqliteRepository(dir)).toThrow(/schema version 99 is newer/);
  });
});

describe("PostgreSQL schema", () => {
  it("migrates a new database once (replicas starting together) and refuses one from a newer controller", async () => {
    const url = server.createDatabase("schema_check");
    const [a, b] = await Promise.all([openPostgresRepository(url), openPostgresRepository(url)]);
    await Promise.all([a.close(), b.close()]);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      expect((await client.query("SELECT version FROM galette_schema")).rows).toEqual([
        { version: SCHEMA_VERSION },
      ]);
      await client.query("UPDATE galette_schema SET version = 99");
    } finally {
      await client.end();
    }
    await expect(openPostgresRepository(url)).rejects.toThrow(/schema version 99 is newer/);
  });

  it("refuses a --database that is not a PostgreSQL URL, naming it", async () => {
    await expect(DataDir.connect(tempDir(), { database: "mysql://db/galette" })).rejects.toThrow(
      '--database "mysql://db/galette": expected a postgres:// or postgresql:// URL',
    );
  });

  it("names the database it cannot reach, without the password", async () => {
    await expect(
      openPostgresRepository(`postgres://galette:s3cret@127.0.0.1:${server.port}/no_such_db`),
    ).rejects.toThrow(/postgres:\/\/galette:\*\*\*@127\.0\.0\.1:\d+\/no_such_db: .*no_such_db/);
  });
});

describe.each(BACKENDS)("repository contract: $name", (backend) => {
  it("rolls a failed transaction back", async () => {
    const { repo } = await backend.fresh();
    await repo.insertDevice(device("a", "01"));
    await expect(
      repo.transaction(async (tx) => {
        await tx.insertDevice(device("b", "02"));
        await tx.assignChain(["a", "missing"], "chain", null);
      }),
    ).rejects.toThrow(/device missing is not enrolled/);
    expect(await repo.getDevice("b")).toBeUndefined();
    expect((await repo.getDevice("a"))?.assignedChain).toBeNull();
    await repo.close();
  });

  it("runs transactions one at a time: concurrent read-then-write never loses an update", async () => {
    const { repo, second } = await backend.fresh();
    const other = await second();
    await repo.insertDevice(device("a", "01"));
    // each transaction reads the grace, waits a little, writes grace + 1
    const bump = (r: Repository) =>
      r.transaction(async (tx) => {
        const grace = (await tx.getDeadMan("a")).graceSeconds ?? 0;
        await new Promise((resolve) => setTimeout(resolve, 5));
        await tx.setGraceSeconds(["a"], grace + 1);
      });
    // (two SQLite connections in one process would block its event loop on each other's lock:
    // the CLI and the server are separate processes)
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => bump(i % 2 && repo.dialect === "postgres" ? other : repo)),
    );
    expect((await repo.getDeadMan("a")).graceSeconds).toBe(10);
    // and a call from outside a transaction waits for it instead of slipping into it
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered = () => {};
    const inside = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const held = repo.transaction(async (tx) => {
      await tx.setGraceSeconds(["a"], 99);
      entered();
      await gate;
      throw new Error("rolled back on purpose");
    });
    await inside;
    const outside = repo.saveDeviceStatus("a", { state: "converged" } as never, "t");
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();
    await expect(held).rejects.toThrow(/on purpose/);
    await outside;
    expect((await repo.getDeadMan("a")).graceSeconds).toBe(10);
    expect((await repo.getDevice("a"))?.statusAt).toBe("t");
    await other.close();
    await repo.close();
  });

  it("tells every connection's listeners that assignments changed", async () => {
    const { repo, second } = await backend.fresh();
    // SQLite: the process that made the change; PostgreSQL: every replica too
    const heard: Array<[string[], string]> = [];
    const stop = repo.onAssignmentChanged((names, reason) => heard.push([names, reason]));
    const many = Array.from({ length: 150 }, (_, i) => `device-${i}`);
    await repo.publishAssignmentChanged(many, "push");
    if (repo.dialect === "postgres") {
      const other = await second();
      const there: string[] = [];
      other.onAssignmentChanged((names) => there.push(...names));
      await repo.publishAssignmentChanged(["x"], "assign");
      await expect.poll(() => there, { timeout: 2000 }).toEqual(["x"]);
      await other.close();
    }
    await expect
      .poll(() => heard.flatMap(([names]) => names).length, { timeout: 2000 })
      .toBeGreaterThanOrEqual(150);
    expect(heard.flatMap(([names]) => names).slice(0, 150)).toEqual(many);
    stop();
    await repo.close();
  });

  it("writes a batch of last-seen times, skipping names that are not enrolled", async () => {
    const { repo } = await backend.fresh();
    await repo.insertDevice(device("a", "01"));
    await repo.insertDevice(device("b", "02"));
    await repo.touchDevices([
      ["a", "2026-01-02T00:00:00.000Z"],
      ["gone", "2026-01-02T00:00:01.000Z"],
      ["b", "2026-01-02T00:00:02.000Z"],
    ]);
    await repo.touchDevices([]);
    expect((await repo.listDevices()).map((d) => [d.name, d.lastSeenAt])).toEqual([
      ["a", "2026-01-02T00:00:00.000Z"],
      ["b", "2026-01-02T00:00:02.000Z"],
    ]);
    await repo.close();
  });

  it("keeps a revoked serial revoked after the name is enrolled again", async () => {
    const { repo } = await backend.fresh();
    await repo.insertDevice(device("a", "01"));
    await expect(repo.insertDevice(device("a", "02"))).rejects.toThrow(/already enrolled/);
    await repo.revokeDevice("a", "2026-01-02T00:00:00.000Z");
    await repo.insertDevice(device("a", "02"));
    expect(await repo.isSerialRevoked("01")).toBe(true);
    expect(await repo.isSerialRevoked("02")).toBe(false);
    expect(await repo.getDevice("a")).toMatchObject({ serial: "02", revokedAt: null });
    await repo.close();
  });

  it("numbers chain versions and sees another connection's writes at once", async () => {
    const fresh = await backend.fresh();
    const server = fresh.repo;
    const cli = await fresh.second();
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
    expect(await server.insertChainVersion(chain)).toBe(1);
    expect(await cli.insertChainVersion(chain)).toBe(2);
    expect((await server.getChainVersion("c"))?.version).toBe(2);
    await cli.insertDevice(device("d", "0a"));
    await cli.revokeDevice("d", "t");
    expect(await server.isSerialRevoked("0a")).toBe(true);
    await server.close();
    await cli.close();
    const reopened = await fresh.second();
    expect(await reopened.listChains()).toEqual([{ name: "c", latestVersion: 2, createdAt: "t" }]);
    await reopened.close();
  });

  it("resolves a device's assignment: explicit first, else the newest matching selector rule", async () => {
    const fresh = await backend.fresh();
    const repo = fresh.repo;
    await repo.insertDevice({ ...device("a", "01"), labels: { role: "edge", site: "lab" } });
    await repo.insertDevice({ ...device("b", "02"), labels: { role: "core" } });
    const older = await repo.addSelectorRule(
      "one",
      null,
      { site: "lab", role: "edge" },
      "2026-01-01T00:00:00.000Z",
    );
    expect(await repo.getDevice("a")).toMatchObject({ assignedChain: "one", assignedVersion: null });
    const newer = await repo.addSelectorRule("two", 3, { role: "edge" }, "2026-01-02T00:00:00.000Z");
    expect(await repo.getDevice("a")).toMatchObject({
      assignedChain: "two",
      assignedVersion: 3,
      assignedBy: { kind: "selector", rule: newer.id, selector: { role: "edge" } },
    });
    expect(await repo.getDevice("b")).toMatchObject({ assignedChain: null, assignedBy: null });
    // Same selector in another key order replaces the older rule and becomes the newest.
    const replaced = await repo.addSelectorRule(
      "three",
      null,
      { role: "edge", site: "lab" },
      "2026-01-03T00:00:00.000Z",
    );
    expect(replaced.id).toBeGreaterThan(newer.id);
    expect((await repo.listSelectorRules()).map((r) => r.chain)).toEqual(["two", "three"]);
    expect((await repo.listSelectorRules()).some((r) => r.id === older.id)).toBe(false);
    expect((await repo.devicesAssignedTo("three")).map((d) => d.name)).toEqual(["a"]);
    await repo.assignChain(["a"], "own", null);
    expect(await repo.getDevice("a")).toMatchObject({
      assignedChain: "own",
      assignedBy: { kind: "explicit" },
    });
    await repo.clearExplicitAssignment(["a"]);
    expect((await repo.getDevice("a"))?.assignedChain).toBe("three");
    await repo.close();

    const reopened = await fresh.second();
    expect((await reopened.getDevice("a"))?.assignedChain).toBe("three");
    expect((await reopened.removeSelectorRule({ site: "lab", role: "edge" })).map((r) => r.chain)).toEqual([
      "three",
    ]);
    expect(await reopened.removeSelectorRule({ site: "lab", role: "edge" })).toEqual([]);
    expect((await reopened.getDevice("a"))?.assignedChain).toBe("two");
    await reopened.close();
  });

  it("keeps an audit row per call, completes it when answered, and lists the newest ones oldest first", async () => {
    const { repo } = await backend.fresh();
    const ids: number[] = [];
    for (const n of [1, 2, 3, 4, 5])
      ids.push(
        await repo.insertAudit({
          at: `2026-01-0${n}T00:00:00.000Z`,
          actor: `op-${n}`,
          method: "POST",
          route: "/v1/chains",
          target: null,
          status: 0,
          remote: "127.0.0.1",
        }),
      );
    await repo.finishAudit(ids[4]!, 201, "acl v3");
    expect((await repo.listAudit({ limit: 2 })).map((e) => [e.actor, e.status, e.target])).toEqual([
      ["op-4", 0, null],
      ["op-5", 201, "acl v3"],
    ]);
    expect(
      (await repo.listAudit({ since: "2026-01-02T00:00:00.000Z", limit: 10 })).map((e) => e.actor),
    ).toEqual(["op-2", "op-3", "op-4", "op-5"]);
    await repo.close();
  });

  it("stores artifacts by content", async () => {
    const { repo } = await backend.fresh();
    const shared = "blobs" in repo ? (repo as PostgresRepository).blobs : undefined;
    const store = new ArtifactStore(tempDir(), shared);
    const bytes = Buffer.from("object code");
    const { digest } = await store.put(bytes);
    expect(digest).toBe(sha256Hex(bytes));
    expect((await store.put(bytes)).digest).toBe(digest);
    expect(await store.has(digest)).toBe(true);
    expect(() => store.pathOf("../../etc/passwd")).toThrow(/not a sha256 digest/);
    if (shared) {
      // another replica (its own data dir) serves it from the database, checked against its digest
      const elsewhere = new ArtifactStore(tempDir(), shared);
      expect(await elsewhere.has(digest)).toBe(true);
      expect((await elsewhere.read(digest)).toString()).toBe("object code");
      const opened = await elsewhere.open(digest);
      expect(opened.size).toBe(bytes.length);
      opened.stream.destroy();
      await expect(elsewhere.read("0".repeat(64))).rejects.toThrow(/not in the store/);
    } else {
      expect(await store.has("0".repeat(64))).toBe(false);
    }
    await repo.close();
  });
});
