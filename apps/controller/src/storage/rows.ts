/**
 * Rows as both databases return them (the same tables, TEXT timestamps in ISO form, JSON
 * documents as TEXT), their mapping to the repository's records and back to statement
 * parameters, and the checks both make on what they read: one definition for SQLite and
 * PostgreSQL.
 */
import type { NfInterface } from "@galette/chain";
import {
  type ArtifactMeta,
  chainGraphFromStored,
  type DeviceStatusReport,
  type Labels,
  type Rollout,
  type SelectorRule,
  type Signature,
  type SignedMapEntries,
  type SignedReleaseKeySet,
  type TokenScope,
} from "@galette/protocol";
import type {
  ChainReleaseRecord,
  ChainVersionRecord,
  DeadManSettings,
  DeviceRecord,
  DeviceRequestState,
  NfRecord,
  Repository,
  TokenRecord,
} from "./repository";

/** Labels as JSON with sorted keys: equal selectors give equal strings. */
export function canonicalSelector(selector: Labels): string {
  return JSON.stringify(Object.fromEntries(Object.entries(selector).sort(([a], [b]) => (a < b ? -1 : 1))));
}

export function selectorMatches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

export interface SelectorRuleRow {
  id: number;
  chain: string;
  version: number | null;
  selector: string;
  created_at: string;
}

export function ruleFromRow(row: SelectorRuleRow): SelectorRule {
  return {
    id: row.id,
    chain: row.chain,
    version: row.version,
    selector: JSON.parse(row.selector) as Labels,
    createdAt: row.created_at,
  };
}

export interface TokenRow {
  name: string;
  scopes: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export function tokenFromRow(row: TokenRow): TokenRecord {
  return {
    name: row.name,
    scopes: JSON.parse(row.scopes) as TokenScope[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
  };
}

export interface NfRow {
  name: string;
  source_digest: string;
  build: NfRecord["build"];
  build_message: string | null;
  build_hash: string;
  interface: string;
  artifacts: string;
  published_at: string;
}

export function nfFromRow(row: NfRow): NfRecord {
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

export interface DeviceRow {
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
  /**
   * PostgreSQL's reads: the newest selector rule matching the labels, when the device has
   * no explicit assignment (POSTGRES_DEVICE_RULE_JOIN)
   */
  rule_id?: number | null;
  rule_chain?: string | null;
  rule_version?: number | null;
  rule_selector?: string | null;
}

/** The devices columns (`devices` aliased `d`). */
export const DEVICE_COLUMNS = `d.name, d.labels, d.serial, d.cert_pem, d.enrolled_at, d.not_after, d.revoked_at,
  d.last_seen_at, d.assigned_chain, d.assigned_version, d.status, d.status_at`;

/**
 * PostgreSQL: DEVICE_COLUMNS plus the selector rule that assigns the device, resolved by
 * the database (the newest rule whose selector the labels contain, only without an explicit
 * assignment), so a device read is one round trip that carries at most one rule.
 * `selectorMatches` is the same test in TypeScript (SQLite's reads); the storage tests hold
 * the two to the same answers.
 */
export const POSTGRES_DEVICE_COLUMNS = `${DEVICE_COLUMNS},
  r.id AS rule_id, r.chain AS rule_chain, r.version AS rule_version, r.selector AS rule_selector`;

/** PostgreSQL: jsonb containment (labels and selectors are flat objects of strings). */
export const POSTGRES_DEVICE_RULE_JOIN = `LEFT JOIN LATERAL (
    SELECT s.id, s.chain, s.version, s.selector FROM selector_rules s
    WHERE COALESCE(d.assigned_chain, '') = '' AND d.labels::jsonb @> s.selector::jsonb
    ORDER BY s.id DESC LIMIT 1) r ON true`;

/**
 * The record of a device row. The assigning rule: the newest of `rules` (oldest first) the
 * labels match, or, without `rules`, the one the row carries (POSTGRES_DEVICE_COLUMNS).
 * Labels (unless matched here) and status are parsed on first use: most device requests
 * (status reports, traces, the notification socket) read neither.
 */
export function deviceFromRow(row: DeviceRow, rules?: readonly SelectorRule[]): DeviceRecord {
  const explicit = row.assigned_chain || null;
  let labels: Labels | undefined;
  const parsedLabels = (): Labels => {
    labels ??= JSON.parse(row.labels) as Labels;
    return labels;
  };
  const rule: Pick<SelectorRule, "id" | "chain" | "version" | "selector"> | undefined = explicit
    ? undefined
    : rules
      ? rules.findLast((r) => selectorMatches(r.selector, parsedLabels()))
      : row.rule_id != null && row.rule_chain != null
        ? {
            id: row.rule_id,
            chain: row.rule_chain,
            version: row.rule_version ?? null,
            selector: JSON.parse(row.rule_selector ?? "{}") as Labels,
          }
        : undefined;
  let status: DeviceStatusReport | null | undefined;
  return {
    name: row.name,
    get labels(): Labels {
      return parsedLabels();
    },
    serial: row.serial,
    certPem: row.cert_pem,
    enrolledAt: row.enrolled_at,
    notAfter: row.not_after,
    revokedAt: row.revoked_at,
    lastSeenAt: row.last_seen_at,
    assignedChain: explicit ?? rule?.chain ?? null,
    assignedVersion: rule ? rule.version : row.assigned_version,
    assignedBy: explicit
      ? { kind: "explicit" }
      : rule
        ? { kind: "selector", rule: rule.id, selector: rule.selector }
        : null,
    get status(): DeviceStatusReport | null {
      if (status === undefined) status = row.status ? (JSON.parse(row.status) as DeviceStatusReport) : null;
      return status;
    },
    statusAt: row.status_at,
  };
}

/** What authenticating a device request reads, beside the device row (one statement). */
export interface DeviceRequestRow extends DeviceRow, DeadManRow {
  /** the presented serial is revoked (SQLite 0/1, PostgreSQL boolean) */
  serial_revoked: number | boolean;
}

/** No device row (the CN is not enrolled): name is null from the outer join. `rules`: as deviceFromRow's. */
export function deviceRequestStateFromRow(
  row: DeviceRequestRow,
  rules?: readonly SelectorRule[],
): DeviceRequestState {
  return {
    serialRevoked: Boolean(row.serial_revoked),
    // Object.assign, not a spread: a spread would parse the lazy labels and status now
    device:
      row.name === null
        ? undefined
        : Object.assign(deviceFromRow(row, rules), { deadMan: deadManFromRow(row) }),
  };
}

export interface ChainVersionRow {
  name: string;
  version: number;
  toml: string;
  file: string;
  graph: string;
  warnings: string;
  created_at: string;
}

export function chainVersionFromRow(row: ChainVersionRow): ChainVersionRecord {
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

export interface ChainReleaseRow {
  releases: string;
  document: string;
  signatures: string;
}

export function chainReleaseFromRow(row: ChainReleaseRow): ChainReleaseRecord {
  return {
    releases: JSON.parse(row.releases) as ChainReleaseRecord["releases"],
    document: JSON.parse(row.document) as ChainReleaseRecord["document"],
    signatures: JSON.parse(row.signatures) as Signature[],
  };
}

/** A signed document as stored: release key sets and signed map entries. */
export interface SignedRow {
  document: string;
  signatures: string;
}

export function signedFromRow<T extends SignedReleaseKeySet | SignedMapEntries>(row: SignedRow): T {
  return { document: JSON.parse(row.document), signatures: JSON.parse(row.signatures) } as T;
}

/** A rollout is stored as its document beside its id. */
export interface RolloutRow {
  id: number;
  document: string;
}

export function rolloutFromRow(row: RolloutRow): Rollout {
  return { ...(JSON.parse(row.document) as Omit<Rollout, "id">), id: row.id };
}

export interface ArtifactRow {
  digest: string;
  kind: ArtifactMeta["kind"];
  size: number;
  nf: string;
  triple: ArtifactMeta["triple"] | null;
}

export function artifactFromRow(row: ArtifactRow): ArtifactMeta {
  return {
    digest: row.digest,
    kind: row.kind,
    size: row.size,
    nf: row.nf,
    ...(row.triple ? { triple: row.triple } : {}),
  };
}

export interface DeadManRow {
  grace_seconds: number | null;
  confirmed_chain: string | null;
  confirmed_version: number | null;
}

/** No row: the defaults (grace from the controller, nothing confirmed). */
export function deadManFromRow(row: DeadManRow | undefined): DeadManSettings {
  return {
    graceSeconds: row?.grace_seconds ?? null,
    confirmed:
      row?.confirmed_chain && row.confirmed_version
        ? { chain: row.confirmed_chain, version: row.confirmed_version }
        : null,
  };
}

// Records → statement parameters, in the column order of each table's INSERT.

type Params = Array<string | number | null>;

/** chain_versions (name, version, toml, file, graph, warnings, created_at) */
export const chainVersionParams = (chain: Omit<ChainVersionRecord, "version">, version: number): Params => [
  chain.name,
  version,
  chain.toml,
  chain.file,
  JSON.stringify(chain.graph),
  JSON.stringify(chain.warnings),
  chain.createdAt,
];

/** nfs (name, source_digest, build, build_message, build_hash, interface, artifacts, published_at) */
export const nfParams = (nf: NfRecord): Params => [
  nf.name,
  nf.sourceDigest,
  nf.build,
  nf.buildMessage,
  nf.buildHash,
  JSON.stringify(nf.interface),
  JSON.stringify(nf.artifacts),
  nf.publishedAt,
];

/** chain_releases (name, version, releases, document, signatures) */
export const chainReleaseParams = (name: string, version: number, record: ChainReleaseRecord): Params => [
  name,
  version,
  JSON.stringify(record.releases),
  JSON.stringify(record.document),
  JSON.stringify(record.signatures),
];

/** signed_map_entries (chain, map, seq, document, signatures, created_at) */
export const signedMapEntriesParams = (signed: SignedMapEntries, at: string): Params => [
  signed.document.chain,
  signed.document.map,
  signed.document.seq,
  JSON.stringify(signed.document),
  JSON.stringify(signed.signatures),
  at,
];

/** tokens (token_hash, name, scopes, created_at, expires_at) */
export const tokenParams = (token: Parameters<Repository["insertToken"]>[0]): Params => [
  token.hash,
  token.name,
  JSON.stringify(token.scopes),
  token.createdAt,
  token.expiresAt,
];

/** release_key_sets (seq, document, signatures, created_at) */
export const keySetParams = (keySet: SignedReleaseKeySet, at: string): Params => [
  keySet.document.seq,
  JSON.stringify(keySet.document),
  JSON.stringify(keySet.signatures),
  at,
];

/** rollouts (chain, state, document, created_at, updated_at) */
export const rolloutParams = (rollout: Omit<Rollout, "id">): Params => [
  rollout.chain,
  rollout.state,
  JSON.stringify(rollout),
  rollout.createdAt,
  rollout.updatedAt,
];

// Checks on what a statement left or found, inside the same transaction.

/**
 * After the enrolment upsert, which replaces only a revoked device: another serial stored
 * under the name means the name belongs to a device still enrolled.
 */
export function checkEnrolled(
  device: { name: string; serial: string },
  stored: DeviceRecord | undefined,
): void {
  if (stored?.serial !== device.serial)
    throw new Error(`device ${device.name} is already enrolled (revoke it first to enrol it again)`);
}

/** The device to revoke: enrolled and not yet revoked. */
export function revocableDevice(name: string, device: DeviceRecord | undefined): DeviceRecord {
  if (!device) throw new Error(`device ${name} is not enrolled`);
  if (device.revokedAt) throw new Error(`device ${name} was already revoked at ${device.revokedAt}`);
  return device;
}

/** Key sets only move forward: a new one must have a higher seq than the stored latest. */
export function checkNewerKeySet(keySet: SignedReleaseKeySet, latest: SignedReleaseKeySet | undefined): void {
  if (latest && keySet.document.seq <= latest.document.seq)
    throw new Error(`key set #${keySet.document.seq} is not newer than the stored #${latest.document.seq}`);
}
