/**
 * Device-side release verification: before anything is downloaded or loaded, the agent
 * checks that the assignment is exactly what an operator signed with a release key pinned
 * on this device. The controller only relays signatures; it cannot make them.
 *
 * - the chain version is signed (domain chainVersion) by a trusted key;
 * - every NF instance runs the build the signed chain names, and that build's manifest is
 *   signed (domain nfRelease) by a trusted key;
 * - every artifact to load is listed in that manifest (its digest is checked again on
 *   download and in the cache);
 * - the NFs, each Action variant's target and the map specs are exactly the signed ones;
 *   only the XDP/userland placement (tailcall or upcall, xdp/userland flags) is left open;
 * - the signed chain binds every #[maps] field of each signed release to a map it defines,
 *   with the type and key/value sizes that release was built for;
 * - versions only move forward (TrustStore.checkVersion);
 * - map entries set by operators are signed (domain mapEntries) and never older than
 *   what this device applied.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canonicalMapName, canonicalMapType } from "@galette/chain";
import {
  type AssignedChain,
  type AssignedNf,
  type AssignmentTrust,
  type ChainVersionDocument,
  canonicalJson,
  describeZodError,
  type NfReleaseManifest,
  releaseDigest,
  releaseKeyId,
  SIGNATURE_DOMAINS,
  SignedReleaseKeySet,
  verifiedBy,
} from "@galette/protocol";
import { z } from "zod";

/** The assignment is not covered by signatures of a trusted key: nothing of it is loaded. */
export class TrustError extends Error {
  override name = "TrustError";
}

const short = (digest: string) => digest.slice(0, 12);

/** Where an Action variant leads, without its placement: the target NF instance, or the exit. */
const targetOf = (a: AssignedNf["actions"][number]): string => ("target" in a ? a.target : a.kind);

/**
 * Checks `chain` (as the controller sent it) against the trust material. Returns the
 * signed chain document and the key that signed it; throws TrustError naming the first
 * thing not covered by a signature of a key in `keys`.
 */
export function verifyAssignment(
  chain: AssignedChain,
  trust: AssignmentTrust | undefined,
  keys: readonly string[],
): { document: ChainVersionDocument; signedBy: string } {
  const where = `chain "${chain.name}" v${chain.version}`;
  if (keys.length === 0)
    throw new TrustError(
      `${where}: no release key is pinned on this device (releaseKeys in the agent config); refusing to load unsigned code`,
    );
  if (!trust?.chain) throw new TrustError(`${where} is not signed (push it with galette chain push --key)`);
  const doc = trust.chain.document;
  const chainKey = verifiedBy(SIGNATURE_DOMAINS.chainVersion, doc, trust.chain.signatures, keys);
  if (!chainKey)
    throw new TrustError(
      `${where} is not signed by a pinned release key (signed by ${
        trust.chain.signatures.map((s) => short(s.keyId)).join(", ") || "no key"
      }; pinned: ${keys.map((k) => short(releaseKeyId(k))).join(", ")})`,
    );
  if (doc.chain !== chain.name || doc.version !== chain.version)
    throw new TrustError(
      `${where}: the signature covers chain "${doc.chain}" v${doc.version}, not this version`,
    );

  // Every signed NF build, by release digest, whose manifest a trusted key signed.
  const released = new Map<string, NfReleaseManifest>();
  for (const r of trust.releases) {
    if (verifiedBy(SIGNATURE_DOMAINS.nfRelease, r.manifest, r.signatures, keys))
      released.set(releaseDigest(r.manifest), r.manifest);
  }

  const signedNfs = new Map(doc.nfs.map((n) => [n.uuid, n]));
  const docMaps = new Map(doc.maps.map((m) => [m.id, m]));
  for (const m of doc.maps)
    if (!m.shared && (!m.owner || !signedNfs.get(m.owner)?.maps.some((b) => b.map === m.id)))
      throw new TrustError(
        `${where}: owned map "${m.id}" is not bound by the NF instance that owns it in the signed chain`,
      );
  if (signedNfs.size !== chain.nfs.length || chain.nfs.some((n) => !signedNfs.has(n.uuid))) {
    const extra = chain.nfs.filter((n) => !signedNfs.has(n.uuid)).map((n) => `${n.instance} (${n.uuid})`);
    const missing = doc.nfs.filter((n) => !chain.nfs.some((c) => c.uuid === n.uuid)).map((n) => n.instance);
    throw new TrustError(
      `${where}: the NF instances are not the signed ones${extra.length ? `; not signed: ${extra.join(", ")}` : ""}${
        missing.length ? `; signed but missing: ${missing.join(", ")}` : ""
      }`,
    );
  }
  if (chain.entry.target !== doc.entry)
    throw new TrustError(`${where}: rx leads to ${chain.entry.target}, the signed chain says ${doc.entry}`);
  if (chain.entry.b?.target !== doc.entryB)
    throw new TrustError(
      `${where}: rx.b (the second port's direction) leads to ${chain.entry.b?.target ?? "nothing"}, the signed chain says ${doc.entryB ?? "nothing"}`,
    );

  for (const nf of chain.nfs) {
    const signed = signedNfs.get(nf.uuid)!;
    const what = `${where}: NF "${nf.instance}" (${nf.nf})`;
    if (signed.instance !== nf.instance || signed.nf !== nf.nf)
      throw new TrustError(`${what} is signed as "${signed.instance}" (${signed.nf})`);
    const manifest = released.get(signed.release);
    if (!manifest)
      throw new TrustError(
        `${what}: build ${short(signed.release)} is not covered by a release signed by a pinned key (run galette nf release ${nf.nf})`,
      );
    if (manifest.nf !== nf.nf || manifest.buildHash !== nf.buildHash)
      throw new TrustError(
        `${what}: runs build ${nf.buildHash.slice(0, 16)}, the signed chain names ${manifest.nf} build ${manifest.buildHash.slice(0, 16)}`,
      );
    const variants = nf.actions.map((a) => a.variant);
    if (
      canonicalJson(variants) !== canonicalJson(signed.actions) ||
      canonicalJson(signed.actions) !== canonicalJson(manifest.interface.actions) ||
      signed.next.length !== signed.actions.length
    )
      throw new TrustError(`${what}: its Action variants are not the signed ones`);
    nf.actions.forEach((action, i) => {
      const target = targetOf(action);
      if (target !== signed.next[i])
        throw new TrustError(
          `${what}: Action variant ${action.variant} leads to ${target}, the signed chain says ${signed.next[i]}`,
        );
    });
    if (canonicalJson(nf.maps) !== canonicalJson(signed.maps))
      throw new TrustError(`${what}: its map bindings are not the signed ones`);
    checkSignedMaps(what, signed, manifest, docMaps);
    for (const [kind, ref] of [
      ["bpf-object", nf.artifacts.bpfObject],
      ["native-lib", nf.artifacts.native],
    ] as const) {
      if (!ref) continue;
      const listed = manifest.artifacts.find((a) => a.kind === kind && a.digest === ref.digest);
      if (!listed)
        throw new TrustError(
          `artifact ${ref.digest} (${kind} of NF "${nf.instance}") is not covered by a release signed by a pinned key`,
        );
    }
  }
  const byId = (maps: AssignedChain["maps"]) => [...maps].sort((a, b) => (a.id < b.id ? -1 : 1));
  if (canonicalJson(byId(chain.maps)) !== canonicalJson(byId(doc.maps)))
    throw new TrustError(`${where}: its map specs are not the signed ones`);

  // Map entries operators set: each map's entries must be exactly a signed set.
  for (const m of chain.mapEntries) {
    const signed = (trust.mapEntries ?? []).find(
      (s) =>
        s.document.chain === chain.name &&
        s.document.map === m.map &&
        verifiedBy(SIGNATURE_DOMAINS.mapEntries, s.document, s.signatures, keys) !== undefined,
    );
    if (!signed)
      throw new TrustError(
        `${where}: the entries of map "${m.map}" are not signed by a pinned key (galette map set --key)`,
      );
    const sorted = [...m.entries].sort((a, b) => (a.key < b.key ? -1 : 1));
    if (canonicalJson(sorted) !== canonicalJson(signed.document.entries))
      throw new TrustError(`${where}: the entries of map "${m.map}" are not the signed ones`);
  }
  return { document: doc, signedBy: chainKey };
}

/**
 * The signed chain's maps against the NF's signed release: every #[maps] field the build
 * declares is bound exactly once, to a map the signed chain defines, of the type and key
 * and value sizes the build was compiled for; an owned map belongs to this instance only.
 * Equality with the signed documents alone does not give this: a chain signed from a
 * wrong plan (or by hand) would otherwise have the build use a map it was not made for,
 * or one the signature does not define.
 */
function checkSignedMaps(
  what: string,
  signed: ChainVersionDocument["nfs"][number],
  manifest: NfReleaseManifest,
  docMaps: ReadonlyMap<string, ChainVersionDocument["maps"][number]>,
): void {
  const declared = manifest.interface.maps.map((f) => canonicalMapName(f.name));
  const bound = signed.maps.map((b) => b.field);
  const missing = declared.filter((f) => !bound.includes(f));
  const extra = bound.filter((f) => !declared.includes(f));
  const twice = bound.filter((f, i) => bound.indexOf(f) !== i);
  if (missing.length || extra.length || twice.length)
    throw new TrustError(
      `${what}: the signed chain binds map fields [${bound.join(", ")}], its signed release declares [${declared.join(", ")}]${
        missing.length ? `; not bound: ${missing.join(", ")}` : ""
      }${extra.length ? `; not in the release: ${extra.join(", ")}` : ""}${
        twice.length ? `; bound twice: ${twice.join(", ")}` : ""
      }`,
    );
  for (const field of manifest.interface.maps) {
    const name = canonicalMapName(field.name);
    const binding = signed.maps.find((b) => b.field === name)!;
    const spec = docMaps.get(binding.map);
    if (!spec)
      throw new TrustError(
        `${what}: map field "${name}" is bound to map "${binding.map}", which the signed chain does not define`,
      );
    if (!spec.shared && (spec.owner !== signed.uuid || spec.name !== name))
      throw new TrustError(
        `${what}: map field "${name}" is bound to map "${spec.id}", owned by ${spec.owner === signed.uuid ? `this instance's field "${spec.name}"` : "another NF instance"}`,
      );
    const type = field.mapType === null ? undefined : canonicalMapType(field.mapType);
    if (field.mapType !== null && type !== spec.type)
      throw new TrustError(
        `${what}: map "${spec.id}" is ${spec.type} in the signed chain, ${field.mapType} in the signed release`,
      );
    for (const [label, fromRelease, fromChain] of [
      ["key", field.keySize, spec.keySize],
      ["value", field.valueSize, spec.valueSize],
    ] as const)
      if (fromRelease !== null && fromRelease !== fromChain)
        throw new TrustError(
          `${what}: map "${spec.id}" has ${fromChain}-byte ${label}s in the signed chain, the signed release was built for ${fromRelease}-byte ${label}s`,
        );
  }
}

// ---- state kept across restarts --------------------------------------------------------

const Installed = z.object({ chain: z.string(), version: z.number().int().positive() });
const TrustFile = z.object({
  /** the newest key set this device adopted; null = the agent config's releaseKeys */
  keySet: SignedReleaseKeySet.nullable().default(null),
  /** per chain name, the highest version this device installed */
  highest: z.record(z.string(), z.number().int().positive()).default({}),
  /** what runs now, and what ran immediately before (the one rollback allowed without a new signature) */
  current: Installed.nullable().default(null),
  previous: Installed.nullable().default(null),
  /** per "chain/map", the highest signed map-entries seq applied */
  mapSeq: z.record(z.string(), z.number().int().positive()).default({}),
});
type TrustFile = z.infer<typeof TrustFile>;

/**
 * What the device remembers about trust (dataDir/trust.json): the key set in force and
 * the version history that makes versions move forward. Written atomically.
 */
export class TrustStore {
  readonly file: string;
  #state: TrustFile;

  constructor(
    dataDir: string,
    readonly configKeys: readonly string[],
  ) {
    this.file = path.join(dataDir, "trust.json");
    this.#state = TrustFile.parse({});
    if (existsSync(this.file)) {
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(this.file, "utf8"));
      } catch (err) {
        throw new Error(`${this.file}: not valid JSON: ${(err as Error).message}`);
      }
      const parsed = TrustFile.safeParse(json);
      if (!parsed.success)
        throw new Error(`${this.file}: invalid: ${describeZodError(parsed.error).join("; ")}`);
      this.#state = parsed.data;
    }
  }

  #save(): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  /** The release keys trusted now (base64 SPKI). */
  get keys(): readonly string[] {
    return this.#state.keySet?.document.keys ?? this.configKeys;
  }

  get keySetSeq(): number {
    return this.#state.keySet?.document.seq ?? 0;
  }

  /**
   * Adopts `offered` when it is newer than the key set in force and signed by a key
   * trusted now. Returns what changed (for the log), undefined when nothing did; throws
   * TrustError for a newer key set that no trusted key signed.
   */
  adoptKeySet(offered: AssignmentTrust["keySet"] | undefined): { seq: number; keys: string[] } | undefined {
    if (!offered || offered.document.seq <= this.keySetSeq) return undefined;
    const by = verifiedBy(SIGNATURE_DOMAINS.keySet, offered.document, offered.signatures, this.keys);
    if (!by)
      throw new TrustError(
        `release key set #${offered.document.seq} is not signed by a key this device trusts now; keeping key set #${this.keySetSeq}`,
      );
    this.#state.keySet = offered;
    this.#save();
    return { seq: offered.document.seq, keys: offered.document.keys.map((k) => releaseKeyId(k)) };
  }

  /** Throws when `version` of `chain` would move this device backwards. */
  checkVersion(chain: string, version: number): void {
    const highest = this.#state.highest[chain];
    if (highest === undefined || version >= highest) return;
    const prev = this.#state.previous;
    if (prev && prev.chain === chain && prev.version === version) return;
    throw new TrustError(
      `chain "${chain}" v${version} is older than v${highest}, which this device already ran; only the version that ran immediately before is accepted back without a new signature (push the old chain file again to roll back)`,
    );
  }

  /** Refuses map entries older than those already applied (replay of an older allow-list). */
  checkMapSeq(trust: AssignmentTrust | undefined, chain: AssignedChain): void {
    // A map that had signed entries keeps needing them: dropping them is not a way to clear it.
    for (const key of Object.keys(this.#state.mapSeq)) {
      if (!key.startsWith(`${chain.name}/`)) continue;
      const map = key.slice(chain.name.length + 1);
      if (!chain.maps.some((m) => m.id === map)) continue;
      if (!chain.mapEntries.some((m) => m.map === map))
        throw new TrustError(
          `chain "${chain.name}": map "${map}" had signed entries (#${this.#state.mapSeq[key]}) and the assignment has none`,
        );
    }
    for (const m of chain.mapEntries) {
      const doc = trust?.mapEntries?.find((s) => s.document.chain === chain.name && s.document.map === m.map);
      if (!doc) continue;
      const seen = this.#state.mapSeq[`${chain.name}/${m.map}`];
      if (seen !== undefined && doc.document.seq < seen)
        throw new TrustError(
          `chain "${chain.name}": the entries of map "${m.map}" are signed set #${doc.document.seq}, older than #${seen} already applied`,
        );
    }
  }

  /** After a successful install: history moves on. */
  recordInstalled(chain: AssignedChain, trust: AssignmentTrust | undefined): void {
    const s = this.#state;
    const now = { chain: chain.name, version: chain.version };
    if (s.current && !(s.current.chain === now.chain && s.current.version === now.version))
      s.previous = s.current;
    s.current = now;
    s.highest[chain.name] = Math.max(s.highest[chain.name] ?? 0, chain.version);
    for (const m of trust?.mapEntries ?? []) {
      if (m.document.chain !== chain.name) continue;
      const key = `${chain.name}/${m.document.map}`;
      s.mapSeq[key] = Math.max(s.mapSeq[key] ?? 0, m.document.seq);
    }
    this.#save();
  }
}
