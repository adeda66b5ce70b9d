import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import type {
  ArtifactMeta,
  AssignmentSource,
  AuditEntry,
  DeviceStatusReport,
  Labels,
  MapEntry,
  Rollout,
  SelectorRule,
  Signature,
  SignedMapEntries,
  SignedReleaseKeySet,
  TokenScope,
} from "@galette/protocol";
import { chainGraphFromStored } from "@galette/protocol";
import Database from "better-sqlite3";
import { faultPoint } from "./fault-point";
import type {
  AuditRecord,
  ChainReleaseRecord,
  ChainVersionRecord,
  DeadManSettings,
  DeviceRecord,
  NfRecord,
  Repository,
  TokenRecord,
} from "./repository";

export const DATABASE_FILE = "galette.db";

/**
 * Schema migrations, applied in order; PRAGMA user_version records how many ran.
 * Never edit a shipped migration: append a new one.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE devices (
     name TEXT PRIMARY KEY,
     labels TEXT NOT NULL,
     serial TEXT NOT NULL,
     cert_pem TEXT NOT NULL,
     enrolled_at TEXT NOT NULL,
     not_after TEXT NOT NULL,
     revoked_at TEXT,
     last_seen_at TEXT,
     assigned_chain TEXT,
     assigned_version INTEGER,
     status TEXT,
     status_at TEXT
   );
   CREATE TABLE revoked_serials (
     serial TEXT PRIMARY KEY,
     device TEXT NOT NULL,
     revoked_at TEXT NOT NULL
   );
   CREATE TABLE tokens (
     token_hash TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE chain_versions (
     name TEXT NOT NULL,
     version INTEGER NOT NULL,
     toml TEXT NOT NULL,
     file TEXT NOT NULL,
     graph TEXT NOT NULL,
     warnings TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (name, version)
   );
   CREATE TABLE nfs (
     name TEXT NOT NULL,
     source_digest TEXT NOT NULL,
     build TEXT NOT NULL,
     build_message TEXT,
     build_hash TEXT NOT NULL,
     interface TEXT NOT NULL,
     artifacts TEXT NOT NULL,
     published_at TEXT NOT NULL,
     seq INTEGER PRIMARY KEY AUTOINCREMENT
   );
   CREATE INDEX nfs_by_name ON nfs (name, seq);
   CREATE TABLE artifacts (
     digest TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     size INTEGER NOT NULL,
     nf TEXT NOT NULL,
     triple TEXT,
     created_at TEXT NOT NULL
   );
   CREATE TABLE map_entries (
     chain TEXT NOT NULL,
     map TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     PRIMARY KEY (chain, map, key)
   );`,
  // Selector assignments as standing rules; id order = creation order (newest wins).
  // selector is canonical JSON (keys sorted) so "same selector" is a string compare.
  `CREATE TABLE selector_rules (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     chain TEXT NOT NULL,
     version INTEGER,
     selector TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE INDEX selector_rules_by_selector ON selector_rules (selector);`,
  // Token scopes and expiry, and the audit log. Tokens made before scopes existed had
  // every power: they keep it, but expire 90 days after the upgrade.
  `ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '["admin","publish","deploy","read","metrics"]';
   ALTER TABLE tokens ADD COLUMN expires_at TEXT;
   ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
   UPDATE tokens SET expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+90 days');
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     actor TEXT NOT NULL,
     method TEXT NOT NULL,
     route TEXT NOT NULL,
     target TEXT,
     status INTEGER NOT NULL,
     remote TEXT NOT NULL
   );
   CREATE INDEX audit_by_at ON audit (at);`,
  // Release signing: signatures over NF build manifests (by release digest), the builds
  // each chain version runs with its signed document, release key sets, signed map entries.
  `CREATE TABLE release_signatures (
     digest TEXT NOT NULL,
     nf TEXT NOT NULL,
     key_id TEXT NOT NULL,
     signature TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (digest, key_id)
   );
   CREATE TABLE chain_releases (
     name TEXT NOT NULL,
     version INTEGER NOT NULL,
     releases TEXT NOT NULL,
     document TEXT NOT NULL,
     signatures TEXT NOT NULL,
     PRIMARY KEY (name, version)
   );
   CREATE TABLE release_key_sets (
     seq INTEGER PRIMARY KEY,
     document TEXT NOT NULL,
     signatures TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE signed_map_entries (
     chain TEXT NOT NULL,
     map TEXT NOT NULL,
     seq INTEGER NOT NULL,
     document TEXT NOT NULL,
     signatures TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (chain, map)
   );`,
  // Dead-man's switch per device: the grace its assignments carry, and the rolled-back
  // version the operator confirmed.
  `CREATE TABLE device_dead_man (
     device TEXT PRIMARY KEY,
     grace_seconds INTEGER,
     confirmed_chain TEXT,
     confirmed_version INTEGER
   );`,
  // Staged rollouts: the whole state of one (phases, devices, verdicts, events) as a
  // document; state is copied out to find the active ones.
  `CREATE TABLE rollouts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     chain TEXT NOT NULL,
     state TEXT NOT NULL,
     document TEXT NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX rollouts_by_state ON rollouts (state);`,
];

/** The schema version this controller migrates to (PRAGMA user_version). */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Labels as JSON with sorted keys: equal selectors give equal strings. */
export function canonicalSelector(selector: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(selector).sort(([a], [b]) => (a < b ? -1 : 1))));
}

export function selectorMatches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

interface SelectorRuleRow {
  id: number;
  chain: string;
  version: number | null;
  selector: string;
  created_at: string;
}

function ruleFromRow(row: SelectorRuleRow): SelectorRule {
  return {
    id: row.id,
    chain: row.chain,
    version: row.version,
    selector: JSON.parse(row.selector) as Labels,
    createdAt: row.created_at,
  };
}

interface TokenRow {
  name: string;
  scopes: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

function tokenFromRow(row: TokenRow): TokenRecord {
  return {
    name: row.name,
    scopes: JSON.parse(row.scopes) as TokenScope[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
  };
}

interface NfRow {
  name: string;
  source_digest: string;
  build: NfRecord["build"];
  build_message: string | null;
  build_hash: string;
  interface: string;
  artifacts: string;
  published_at: string;
}

function nfFromRow(row: NfRow): NfRecord {
  return {
    name: row.name,
    sourceDigest: row.source_digest,
    build: row.build,
    buildMessage: row.build_message,
    buildHash: row.build_hash,
    interface: JSON.parse(row.interface) as NfInterface,
    artifacts: JSON.parse(row.artifacts) as ArtifactMeta[],
    publishedAt: row.published_at,
  };
}

interface DeviceRow {
  name: string;
  labels: string;
  serial: string;
  cert_pem: string;
  enrolled_at: string;
  not_after: string;
  revoked_at: string | null;
  last_seen_at: string | null;
  assigned_chain: string | null;
  assigned_version: number | null;
  status: string | null;
  status_at: string | null;
}

/**
 * Resolves the effective assignment: the explicit one if set, else the newest rule
 * (rules are passed oldest first) whose selector the labels match.
 */
function deviceFromRow(row: DeviceRow, rules: SelectorRule[]): DeviceRecord {
  const labels = JSON.parse(row.labels) as Labels;
  let assignedChain = row.assigned_chain;
  let assignedVersion = row.assigned_version;
  let assignedBy: AssignmentSource | null = assignedChain ? { kind: "explicit" } : null;
  if (!assignedChain) {
    const rule = rules.findLast((r) => selectorMatches(r.selector, labels));
    if (rule) {
      assignedChain = rule.chain;
      assignedVersion = rule.version;
      assignedBy = { kind: "selector", rule: rule.id, selector: rule.selector };
    }
  }
  return {
    name: row.name,
    labels,
    serial: row.serial,
    certPem: row.cert_pem,
    enrolledAt: row.enrolled_at,
    notAfter: row.not_after,
    revokedAt: row.revoked_at,
    lastSeenAt: row.last_seen_at,
    assignedChain,
    assignedVersion,
    assignedBy,
    status: row.status ? (JSON.parse(row.status) as DeviceStatusReport) : null,
    statusAt: row.status_at,
  };
}

export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `database schema version ${current} is newer than this controller knows (${MIGRATIONS.length}): upgrade galette`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
}

/** Opens (creating if needed) DIR/galette.db, migrated to the current schema. */
export function openSqliteRepository(dataDir: string): Repository {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, DATABASE_FILE));
  // WAL lets the CLI write (enrol/revoke on --data DIR) while a running controller reads.
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");
  migrate(db);
  return new SqliteRepository(db);
}

class SqliteRepository implements Repository {
  constructor(private readonly db: Database.Database) {}

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
    const stored = this.getDevice(device.name);
    if (stored?.serial !== device.serial) {
      throw new Error(`device ${device.name} is already enrolled (revoke it first to enrol it again)`);
    }
  }

  getDevice(name: string): DeviceRecord | undefined {
    const row = this.db.prepare("SELECT * FROM devices WHERE name = ?").get(name) as DeviceRow | undefined;
    return row ? deviceFromRow(row, this.listSelectorRules()) : undefined;
  }

  listDevices(): DeviceRecord[] {
    const rules = this.listSelectorRules();
    return (this.db.prepare("SELECT * FROM devices ORDER BY name").all() as DeviceRow[]).map((row) =>
      deviceFromRow(row, rules),
    );
  }

  revokeDevice(name: string, at: string): DeviceRecord {
    return this.transaction(() => {
      const device = this.getDevice(name);
      if (!device) throw new Error(`device ${name} is not enrolled`);
      if (device.revokedAt) throw new Error(`device ${name} was already revoked at ${device.revokedAt}`);
      this.db.prepare("UPDATE devices SET revoked_at = ? WHERE name = ?").run(at, name);
      this.db
        .prepare("INSERT OR IGNORE INTO revoked_serials (serial, device, revoked_at) VALUES (?, ?, ?)")
        .run(device.serial, name, at);
      return { ...device, revokedAt: at };
    });
  }

  isSerialRevoked(serial: string): boolean {
    return this.db.prepare("SELECT 1 FROM revoked_serials WHERE serial = ?").get(serial) !== undefined;
  }

  touchDevice(name: string, at: string): void {
    this.db.prepare("UPDATE devices SET last_seen_at = ? WHERE name = ?").run(at, name);
  }

  getDeadMan(name: string): DeadManSettings {
    const row = this.db
      .prepare(
        "SELECT grace_seconds, confirmed_chain, confirmed_version FROM device_dead_man WHERE device = ?",
      )
      .get(name) as
      | { grace_seconds: number | null; confirmed_chain: string | null; confirmed_version: number | null }
      | undefined;
    return {
      graceSeconds: row?.grace_seconds ?? null,
      confirmed:
        row?.confirmed_chain && row.confirmed_version
          ? { chain: row.confirmed_chain, version: row.confirmed_version }
          : null,
    };
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
    this.db
      .prepare("UPDATE devices SET status = ?, status_at = ?, last_seen_at = ? WHERE name = ?")
      .run(JSON.stringify(status), at, at, name);
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

  insertToken(token: Parameters<Repository["insertToken"]>[0]): void {
    this.db
      .prepare("INSERT INTO tokens (token_hash, name, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
      .run(token.hash, token.name, JSON.stringify(token.scopes), token.createdAt, token.expiresAt);
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
        .run(
          chain.name,
          version,
          chain.toml,
          chain.file,
          JSON.stringify(chain.graph),
          JSON.stringify(chain.warnings),
          chain.createdAt,
        );
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
    ) as
      | {
          name: string;
          version: number;
          toml: string;
          file: string;
          graph: string;
          warnings: string;
          created_at: string;
        }
      | undefined;
    if (!row) return undefined;
    return {
      name: row.name,
      version: row.version,
      toml: row.toml,
      file: row.file,
      // a graph stored by a protocol-1 controller comes back in the current shape
      graph: chainGraphFromStored(JSON.parse(row.graph)),
      warnings: JSON.parse(row.warnings) as string[],
      createdAt: row.created_at,
    };
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
      .run(
        nf.name,
        nf.sourceDigest,
        nf.build,
        nf.buildMessage,
        nf.buildHash,
        JSON.stringify(nf.interface),
        JSON.stringify(nf.artifacts),
        nf.publishedAt,
      );
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
      .run(
        name,
        version,
        JSON.stringify(record.releases),
        JSON.stringify(record.document),
        JSON.stringify(record.signatures),
      );
  }

  getChainRelease(name: string, version: number): ChainReleaseRecord | undefined {
    const row = this.db
      .prepare("SELECT releases, document, signatures FROM chain_releases WHERE name = ? AND version = ?")
      .get(name, version) as { releases: string; document: string; signatures: string } | undefined;
    if (!row) return undefined;
    return {
      releases: JSON.parse(row.releases) as ChainReleaseRecord["releases"],
      document: JSON.parse(row.document) as ChainReleaseRecord["document"],
      signatures: JSON.parse(row.signatures) as Signature[],
    };
  }

  saveKeySet(keySet: SignedReleaseKeySet, at: string): void {
    this.transaction(() => {
      const latest = this.latestKeySet();
      if (latest && keySet.document.seq <= latest.document.seq)
        throw new Error(
          `key set #${keySet.document.seq} is not newer than the stored #${latest.document.seq}`,
        );
      this.db
        .prepare("INSERT INTO release_key_sets (seq, document, signatures, created_at) VALUES (?, ?, ?, ?)")
        .run(keySet.document.seq, JSON.stringify(keySet.document), JSON.stringify(keySet.signatures), at);
    });
  }

  latestKeySet(): SignedReleaseKeySet | undefined {
    const row = this.db
      .prepare("SELECT document, signatures FROM release_key_sets ORDER BY seq DESC LIMIT 1")
      .get() as { document: string; signatures: string } | undefined;
    return row
      ? ({
          document: JSON.parse(row.document),
          signatures: JSON.parse(row.signatures),
        } as SignedReleaseKeySet)
      : undefined;
  }

  saveSignedMapEntries(signed: SignedMapEntries, at: string): void {
    this.db
      .prepare(
        `INSERT INTO signed_map_entries (chain, map, seq, document, signatures, created_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (chain, map) DO UPDATE SET seq = excluded.seq, document = excluded.document,
           signatures = excluded.signatures, created_at = excluded.created_at`,
      )
      .run(
        signed.document.chain,
        signed.document.map,
        signed.document.seq,
        JSON.stringify(signed.document),
        JSON.stringify(signed.signatures),
        at,
      );
  }

  getSignedMapEntries(chain: string, map: string): SignedMapEntries | undefined {
    const row = this.db
      .prepare("SELECT document, signatures FROM signed_map_entries WHERE chain = ? AND map = ?")
      .get(chain, map) as { document: string; signatures: string } | undefined;
    return row
      ? ({ document: JSON.parse(row.document), signatures: JSON.parse(row.signatures) } as SignedMapEntries)
      : undefined;
  }

  insertRollout(rollout: Omit<Rollout, "id">): number {
    return Number(
      this.db
        .prepare(
          "INSERT INTO rollouts (chain, state, document, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .run(rollout.chain, rollout.state, JSON.stringify(rollout), rollout.createdAt, rollout.updatedAt)
        .lastInsertRowid,
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
      | { id: number; document: string }
      | undefined;
    return row ? { ...(JSON.parse(row.document) as Omit<Rollout, "id">), id: row.id } : undefined;
  }

  listRollouts(query: { active?: boolean; limit?: number }): Rollout[] {
    const rows = this.db
      .prepare(
        `SELECT id, document FROM rollouts ${query.active ? "WHERE state IN ('running', 'paused')" : ""}
         ORDER BY id DESC LIMIT ?`,
      )
      .all(query.limit ?? 1000) as Array<{ id: number; document: string }>;
    return rows.map((row) => ({ ...(JSON.parse(row.document) as Omit<Rollout, "id">), id: row.id }));
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
      .get(digest) as
      | {
          digest: string;
          kind: ArtifactMeta["kind"];
          size: number;
          nf: string;
          triple: ArtifactMeta["triple"] | null;
        }
      | undefined;
    if (!row) return undefined;
    return {
      digest: row.digest,
      kind: row.kind,
      size: row.size,
      nf: row.nf,
      ...(row.triple ? { triple: row.triple } : {}),
    };
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
