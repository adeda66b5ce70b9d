import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it, vi } from "vitest";
import { DATABASE_FILE, openSqliteRepository } from "../src/storage/sqlite";
import { statusReport } from "./helpers";

const dir = mkdtempSync(join(tmpdir(), "galette-sqlite-telemetry-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const status = statusReport();

const enrol = (repo: ReturnType<typeof openSqliteRepository>, name: string, serial: string) =>
  repo.insertDevice({
    name,
    labels: {},
    serial,
    certPem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    enrolledAt: new Date().toISOString(),
    notAfter: new Date(Date.now() + 86_400_000).toISOString(),
  });

/**
 * Device telemetry commits without an fsync (synchronous NORMAL), everything else with one
 * (FULL); both survive the process: what a kill -9 would lose is only what was never committed.
 */
describe("SQLite durability of device telemetry", () => {
  it("writes status reports and last-seen times, keeps FULL for everything else, and another connection reads them", async () => {
    const repo = openSqliteRepository(dir);
    const pragma = vi.spyOn(Database.prototype, "pragma");
    const safety = () =>
      pragma.mock.calls.map((c) => String(c[0])).filter((sql) => sql.startsWith("synchronous"));
    try {
      await enrol(repo, "pi-1", "01");
      expect(safety()).toEqual([]);
      await repo.saveDeviceStatus("pi-1", status, "2026-12-01T00:00:01.000Z");
      await repo.touchDevices([["pi-1", "2026-12-01T00:00:02.000Z"]]);
      expect(safety()).toEqual([
        "synchronous = NORMAL",
        "synchronous = FULL",
        "synchronous = NORMAL",
        "synchronous = FULL",
      ]);
      // a second connection (another process would see the same) reads both committed
      const other = new Database(join(dir, DATABASE_FILE), { readonly: true });
      try {
        const row = other.prepare("SELECT status_at, last_seen_at FROM devices WHERE name = ?").get("pi-1");
        expect(row).toEqual({
          status_at: "2026-12-01T00:00:01.000Z",
          last_seen_at: "2026-12-01T00:00:02.000Z",
        });
      } finally {
        other.close();
      }
      // and the connection is back to FULL for the next write of anything else
      await enrol(repo, "pi-2", "02");
      expect((await repo.getDevice("pi-2"))?.serial).toBe("02");
      expect(safety()).toHaveLength(4);
    } finally {
      pragma.mockRestore();
      await repo.close();
    }
  });
});
