/**
 * Rows as both databases return them (the same tables, TEXT timestamps in ISO form, JSON
 * documents as TEXT) and their mapping to the repository's records: one definition for
 * SQLite and PostgreSQL.
 */
import type { NfInterface } from "@galette/chain";
import {
  type ArtifactMeta,
  type AssignmentSource,
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
  NfRecord,
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
}

/**
 * Resolves the effective assignment: the explicit one if set, else the newest rule
 * (rules are passed oldest first) whose selector the labels match.
 */
export function deviceFromRow(row: DeviceRow, rules: SelectorRule[]): DeviceRecord {
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
