import { createLogger, type Logger } from "@galette/log";
import type {
  ArtifactMeta,
  AuditEntry,
  DeviceStatusReport,
  Labels,
  MapEntry,
  Rollout,
  SelectorRule,
  Signature,
  SignedMapEntries,
  SignedReleaseKeySet,
} from "@galette/protocol";
import pg from "pg";
import type { SharedArtifacts } from "./artifacts";
import { faultPoint } from "./fault-point";
import { pendingMigrations, SCHEMA_VERSION } from "./migrations";
import type {
  AuditRecord,
  ChainReleaseRecord,
  ChainVersionRecord,
  DeadManSettings,
  DeviceCertificateState,
  DeviceRecord,
  DeviceRequestState,
  NfRecord,
  Repository,
  TokenRecord,
} from "./repository";
import { DatabaseUnavailable } from "./repository";
import {
  type ArtifactRow,
  artifactFromRow,
  type ChainReleaseRow,
  type ChainVersionRow,
  canonicalSelector,
  chainReleaseFromRow,
  chainReleaseParams,
  chainVersionFromRow,
  chainVersionParams,
  checkEnrolled,
  checkNewerKeySet,
  type DeadManRow,
  type DeviceRequestRow,
  type DeviceRow,
  deadManFromRow,
  deviceFromRow,
  deviceRequestStateFromRow,
  keySetParams,
  type NfRow,
  nfFromRow,
  nfParams,
  POSTGRES_DEVICE_COLUMNS,
  POSTGRES_DEVICE_RULE_JOIN,
  type RolloutRow,
  revocableDevice,
  rolloutFromRow,
  rolloutParams,
  ruleFromRow,
  type SelectorRuleRow,
  type SignedRow,
  signedFromRow,
  signedMapEntriesParams,
  type TokenRow,
  tokenFromRow,
  tokenParams,
} from "./rows";

/** The channel every replica LISTENs on for "assignment changed". */
export const ASSIGNMENT_CHANNEL = "galette_assignment";
/**
 * Advisory lock keys (any two constants the rest of a shared database leaves alone):
 * every transaction takes TX_LOCK, so transactions run one at a time across all replicas
 * (the guarantee SQLite's single writer gives); migrations take MIGRATE_LOCK.
 */
const TX_LOCK = 0x6761_6c01;
const MIGRATE_LOCK = 0x6761_6c02;
/** NOTIFY payloads must stay under 8000 bytes: device names go in chunks. */
const NOTIFY_NAMES_PER_MESSAGE = 60;

export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

/** The URL without its password, for logs and errors. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

const URL_FORM = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";

/**
 * Checks a `--database` value before anything connects: a postgres:// or postgresql:// URL
 * naming a host (or a socket directory in `?host=`) and a database. The errors never show
 * the password: an unparsable value is not shown at all.
 */
export function checkPostgresUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(
      `--database: not a valid URL (expected ${URL_FORM}); the value is not shown, it may hold a password`,
    );
  }
  const shown = JSON.stringify(redactedUrl(value));
  if (!isPostgresUrl(value))
    throw new Error(`--database ${shown}: expected a postgres:// or postgresql:// URL`);
  if (!url.hostname && !url.searchParams.get("host"))
    throw new Error(`--database ${shown}: no host (expected ${URL_FORM})`);
  if (url.pathname.replace(/^\//, "") === "")
    throw new Error(`--database ${shown}: no database name (expected ${URL_FORM})`);
  return value;
}

/** `message` with the URL's password (as written and decoded) replaced, whatever produced it. */
function withoutPassword(message: string, url: string): string {
  let password = "";
  try {
    password = new URL(url).password;
  } catch {
    // an unparsable URL never reaches pg: checkPostgresUrl refused it
  }
  if (!password) return message;
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // a malformed %-escape: only the raw form can appear
  }
  return message.split(password).join("***").split(decoded).join("***");
}

/** Network errors that mean no PostgreSQL server answered at that address. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ECONNRESET",
]);

/** What went wrong connecting to `url`, said so an operator knows what to fix. */
export function describeConnectError(err: unknown, url: string): string {
  const e = err as Error & { code?: string };
  const u = new URL(url);
  const where = u.searchParams.get("host") ?? `${u.hostname}:${u.port || 5432}`;
  const user = decodeURIComponent(u.username) || "(the login user)";
  const database = decodeURIComponent(u.pathname.slice(1));
  let why: string;
  if ((e.code && UNREACHABLE.has(e.code)) || /connection timeout|timeout expired/i.test(e.message))
    why = `cannot reach the PostgreSQL server at ${where} (${e.code ?? e.message}): is it running, and is the address right?`;
  else if (e.code === "28P01" || e.code === "28000")
    why = `PostgreSQL refused user ${JSON.stringify(user)}: ${e.message} (check the user and password)`;
  else if (e.code === "3D000") why = `${e.message}: create it first (\`createdb -O ${user} ${database}\`)`;
  else why = e.message;
  return `PostgreSQL ${redactedUrl(url)}: ${withoutPassword(why, url)}`;
}

/** The refusal of a database the direct CLI commands find not (or differently) migrated. */
class SchemaMismatch extends Error {}

/**
 * Checks the schema without changing it: the CLI's direct commands work on a database a
 * controller migrated, never migrate one themselves (replicas of another version may be
 * serving it).
 */
async function checkSchema(pool: pg.Pool, url: string): Promise<void> {
  const serve = `\`galette controller serve --data DIR --database ${redactedUrl(url)}\``;
  let version: number | undefined;
  try {
    version = (await pool.query<{ version: number }>("SELECT version FROM galette_schema")).rows[0]?.version;
  } catch (err) {
    if ((err as { code?: string }).code !== "42P01") throw err; // undefined_table
  }
  if (version === undefined || version === 0)
    throw new SchemaMismatch(
      `the database has no Galette schema yet: start ${serve} once (it creates the schema), then run this again`,
    );
  if (version > SCHEMA_VERSION)
    throw new SchemaMismatch(
      `database schema version ${version} is newer than this galette knows (${SCHEMA_VERSION}): use the galette version that serves it`,
    );
  if (version < SCHEMA_VERSION)
    throw new SchemaMismatch(
      `database schema version ${version} is older than this galette's (${SCHEMA_VERSION}): start ${serve} of this version once to migrate it, then run this again`,
    );
}

type Queryable = pg.Pool | pg.PoolClient;

/** Statement texts → prepared statement names; bounded, though every text here is a constant. */
const STATEMENT_NAMES = new Map<string, string>();
const MAX_STATEMENT_NAMES = 500;

function statementName(sql: string): string | undefined {
  let name = STATEMENT_NAMES.get(sql);
  if (name === undefined && STATEMENT_NAMES.size < MAX_STATEMENT_NAMES) {
    name = `galette_${STATEMENT_NAMES.size}`;
    STATEMENT_NAMES.set(sql, name);
  }
  return name;
}

/**
 * What a log line needs of a pg error: pg-pool hangs the whole client object on the errors
 * it emits, kilobytes a line when a server restart drops every connection.
 */
function brief(err: unknown): { message: string; code?: string; severity?: string } {
  const e = err as Error & { code?: string; severity?: string };
  return {
    message: e?.message ?? String(err),
    ...(e?.code ? { code: e.code } : {}),
    ...(e?.severity ? { severity: e.severity } : {}),
  };
}

/** Waits before the 2nd and 3rd attempt of a statement PostgreSQL did not run. */
const RETRY_DELAYS_MS = [20, 100];

/**
 * SQLSTATEs after which the statement did not take effect and may simply run again:
 * serialization failure, deadlock, lock not available, too many connections, the server
 * starting or shutting down. (A connection lost mid-statement is not here: its outcome is
 * unknown.)
 */
const NOT_RUN = new Set(["40001", "40P01", "55P03", "53300", "57P03", "57P01"]);
/** No connection could be made or had from the pool: nothing was sent. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

function notRun(err: unknown): boolean {
  const e = err as Error & { code?: string };
  return (
    (e.code !== undefined && (NOT_RUN.has(e.code) || NOT_CONNECTED.has(e.code))) ||
    /timeout exceeded when trying to connect/i.test(e.message)
  );
}

/** A failure of the moment (retrying later may succeed), as opposed to a wrong statement or row. */
function momentary(err: unknown): boolean {
  const e = err as Error & { code?: string };
  return (
    notRun(err) ||
    // connection exceptions, insufficient resources, operator intervention (e.g. a restart)
    (e.code !== undefined && /^(08|53|57|ECONNRESET$|EPIPE$)/.test(e.code)) ||
    /Connection terminated|Client has encountered a connection error|not queryable/i.test(e.message)
  );
}

interface Shared {
  pool: pg.Pool;
  /** device telemetry's writes (see telemetryPool) */
  telemetry: pg.Pool;
  listeners: Set<(names: string[], reason: string) => void>;
  listener: pg.Client | undefined;
  closed: boolean;
  log: Logger;
}

export type PostgresRepository = Repository & { readonly blobs: SharedArtifacts };

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    // replicas starting together: one migrates, the others wait and find it done
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATE_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS galette_schema (version INTEGER NOT NULL)");
    const row = (await client.query<{ version: number }>("SELECT version FROM galette_schema")).rows[0];
    if (!row) await client.query("INSERT INTO galette_schema (version) VALUES (0)");
    const current = row?.version ?? 0;
    for (const step of pendingMigrations(current, "postgres")) {
      await client.query(step.sql);
      await client.query("UPDATE galette_schema SET version = $1", [step.version]);
    }
    await client.query("COMMIT");
  } catch (err) {
    // the migration's own error is what the operator needs; a failed ROLLBACK only means
    // the connection is gone, and it is discarded below
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release(true);
  }
}

/**
 * Connects to `url`, migrates the schema (the same migrations as SQLite) and LISTENs for
 * assignment changes. Several controller replicas may share the database. `migrate: false`
 * (the CLI's direct commands): refuse a database whose schema is not this version's instead.
 */
export async function openPostgresRepository(
  url: string,
  options: {
    log?: Logger;
    poolSize?: number;
    migrate?: boolean;
    connectTimeoutMs?: number;
    /** false: no LISTEN connection (a one-shot command has nothing to notify) */
    listen?: boolean;
  } = {},
): Promise<PostgresRepository> {
  checkPostgresUrl(url);
  const log = options.log ?? createLogger("galette-postgres");
  const pool = watchedPool(
    { ...poolConfig(url, options.connectTimeoutMs), max: options.poolSize ?? 10 },
    log,
    "PostgreSQL connection lost (idle); the pool reconnects",
  );
  try {
    if (options.migrate === false) await checkSchema(pool, url);
    else await migrate(pool);
  } catch (err) {
    // reported: the error that made us give up, not the pool's shutdown
    await pool.end().catch(() => undefined);
    const message =
      err instanceof SchemaMismatch
        ? `PostgreSQL ${redactedUrl(url)}: ${err.message}`
        : describeConnectError(err, url);
    throw new Error(message, { cause: err });
  }
  const telemetry = watchedPool(
    telemetryPoolConfig(url, options.connectTimeoutMs),
    log,
    "PostgreSQL telemetry connection lost (idle); the pool reconnects",
  );
  const shared: Shared = { pool, telemetry, listeners: new Set(), listener: undefined, closed: false, log };
  if (options.listen !== false) {
    try {
      await listen(url, shared);
    } catch (err) {
      shared.closed = true;
      await Promise.all([pool.end(), telemetry.end()]).catch(() => undefined);
      throw new Error(describeConnectError(err, url), { cause: err });
    }
  }
  return new Postgres(pool, shared, false);
}

/** What every pool of a replica shares. */
function poolConfig(url: string, connectTimeoutMs = 10_000): pg.PoolConfig {
  return {
    connectionString: url,
    // also how long a statement waits for a free connection: past it, 503 (retryable)
    // rather than requests piling up behind a database that does not answer
    connectionTimeoutMillis: connectTimeoutMs,
    // connections kept between bursts of device requests: a new one costs the server a
    // process and the controller a login
    idleTimeoutMillis: 60_000,
  };
}

/** A pool whose idle clients' errors (the server restarted) are logged, never a crash: the pool replaces them. */
function watchedPool(config: pg.PoolConfig, log: Logger, lost: string): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on("error", (err) => log.error({ err: brief(err) }, lost));
  return pool;
}

/**
 * Connections of their own for device telemetry (status reports, last-seen batches), which
 * commit with synchronous_commit off: a status report does not wait for a WAL flush, nor
 * hold one of the connections device authentication needs meanwhile (a fleet of 5000
 * reports 500 times a second). A crash of the PostgreSQL server may lose the
 * last fraction of a second of telemetry, never corrupt anything; devices report again
 * within their interval. Every other write still waits for its flush.
 */
export function telemetryPoolConfig(url: string, connectTimeoutMs?: number): pg.PoolConfig {
  return {
    ...poolConfig(url, connectTimeoutMs),
    // a fleet coming online reports at once: with 2 the backlog of 5000 devices' first
    // reports took seconds to work off (measured: 6 drains it within a status interval)
    max: 6,
    options: "-c synchronous_commit=off",
  };
}

/** The dedicated LISTEN connection; reconnects (with a back-off) when it drops. */
async function listen(url: string, shared: Shared, attempt = 0): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  const retry = (err: unknown) => {
    if (shared.closed) return;
    shared.listener = undefined;
    const delay = Math.min(5000, 200 * 2 ** attempt);
    // Meanwhile agents still poll: a change is picked up at their next poll, not lost.
    shared.log.error(
      { err: brief(err), retryInMs: delay },
      "PostgreSQL LISTEN connection lost; reconnecting",
    );
    setTimeout(() => {
      listen(url, shared, attempt + 1).catch((e: unknown) => retry(e));
    }, delay).unref();
  };
  client.on("notification", (message) => {
    if (message.channel !== ASSIGNMENT_CHANNEL || !message.payload) return;
    let parsed: { names: string[]; reason: string };
    try {
      parsed = JSON.parse(message.payload) as { names: string[]; reason: string };
    } catch (err) {
      shared.log.error({ err }, "unreadable assignment notification ignored");
      return;
    }
    for (const listener of shared.listeners) listener(parsed.names, parsed.reason);
  });
  let failed = false;
  const lost = (err: Error) => {
    if (failed || shared.closed) return;
    failed = true;
    client.end().catch((endError: unknown) => shared.log.debug({ err: endError }, "LISTEN connection end"));
    retry(err);
  };
  client.on("error", lost);
  // the server closed it without an error (restart, pg_terminate_backend)
  client.on("end", () => lost(new Error("the LISTEN connection ended")));
  await client.connect();
  await client.query(`LISTEN ${ASSIGNMENT_CHANNEL}`);
  if (shared.closed) {
    await client.end();
    return;
  }
  shared.listener = client;
  if (attempt > 0) shared.log.info("PostgreSQL LISTEN connection back");
}

/**
 * The Repository over PostgreSQL: the same tables and semantics as SQLite (TEXT timestamps
 * in ISO form, JSON documents as TEXT), statements with $n parameters, transactions on one
 * pooled connection serialised by an advisory lock.
 */
class Postgres implements PostgresRepository {
  readonly dialect = "postgres" as const;

  constructor(
    private readonly db: Queryable,
    private readonly shared: Shared,
    /** a transaction's view: `db` is its connection */
    private readonly inside: boolean,
  ) {}

  async #rows<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.#query<R>(sql, params)).rows;
  }

  async #run(sql: string, params: unknown[] = []): Promise<number> {
    return (await this.#query(sql, params)).rowCount ?? 0;
  }

  #telemetryView: Postgres | undefined;

  /** A device-telemetry write: on the telemetry connections, unless inside a transaction. */
  async #telemetry(sql: string, params: unknown[]): Promise<number> {
    if (this.inside) return this.#run(sql, params);
    this.#telemetryView ??= new Postgres(this.shared.telemetry, this.shared, false);
    return this.#telemetryView.#run(sql, params);
  }

  /**
   * One statement as a named prepared statement (parsed and planned once per connection).
   * Outside a transaction, a statement PostgreSQL refused without running it (a conflict,
   * no connection to be had) is tried again a few times; what still fails for a reason of
   * the moment becomes DatabaseUnavailable (503, retryable), never a 500.
   */
  async #query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    let named = statementName(sql);
    for (let attempt = 1; ; attempt++) {
      try {
        return named
          ? await this.db.query<R>({ name: named, text: sql, values: params })
          : await this.db.query<R>(sql, params);
      } catch (err) {
        const code = (err as { code?: string }).code;
        // another controller version changed the table under a prepared `SELECT *`
        if (named && code === "0A000") {
          named = undefined;
          continue;
        }
        if (!this.inside && attempt < RETRY_DELAYS_MS.length + 1 && notRun(err)) {
          await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt - 1]));
          continue;
        }
        if (momentary(err)) {
          this.shared.log.warn({ err: brief(err), attempts: attempt }, "PostgreSQL statement failed for now");
          throw new DatabaseUnavailable(`the database is unavailable for now: ${(err as Error).message}`, {
            cause: err,
          });
        }
        throw err;
      }
    }
  }

  async transaction<T>(fn: (tx: Repository) => Promise<T>): Promise<T> {
    if (this.inside) return fn(this);
    const client = await this.shared.pool.connect();
    let broken: Error | undefined;
    // a checked-out connection that dies emits "error": the statement in flight fails with
    // it too, so here it is only kept, never left to crash the process
    const onError = (err: Error) => {
      broken = err;
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock($1)", [TX_LOCK]);
      const result = await fn(new Postgres(client, this.shared, true));
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        // the connection is in an unknown state: the pool must not hand it out again
        broken = rollbackError as Error;
      });
      throw err;
    } finally {
      client.off("error", onError);
      client.release(broken);
    }
  }

  async publishAssignmentChanged(names: string[], reason: string): Promise<void> {
    for (let i = 0; i < names.length; i += NOTIFY_NAMES_PER_MESSAGE) {
      const payload = JSON.stringify({ names: names.slice(i, i + NOTIFY_NAMES_PER_MESSAGE), reason });
      // inside a transaction, PostgreSQL delivers it at COMMIT (never for a rollback)
      await this.db.query("SELECT pg_notify($1, $2)", [ASSIGNMENT_CHANNEL, payload]);
    }
  }

  onAssignmentChanged(listener: (names: string[], reason: string) => void): () => void {
    this.shared.listeners.add(listener);
    return () => this.shared.listeners.delete(listener);
  }

  readonly blobs: SharedArtifacts = {
    put: async (digest, bytes) => {
      await this.#run(
        "INSERT INTO artifact_blobs (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        [digest, Buffer.from(bytes)],
      );
    },
    get: async (digest) =>
      (await this.#rows<{ bytes: Buffer }>("SELECT bytes FROM artifact_blobs WHERE digest = $1", [digest]))[0]
        ?.bytes,
    has: async (digest) =>
      (await this.#rows("SELECT 1 FROM artifact_blobs WHERE digest = $1", [digest])).length > 0,
  };

  async insertDevice(device: Parameters<Repository["insertDevice"]>[0]): Promise<void> {
    await this.#run(
      `INSERT INTO devices (name, labels, serial, cert_pem, enrolled_at, not_after)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, serial = excluded.serial,
         cert_pem = excluded.cert_pem, enrolled_at = excluded.enrolled_at, not_after = excluded.not_after,
         revoked_at = NULL, last_seen_at = NULL, status = NULL, status_at = NULL
       WHERE devices.revoked_at IS NOT NULL`,
      [
        device.name,
        JSON.stringify(device.labels),
        device.serial,
        device.certPem,
        device.enrolledAt,
        device.notAfter,
      ],
    );
    checkEnrolled(device, await this.getDevice(device.name));
  }

  async getDevice(name: string): Promise<DeviceRecord | undefined> {
    const row = (
      await this.#rows<DeviceRow>(
        `SELECT ${POSTGRES_DEVICE_COLUMNS} FROM devices d ${POSTGRES_DEVICE_RULE_JOIN} WHERE d.name = $1`,
        [name],
      )
    )[0];
    return row ? deviceFromRow(row) : undefined;
  }

  async listDevices(): Promise<DeviceRecord[]> {
    return (
      await this.#rows<DeviceRow>(
        `SELECT ${POSTGRES_DEVICE_COLUMNS} FROM devices d ${POSTGRES_DEVICE_RULE_JOIN} ORDER BY d.name COLLATE "C"`,
      )
    ).map((row) => deviceFromRow(row));
  }

  async deviceRequestState(name: string, serial: string): Promise<DeviceRequestState> {
    // one round trip; the outer row exists whether or not the device does
    const row = (
      await this.#rows<DeviceRequestRow>(
        `SELECT ${POSTGRES_DEVICE_COLUMNS}, dm.grace_seconds, dm.confirmed_chain, dm.confirmed_version,
           EXISTS (SELECT 1 FROM revoked_serials WHERE serial = $2) AS serial_revoked
         FROM (SELECT 1) AS one
         LEFT JOIN devices d ON d.name = $1
         ${POSTGRES_DEVICE_RULE_JOIN}
         LEFT JOIN device_dead_man dm ON dm.device = d.name`,
        [name, serial],
      )
    )[0]!;
    return deviceRequestStateFromRow(row);
  }

  revokeDevice(name: string, at: string): Promise<DeviceRecord> {
    return this.transaction(async (tx) => {
      const device = revocableDevice(name, await tx.getDevice(name));
      const db = tx as Postgres;
      await db.#run("UPDATE devices SET revoked_at = $1 WHERE name = $2", [at, name]);
      await db.#run(
        "INSERT INTO revoked_serials (serial, device, revoked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [device.serial, name, at],
      );
      return { ...device, revokedAt: at };
    });
  }

  async deviceCertificates(names: readonly string[]): Promise<Map<string, DeviceCertificateState>> {
    const rows = await this.#rows<{ name: string; serial: string; revoked_at: string | null }>(
      "SELECT name, serial, revoked_at FROM devices WHERE name = ANY($1::text[])",
      [names],
    );
    return new Map(rows.map((r) => [r.name, { serial: r.serial, revokedAt: r.revoked_at }]));
  }

  async touchDevice(name: string, at: string): Promise<void> {
    await this.#run("UPDATE devices SET last_seen_at = $1 WHERE name = $2", [at, name]);
  }

  async touchDevices(seen: ReadonlyArray<readonly [string, string]>): Promise<void> {
    if (seen.length === 0) return;
    // one statement for the whole batch: no round trip per device, no serialised transaction
    await this.#telemetry(
      `UPDATE devices SET last_seen_at = batch.at
       FROM unnest($1::text[], $2::text[]) AS batch(name, at) WHERE devices.name = batch.name`,
      [seen.map(([name]) => name), seen.map(([, at]) => at)],
    );
  }

  async saveDeviceStatus(name: string, status: DeviceStatusReport, at: string): Promise<void> {
    await this.#telemetry(
      "UPDATE devices SET status = $1, status_at = $2, last_seen_at = $2 WHERE name = $3",
      [JSON.stringify(status), at, name],
    );
  }

  async getDeadMan(name: string): Promise<DeadManSettings> {
    const row = (
      await this.#rows<DeadManRow>(
        "SELECT grace_seconds, confirmed_chain, confirmed_version FROM device_dead_man WHERE device = $1",
        [name],
      )
    )[0];
    return deadManFromRow(row);
  }

  setGraceSeconds(deviceNames: string[], seconds: number): Promise<void> {
    return this.transaction(async (tx) => {
      for (const name of deviceNames)
        await (tx as Postgres).#run(
          `INSERT INTO device_dead_man (device, grace_seconds) VALUES ($1, $2)
           ON CONFLICT (device) DO UPDATE SET grace_seconds = excluded.grace_seconds`,
          [name, seconds],
        );
    });
  }

  async confirmRollback(name: string, chain: string, version: number): Promise<void> {
    await this.#run(
      `INSERT INTO device_dead_man (device, confirmed_chain, confirmed_version) VALUES ($1, $2, $3)
       ON CONFLICT (device) DO UPDATE SET confirmed_chain = excluded.confirmed_chain,
         confirmed_version = excluded.confirmed_version`,
      [name, chain, version],
    );
  }

  assignChain(deviceNames: string[], chain: string, version: number | null): Promise<void> {
    return this.transaction(async (tx) => {
      for (const name of deviceNames) {
        const changed = await (tx as Postgres).#run(
          "UPDATE devices SET assigned_chain = $1, assigned_version = $2 WHERE name = $3",
          [chain, version, name],
        );
        if (changed !== 1) throw new Error(`device ${name} is not enrolled`);
      }
    });
  }

  clearExplicitAssignment(deviceNames: string[]): Promise<void> {
    return this.transaction(async (tx) => {
      for (const name of deviceNames) {
        const changed = await (tx as Postgres).#run(
          "UPDATE devices SET assigned_chain = NULL, assigned_version = NULL WHERE name = $1",
          [name],
        );
        if (changed !== 1) throw new Error(`device ${name} is not enrolled`);
      }
    });
  }

  async devicesAssignedTo(chain: string): Promise<DeviceRecord[]> {
    return (await this.listDevices()).filter((d) => d.assignedChain === chain);
  }

  addSelectorRule(
    chain: string,
    version: number | null,
    selector: Labels,
    at: string,
  ): Promise<SelectorRule> {
    const canonical = canonicalSelector(selector);
    return this.transaction(async (tx) => {
      const db = tx as Postgres;
      await db.#run("DELETE FROM selector_rules WHERE selector = $1", [canonical]);
      const row = (
        await db.#rows<SelectorRuleRow>(
          "INSERT INTO selector_rules (chain, version, selector, created_at) VALUES ($1, $2, $3, $4) RETURNING *",
          [chain, version, canonical, at],
        )
      )[0]!;
      return ruleFromRow(row);
    });
  }

  removeSelectorRule(selector: Labels): Promise<SelectorRule[]> {
    const canonical = canonicalSelector(selector);
    return this.transaction(async (tx) =>
      (
        await (tx as Postgres).#rows<SelectorRuleRow>(
          "DELETE FROM selector_rules WHERE selector = $1 RETURNING *",
          [canonical],
        )
      )
        .sort((a, b) => a.id - b.id)
        .map(ruleFromRow),
    );
  }

  async listSelectorRules(): Promise<SelectorRule[]> {
    return (await this.#rows<SelectorRuleRow>("SELECT * FROM selector_rules ORDER BY id")).map(ruleFromRow);
  }

  async insertToken(token: Parameters<Repository["insertToken"]>[0]): Promise<void> {
    await this.#run(
      "INSERT INTO tokens (token_hash, name, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
      tokenParams(token),
    );
  }

  async findTokenByHash(tokenHash: string): Promise<TokenRecord | undefined> {
    const row = (await this.#rows<TokenRow>("SELECT * FROM tokens WHERE token_hash = $1", [tokenHash]))[0];
    return row ? tokenFromRow(row) : undefined;
  }

  async touchToken(tokenHash: string, at: string): Promise<void> {
    await this.#run("UPDATE tokens SET last_used_at = $1 WHERE token_hash = $2", [at, tokenHash]);
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.#rows<TokenRow>('SELECT * FROM tokens ORDER BY created_at, name COLLATE "C"')).map(
      tokenFromRow,
    );
  }

  async countTokens(): Promise<number> {
    return (await this.#rows<{ n: number }>("SELECT COUNT(*)::int AS n FROM tokens"))[0]!.n;
  }

  async deleteTokens(name: string): Promise<number> {
    return this.#run("DELETE FROM tokens WHERE name = $1", [name]);
  }

  async insertAudit(entry: AuditRecord): Promise<number> {
    return (
      await this.#rows<{ id: number }>(
        `INSERT INTO audit (at, actor, method, route, target, status, remote)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
        [entry.at, entry.actor, entry.method, entry.route, entry.target, entry.status, entry.remote],
      )
    )[0]!.id;
  }

  async finishAudit(id: number, status: number, target: string | null): Promise<void> {
    await this.#run("UPDATE audit SET status = $1, target = $2 WHERE id = $3", [status, target, id]);
  }

  async listAudit(query: { since?: string; limit: number }): Promise<AuditEntry[]> {
    const rows = query.since
      ? await this.#rows<AuditEntry>(
          "SELECT * FROM (SELECT * FROM audit WHERE at >= $1 ORDER BY id DESC LIMIT $2) AS newest ORDER BY id",
          [query.since, query.limit],
        )
      : await this.#rows<AuditEntry>(
          "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT $1) AS newest ORDER BY id",
          [query.limit],
        );
    return rows.map((r) => ({ ...r }));
  }

  insertChainVersion(chain: Omit<ChainVersionRecord, "version">): Promise<number> {
    return this.transaction(async (tx) => {
      const db = tx as Postgres;
      const row = (
        await db.#rows<{ v: number | null }>("SELECT MAX(version) AS v FROM chain_versions WHERE name = $1", [
          chain.name,
        ])
      )[0];
      const version = (row?.v ?? 0) + 1;
      await db.#run(
        `INSERT INTO chain_versions (name, version, toml, file, graph, warnings, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        chainVersionParams(chain, version),
      );
      faultPoint("chain-push"); // tests: SIGKILL lands here, before the commit
      return version;
    });
  }

  async getChainVersion(name: string, version?: number): Promise<ChainVersionRecord | undefined> {
    const row = (
      version === undefined
        ? await this.#rows("SELECT * FROM chain_versions WHERE name = $1 ORDER BY version DESC LIMIT 1", [
            name,
          ])
        : await this.#rows("SELECT * FROM chain_versions WHERE name = $1 AND version = $2", [name, version])
    )[0] as ChainVersionRow | undefined;
    return row ? chainVersionFromRow(row) : undefined;
  }

  async listChains(): Promise<Array<{ name: string; latestVersion: number; createdAt: string }>> {
    return (
      await this.#rows<{ name: string; latestVersion: number; createdAt: string }>(
        `SELECT name, MAX(version) AS "latestVersion", MAX(created_at) AS "createdAt"
         FROM chain_versions GROUP BY name ORDER BY name COLLATE "C"`,
      )
    ).map((r) => ({ ...r }));
  }

  async insertNf(nf: NfRecord): Promise<void> {
    await this.#run(
      `INSERT INTO nfs (name, source_digest, build, build_message, build_hash, interface, artifacts, published_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      nfParams(nf),
    );
  }

  async latestNf(name: string): Promise<NfRecord | undefined> {
    const row = (
      await this.#rows<NfRow>("SELECT * FROM nfs WHERE name = $1 ORDER BY seq DESC LIMIT 1", [name])
    )[0];
    return row ? nfFromRow(row) : undefined;
  }

  async listNfBuilds(name: string): Promise<NfRecord[]> {
    return (await this.#rows<NfRow>("SELECT * FROM nfs WHERE name = $1 ORDER BY seq DESC", [name])).map(
      nfFromRow,
    );
  }

  async addReleaseSignature(digest: string, nf: string, signature: Signature, at: string): Promise<void> {
    await this.#run(
      `INSERT INTO release_signatures (digest, nf, key_id, signature, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (digest, key_id) DO UPDATE SET signature = excluded.signature, created_at = excluded.created_at`,
      [digest, nf, signature.keyId, signature.sig, at],
    );
  }

  async releaseSignatures(digest: string): Promise<Signature[]> {
    return (
      await this.#rows<{ key_id: string; signature: string }>(
        'SELECT key_id, signature FROM release_signatures WHERE digest = $1 ORDER BY created_at, key_id COLLATE "C"',
        [digest],
      )
    ).map((r) => ({ keyId: r.key_id, sig: r.signature }));
  }

  async saveChainRelease(name: string, version: number, record: ChainReleaseRecord): Promise<void> {
    await this.#run(
      `INSERT INTO chain_releases (name, version, releases, document, signatures) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name, version) DO UPDATE SET releases = excluded.releases,
         document = excluded.document, signatures = excluded.signatures`,
      chainReleaseParams(name, version, record),
    );
  }

  async getChainRelease(name: string, version: number): Promise<ChainReleaseRecord | undefined> {
    const row = (
      await this.#rows<ChainReleaseRow>(
        "SELECT releases, document, signatures FROM chain_releases WHERE name = $1 AND version = $2",
        [name, version],
      )
    )[0];
    return row ? chainReleaseFromRow(row) : undefined;
  }

  saveKeySet(keySet: SignedReleaseKeySet, at: string): Promise<void> {
    return this.transaction(async (tx) => {
      checkNewerKeySet(keySet, await tx.latestKeySet());
      await (tx as Postgres).#run(
        "INSERT INTO release_key_sets (seq, document, signatures, created_at) VALUES ($1, $2, $3, $4)",
        keySetParams(keySet, at),
      );
    });
  }

  async latestKeySet(): Promise<SignedReleaseKeySet | undefined> {
    const row = (
      await this.#rows<SignedRow>(
        "SELECT document, signatures FROM release_key_sets ORDER BY seq DESC LIMIT 1",
      )
    )[0];
    return row ? signedFromRow<SignedReleaseKeySet>(row) : undefined;
  }

  async saveSignedMapEntries(signed: SignedMapEntries, at: string): Promise<void> {
    await this.#run(
      `INSERT INTO signed_map_entries (chain, map, seq, document, signatures, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (chain, map) DO UPDATE SET seq = excluded.seq, document = excluded.document,
         signatures = excluded.signatures, created_at = excluded.created_at`,
      signedMapEntriesParams(signed, at),
    );
  }

  async getSignedMapEntries(chain: string, map: string): Promise<SignedMapEntries | undefined> {
    const row = (
      await this.#rows<SignedRow>(
        "SELECT document, signatures FROM signed_map_entries WHERE chain = $1 AND map = $2",
        [chain, map],
      )
    )[0];
    return row ? signedFromRow<SignedMapEntries>(row) : undefined;
  }

  async insertRollout(rollout: Omit<Rollout, "id">): Promise<number> {
    return (
      await this.#rows<{ id: number }>(
        "INSERT INTO rollouts (chain, state, document, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        rolloutParams(rollout),
      )
    )[0]!.id;
  }

  async updateRollout(rollout: Rollout): Promise<void> {
    const { id, ...document } = rollout;
    const changed = await this.#run(
      "UPDATE rollouts SET state = $1, document = $2, updated_at = $3 WHERE id = $4",
      [rollout.state, JSON.stringify(document), rollout.updatedAt, id],
    );
    if (changed !== 1) throw new Error(`rollout ${id} does not exist`);
  }

  async getRollout(id: number): Promise<Rollout | undefined> {
    const row = (await this.#rows<RolloutRow>("SELECT id, document FROM rollouts WHERE id = $1", [id]))[0];
    return row ? rolloutFromRow(row) : undefined;
  }

  async listRollouts(query: { active?: boolean; limit?: number }): Promise<Rollout[]> {
    const rows = await this.#rows<RolloutRow>(
      `SELECT id, document FROM rollouts ${query.active ? "WHERE state IN ('running', 'paused')" : ""}
       ORDER BY id DESC LIMIT $1`,
      [query.limit ?? 1000],
    );
    return rows.map(rolloutFromRow);
  }

  async insertArtifact(meta: ArtifactMeta, at: string): Promise<void> {
    await this.#run(
      `INSERT INTO artifacts (digest, kind, size, nf, triple, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (digest) DO NOTHING`,
      [meta.digest, meta.kind, meta.size, meta.nf, meta.triple ?? null, at],
    );
  }

  async getArtifact(digest: string): Promise<ArtifactMeta | undefined> {
    const row = (
      await this.#rows<ArtifactRow>(
        "SELECT digest, kind, size, nf, triple FROM artifacts WHERE digest = $1",
        [digest],
      )
    )[0];
    return row ? artifactFromRow(row) : undefined;
  }

  setMapEntries(chain: string, map: string, set: MapEntry[], remove: string[], at: string): Promise<void> {
    return this.transaction(async (tx) => {
      const db = tx as Postgres;
      for (const entry of set)
        await db.#run(
          `INSERT INTO map_entries (chain, map, key, value, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (chain, map, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
          [chain, map, entry.key, entry.value, at],
        );
      for (const key of remove)
        await db.#run("DELETE FROM map_entries WHERE chain = $1 AND map = $2 AND key = $3", [
          chain,
          map,
          key,
        ]);
    });
  }

  async getMapEntries(chain: string, map: string): Promise<MapEntry[]> {
    return this.#rows<MapEntry>(
      'SELECT key, value FROM map_entries WHERE chain = $1 AND map = $2 ORDER BY key COLLATE "C"',
      [chain, map],
    );
  }

  async close(): Promise<void> {
    if (this.inside) throw new Error("close() inside a transaction");
    if (this.shared.closed) return;
    this.shared.closed = true;
    this.shared.listeners.clear();
    await this.shared.listener?.end().catch((err: unknown) => {
      this.shared.log.warn({ err }, "closing the LISTEN connection failed");
    });
    await Promise.all([this.shared.pool.end(), this.shared.telemetry.end()]);
  }
}
