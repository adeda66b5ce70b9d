import { mkdirSync } from "node:fs";
import { join } from "node:path";
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
import Database from "better-sqlite3";
import { faultPoint } from "./fault-point";
import { pendingMigrations } from "./migrations";
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
  DEVICE_COLUMNS,
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

export const DATABASE_FILE = "galette.db";
export { MIGRATIONS, SCHEMA_VERSION } from "./migrations";

export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  for (const step of pendingMigrations(current, "sqlite")) {
    db.transaction(() => {
      db.exec(step.sql);
      db.pragma(`user_version = ${step.version}`);
    }).immediate();
  }
}

/** Opens (creating if needed) DIR/galette.db, migrated to the current schema. */
export function openSqliteRepository(dataDir: string): Repository {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, DATABASE_FILE));
  // WAL lets the CLI write (enrol/revoke on --data DIR) while a running controller reads.
  db.pragma("journal_mode = WAL");
  // explicit: every commit on disk before the answer, except device telemetry (see telemetry())
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");
  migrate(db);
  return new SqliteRepository(new SqliteStore(db), { busy: undefined, listeners: new Set() }, false);
}

/** What the outer repository and its transaction views share. */
interface SqliteShared {
  /** resolves when the open transaction ends; undefined when none is open */
  busy: Promise<void> | undefined;
  listeners: Set<(names: string[], reason: string) => void>;
}

/**
 * The Repository over better-sqlite3. Every call is synchronous underneath; while a
 * transaction is open (its body awaits between statements) calls from outside it wait, so
 * nothing from another request slips into it (one connection, one transaction at a time).
 */
class SqliteRepository implements Repository {
  readonly dialect = "sqlite" as const;

  constructor(
    private readonly store: SqliteStore,
    private readonly shared: SqliteShared,
    /** a transaction's view: runs at once, never waits for itself */
    private readonly inside: boolean,
  ) {}

  private async run<T>(fn: (store: SqliteStore) => T): Promise<T> {
    if (!this.inside) while (this.shared.busy) await this.shared.busy;
    return fn(this.store);
  }

  async transaction<T>(fn: (tx: Repository) => Promise<T>): Promise<T> {
    if (this.inside) return fn(this);
    while (this.shared.busy) await this.shared.busy;
    let release: () => void = () => {};
    this.shared.busy = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      this.store.begin();
      try {
        const result = await fn(new SqliteRepository(this.store, this.shared, true));
        this.store.commit();
        return result;
      } catch (err) {
        this.store.rollback();
        throw err;
      }
    } finally {
      this.shared.busy = undefined;
      release();
    }
  }

  async publishAssignmentChanged(names: string[], reason: string): Promise<void> {
    for (const listener of this.shared.listeners) listener(names, reason);
  }

  onAssignmentChanged(listener: (names: string[], reason: string) => void): () => void {
    this.shared.listeners.add(listener);
    return () => this.shared.listeners.delete(listener);
  }

  insertDevice(...a: Parameters<Repository["insertDevice"]>) {
    return this.run((s) => s.insertDevice(...a));
  }
  getDevice(...a: Parameters<Repository["getDevice"]>) {
    return this.run((s) => s.getDevice(...a));
  }
  listDevices(...a: Parameters<Repository["listDevices"]>) {
    return this.run((s) => s.listDevices(...a));
  }
  revokeDevice(...a: Parameters<Repository["revokeDevice"]>) {
    return this.run((s) => s.revokeDevice(...a));
  }
  deviceRequestState(...a: Parameters<Repository["deviceRequestState"]>) {
    return this.run((s) => s.deviceRequestState(...a));
  }
  deviceCertificates(...a: Parameters<Repository["deviceCertificates"]>) {
    return this.run((s) => s.deviceCertificates(...a));
  }
  touchDevice(...a: Parameters<Repository["touchDevice"]>) {
    return this.run((s) => s.touchDevice(...a));
  }
  touchDevices(...a: Parameters<Repository["touchDevices"]>) {
    return this.run((s) => s.touchDevices(...a));
  }
  saveDeviceStatus(...a: Parameters<Repository["saveDeviceStatus"]>) {
    return this.run((s) => s.saveDeviceStatus(...a));
  }
  getDeadMan(...a: Parameters<Repository["getDeadMan"]>) {
    return this.run((s) => s.getDeadMan(...a));
  }
  setGraceSeconds(...a: Parameters<Repository["setGraceSeconds"]>) {
    return this.run((s) => s.setGraceSeconds(...a));
  }
  confirmRollback(...a: Parameters<Repository["confirmRollback"]>) {
    return this.run((s) => s.confirmRollback(...a));
  }
  assignChain(...a: Parameters<Repository["assignChain"]>) {
    return this.run((s) => s.assignChain(...a));
  }
  clearExplicitAssignment(...a: Parameters<Repository["clearExplicitAssignment"]>) {
    return this.run((s) => s.clearExplicitAssignment(...a));
  }
  devicesAssignedTo(...a: Parameters<Repository["devicesAssignedTo"]>) {
    return this.run((s) => s.devicesAssignedTo(...a));
  }
  addSelectorRule(...a: Parameters<Repository["addSelectorRule"]>) {
    return this.run((s) => s.addSelectorRule(...a));
  }
  removeSelectorRule(...a: Parameters<Repository["removeSelectorRule"]>) {
    return this.run((s) => s.removeSelectorRule(...a));
  }
  listSelectorRules(...a: Parameters<Repository["listSelectorRules"]>) {
    return this.run((s) => s.listSelectorRules(...a));
  }
  insertToken(...a: Parameters<Repository["insertToken"]>) {
    return this.run((s) => s.insertToken(...a));
  }
  findTokenByHash(...a: Parameters<Repository["findTokenByHash"]>) {
    return this.run((s) => s.findTokenByHash(...a));
  }
  touchToken(...a: Parameters<Repository["touchToken"]>) {
    return this.run((s) => s.touchToken(...a));
  }
  listTokens(...a: Parameters<Repository["listTokens"]>) {
    return this.run((s) => s.listTokens(...a));
  }
  countTokens(...a: Parameters<Repository["countTokens"]>) {
    return this.run((s) => s.countTokens(...a));
  }
  deleteTokens(...a: Parameters<Repository["deleteTokens"]>) {
    return this.run((s) => s.deleteTokens(...a));
  }
  insertAudit(...a: Parameters<Repository["insertAudit"]>) {
    return this.run((s) => s.insertAudit(...a));
  }
  finishAudit(...a: Parameters<Repository["finishAudit"]>) {
    return this.run((s) => s.finishAudit(...a));
  }
  listAudit(...a: Parameters<Repository["listAudit"]>) {
    return this.run((s) => s.listAudit(...a));
  }
  insertChainVersion(...a: Parameters<Repository["insertChainVersion"]>) {
    return this.run((s) => s.insertChainVersion(...a));
  }
  getChainVersion(...a: Parameters<Repository["getChainVersion"]>) {
    return this.run((s) => s.getChainVersion(...a));
  }
  listChains(...a: Parameters<Repository["listChains"]>) {
    return this.run((s) => s.listChains(...a));
  }
  insertNf(...a: Parameters<Repository["insertNf"]>) {
    return this.run((s) => s.insertNf(...a));
  }
  latestNf(...a: Parameters<Repository["latestNf"]>) {
    return this.run((s) => s.latestNf(...a));
  }
  insertArtifact(...a: Parameters<Repository["insertArtifact"]>) {
    return this.run((s) => s.insertArtifact(...a));
  }
  getArtifact(...a: Parameters<Repository["getArtifact"]>) {
    return this.run((s) => s.getArtifact(...a));
  }
  setMapEntries(...a: Parameters<Repository["setMapEntries"]>) {
    return this.run((s) => s.setMapEntries(...a));
  }
  getMapEntries(...a: Parameters<Repository["getMapEntries"]>) {
    return this.run((s) => s.getMapEntries(...a));
  }
  listNfBuilds(...a: Parameters<Repository["listNfBuilds"]>) {
    return this.run((s) => s.listNfBuilds(...a));
  }
  addReleaseSignature(...a: Parameters<Repository["addReleaseSignature"]>) {
    return this.run((s) => s.addReleaseSignature(...a));
  }
  releaseSignatures(...a: Parameters<Repository["releaseSignatures"]>) {
    return this.run((s) => s.releaseSignatures(...a));
  }
  saveChainRelease(...a: Parameters<Repository["saveChainRelease"]>) {
    return this.run((s) => s.saveChainRelease(...a));
  }
  getChainRelease(...a: Parameters<Repository["getChainRelease"]>) {
    return this.run((s) => s.getChainRelease(...a));
  }
  saveKeySet(...a: Parameters<Repository["saveKeySet"]>) {
    return this.run((s) => s.saveKeySet(...a));
  }
  latestKeySet(...a: Parameters<Repository["latestKeySet"]>) {
    return this.run((s) => s.latestKeySet(...a));
  }
  saveSignedMapEntries(...a: Parameters<Repository["saveSignedMapEntries"]>) {
    return this.run((s) => s.saveSignedMapEntries(...a));
  }
  getSignedMapEntries(...a: Parameters<Repository["getSignedMapEntries"]>) {
    return this.run((s) => s.getSignedMapEntries(...a));
  }
  insertRollout(...a: Parameters<Repository["insertRollout"]>) {
    return this.run((s) => s.insertRollout(...a));
  }
  updateRollout(...a: Parameters<Repository["updateRollout"]>) {
    return this.run((s) => s.updateRollout(...a));
  }
  getRollout(...a: Parameters<Repository["getRollout"]>) {
    return this.run((s) => s.getRollout(...a));
  }
  listRollouts(...a: Parameters<Repository["listRollouts"]>) {
    return this.run((s) => s.listRollouts(...a));
  }

  async close(): Promise<void> {
    if (this.inside) throw new Error("close() inside a transaction");
    while (this.shared.busy) await this.shared.busy;
    this.store.close();
  }
}

/** The synchronous statements (better-sqlite3); SqliteRepository is its async face. */
class SqliteStore {
  /** the selector rules as of PRAGMA data_version `version` (see selectorRules) */
  private rules: { version: number; rules: readonly SelectorRule[] } | undefined;

  constructor(private readonly db: Database.Database) {
    // Each SQL text is prepared once: preparing costs more than running a small query, and
    // every device request runs several. (Statements here take no per-call modes.)
    const prepare = db.prepare.bind(db);
    const statements = new Map<string, Database.Statement>();
    db.prepare = ((sql: string) => {
      let statement = statements.get(sql);
      if (!statement) {
        statement = prepare(sql);
        statements.set(sql, statement);
      }
      return statement;
    }) as Database.Database["prepare"];
  }

  begin(): void {
    // IMMEDIATE takes the write lock up front, so two processes cannot both read-then-write stale state.
    this.db.exec("BEGIN IMMEDIATE");
  }

  commit(): void {
    this.db.exec("COMMIT");
  }

  rollback(): void {
    // what was read inside may have been rolled back
    this.rules = undefined;
    if (this.db.inTransaction) this.db.exec("ROLLBACK");
  }

  transaction<T>(fn: () => T): T {
    // IMMEDIATE takes the write lock up front, so two processes cannot both read-then-write stale state.
    return this.db.transaction(fn).immediate();
  }

  insertDevice(device: Parameters<Repository["insertDevice"]>[0]): void {
    this.db
      .prepare(
        `INSERT INTO devices (name, labels, serial, cert_pem, enrolled_at, not_after)
         VALUES (@name, @labels, @serial, @certPem, @enrolledAt, @notAfter)
         ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, serial = excluded.serial,
           cert_pem = excluded.cert_pem, enrolled_at = excluded.enrolled_at, not_after = excluded.not_after,
           revoked_at = NULL, last_seen_at = NULL, status = NULL, status_at = NULL
         WHERE devices.revoked_at IS NOT NULL`,
      )
      .run({ ...device, labels: JSON.stringify(device.labels) });
    checkEnrolled(device, this.getDevice(device.name));
  }

  getDevice(name: string): DeviceRecord | undefined {
    const row = this.db.prepare(`SELECT ${DEVICE_COLUMNS} FROM devices d WHERE d.name = ?`).get(name) as
      | DeviceRow
      | undefined;
    return row ? deviceFromRow(row, this.selectorRules()) : undefined;
  }

  listDevices(): DeviceRecord[] {
    const rules = this.selectorRules();
    return (
      this.db.prepare(`SELECT ${DEVICE_COLUMNS} FROM devices d ORDER BY d.name`).all() as DeviceRow[]
    ).map((row) => deviceFromRow(row, rules));
  }

  deviceRequestState(name: string, serial: string): DeviceRequestState {
    // the outer row exists whether or not the device does: the serial's answer always comes
    // back; data_version rides along (see selectorRules), saving a statement per request
    const row = this.db
      .prepare(
        `SELECT ${DEVICE_COLUMNS}, dm.grace_seconds, dm.confirmed_chain, dm.confirmed_version,
           EXISTS (SELECT 1 FROM revoked_serials WHERE serial = @serial) AS serial_revoked,
           (SELECT data_version FROM pragma_data_version) AS data_version
         FROM (SELECT 1) AS one
         LEFT JOIN devices d ON d.name = @name
         LEFT JOIN device_dead_man dm ON dm.device = d.name`,
      )
      .get({ name, serial }) as DeviceRequestRow & { data_version: number };
    return deviceRequestStateFromRow(row, this.selectorRules(row.data_version));
  }

  revokeDevice(name: string, at: string): DeviceRecord {
    return this.transaction(() => {
      const device = revocableDevice(name, this.getDevice(name));
      this.db.prepare("UPDATE devices SET revoked_at = ? WHERE name = ?").run(at, name);
      this.db
        .prepare("INSERT OR IGNORE INTO revoked_serials (serial, device, revoked_at) VALUES (?, ?, ?)")
        .run(device.serial, name, at);
      return { ...device, revokedAt: at };
    });
  }

  deviceCertificates(names: readonly string[]): Map<string, DeviceCertificateState> {
    const rows = this.db
      .prepare("SELECT name, serial, revoked_at FROM devices WHERE name IN (SELECT value FROM json_each(?))")
      .all(JSON.stringify(names)) as Array<{ name: string; serial: string; revoked_at: string | null }>;
    return new Map(rows.map((r) => [r.name, { serial: r.serial, revokedAt: r.revoked_at }]));
  }

  touchDevice(name: string, at: string): void {
    this.db.prepare("UPDATE devices SET last_seen_at = ? WHERE name = ?").run(at, name);
  }

  /**
   * Runs a write of device telemetry (status reports, last-seen times) with
   * `synchronous = NORMAL`: its commit does not wait for the disk. Every other write keeps
   * FULL (on disk before the answer). Why: a status report arrives every 10 s from every
   * device, and each FULL commit is an fsync on the event loop, which waits behind other
   * processes' writeback (223 ms measured beside one large file write) while every request
   * waits behind it. NORMAL in WAL mode loses nothing when the controller crashes (kill -9);
   * a power loss can lose the last seconds of reports, which every device sends again.
   */
  private telemetry(write: () => void): void {
    // inside a transaction its commit decides (SQLite refuses the change there)
    if (this.db.inTransaction) {
      write();
      return;
    }
    this.db.pragma("synchronous = NORMAL");
    try {
      write();
    } finally {
      this.db.pragma("synchronous = FULL");
    }
  }

  touchDevices(seen: ReadonlyArray<readonly [string, string]>): void {
    const update = this.db.prepare("UPDATE devices SET last_seen_at = ? WHERE name = ?");
    // one transaction: one commit for the whole batch
    this.telemetry(() =>
      this.db.transaction(() => {
        for (const [name, at] of seen) update.run(at, name);
      })(),
    );
  }

  getDeadMan(name: string): DeadManSettings {
    const row = this.db
      .prepare(
        "SELECT grace_seconds, confirmed_chain, confirmed_version FROM device_dead_man WHERE device = ?",
      )
      .get(name) as DeadManRow | undefined;
    return deadManFromRow(row);
  }

  setGraceSeconds(deviceNames: string[], seconds: number): void {
    const upsert = this.db.prepare(
      `INSERT INTO device_dead_man (device, grace_seconds) VALUES (?, ?)
       ON CONFLICT (device) DO UPDATE SET grace_seconds = excluded.grace_seconds`,
    );
    this.transaction(() => {
      for (const name of deviceNames) upsert.run(name, seconds);
    });
  }

  confirmRollback(name: string, chain: string, version: number): void {
    this.db
      .prepare(
        `INSERT INTO device_dead_man (device, confirmed_chain, confirmed_version) VALUES (?, ?, ?)
         ON CONFLICT (device) DO UPDATE SET confirmed_chain = excluded.confirmed_chain,
           confirmed_version = excluded.confirmed_version`,
      )
      .run(name, chain, version);
  }

  saveDeviceStatus(name: string, status: DeviceStatusReport, at: string): void {
    const update = this.db.prepare(
      "UPDATE devices SET status = ?, status_at = ?, last_seen_at = ? WHERE name = ?",
    );
    this.telemetry(() => update.run(JSON.stringify(status), at, at, name));
  }

  assignChain(deviceNames: string[], chain: string, version: number | null): void {
    const update = this.db.prepare(
      "UPDATE devices SET assigned_chain = ?, assigned_version = ? WHERE name = ?",
    );
    this.transaction(() => {
      for (const name of deviceNames) {
        if (update.run(chain, version, name).changes !== 1) throw new Error(`device ${name} is not enrolled`);
      }
    });
  }

  clearExplicitAssignment(deviceNames: string[]): void {
    const update = this.db.prepare(
      "UPDATE devices SET assigned_chain = NULL, assigned_version = NULL WHERE name = ?",
    );
    this.transaction(() => {
      for (const name of deviceNames) {
        if (update.run(name).changes !== 1) throw new Error(`device ${name} is not enrolled`);
      }
    });
  }

  devicesAssignedTo(chain: string): DeviceRecord[] {
    return this.listDevices().filter((d) => d.assignedChain === chain);
  }

  addSelectorRule(chain: string, version: number | null, selector: Labels, at: string): SelectorRule {
    const canonical = canonicalSelector(selector);
    this.rules = undefined;
    return this.transaction(() => {
      this.db.prepare("DELETE FROM selector_rules WHERE selector = ?").run(canonical);
      const { lastInsertRowid } = this.db
        .prepare("INSERT INTO selector_rules (chain, version, selector, created_at) VALUES (?, ?, ?, ?)")
        .run(chain, version, canonical, at);
      return ruleFromRow(
        this.db.prepare("SELECT * FROM selector_rules WHERE id = ?").get(lastInsertRowid) as SelectorRuleRow,
      );
    });
  }

  removeSelectorRule(selector: Labels): SelectorRule[] {
    const canonical = canonicalSelector(selector);
    this.rules = undefined;
    return this.transaction(() => {
      const removed = (
        this.db.prepare("SELECT * FROM selector_rules WHERE selector = ?").all(canonical) as SelectorRuleRow[]
      ).map(ruleFromRow);
      this.db.prepare("DELETE FROM selector_rules WHERE selector = ?").run(canonical);
      return removed;
    });
  }

  listSelectorRules(): SelectorRule[] {
    return (this.db.prepare("SELECT * FROM selector_rules ORDER BY id").all() as SelectorRuleRow[]).map(
      ruleFromRow,
    );
  }

  /**
   * The selector rules every device read resolves its assignment with, read again only when
   * the database may have changed them: this connection changed them (add/remove, a rollback
   * drops the copy too) or another connection committed anything (PRAGMA data_version: the
   * CLI on the data dir). Reading and parsing every rule was the largest part of a device read.
   */
  private selectorRules(
    version = (this.db.prepare("PRAGMA data_version").get() as { data_version: number }).data_version,
  ): readonly SelectorRule[] {
    if (this.rules?.version !== version) this.rules = { version, rules: this.listSelectorRules() };
    return this.rules.rules;
  }

  insertToken(token: Parameters<Repository["insertToken"]>[0]): void {
    this.db
      .prepare("INSERT INTO tokens (token_hash, name, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
      .run(...tokenParams(token));
  }

  findTokenByHash(tokenHash: string): TokenRecord | undefined {
    const row = this.db.prepare("SELECT * FROM tokens WHERE token_hash = ?").get(tokenHash) as
      | TokenRow
      | undefined;
    return row ? tokenFromRow(row) : undefined;
  }

  touchToken(tokenHash: string, at: string): void {
    this.db.prepare("UPDATE tokens SET last_used_at = ? WHERE token_hash = ?").run(at, tokenHash);
  }

  listTokens(): TokenRecord[] {
    return (this.db.prepare("SELECT * FROM tokens ORDER BY created_at, name").all() as TokenRow[]).map(
      tokenFromRow,
    );
  }

  countTokens(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM tokens").get() as { n: number }).n;
  }

  insertAudit(entry: AuditRecord): number {
    return Number(
      this.db
        .prepare(
          `INSERT INTO audit (at, actor, method, route, target, status, remote)
           VALUES (@at, @actor, @method, @route, @target, @status, @remote)`,
        )
        .run(entry).lastInsertRowid,
    );
  }

  finishAudit(id: number, status: number, target: string | null): void {
    this.db.prepare("UPDATE audit SET status = ?, target = ? WHERE id = ?").run(status, target, id);
  }

  listAudit(query: { since?: string; limit: number }): AuditEntry[] {
    const rows = (
      query.since
        ? this.db
            .prepare("SELECT * FROM (SELECT * FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?) ORDER BY id")
            .all(query.since, query.limit)
        : this.db
            .prepare("SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id")
            .all(query.limit)
    ) as AuditEntry[];
    return rows.map((r) => ({ ...r }));
  }

  deleteTokens(name: string): number {
    return this.db.prepare("DELETE FROM tokens WHERE name = ?").run(name).changes;
  }

  insertChainVersion(chain: Omit<ChainVersionRecord, "version">): number {
    return this.transaction(() => {
      const row = this.db
        .prepare("SELECT MAX(version) AS v FROM chain_versions WHERE name = ?")
        .get(chain.name) as {
        v: number | null;
      };
      const version = (row.v ?? 0) + 1;
      this.db
        .prepare(
          `INSERT INTO chain_versions (name, version, toml, file, graph, warnings, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(...chainVersionParams(chain, version));
      faultPoint("chain-push"); // tests: SIGKILL lands here, before the commit
      return version;
    });
  }

  getChainVersion(name: string, version?: number): ChainVersionRecord | undefined {
    const row = (
      version === undefined
        ? this.db
            .prepare("SELECT * FROM chain_versions WHERE name = ? ORDER BY version DESC LIMIT 1")
            .get(name)
        : this.db.prepare("SELECT * FROM chain_versions WHERE name = ? AND version = ?").get(name, version)
    ) as ChainVersionRow | undefined;
    return row ? chainVersionFromRow(row) : undefined;
  }

  listChains(): Array<{ name: string; latestVersion: number; createdAt: string }> {
    return (
      this.db
        .prepare(
          `SELECT name, MAX(version) AS latestVersion, MAX(created_at) AS createdAt
           FROM chain_versions GROUP BY name ORDER BY name`,
        )
        .all() as Array<{ name: string; latestVersion: number; createdAt: string }>
    ).map((r) => ({ ...r }));
  }

  insertNf(nf: NfRecord): void {
    this.db
      .prepare(
        `INSERT INTO nfs (name, source_digest, build, build_message, build_hash, interface, artifacts, published_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(...nfParams(nf));
  }

  latestNf(name: string): NfRecord | undefined {
    const row = this.db.prepare("SELECT * FROM nfs WHERE name = ? ORDER BY seq DESC LIMIT 1").get(name) as
      | NfRow
      | undefined;
    return row ? nfFromRow(row) : undefined;
  }

  listNfBuilds(name: string): NfRecord[] {
    return (this.db.prepare("SELECT * FROM nfs WHERE name = ? ORDER BY seq DESC").all(name) as NfRow[]).map(
      nfFromRow,
    );
  }

  addReleaseSignature(digest: string, nf: string, signature: Signature, at: string): void {
    this.db
      .prepare(
        `INSERT INTO release_signatures (digest, nf, key_id, signature, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (digest, key_id) DO UPDATE SET signature = excluded.signature, created_at = excluded.created_at`,
      )
      .run(digest, nf, signature.keyId, signature.sig, at);
  }

  releaseSignatures(digest: string): Signature[] {
    return (
      this.db
        .prepare(
          "SELECT key_id, signature FROM release_signatures WHERE digest = ? ORDER BY created_at, key_id",
        )
        .all(digest) as Array<{ key_id: string; signature: string }>
    ).map((r) => ({ keyId: r.key_id, sig: r.signature }));
  }

  saveChainRelease(name: string, version: number, record: ChainReleaseRecord): void {
    this.db
      .prepare(
        `INSERT INTO chain_releases (name, version, releases, document, signatures) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name, version) DO UPDATE SET releases = excluded.releases,
           document = excluded.document, signatures = excluded.signatures`,
      )
      .run(...chainReleaseParams(name, version, record));
  }

  getChainRelease(name: string, version: number): ChainReleaseRecord | undefined {
    const row = this.db
      .prepare("SELECT releases, document, signatures FROM chain_releases WHERE name = ? AND version = ?")
      .get(name, version) as ChainReleaseRow | undefined;
    return row ? chainReleaseFromRow(row) : undefined;
  }

  saveKeySet(keySet: SignedReleaseKeySet, at: string): void {
    this.transaction(() => {
      checkNewerKeySet(keySet, this.latestKeySet());
      this.db
        .prepare("INSERT INTO release_key_sets (seq, document, signatures, created_at) VALUES (?, ?, ?, ?)")
        .run(...keySetParams(keySet, at));
    });
  }

  latestKeySet(): SignedReleaseKeySet | undefined {
    const row = this.db
      .prepare("SELECT document, signatures FROM release_key_sets ORDER BY seq DESC LIMIT 1")
      .get() as SignedRow | undefined;
    return row ? signedFromRow<SignedReleaseKeySet>(row) : undefined;
  }

  saveSignedMapEntries(signed: SignedMapEntries, at: string): void {
    this.db
      .prepare(
        `INSERT INTO signed_map_entries (chain, map, seq, document, signatures, created_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (chain, map) DO UPDATE SET seq = excluded.seq, document = excluded.document,
           signatures = excluded.signatures, created_at = excluded.created_at`,
      )
      .run(...signedMapEntriesParams(signed, at));
  }

  getSignedMapEntries(chain: string, map: string): SignedMapEntries | undefined {
    const row = this.db
      .prepare("SELECT document, signatures FROM signed_map_entries WHERE chain = ? AND map = ?")
      .get(chain, map) as SignedRow | undefined;
    return row ? signedFromRow<SignedMapEntries>(row) : undefined;
  }

  insertRollout(rollout: Omit<Rollout, "id">): number {
    return Number(
      this.db
        .prepare(
          "INSERT INTO rollouts (chain, state, document, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .run(...rolloutParams(rollout)).lastInsertRowid,
    );
  }

  updateRollout(rollout: Rollout): void {
    const { id, ...document } = rollout;
    const changed = this.db
      .prepare("UPDATE rollouts SET state = ?, document = ?, updated_at = ? WHERE id = ?")
      .run(rollout.state, JSON.stringify(document), rollout.updatedAt, id).changes;
    if (changed !== 1) throw new Error(`rollout ${id} does not exist`);
  }

  getRollout(id: number): Rollout | undefined {
    const row = this.db.prepare("SELECT id, document FROM rollouts WHERE id = ?").get(id) as
      | RolloutRow
      | undefined;
    return row ? rolloutFromRow(row) : undefined;
  }

  listRollouts(query: { active?: boolean; limit?: number }): Rollout[] {
    const rows = this.db
      .prepare(
        `SELECT id, document FROM rollouts ${query.active ? "WHERE state IN ('running', 'paused')" : ""}
         ORDER BY id DESC LIMIT ?`,
      )
      .all(query.limit ?? 1000) as RolloutRow[];
    return rows.map(rolloutFromRow);
  }

  insertArtifact(meta: ArtifactMeta, at: string): void {
    this.db
      .prepare(
        `INSERT OR IGNORE INTO artifacts (digest, kind, size, nf, triple, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(meta.digest, meta.kind, meta.size, meta.nf, meta.triple ?? null, at);
  }

  getArtifact(digest: string): ArtifactMeta | undefined {
    const row = this.db
      .prepare("SELECT digest, kind, size, nf, triple FROM artifacts WHERE digest = ?")
      .get(digest) as ArtifactRow | undefined;
    return row ? artifactFromRow(row) : undefined;
  }

  setMapEntries(chain: string, map: string, set: MapEntry[], remove: string[], at: string): void {
    const upsert = this.db.prepare(
      `INSERT INTO map_entries (chain, map, key, value, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (chain, map, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    );
    const del = this.db.prepare("DELETE FROM map_entries WHERE chain = ? AND map = ? AND key = ?");
    this.transaction(() => {
      for (const entry of set) upsert.run(chain, map, entry.key, entry.value, at);
      for (const key of remove) del.run(chain, map, key);
    });
  }

  getMapEntries(chain: string, map: string): MapEntry[] {
    return this.db
      .prepare("SELECT key, value FROM map_entries WHERE chain = ? AND map = ? ORDER BY key")
      .all(chain, map) as MapEntry[];
  }

  close(): void {
    this.db.close();
  }
}
