import { existsSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import {
  type ControllerPki,
  checkDataDirPermissions,
  type IssuedCert,
  issueDeviceCert,
  issueDeviceCertAsync,
  loadPkiDir,
  normaliseSerial,
  PKI_FILES,
} from "@galette/pki";
import {
  type AssignedNf,
  type AssignmentRefusal,
  type CpuTriple,
  type CreateTokenResponse,
  DEFAULT_GRACE_SECONDS,
  type DeviceSummary,
  type EnrollDeviceResponse,
  Labels,
  Name,
  PROTOCOL_VERSION,
  type Sha256Digest,
  type SignedDeviceAssignment,
  type TokenScope,
  tripleForMachine,
} from "@galette/protocol";
import { assignmentTrust, buildOfInstance } from "./releases";
import { ArtifactStore } from "./storage/artifacts";
import { checkPostgresUrl, openPostgresRepository, type PostgresRepository } from "./storage/postgres";
import type { DeviceRecord, Repository } from "./storage/repository";
import { DATABASE_FILE, openSqliteRepository } from "./storage/sqlite";
import { createToken } from "./tokens";

export { hashToken } from "./tokens";

/** A 4xx the server turns into an ErrorResponse; `message` names the problem. */
export class RequestError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly details?: string[],
  ) {
    super(message);
  }
}

/** The database and its SQLite side files: secrets (token hashes, device records), 0600. */
const DATABASE_FILES = [
  DATABASE_FILE,
  `${DATABASE_FILE}-wal`,
  `${DATABASE_FILE}-shm`,
  `${DATABASE_FILE}-journal`,
];

/**
 * A controller data directory: issuing CA + server cert (never the root key), SQLite,
 * artifacts. Both the server and the CLI's `--data DIR` mode go through this, so both
 * apply the same rules, starting with the permission check: DIR 0700, keys and database
 * 0600, or refuse with the chmod that fixes it.
 */
export class DataDir {
  readonly dir: string;
  readonly repo: Repository;
  readonly artifacts: ArtifactStore;
  readonly pki: ControllerPki;

  private constructor(dir: string, pki: ControllerPki, repo: Repository, artifacts: ArtifactStore) {
    this.dir = dir;
    this.pki = pki;
    this.repo = repo;
    this.artifacts = artifacts;
  }

  static #checked(dir: string): { dir: string; pki: ControllerPki } {
    const absolute = isAbsolute(dir) ? dir : resolve(dir);
    if (!existsSync(absolute)) {
      throw new Error(`${absolute} does not exist: run \`galette pki init --data ${absolute}\` first`);
    }
    checkDataDirPermissions(absolute, DATABASE_FILES);
    return { dir: absolute, pki: loadPkiDir(absolute) };
  }

  /** DIR with its embedded SQLite database (DIR/galette.db). */
  static open(dir: string): DataDir {
    const checked = DataDir.#checked(dir);
    // SQLite creates the database with the umask's mode (and its -wal/-shm with the
    // database's): create it 0600 first.
    const database = join(checked.dir, DATABASE_FILE);
    if (!existsSync(database)) writeFileSync(database, "", { mode: 0o600, flag: "wx" });
    return new DataDir(
      checked.dir,
      checked.pki,
      openSqliteRepository(checked.dir),
      new ArtifactStore(checked.dir),
    );
  }

  /**
   * DIR for its PKI, and the database `database` names: a postgres:// URL (shared by every
   * replica; artifacts then live in it too, DIR only caches them), else DIR's SQLite.
   * `direct`: a CLI command working on the state itself (openDatabase).
   */
  static async connect(dir: string, options: { database?: string; direct?: boolean } = {}): Promise<DataDir> {
    if (options.database === undefined) return DataDir.open(dir);
    checkPostgresUrl(options.database);
    const checked = DataDir.#checked(dir);
    const repo = await openDatabase(options.database, options.direct ?? false);
    return new DataDir(checked.dir, checked.pki, repo, new ArtifactStore(checked.dir, repo.blobs));
  }

  /** The root CA key's path if it was left in the data directory (never read here), else undefined. */
  get rootKeyLeftBehind(): string | undefined {
    const path = join(this.dir, PKI_FILES.caKey);
    return existsSync(path) ? path : undefined;
  }

  /** Where uploaded NF crates are unpacked for the builder. */
  get nfSourceRoot(): string {
    return join(this.dir, "nf-sources");
  }

  async enrolDevice(
    name: string,
    labels: Labels,
    controllerUrl: string,
    validityDays?: number,
  ): Promise<EnrollDeviceResponse> {
    const checked = await this.#checkEnrolment(name, labels);
    const issued = issueDeviceCert(this.pki.issuer, name, validityDays ? { validityDays } : {});
    return this.#recordEnrolment(name, checked, issued, controllerUrl);
  }

  /**
   * enrolDevice for the server: the key pair and the signature are computed off the event
   * loop (issueDeviceCertAsync), so devices' requests are served meanwhile.
   */
  async enrolDeviceAsync(
    name: string,
    labels: Labels,
    controllerUrl: string,
    validityDays?: number,
  ): Promise<EnrollDeviceResponse> {
    const checked = await this.#checkEnrolment(name, labels);
    const issued = await issueDeviceCertAsync(this.pki.issuer, name, validityDays ? { validityDays } : {});
    // checked again: another enrolment of the same name may have finished meanwhile
    return this.#recordEnrolment(name, await this.#checkEnrolment(name, checked), issued, controllerUrl);
  }

  async #checkEnrolment(name: string, labels: Labels): Promise<Labels> {
    const checkedName = Name.safeParse(name);
    if (!checkedName.success)
      throw new RequestError(
        400,
        `device name ${JSON.stringify(name)}: ${checkedName.error.issues[0]?.message}`,
      );
    const checkedLabels = Labels.safeParse(labels);
    if (!checkedLabels.success) {
      throw new RequestError(
        400,
        `labels: ${checkedLabels.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`,
      );
    }
    const existing = await this.repo.getDevice(name);
    if (existing && !existing.revokedAt) {
      throw new RequestError(
        409,
        `device ${name} is already enrolled (serial ${existing.serial}); revoke it first`,
      );
    }
    return checkedLabels.data;
  }

  async #recordEnrolment(
    name: string,
    labels: Labels,
    issued: IssuedCert,
    controllerUrl: string,
  ): Promise<EnrollDeviceResponse> {
    const serial = normaliseSerial(issued.serial);
    await this.repo.insertDevice({
      name,
      labels,
      serial,
      certPem: issued.certPem,
      enrolledAt: new Date().toISOString(),
      notAfter: issued.notAfter.toISOString(),
    });
    return {
      name,
      serial,
      notAfter: issued.notAfter.toISOString(),
      certPem: issued.certPem,
      keyPem: issued.keyPem,
      // the root: what the device verifies the server with (devices never see the issuer)
      caPem: this.pki.rootCertPem,
      controllerUrl,
    };
  }

  revokeDevice(name: string): Promise<DeviceRecord> {
    return revokeDevice(this.repo, name);
  }

  /** Creates a token, stores only its hash, returns the token (shown once). */
  createToken(name: string, scopes: readonly TokenScope[], expiresAt?: string): Promise<CreateTokenResponse> {
    return createToken(this.repo, name, scopes, expiresAt);
  }

  revokeTokens(name: string): Promise<{ name: string; revoked: number }> {
    return revokeTokens(this.repo, name);
  }

  close(): Promise<void> {
    return this.repo.close();
  }
}

/**
 * A PostgreSQL database for `url`. `direct` (a CLI command on the state itself, no server):
 * no LISTEN, a bounded connect, and a database no controller has migrated to this version
 * is refused rather than migrated from the command line.
 */
export function openDatabase(url: string, direct: boolean): Promise<PostgresRepository> {
  return openPostgresRepository(
    url,
    direct ? { migrate: false, listen: false, poolSize: 2, connectTimeoutMs: 10_000 } : {},
  );
}

export async function revokeDevice(repo: Repository, name: string): Promise<DeviceRecord> {
  const device = await repo.getDevice(name);
  if (!device) throw new RequestError(404, `device ${name} is not enrolled`);
  if (device.revokedAt)
    throw new RequestError(409, `device ${name} was already revoked at ${device.revokedAt}`);
  return repo.revokeDevice(name, new Date().toISOString());
}

export async function revokeTokens(
  repo: Repository,
  name: string,
): Promise<{ name: string; revoked: number }> {
  const revoked = await repo.deleteTokens(name);
  if (revoked === 0) throw new RequestError(404, `no token named ${name}`);
  return { name, revoked };
}

/** The device's CPU triple: from the request's `arch`, else from its last status report. */
export function deviceTriple(device: DeviceRecord, arch?: string): CpuTriple | undefined {
  const machine = arch ?? device.status?.arch;
  return machine ? tripleForMachine(machine) : undefined;
}

/**
 * What GET /v1/device/assignment returns for this device: its chain's graph with the
 * artifacts of the latest published build of each NF for its triple, and the map entries.
 */
export async function buildAssignment(
  repo: Repository,
  device: DeviceRecord,
  triple?: CpuTriple,
): Promise<SignedDeviceAssignment> {
  const deadMan = await repo.getDeadMan(device.name);
  const base = {
    protocolVersion: PROTOCOL_VERSION,
    device: device.name,
    ...(triple ? { triple } : {}),
    deadMan: {
      graceSeconds: deadMan.graceSeconds ?? DEFAULT_GRACE_SECONDS,
      ...(deadMan.confirmed ? { confirmed: deadMan.confirmed } : {}),
    },
  };
  if (!device.assignedChain) return { ...base, chain: null };
  const chain = await repo.getChainVersion(device.assignedChain, device.assignedVersion ?? undefined);
  if (!chain) return { ...base, chain: null };
  // The builds recorded at push: republishing an NF does not change a pushed version.
  const builds = await Promise.all(chain.graph.nfs.map((nf) => buildOfInstance(repo, chain, nf)));
  const nfs: AssignedNf[] = chain.graph.nfs.map((nf, i) => {
    const published = builds[i];
    const artifacts: AssignedNf["artifacts"] = {};
    if (published) {
      const bpf = published.artifacts.find((a) => a.kind === "bpf-object");
      const native = triple
        ? published.artifacts.find((a) => a.kind === "native-lib" && a.triple === triple)
        : undefined;
      if (nf.xdp && bpf) artifacts.bpfObject = { digest: bpf.digest, size: bpf.size };
      if (nf.userland && native) artifacts.native = { digest: native.digest, size: native.size };
    }
    return { ...nf, artifacts };
  });
  const mapEntries: Array<{ map: string; entries: Awaited<ReturnType<Repository["getMapEntries"]>> }> = [];
  for (const map of chain.graph.maps) {
    const entries = await repo.getMapEntries(chain.name, map.id);
    // A map whose entries were signed goes out even when empty: devices expect its signed set.
    if (entries.length > 0 || (await repo.getSignedMapEntries(chain.name, map.id)) !== undefined)
      mapEntries.push({ map: map.id, entries });
  }
  return {
    ...base,
    trust: await assignmentTrust(
      repo,
      chain,
      builds,
      mapEntries.map((m) => m.map),
    ),
    chain: {
      name: chain.name,
      version: chain.version,
      entry: chain.graph.entry,
      nfs,
      maps: chain.graph.maps,
      mapEntries,
    },
  };
}

/**
 * Digests a device may download: every artifact of every NF in its assigned chain (any
 * triple: a device may legitimately fetch another CPU's build of its own NF; nothing else).
 */
export async function artifactsAllowedFor(
  repo: Repository,
  device: DeviceRecord,
): Promise<Set<Sha256Digest>> {
  const allowed = new Set<Sha256Digest>();
  if (!device.assignedChain) return allowed;
  const chain = await repo.getChainVersion(device.assignedChain, device.assignedVersion ?? undefined);
  if (!chain) return allowed;
  for (const nf of chain.graph.nfs) {
    const published = await buildOfInstance(repo, chain, nf);
    for (const artifact of published?.artifacts ?? []) {
      if (artifact.kind !== "crate-source") allowed.add(artifact.digest);
    }
  }
  return allowed;
}

/**
 * The operator's view of a device. `online` = holds a ws notification connection (only
 * the server knows); `refusal` = why its assigned chain is not sent (capabilities.ts).
 */
export function deviceSummary(
  device: DeviceRecord,
  online: boolean,
  extra: { refusal?: AssignmentRefusal | null; graceSeconds?: number } = {},
): DeviceSummary {
  const status = device.status;
  return {
    name: device.name,
    labels: device.labels,
    serial: device.serial,
    enrolledAt: device.enrolledAt,
    notAfter: device.notAfter,
    revokedAt: device.revokedAt,
    lastSeenAt: device.lastSeenAt,
    online,
    assigned: device.assignedChain ? { chain: device.assignedChain, version: device.assignedVersion } : null,
    assignedBy: device.assignedBy,
    installed: status?.installed
      ? { chain: status.installed.chain, version: status.installed.version }
      : null,
    state: status?.state ?? null,
    errors: status?.errors ?? [],
    counters: status?.counters ?? [],
    arch: status?.arch ?? null,
    triple: status ? (tripleForMachine(status.arch) ?? null) : null,
    kernelVersion: status?.kernelVersion ?? null,
    agentVersion: status?.agentVersion ?? null,
    capabilities: status?.capabilities ?? null,
    refusal: extra.refusal ?? null,
    rollback: status?.rollback ?? null,
    cost: status?.cost ?? null,
    ...(extra.graceSeconds !== undefined ? { graceSeconds: extra.graceSeconds } : {}),
  };
}
