/**
 * Device assignments served from memory. A push makes every device poll (and the
 * controller notify each one with the new ETag) within seconds; building the chain part
 * of an assignment (NF builds, release manifests and signatures, key set, map entries) per
 * request is what made polls slow then. The chain part depends only on (chain, version,
 * CPU triple), so it is built once, serialised once, and shared by every device that runs
 * it; what is the device's own (name, triple, dead-man's switch, capability refusal) is
 * computed per request and never cached.
 *
 * Invalidation: every change that alters a chain part (push, assign, map entries, NF
 * publish or release, key set, rollouts, confirm) is published through
 * Repository.publishAssignmentChanged, which reaches every replica (PostgreSQL: LISTEN/NOTIFY);
 * any such event drops the whole cache. Chain versions are immutable, so a device moved to
 * another version never meets the old entry. A TTL bounds what a missed notification could
 * leave behind: a lost LISTEN connection, or a device kept on its installed version by a
 * capability refusal, which the routes' change notifications (by assigned chain) do not name.
 */
import {
  type AssignmentRefusal,
  type CpuTriple,
  DEFAULT_GRACE_SECONDS,
  PROTOCOL_VERSION,
  type Sha256Digest,
} from "@galette/protocol";
import { bpfLoopNfs, refusalOf } from "./capabilities";
import { artifactsAllowedFor, buildAssignment, deviceTriple } from "./control";
import { type ArtifactStore, sha256Hex } from "./storage/artifacts";
import type { ChainVersionRecord, DeadManSettings, DeviceRecord, Repository } from "./storage/repository";

/** What every device running (chain, version) on one triple gets: shared, never per device. */
interface ChainPart {
  /** `"trust":…,"chain":…` of the assignment body, serialised once */
  json: string;
  /** sha256 of `json`, hashed once: the ETag covers it without hashing the chain per request */
  digest: string;
}

/** Per chain version, whatever the triple. */
interface ChainVersionPart {
  record: ChainVersionRecord;
  /** NFs whose BPF object calls bpf_loop, or why the objects could not be read */
  loops: Set<string> | string;
  /** artifacts a device running it may download (any triple, never crate sources) */
  allowed: Set<Sha256Digest>;
}

interface Entry<T> {
  value: Promise<T>;
  at: number;
}

export interface ServedAssignment {
  /** the JSON body of GET /v1/device/assignment */
  body: string;
  /**
   * its strong ETag, quoted: sha256 over the device's part and the chain part's digest, so
   * it changes with the body and only with it
   */
  etag: string;
  /** why the assigned chain is not sent (the device keeps what it runs), if it is not */
  refusal: AssignmentRefusal | null;
}

export interface AssignmentCacheOptions {
  /** how long an entry lives without an invalidation (default 10 s) */
  ttlMs?: number;
  /** the entries kept at most; the oldest go first (default 512) */
  maxEntries?: number;
  now?: () => number;
}

export class AssignmentCache {
  readonly #repo: Repository;
  readonly #artifacts: ArtifactStore;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry<unknown>>();
  readonly #unlisten: () => void;
  /** chain parts built since start (tests and metrics: a hit builds nothing) */
  builds = 0;

  constructor(repo: Repository, artifacts: ArtifactStore, options: AssignmentCacheOptions = {}) {
    this.#repo = repo;
    this.#artifacts = artifacts;
    this.#ttlMs = options.ttlMs ?? 10_000;
    this.#maxEntries = options.maxEntries ?? 512;
    this.#now = options.now ?? Date.now;
    this.#unlisten = repo.onAssignmentChanged(() => this.invalidate());
  }

  /** Drops every entry (an assignment, map, release or key set changed somewhere). */
  invalidate(): void {
    this.#entries.clear();
  }

  close(): void {
    this.#unlisten();
    this.invalidate();
  }

  /**
   * The assignment `device` is served: its assigned chain, or, when its reported
   * capabilities refuse that chain, the version it reports installed (or none). A device
   * read with its dead-man settings (a device request's) is served without reading them again.
   */
  async assignment(
    device: DeviceRecord & { deadMan?: DeadManSettings },
    arch?: string,
  ): Promise<ServedAssignment> {
    const triple = deviceTriple(device, arch);
    let version = await this.#version(device.assignedChain, device.assignedVersion);
    let refusal: AssignmentRefusal | null = null;
    if (version) {
      refusal = this.#refusal(device, version);
      if (refusal) {
        const installed = device.status?.installed;
        version = await this.#version(installed?.chain ?? null, installed?.version ?? null);
      }
    }
    const deadMan = device.deadMan ?? (await this.#repo.getDeadMan(device.name));
    const base = JSON.stringify({
      protocolVersion: PROTOCOL_VERSION,
      device: device.name,
      ...(triple ? { triple } : {}),
      deadMan: {
        graceSeconds: deadMan.graceSeconds ?? DEFAULT_GRACE_SECONDS,
        ...(deadMan.confirmed ? { confirmed: deadMan.confirmed } : {}),
      },
    });
    const part = version ? await this.#chainPart(device, version.record, triple) : undefined;
    // the fields, in the order, of the object buildAssignment returns
    const body = `${base.slice(0, -1)},${part ? part.json : '"chain":null'}}`;
    // The body is the device's part and the chain part: hashing the device's part with the
    // chain part's digest identifies it as well as hashing the whole body, at a fraction of
    // the cost per poll (the chain part is most of the body).
    return { body, etag: `"${sha256Hex(`${base}\n${part ? part.digest : "-"}`)}"`, refusal };
  }

  /** Digests `device` may download: every artifact of the chain it is served (any triple). */
  async allowedArtifacts(device: DeviceRecord): Promise<Set<Sha256Digest>> {
    const version = await this.#version(device.assignedChain, device.assignedVersion);
    if (!version) return new Set();
    if (!this.#refusal(device, version)) return version.allowed;
    const installed = device.status?.installed;
    return (await this.#version(installed?.chain ?? null, installed?.version ?? null))?.allowed ?? new Set();
  }

  /** The chain version a device assigned (chain, version) runs; null version: the latest. */
  async chainVersion(chain: string | null, version: number | null): Promise<ChainVersionRecord | undefined> {
    return (await this.#version(chain, version))?.record;
  }

  #refusal(device: DeviceRecord, version: ChainVersionPart): AssignmentRefusal | null {
    return refusalOf(device, version.record, version.loops);
  }

  async #version(chain: string | null, version: number | null): Promise<ChainVersionPart | undefined> {
    if (!chain) return undefined;
    // following the latest: which one that is changes with a push (which invalidates)
    const resolved =
      version ??
      (await this.#cached(
        `latest\0${chain}`,
        async () => (await this.#repo.getChainVersion(chain))?.version,
      ));
    if (resolved === undefined) return undefined;
    return this.#cached(`version\0${chain}\0${resolved}`, async () => {
      const record = await this.#repo.getChainVersion(chain, resolved);
      if (!record) return undefined;
      let loops: Set<string> | string;
      try {
        loops = await bpfLoopNfs(this.#repo, this.#artifacts, record);
      } catch (err) {
        loops = (err as Error).message;
      }
      const allowed = await artifactsAllowedFor(this.#repo, {
        name: "",
        assignedChain: record.name,
        assignedVersion: record.version,
      } as DeviceRecord);
      return { record, loops, allowed };
    });
  }

  #chainPart(
    device: DeviceRecord,
    record: ChainVersionRecord,
    triple: CpuTriple | undefined,
  ): Promise<ChainPart> {
    return this.#cached(`part\0${record.name}\0${record.version}\0${triple ?? ""}`, async () => {
      this.builds++;
      const built = await buildAssignment(
        this.#repo,
        { ...device, assignedChain: record.name, assignedVersion: record.version },
        triple,
      );
      // only the chain's own fields: the device's (name, triple, dead-man) are added per request
      const json = JSON.stringify({ ...(built.trust ? { trust: built.trust } : {}), chain: built.chain });
      const inner = json.slice(1, -1);
      return { json: inner, digest: sha256Hex(inner) };
    });
  }

  async #cached<T>(key: string, build: () => Promise<T>): Promise<T> {
    const now = this.#now();
    const hit = this.#entries.get(key) as Entry<T> | undefined;
    if (hit && now - hit.at < this.#ttlMs) return hit.value;
    // concurrent requests share one build (a push makes every device poll at once)
    const entry: Entry<T> = { value: build(), at: now };
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    entry.value.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return entry.value;
  }
}
