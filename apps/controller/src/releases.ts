/**
 * Release signing on the controller's side. The controller never holds a release key:
 * it computes the documents operators sign (NF release manifests, chain version
 * documents), stores the signatures they upload, and relays both to devices, which verify
 * them against the keys pinned in their bundle. Pure functions over the repository; the
 * HTTP side is routes/releases.ts.
 */
import type { NfInterface } from "@galette/chain";
import {
  type AssignmentTrust,
  type ChainVersionDocument,
  canonicalJson,
  type MapEntriesDocument,
  type NfReleaseManifest,
  type NfReleaseResponse,
  type ReleaseArtifact,
  releaseDigest,
  releaseKeyId,
  releasePublicKey,
  SIGNATURE_DOMAINS,
  type Signature,
  type SignatureDomain,
  type UploadedSignature,
  verifiedBy,
} from "@galette/protocol";
import { RequestError } from "./control";
import type { ChainGraph, ChainVersionRecord, NfRecord, Repository } from "./storage/repository";

const byKindThenTriple = (a: ReleaseArtifact, b: ReleaseArtifact) =>
  a.kind !== b.kind ? (a.kind < b.kind ? -1 : 1) : (a.triple ?? "") < (b.triple ?? "") ? -1 : 1;

/** The signed interface: what chains are checked against, without source locations. */
export function releaseInterface(iface: NfInterface): NfReleaseManifest["interface"] {
  return {
    actions: iface.actions.map((a) => a.name),
    maps: iface.maps.map((m) => ({
      name: m.name,
      keySize: m.keySize ?? null,
      valueSize: m.valueSize ?? null,
      mapType: m.mapType ?? null,
    })),
  };
}

/** The manifest of one published build: what `galette nf release` signs. */
export function manifestOf(nf: NfRecord): NfReleaseManifest {
  const artifacts: ReleaseArtifact[] = [];
  for (const a of nf.artifacts) {
    if (a.kind === "crate-source") continue;
    artifacts.push({
      kind: a.kind,
      ...(a.kind === "native-lib" && a.triple ? { triple: a.triple } : {}),
      digest: a.digest,
      size: a.size,
    });
  }
  return {
    nf: nf.name,
    sourceDigest: nf.sourceDigest,
    buildHash: nf.buildHash,
    interface: releaseInterface(nf.interface),
    artifacts: artifacts.sort(byKindThenTriple),
  };
}

/** An NfInterface rebuilt from a signed manifest (no source locations), to plan with. */
export function interfaceFromManifest(manifest: NfReleaseManifest): NfInterface {
  const location = { file: `${manifest.nf}/src/lib.rs`, line: 1, column: 1 };
  return {
    file: location.file,
    actions: manifest.interface.actions.map((name) => ({ name, location })),
    maps: manifest.interface.maps.map((m) => ({
      name: m.name,
      ...(m.keySize !== null ? { keySize: m.keySize } : {}),
      ...(m.valueSize !== null ? { valueSize: m.valueSize } : {}),
      ...(m.mapType !== null ? { mapType: m.mapType } : {}),
      location,
    })),
  };
}

/** The build of `name` whose manifest has this release digest. */
export async function buildByRelease(
  repo: Repository,
  name: string,
  digest: string,
): Promise<NfRecord | undefined> {
  return (await repo.listNfBuilds(name)).find((b) => releaseDigest(manifestOf(b)) === digest);
}

export async function releaseResponse(repo: Repository, build: NfRecord): Promise<NfReleaseResponse> {
  const manifest = manifestOf(build);
  const digest = releaseDigest(manifest);
  return {
    digest,
    manifest,
    signatures: await repo.releaseSignatures(digest),
    publishedAt: build.publishedAt,
  };
}

/**
 * The release digest of the build each NF instance of a freshly planned graph runs: the
 * newest build of its NF with the graph's build hash (what planning used).
 */
export async function releasesOfGraph(repo: Repository, graph: ChainGraph): Promise<Record<string, string>> {
  const releases: Record<string, string> = {};
  for (const nf of graph.nfs) {
    const build = (await repo.listNfBuilds(nf.nf)).find((b) => b.buildHash === nf.buildHash);
    if (!build) throw new RequestError(409, `NF ${nf.nf} build ${nf.buildHash} disappeared while pushing`);
    releases[nf.uuid] = releaseDigest(manifestOf(build));
  }
  return releases;
}

/** What `galette chain push --key` signs for this graph as version `version`. */
export function chainDocument(
  name: string,
  version: number,
  graph: ChainGraph,
  releases: Record<string, string>,
): ChainVersionDocument {
  return {
    chain: name,
    version,
    entry: graph.entry.target,
    ...(graph.entry.b ? { entryB: graph.entry.b.target } : {}),
    nfs: graph.nfs
      .map((nf) => {
        const release = releases[nf.uuid];
        if (!release) throw new Error(`NF instance ${nf.instance} (${nf.uuid}) has no recorded release`);
        return {
          uuid: nf.uuid,
          instance: nf.instance,
          nf: nf.nf,
          release,
          actions: nf.actions.map((a) => a.variant),
          next: nf.actions.map((a) => ("target" in a ? a.target : a.kind)),
          maps: nf.maps,
        };
      })
      .sort((a, b) => (a.uuid < b.uuid ? -1 : 1)),
    maps: [...graph.maps].sort((a, b) => (a.id < b.id ? -1 : 1)),
  };
}

/**
 * The build an NF instance of a stored chain version runs: the one recorded when the
 * version was pushed, so republishing an NF never changes an already-pushed version.
 * Versions pushed before releases were recorded follow the newest build with their
 * build hash.
 */
export async function buildOfInstance(
  repo: Repository,
  chain: ChainVersionRecord,
  nf: ChainGraph["nfs"][number],
): Promise<NfRecord | undefined> {
  const recorded = await repo.getChainRelease(chain.name, chain.version);
  const digest = recorded?.releases[nf.uuid];
  if (digest) return buildByRelease(repo, nf.nf, digest);
  return (
    (await repo.listNfBuilds(nf.nf)).find((b) => b.buildHash === nf.buildHash) ?? (await repo.latestNf(nf.nf))
  );
}

/** The signatures and signed documents a device needs to check its assignment offline. */
export async function assignmentTrust(
  repo: Repository,
  chain: ChainVersionRecord,
  builds: ReadonlyArray<NfRecord | undefined>,
  mapIds: readonly string[],
): Promise<AssignmentTrust> {
  const recorded = await repo.getChainRelease(chain.name, chain.version);
  const releases = new Map<string, NfReleaseResponse>();
  for (const build of builds) {
    if (!build) continue;
    const r = await releaseResponse(repo, build);
    releases.set(r.digest, r);
  }
  const mapEntries: AssignmentTrust["mapEntries"] = [];
  for (const id of mapIds) {
    const signed = await repo.getSignedMapEntries(chain.name, id);
    if (signed) mapEntries.push(signed);
  }
  return {
    chain: recorded ? { document: recorded.document, signatures: recorded.signatures } : null,
    releases: [...releases.values()].map((r) => ({ manifest: r.manifest, signatures: r.signatures })),
    keySet: (await repo.latestKeySet()) ?? null,
    mapEntries,
  };
}

/**
 * Checks an uploaded signature with the public key the operator sent along, so a
 * signature over anything but `doc` (a stale plan, another version) is refused at once
 * rather than by every device later. Devices check again with the keys they pin.
 */
export function checkUploadedSignature(
  domain: SignatureDomain,
  doc: unknown,
  signature: Signature,
  publicKey: string,
  what: string,
): void {
  let keyId: string;
  try {
    keyId = releaseKeyId(releasePublicKey(publicKey));
  } catch (err) {
    throw new RequestError(400, `publicKey: ${(err as Error).message}`);
  }
  if (keyId !== signature.keyId)
    throw new RequestError(400, `signature.keyId ${signature.keyId} is not the id of publicKey (${keyId})`);
  if (!verifiedBy(domain, doc, [signature], [publicKey]))
    throw new RequestError(
      409,
      `the signature does not match ${what} as the controller has it now (it changed since it was signed?): sign again`,
    );
}

/**
 * With a pushed version (same transaction): records the NF builds it runs and its
 * document with the operator's signature when there is one. A signature over anything
 * else (an NF republished since the plan was signed, a concurrent push) rolls the push back.
 */
export async function recordChainRelease(
  repo: Repository,
  name: string,
  version: number,
  graph: ChainGraph,
  signed: UploadedSignature | undefined,
): Promise<void> {
  const releases = await releasesOfGraph(repo, graph);
  const document = chainDocument(name, version, graph, releases);
  if (signed)
    checkUploadedSignature(
      SIGNATURE_DOMAINS.chainVersion,
      document,
      signed.signature,
      signed.publicKey,
      `chain ${name} version ${version}`,
    );
  await repo.saveChainRelease(name, version, {
    releases,
    document,
    signatures: signed ? [signed.signature] : [],
  });
}

/**
 * With a map change (same transaction): the signed entries must be exactly what the map
 * holds after it, and newer than the last signed set. A map whose entries were signed
 * refuses unsigned changes (its devices would refuse them).
 */
export async function recordMapSignature(
  repo: Repository,
  chain: string,
  map: string,
  signed: (UploadedSignature & { document: MapEntriesDocument }) | undefined,
  at: string,
): Promise<void> {
  const previous = await repo.getSignedMapEntries(chain, map);
  if (!signed) {
    if (previous)
      throw new RequestError(
        409,
        `the entries of ${chain}/${map} are signed (set #${previous.document.seq}): sign this change too (galette map set --key)`,
      );
    return;
  }
  const doc = signed.document;
  if (doc.chain !== chain || doc.map !== map)
    throw new RequestError(400, `signed.document is for ${doc.chain}/${doc.map}, not ${chain}/${map}`);
  if (previous && doc.seq <= previous.document.seq)
    throw new RequestError(
      409,
      `signed set #${doc.seq} is not newer than #${previous.document.seq}: sign again`,
    );
  const now = await repo.getMapEntries(chain, map);
  if (canonicalJson(now) !== canonicalJson(doc.entries))
    throw new RequestError(
      409,
      `the signed entries of ${chain}/${map} are not what the map holds after this change (it changed meanwhile?): sign again`,
    );
  checkUploadedSignature(
    SIGNATURE_DOMAINS.mapEntries,
    doc,
    signed.signature,
    signed.publicKey,
    `${chain}/${map}`,
  );
  await repo.saveSignedMapEntries({ document: doc, signatures: [signed.signature] }, at);
}
