import type { NfInterface } from "@galette/chain";
import type {
  ArtifactMeta,
  AssignmentSource,
  AuditEntry,
  ChainGraph,
  ChainVersionDocument,
  DeviceStatusReport,
  Labels,
  MapEntry,
  PublishNfResponse,
  Rollout,
  SelectorRule,
  Signature,
  SignedMapEntries,
  SignedReleaseKeySet,
  TokenScope,
} from "@galette/protocol";

export interface DeviceRecord {
  name: string;
  labels: Labels;
  /** normalised serial of the device's current certificate */
  serial: string;
  certPem: string;
  enrolledAt: string;
  notAfter: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
  /**
   * The EFFECTIVE assignment, resolved when the record is read: the device's explicit
   * assignment if it has one, else the newest selector rule matching its labels.
   */
  assignedChain: string | null;
  /** null = follow the latest version of assignedChain */
  assignedVersion: number | null;
  /** where assignedChain comes from; null = unassigned */
  assignedBy: AssignmentSource | null;
  status: DeviceStatusReport | null;
  statusAt: string | null;
}

export interface TokenRecord {
  name: string;
  scopes: TokenScope[];
  createdAt: string;
  /** null only for a row the controller cannot account for: treated as expired */
  expiresAt: string | null;
  lastUsedAt: string | null;
}

/** A mutating operator call (see AuditEntry in @galette/protocol). */
export type AuditRecord = Omit<AuditEntry, "id">;

export type { ChainGraph };

export interface ChainVersionRecord {
  name: string;
  version: number;
  toml: string;
  file: string;
  graph: ChainGraph;
  warnings: string[];
  createdAt: string;
}

export interface ChainReleaseRecord {
  /** NF instance UUID → release digest of the build it runs */
  releases: Record<string, string>;
  document: ChainVersionDocument;
  /** empty for a version pushed without --key (devices refuse it) */
  signatures: Signature[];
}

export interface NfRecord {
  name: string;
  sourceDigest: string;
  build: PublishNfResponse["build"];
  buildMessage: string | null;
  buildHash: string;
  /** Action variants and #[maps] fields as the NF analyser read them; push checks chains against it */
  interface: NfInterface;
  /** digests of the bpf object and native libraries built from this source */
  artifacts: ArtifactMeta[];
  publishedAt: string;
}

/**
 * What the controller stores. One implementation (SQLite); every method reads the
 * database afresh so changes made by another process on the same data dir (the CLI's
 * `--data DIR` mode) are seen at once.
 */
export interface DeadManSettings {
  graceSeconds: number | null;
  confirmed: { chain: string; version: number } | null;
}

export interface Repository {
  /** Run `fn` in one transaction; a throw rolls everything back. */
  transaction<T>(fn: () => T): T;

  insertDevice(
    device: Omit<
      DeviceRecord,
      "revokedAt" | "lastSeenAt" | "status" | "statusAt" | "assignedChain" | "assignedVersion" | "assignedBy"
    >,
  ): void;
  getDevice(name: string): DeviceRecord | undefined;
  listDevices(): DeviceRecord[];
  /** Marks the device and its certificate serial revoked. */
  revokeDevice(name: string, at: string): DeviceRecord;
  isSerialRevoked(serial: string): boolean;
  touchDevice(name: string, at: string): void;
  saveDeviceStatus(name: string, status: DeviceStatusReport, at: string): void;
  /** The device's dead-man's switch settings (grace null: the default). */
  getDeadMan(name: string): DeadManSettings;
  /** The grace the devices' assignments carry from now on. */
  setGraceSeconds(deviceNames: string[], seconds: number): void;
  /** The operator confirms the version the device rolled back: it may install it again. */
  confirmRollback(name: string, chain: string, version: number): void;
  /** Explicit per-device assignment (wins over every selector rule). */
  assignChain(deviceNames: string[], chain: string, version: number | null): void;
  /** Removes the explicit assignment; the devices fall back to matching selector rules. */
  clearExplicitAssignment(deviceNames: string[]): void;
  /** Devices whose effective assignment is `chain`. */
  devicesAssignedTo(chain: string): DeviceRecord[];

  /** Stores a rule, replacing any rule with exactly the same selector; returns it. */
  addSelectorRule(chain: string, version: number | null, selector: Labels, at: string): SelectorRule;
  /** Removes the rule whose selector equals `selector` exactly; returns what was removed. */
  removeSelectorRule(selector: Labels): SelectorRule[];
  /** Oldest first. */
  listSelectorRules(): SelectorRule[];

  insertToken(
    token: Omit<TokenRecord, "lastUsedAt" | "expiresAt"> & { hash: string; expiresAt: string },
  ): void;
  findTokenByHash(tokenHash: string): TokenRecord | undefined;
  touchToken(tokenHash: string, at: string): void;
  /** Oldest first; never the hashes. */
  listTokens(): TokenRecord[];
  countTokens(): number;
  /** Deletes every token of that name; returns how many. */
  deleteTokens(name: string): number;

  /** Returns the row's id. */
  insertAudit(entry: AuditRecord): number;
  /** Sets the outcome of a row written before its call was answered. */
  finishAudit(id: number, status: number, target: string | null): void;
  /** The newest `limit` rows from `since` (inclusive) when given, oldest first. */
  listAudit(query: { since?: string; limit: number }): AuditEntry[];

  /** Stores a new version (previous + 1) and returns it. */
  insertChainVersion(chain: Omit<ChainVersionRecord, "version">): number;
  getChainVersion(name: string, version?: number): ChainVersionRecord | undefined;
  listChains(): Array<{ name: string; latestVersion: number; createdAt: string }>;

  insertNf(nf: NfRecord): void;
  latestNf(name: string): NfRecord | undefined;

  insertArtifact(meta: ArtifactMeta, at: string): void;
  getArtifact(digest: string): ArtifactMeta | undefined;

  setMapEntries(chain: string, map: string, set: MapEntry[], remove: string[], at: string): void;
  getMapEntries(chain: string, map: string): MapEntry[];

  // ---- release signing (the controller stores signatures; it never holds a release key) ----
  /** Every published build of an NF, newest first. */
  listNfBuilds(name: string): NfRecord[];
  /** Adds (or replaces) the signature of key `signature.keyId` over the release `digest`. */
  addReleaseSignature(digest: string, nf: string, signature: Signature, at: string): void;
  releaseSignatures(digest: string): Signature[];
  /** The NF builds a chain version runs and its (signed) document; written with the version. */
  saveChainRelease(name: string, version: number, record: ChainReleaseRecord): void;
  getChainRelease(name: string, version: number): ChainReleaseRecord | undefined;
  /** Stores a key set; its seq must be higher than every stored one. */
  saveKeySet(keySet: SignedReleaseKeySet, at: string): void;
  latestKeySet(): SignedReleaseKeySet | undefined;
  saveSignedMapEntries(signed: SignedMapEntries, at: string): void;
  getSignedMapEntries(chain: string, map: string): SignedMapEntries | undefined;

  // ---- staged rollouts (rollouts.ts): one row per rollout, its state as a document ----
  /** Stores a new rollout; returns its id. */
  insertRollout(rollout: Omit<Rollout, "id">): number;
  updateRollout(rollout: Rollout): void;
  getRollout(id: number): Rollout | undefined;
  /** Newest first; `active`: only running and paused ones. */
  listRollouts(query: { active?: boolean; limit?: number }): Rollout[];

  close(): void;
}
