/**
 * Release signing: the documents an operator signs with a release key (Ed25519) that the
 * controller never holds, and that devices verify against the keys pinned in their bundle.
 *
 * Every signed document is serialised canonically (canonicalJson: sorted keys, no
 * whitespace) and prefixed with its domain (SIGNATURE_DOMAINS), so a signature over one
 * kind of document can never be replayed as another kind. The CLI, the controller and
 * the agent all go through the functions here.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { z } from "zod";
import { CpuTriple, MapEntry, Name, Sha256Digest, Uuid } from "./common";
import { DeviceAssignment, Exit, MapSpec } from "./device";

// ---- canonical serialisation ----

/**
 * Deterministic JSON: object keys sorted by code unit, no whitespace, `undefined`
 * members dropped (as JSON.stringify does). Refuses what JSON cannot carry faithfully
 * (non-finite numbers, bigint, functions), so two parties never hash different bytes
 * for the same document.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new Error(`canonicalJson: ${value} has no JSON form`);
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(",")}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
    }
    default:
      throw new Error(`canonicalJson: a ${typeof value} has no JSON form`);
  }
}

/** One domain per document type: the first bytes of every signed message. */
export const SIGNATURE_DOMAINS = {
  nfRelease: "galette.nf-release.v1",
  chainVersion: "galette.chain-version.v1",
  keySet: "galette.release-key-set.v1",
  mapEntries: "galette.map-entries.v1",
} as const;
export type SignatureDomain = (typeof SIGNATURE_DOMAINS)[keyof typeof SIGNATURE_DOMAINS];

/** The exact bytes signed for `doc`: domain, a NUL, then its canonical JSON. */
export function signedBytes(domain: SignatureDomain, doc: unknown): Buffer {
  return Buffer.concat([Buffer.from(`${domain}\0`, "utf8"), Buffer.from(canonicalJson(doc), "utf8")]);
}

/** sha256 of the signed bytes: how a document (e.g. an NF release manifest) is named. */
export function documentDigest(domain: SignatureDomain, doc: unknown): string {
  return createHash("sha256").update(signedBytes(domain, doc)).digest("hex");
}

// ---- keys ----

/** A release public key on the wire and in agent configs: base64 of its DER SubjectPublicKeyInfo. */
export const ReleasePublicKey = z
  .string()
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, "expected base64 of an Ed25519 public key (DER SPKI)")
  .max(200);
/** sha256 of the key's DER SPKI, hex: names the key in signatures and messages. */
export const ReleaseKeyId = Sha256Digest;

export const Signature = z.object({
  keyId: ReleaseKeyId,
  /** base64 Ed25519 signature over signedBytes(domain, document) */
  sig: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "expected base64"),
});
export type Signature = z.infer<typeof Signature>;

/** Parses a public key given as base64 DER SPKI or as PEM; refuses anything but Ed25519. */
export function releasePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  const key = trimmed.startsWith("-----BEGIN")
    ? createPublicKey(trimmed)
    : createPublicKey({ key: Buffer.from(trimmed, "base64"), format: "der", type: "spki" });
  if (key.asymmetricKeyType !== "ed25519")
    throw new Error(`release keys are Ed25519, got ${key.asymmetricKeyType ?? "an unknown key type"}`);
  return key;
}

/** The base64 DER SPKI form of a public key (what configs and key sets carry). */
export function encodeReleasePublicKey(key: KeyObject): string {
  return key.export({ format: "der", type: "spki" }).toString("base64");
}

export function releaseKeyId(key: KeyObject | string): string {
  const k = typeof key === "string" ? releasePublicKey(key) : key;
  return createHash("sha256")
    .update(k.export({ format: "der", type: "spki" }))
    .digest("hex");
}

/** The public half of a release private key (PEM). */
export function publicKeyOfPrivate(privateKeyPem: string): KeyObject {
  const priv = createPrivateKey(privateKeyPem);
  if (priv.asymmetricKeyType !== "ed25519")
    throw new Error(`release keys are Ed25519, got ${priv.asymmetricKeyType ?? "an unknown key type"}`);
  return createPublicKey(priv);
}

/** Signs `doc` with a private key (PEM). */
export function signDocument(domain: SignatureDomain, doc: unknown, privateKeyPem: string): Signature {
  const priv = createPrivateKey(privateKeyPem);
  if (priv.asymmetricKeyType !== "ed25519")
    throw new Error(`release keys are Ed25519, got ${priv.asymmetricKeyType ?? "an unknown key type"}`);
  const pub = createPublicKey(priv);
  return {
    keyId: releaseKeyId(pub),
    sig: sign(null, signedBytes(domain, doc), priv).toString("base64"),
  };
}

/**
 * The id of the first key among `trusted` (base64 SPKI) whose signature over `doc` in
 * `signatures` verifies; undefined when none does. Signatures by other keys are ignored.
 */
export function verifiedBy(
  domain: SignatureDomain,
  doc: unknown,
  signatures: readonly Signature[],
  trusted: readonly string[],
): string | undefined {
  const bytes = signedBytes(domain, doc);
  const keys = new Map(trusted.map((k) => [releaseKeyId(k), releasePublicKey(k)]));
  for (const s of signatures) {
    const key = keys.get(s.keyId);
    if (!key) continue;
    if (verify(null, bytes, key, Buffer.from(s.sig, "base64"))) return s.keyId;
  }
  return undefined;
}

// ---- documents ----

/** The NF's interface as signed: Action variant names and #[maps] fields with their sizes. */
export const ReleaseInterface = z.object({
  actions: z.array(z.string().min(1)),
  maps: z.array(
    z.object({
      name: z.string().min(1),
      keySize: z.number().int().positive().nullable(),
      valueSize: z.number().int().positive().nullable(),
      mapType: z.string().nullable(),
    }),
  ),
});
export type ReleaseInterface = z.infer<typeof ReleaseInterface>;

export const ReleaseArtifact = z.object({
  kind: z.enum(["bpf-object", "native-lib"]),
  /** only for native-lib */
  triple: CpuTriple.optional(),
  digest: Sha256Digest,
  size: z.number().int().nonnegative(),
});
export type ReleaseArtifact = z.infer<typeof ReleaseArtifact>;

/**
 * What `galette nf release` signs (domain nfRelease): one build of an NF. Its
 * documentDigest is the build's release digest, which chain versions name.
 */
export const NfReleaseManifest = z.object({
  nf: Name,
  /** sha256 of the published crate archive */
  sourceDigest: Sha256Digest,
  /** hash of source + toolchain + targets (mixed into NF instance UUIDs) */
  buildHash: z.string().min(1),
  interface: ReleaseInterface,
  /** sorted by kind, then triple */
  artifacts: z.array(ReleaseArtifact),
});
export type NfReleaseManifest = z.infer<typeof NfReleaseManifest>;

export const SignedNfRelease = z.object({
  manifest: NfReleaseManifest,
  signatures: z.array(Signature),
});
export type SignedNfRelease = z.infer<typeof SignedNfRelease>;

export const releaseDigest = (manifest: NfReleaseManifest): string =>
  documentDigest(SIGNATURE_DOMAINS.nfRelease, manifest);

/** Where an Action variant leads: another NF instance of the chain, or an exit. Placement is not part of it. */
export const ChainTarget = z.union([Uuid, Exit]);

/**
 * What `galette chain push --key` signs (domain chainVersion): everything about a chain
 * version except where each NF runs (XDP or userland), which may be decided per device.
 */
export const ChainVersionDocument = z.object({
  chain: Name,
  version: z.number().int().positive(),
  /** the NF instance rx leads to (rx.a for a chain per direction) */
  entry: Uuid,
  /** the NF instance rx.b leads to: frames arriving on the second port (a chain per direction) */
  entryB: Uuid.optional(),
  /** sorted by uuid */
  nfs: z.array(
    z.object({
      uuid: Uuid,
      instance: z.string().min(1),
      nf: Name,
      /** releaseDigest of the exact build this instance runs */
      release: Sha256Digest,
      /** Action variant names, in order */
      actions: z.array(z.string()),
      /** target of each Action variant, in order */
      next: z.array(ChainTarget),
      /** #[maps] fields in order, each bound to a map id */
      maps: z.array(z.object({ field: z.string().min(1), map: z.string().min(1) })),
    }),
  ),
  /** sorted by id */
  maps: z.array(MapSpec),
});
export type ChainVersionDocument = z.infer<typeof ChainVersionDocument>;

export const SignedChainVersion = z.object({
  document: ChainVersionDocument,
  signatures: z.array(Signature),
});
export type SignedChainVersion = z.infer<typeof SignedChainVersion>;

/**
 * The set of release keys devices trust (domain keySet). A device adopts a key set with
 * a higher `seq` when it is signed by a key it trusts now; that is how keys rotate
 * without re-enrolment (add the new key, re-sign, then drop the old one).
 */
export const ReleaseKeySetDocument = z.object({
  seq: z.number().int().positive(),
  keys: z.array(ReleasePublicKey).min(1),
});
export type ReleaseKeySetDocument = z.infer<typeof ReleaseKeySetDocument>;

export const SignedReleaseKeySet = z.object({
  document: ReleaseKeySetDocument,
  signatures: z.array(Signature).min(1),
});
export type SignedReleaseKeySet = z.infer<typeof SignedReleaseKeySet>;

/**
 * The entries of one map of a chain, as an operator set them (domain mapEntries). `seq`
 * only moves forward per chain and map, so an older allow-list cannot be replayed.
 */
export const MapEntriesDocument = z.object({
  chain: Name,
  map: z.string().min(1),
  seq: z.number().int().positive(),
  /** sorted by key */
  entries: z.array(MapEntry),
});
export type MapEntriesDocument = z.infer<typeof MapEntriesDocument>;

export const SignedMapEntries = z.object({
  document: MapEntriesDocument,
  signatures: z.array(Signature),
});
export type SignedMapEntries = z.infer<typeof SignedMapEntries>;

/**
 * What a device gets beside its assignment so it can check it offline: the signed chain
 * version, the signed release of every NF build it uses, the newest key set and the
 * signed map entries. The controller only relays these; it cannot make them.
 */
export const AssignmentTrust = z.object({
  chain: SignedChainVersion.nullable(),
  releases: z.array(SignedNfRelease),
  keySet: SignedReleaseKeySet.nullable(),
  mapEntries: z.array(SignedMapEntries).default([]),
});
export type AssignmentTrust = z.infer<typeof AssignmentTrust>;

// ---- operator API ----

/** GET /v1/nfs/:name/release[?build=DIGEST]: a build's manifest and the signatures it has. */
export const NfReleaseResponse = z.object({
  digest: Sha256Digest,
  manifest: NfReleaseManifest,
  signatures: z.array(Signature),
  publishedAt: z.string(),
});
export type NfReleaseResponse = z.infer<typeof NfReleaseResponse>;

/**
 * A signature an operator uploads, with the public key it verifies with: the controller
 * refuses one that does not verify (a stale document), devices check it again against
 * the keys they pin.
 */
export const UploadedSignature = z.object({ signature: Signature, publicKey: ReleasePublicKey });
export type UploadedSignature = z.infer<typeof UploadedSignature>;

/** POST /v1/nfs/:name/release: adds a signature over the manifest whose digest is `digest`. */
export const SignNfReleaseRequest = UploadedSignature.extend({ digest: Sha256Digest });
export type SignNfReleaseRequest = z.infer<typeof SignNfReleaseRequest>;

/** Optional members of POST /v1/chains: the signature over the version's ChainVersionDocument. */
export const PushChainSignature = z.object({ signed: UploadedSignature.optional() });

/** Optional member of PUT map entries: the signed entries the map holds after the change. */
export const MapEntriesSignature = z.object({
  signed: UploadedSignature.extend({ document: MapEntriesDocument }).optional(),
});

/** PUT /v1/release-keys */
export const PutReleaseKeySetRequest = z.object({ keySet: SignedReleaseKeySet });
/** POST /v1/chains/plan: what a push of this TOML would store (nothing is stored). */
export const PlanChainResponse = z.object({
  document: ChainVersionDocument,
  releases: z.array(NfReleaseResponse),
});
export type PlanChainResponse = z.infer<typeof PlanChainResponse>;

/** GET/PUT /v1/release-keys: the newest signed key set (null until one is uploaded). */
export const ReleaseKeySetResponse = z.object({ keySet: SignedReleaseKeySet.nullable() });
export type ReleaseKeySetResponse = z.infer<typeof ReleaseKeySetResponse>;

export const RELEASE_ROUTES = {
  nfRelease: (name: string) => `/v1/nfs/${encodeURIComponent(name)}/release`,
  planChain: "/v1/chains/plan",
  keySet: "/v1/release-keys",
  signedMapEntries: (chain: string, map: string) =>
    `/v1/chains/${encodeURIComponent(chain)}/maps/${encodeURIComponent(map)}/signed`,
} as const;

/** GET /v1/chains/:chain/maps/:map/signed: the last signed entries of that map (null if never signed). */
export const SignedMapEntriesResponse = z.object({ signed: SignedMapEntries.nullable() });

/**
 * Body of GET /v1/device/assignment with the trust material. Agents parse this schema;
 * `trust` is absent only from a controller that predates release signing (such an
 * assignment is refused unless the agent runs with allowUnsigned).
 */
export const SignedDeviceAssignment = DeviceAssignment.extend({ trust: AssignmentTrust.optional() });
export type SignedDeviceAssignment = z.infer<typeof SignedDeviceAssignment>;
