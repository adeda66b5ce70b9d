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

/**
 * The database could not answer for now (unreachable, restarting, out of connections, a
 * conflict that outlived the retries): a request that meets it gets 503 with Retry-After,
 * which clients retry, never a 500.
 */
export class DatabaseUnavailable extends Error {
  readonly statusCode = 503;
  readonly retryAfterSeconds = 1;
}

/** A device record with its dead-man's switch settings: what a device request runs with. */
export type RequestDevice = DeviceRecord & { deadMan: DeadManSettings };

/**
 * What authenticating one device request reads, in one statement: whether the presented
 * certificate serial is revoked, and the device enrolled under the certificate's name.
 */
export interface DeviceRequestState {
  serialRevoked: boolean;
  /** absent: no device of that name is enrolled */
  device: RequestDevice | undefined;
}

export interface DeviceCertificateState {
  serial: string;
  revokedAt: string | null;
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

export interface DeadManSettings {
  graceSeconds: number | null;
  confirmed: { chain: string; version: number } | null;
}

/**
 * What the controller stores. Two implementations behind this one interface: SQLite
 * (sqlite.ts, the embedded default) and PostgreSQL (postgres.ts, shared by several
 * controller replicas). Every method reads the database afresh, so changes made by another
 * process (the CLI's `--data DIR` mode, another replica) are seen at once.
 */
export interface Repository {
  /** "sqlite" or "postgres": for logs and /healthz, never for behaviour. */
  readonly dialect: "sqlite" | "postgres";

  /**
   * Runs `fn` in one transaction; a throw rolls everything back. `fn` must do its database
   * work through `tx` (the same interface, bound to the transaction): calling the outer
   * repository from inside waits for the transaction to end, i.e. for ever. Transactions are
   * serialised (SQLite: one writer; PostgreSQL: a transaction-level advisory lock), so a
   * read-then-write inside one never races another controller. A nested call joins the
   * outer transaction. Keep `fn` to database work: no network waits inside.
   */
  transaction<T>(fn: (tx: Repository) => Promise<T>): Promise<T>;

  /**
   * Tells every controller sharing this database (itself included) that these devices'
   * assignments changed. SQLite: this process only; PostgreSQL: NOTIFY on a channel every
   * replica LISTENs to. Call it after the change committed.
   */
  publishAssignmentChanged(names: string[], reason: string): Promise<void>;
  /** Calls `listener` for every publishAssignmentChanged (any replica); returns the unsubscribe. */
  onAssignmentChanged(listener: (names: string[], reason: string) => void): () => void;

  insertDevice(
    device: Omit<
      DeviceRecord,
      "revokedAt" | "lastSeenAt" | "status" | "statusAt" | "assignedChain" | "assignedVersion" | "assignedBy"
    >,
  ): Promise<void>;
  getDevice(name: string): Promise<DeviceRecord | undefined>;
  listDevices(): Promise<DeviceRecord[]>;
  /** Marks the device and its certificate serial revoked. */
  revokeDevice(name: string, at: string): Promise<DeviceRecord>;
  /**
   * Everything a device request's authentication and handlers read, in one statement (one
   * round trip on PostgreSQL): the device (its effective assignment resolved), its dead-man
   * settings and whether `serial` is revoked. Read afresh on every call, never cached:
   * a revocation or re-enrolment made anywhere applies to the very next request.
   */
  deviceRequestState(name: string, serial: string): Promise<DeviceRequestState>;
  /**
   * The current certificate serial and revocation time of each named device that is
   * enrolled (absent: not enrolled): one read for many, for re-checking open connections.
   */
  deviceCertificates(names: readonly string[]): Promise<Map<string, DeviceCertificateState>>;
  touchDevice(name: string, at: string): Promise<void>;
  /** Many last-seen times at once (the batched writes of device requests). */
  touchDevices(seen: ReadonlyArray<readonly [name: string, at: string]>): Promise<void>;
  saveDeviceStatus(name: string, status: DeviceStatusReport, at: string): Promise<void>;
  /** The device's dead-man's switch settings (grace null: the default). */
  getDeadMan(name: string): Promise<DeadManSettings>;
  /** The grace the devices' assignments carry from now on. */
  setGraceSeconds(deviceNames: string[], seconds: number): Promise<void>;
  /** The operator confirms the version the device rolled back: it may install it again. */
  confirmRollback(name: string, chain: string, version: number): Promise<void>;
  /** Explicit per-device assignment (wins over every selector rule). */
  assignChain(deviceNames: string[], chain: string, version: number | null): Promise<void>;
  /** Removes the explicit assignment; the devices fall back to matching selector rules. */
  clearExplicitAssignment(deviceNames: string[]): Promise<void>;
  /** Devices whose effective assignment is `chain`. */
  devicesAssignedTo(chain: string): Promise<DeviceRecord[]>;

  /** Stores a rule, replacing any rule with exactly the same selector; returns it. */
  addSelectorRule(chain: string, version: number | null, selector: Labels, at: string): Promise<SelectorRule>;
  /** Removes the rule whose selector equals `selector` exactly; returns what was removed. */
  removeSelectorRule(selector: Labels): Promise<SelectorRule[]>;
  /** Oldest first. */
  listSelectorRules(): Promise<SelectorRule[]>;

  insertToken(
    token: Omit<TokenRecord, "lastUsedAt" | "expiresAt"> & { hash: string; expiresAt: string },
  ): Promise<void>;
  findTokenByHash(tokenHash: string): Promise<TokenRecord | undefined>;
  touchToken(tokenHash: string, at: string): Promise<void>;
  /** Oldest first; never the hashes. */
  listTokens(): Promise<TokenRecord[]>;
  countTokens(): Promise<number>;
  /** Deletes every token of that name; returns how many. */
  deleteTokens(name: string): Promise<number>;

  /** Returns the row's id. */
  insertAudit(entry: AuditRecord): Promise<number>;
  /** Sets the outcome of a row written before its call was answered. */
  finishAudit(id: number, status: number, target: string | null): Promise<void>;
  /** The newest `limit` rows from `since` (inclusive) when given, oldest first. */
  listAudit(query: { since?: string; limit: number }): Promise<AuditEntry[]>;

  /** Stores a new version (previous + 1) and returns it. */
  insertChainVersion(chain: Omit<ChainVersionRecord, "version">): Promise<number>;
  getChainVersion(name: string, version?: number): Promise<ChainVersionRecord | undefined>;
  listChains(): Promise<Array<{ name: string; latestVersion: number; createdAt: string }>>;

  insertNf(nf: NfRecord): Promise<void>;
  latestNf(name: string): Promise<NfRecord | undefined>;

  insertArtifact(meta: ArtifactMeta, at: string): Promise<void>;
  getArtifact(digest: string): Promise<ArtifactMeta | undefined>;

  setMapEntries(chain: string, map: string, set: MapEntry[], remove: string[], at: string): Promise<void>;
  getMapEntries(chain: string, map: string): Promise<MapEntry[]>;

  // ---- release signing (the controller stores signatures; it never holds a release key) ----
  /** Every published build of an NF, newest first. */
  listNfBuilds(name: string): Promise<NfRecord[]>;
  /** Adds (or replaces) the signature of key `signature.keyId` over the release `digest`. */
  addReleaseSignature(digest: string, nf: string, signature: Signature, at: string): Promise<void>;
  releaseSignatures(digest: string): Promise<Signature[]>;
  /** The NF builds a chain version runs and its (signed) document; written with the version. */
  saveChainRelease(name: string, version: number, record: ChainReleaseRecord): Promise<void>;
  getChainRelease(name: string, version: number): Promise<ChainReleaseRecord | undefined>;
  /** Stores a key set; its seq must be higher than every stored one. */
  saveKeySet(keySet: SignedReleaseKeySet, at: string): Promise<void>;
  latestKeySet(): Promise<SignedReleaseKeySet | undefined>;
  saveSignedMapEntries(signed: SignedMapEntries, at: string): Promise<void>;
  getSignedMapEntries(chain: string, map: string): Promise<SignedMapEntries | undefined>;

  // ---- staged rollouts (rollouts.ts): one row per rollout, its state as a document ----
  /** Stores a new rollout; returns its id. */
  insertRollout(rollout: Omit<Rollout, "id">): Promise<number>;
  updateRollout(rollout: Rollout): Promise<void>;
  getRollout(id: number): Promise<Rollout | undefined>;
  /** Newest first; `active`: only running and paused ones. */
  listRollouts(query: { active?: boolean; limit?: number }): Promise<Rollout[]>;

  close(): Promise<void>;
}
