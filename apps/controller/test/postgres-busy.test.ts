/**
 * Device requests on a PostgreSQL controller when the database is busy (real PostgreSQL 15):
 * more requests at once than the pool has connections all succeed (they wait for one); a
 * database that refuses connections answers 503 with Retry-After, never 500, and the
 * controller serves again as soon as it accepts them.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initPkiDir } from "@galette/pki";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { type RunningController, startController } from "../src/server";
import { openPostgresRepository, telemetryPoolConfig } from "../src/storage/postgres";
import { DatabaseUnavailable } from "../src/storage/repository";
import { call, captureLogger, statusReport, usePostgres } from "./helpers";

const postgres = usePostgres();
const dir = mkdtempSync(join(tmpdir(), "galette-pg-busy-"));
/** the superuser's connection: sets the controller role's connection limit */
let admin: pg.Client;
let controller: RunningController;
let caPem = "";
let device: { certPem: string; keyPem: string };
let url = "";

const status = statusReport();

beforeAll(async () => {
  admin = new pg.Client({ connectionString: postgres().url("postgres") });
  await admin.connect();
  // not a superuser (they ignore connection limits): the role the controller logs in as
  await admin.query("CREATE ROLE busy LOGIN");
  await admin.query("CREATE DATABASE busy OWNER busy");
  url = `postgres://busy@127.0.0.1:${postgres().port}/busy`;
  caPem = initPkiDir(dir).ca.certPem;
  controller = await startController({
    dataDir: dir,
    port: 0,
    database: url,
    logger: captureLogger().logger,
    revocationSweepMs: 200,
  });
  const data = await DataDir.connect(dir, { database: url, direct: true });
  try {
    const enrolled = await data.enrolDevice("pi-1", {}, controller.url);
    device = { certPem: enrolled.certPem, keyPem: enrolled.keyPem };
  } finally {
    await data.close();
  }
}, 180_000);

afterAll(async () => {
  await controller?.close();
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

describe("device requests on a busy PostgreSQL", () => {
  it("serves far more requests at once than the pool has connections", async () => {
    const replies = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        i % 2
          ? call(controller.url, caPem, "/v1/device/assignment", { client: device })
          : call(controller.url, caPem, "/v1/device/status", {
              method: "POST",
              client: device,
              body: status,
            }),
      ),
    );
    expect(replies.map((r) => r.status).sort()).toEqual([
      ...Array<number>(60).fill(200),
      ...Array<number>(60).fill(204),
    ]);
  }, 120_000);

  it("answers 503 with Retry-After while the database refuses connections, and serves again after", async () => {
    await admin.query("ALTER ROLE busy CONNECTION LIMIT 0");
    try {
      // the controller's open connections go too (a restart, a failover would do the same)
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'busy'");
      const refused = await call(controller.url, caPem, "/v1/device/assignment", { client: device });
      expect(refused.status, refused.body.toString()).toBe(503);
      expect(refused.headers["retry-after"]).toBe("1");
      expect(refused.json<{ error: string }>().error).toMatch(/database is unavailable for now; retry/);
    } finally {
      await admin.query("ALTER ROLE busy CONNECTION LIMIT -1");
    }
    const served = await call(controller.url, caPem, "/v1/device/assignment", { client: device });
    expect(served.status, served.body.toString()).toBe(200);
  }, 120_000);

  it("writes device telemetry on connections of its own, without waiting for the WAL flush", async () => {
    // the request pool's only connection held by a transaction: telemetry must not queue behind it
    const repo = await openPostgresRepository(url, { poolSize: 1, listen: false });
    let release: () => void = () => undefined;
    let holding: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      holding = r;
    });
    const transaction = repo.transaction(
      () =>
        new Promise<void>((r) => {
          release = r;
          holding();
        }),
    );
    try {
      await held;
      const at = new Date().toISOString();
      const written = Promise.all([
        repo.saveDeviceStatus("pi-1", status, at),
        repo.touchDevices([["pi-1", at]]),
      ]).then(() => "written");
      const late = new Promise((r) => setTimeout(() => r("waited for the request connection"), 5000));
      expect(await Promise.race([written, late])).toBe("written");
    } finally {
      release();
      await transaction;
      await repo.close();
    }
    // the setting as the server applies it to those connections, against a role whose
    // sessions wait for the flush (the test server's own default is off)
    await admin.query("ALTER ROLE busy SET synchronous_commit = on");
    const setting = async (config: pg.ClientConfig) => {
      const client = new pg.Client(config);
      await client.connect();
      try {
        return (await client.query<{ synchronous_commit: string }>("SHOW synchronous_commit")).rows[0]
          ?.synchronous_commit;
      } finally {
        await client.end();
      }
    };
    try {
      expect(await setting({ connectionString: url })).toBe("on");
      expect(await setting(telemetryPoolConfig(url))).toBe("off");
    } finally {
      await admin.query("ALTER ROLE busy RESET synchronous_commit");
    }
  }, 60_000);

  it("retries a statement PostgreSQL did not run, then names the database as unavailable", async () => {
    const data = await DataDir.connect(dir, { database: url, direct: true });
    try {
      await admin.query("ALTER ROLE busy CONNECTION LIMIT 0");
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'busy'");
      const t0 = Date.now();
      const failed = await data.repo.getDevice("pi-1").catch((err: unknown) => err);
      expect(failed).toBeInstanceOf(DatabaseUnavailable);
      expect((failed as Error).message).toMatch(/too many connections for role "busy"/);
      // three attempts, 20 + 100 ms apart
      expect(Date.now() - t0).toBeGreaterThanOrEqual(120);
    } finally {
      await admin.query("ALTER ROLE busy CONNECTION LIMIT -1");
      await data.close();
    }
  }, 60_000);
});
