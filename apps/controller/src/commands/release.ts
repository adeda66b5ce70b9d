/**
 * Release signing on the operator's machine: `galette release-key init|set-trusted`,
 * `galette nf release`, and the signing half of `chain push --key` and `map set --key`.
 * The private key never leaves this process: only signatures go to the controller.
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { analyzeNf, TARGET_INFO, TARGETS, type Target } from "@galette/nf-build";
import {
  type ChainVersionDocument,
  canonicalJson,
  encodeReleasePublicKey,
  type MapEntry,
  type NfReleaseManifest,
  type NfReleaseResponse,
  type PushChainRequest,
  publicKeyOfPrivate,
  releaseDigest,
  releaseKeyId,
  releasePublicKey,
  SIGNATURE_DOMAINS,
  signDocument,
  verifiedBy,
} from "@galette/protocol";
import type { Command } from "commander";
import { planChainForPush } from "../chains";
import { nfBuilderForServe } from "../nf-builder";
import type { OperatorClient } from "../operator-client";
import { chainDocument, interfaceFromManifest } from "../releases";
import type { NfRecord } from "../storage/repository";
import { client as operatorClient } from "./controller";

const out = (text: string) => process.stdout.write(`${text}\n`);
const short = (hex: string) => hex.slice(0, 16);

export const RELEASE_KEY_FILES = { key: "release.key", pub: "release.pub" } as const;

/** A release signing key read from disk; refuses a key file others can read. */
export interface ReleaseKey {
  pem: string;
  /** base64 DER SPKI of its public half */
  publicKey: string;
  keyId: string;
}

export function loadReleaseKey(file: string): ReleaseKey {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    throw new Error(`cannot read the release key ${file}: ${(err as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new Error(
      `${file} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 ${file} (and consider it compromised if it was shared)`,
    );
  const pem = readFileSync(file, "utf8");
  let publicKey: string;
  try {
    publicKey = encodeReleasePublicKey(publicKeyOfPrivate(pem));
  } catch (err) {
    throw new Error(`${file}: not an Ed25519 release key: ${(err as Error).message}`);
  }
  return { pem, publicKey, keyId: releaseKeyId(publicKey) };
}

/** A release.pub (PEM) or a base64 key as agent configs hold them → base64 DER SPKI. */
export function readReleasePublicKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read the release public key ${file}: ${(err as Error).message}`);
  }
  try {
    return encodeReleasePublicKey(releasePublicKey(text));
  } catch (err) {
    throw new Error(`${file}: not an Ed25519 release public key: ${(err as Error).message}`);
  }
}

/** Writes DIR/release.key (0600) and DIR/release.pub; never overwrites a key. */
export function initReleaseKey(dir: string): { keyFile: string; pubFile: string; keyId: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, RELEASE_KEY_FILES.key);
  const pubFile = path.join(dir, RELEASE_KEY_FILES.pub);
  if (existsSync(keyFile)) throw new Error(`${keyFile} exists: refusing to overwrite a release key`);
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  writeFileSync(keyFile, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
  writeFileSync(pubFile, publicKey.export({ format: "pem", type: "spki" }), { mode: 0o644 });
  return { keyFile, pubFile, keyId: releaseKeyId(publicKey) };
}

const targetOfTriple = (triple: string): Target | undefined =>
  TARGETS.find((t) => TARGET_INFO[t].artifactTriple === triple || TARGET_INFO[t].triple === triple);

/** What `nf release` prints about one artifact, and whether it may be signed. */
interface ArtifactCheck {
  label: string;
  digest: string;
  size: number;
  outcome: string;
  ok: boolean;
}

/**
 * Rebuilds the NF from the local crate `source` for the manifest's targets, all in one
 * build as the controller does (the build hash covers the target list), with the
 * controller's own build procedure, and compares every artifact digest. When this
 * machine cannot build them, every artifact is reported and none is ok.
 */
async function rebuildAndCompare(manifest: NfReleaseManifest, source: string): Promise<ArtifactCheck[]> {
  const analysis = await analyzeNf(source);
  if (analysis.name !== manifest.nf)
    throw new Error(`${source} is crate "${analysis.name}", not ${manifest.nf}`);
  const label = (a: NfReleaseManifest["artifacts"][number]) =>
    a.kind === "bpf-object" ? "bpf-object" : `native-lib ${a.triple}`;
  const targets = manifest.artifacts.map((a) =>
    a.kind === "bpf-object" ? "bpf" : targetOfTriple(a.triple ?? ""),
  );
  const unknown = manifest.artifacts.filter((_, i) => targets[i] === undefined);
  if (unknown.length > 0)
    return manifest.artifacts.map((a) => ({
      label: label(a),
      digest: a.digest,
      size: a.size,
      outcome: unknown.includes(a) ? "cannot be rebuilt here (unknown target)" : "not rebuilt",
      ok: false,
    }));
  let built: Awaited<ReturnType<ReturnType<typeof nfBuilderForServe>>>;
  try {
    built = await nfBuilderForServe([...new Set(targets as Target[])])({
      name: manifest.nf,
      crateDir: source,
      analysis,
      sourceDigest: manifest.sourceDigest,
    });
  } catch (err) {
    const why = (err as Error).message.split("\n")[0];
    return manifest.artifacts.map((a) => ({
      label: label(a),
      digest: a.digest,
      size: a.size,
      outcome: `cannot be rebuilt here: ${why}`,
      ok: false,
    }));
  }
  return manifest.artifacts.map((a) => {
    const base = { label: label(a), digest: a.digest, size: a.size };
    const mine = built.artifacts.find(
      (b) => b.kind === a.kind && (a.kind === "bpf-object" || b.triple === a.triple),
    );
    if (!mine) return { ...base, outcome: "not rebuilt here (no output for this target)", ok: false };
    const digest = createHash("sha256").update(mine.bytes).digest("hex");
    return digest === a.digest
      ? { ...base, outcome: "rebuilt here: same digest", ok: true }
      : { ...base, outcome: `rebuilt here: DIFFERENT digest ${digest}`, ok: false };
  });
}

export function printManifest(release: NfReleaseResponse): void {
  const m = release.manifest;
  out(`  nf       ${m.nf}`);
  out(`  release  ${release.digest}`);
  out(`  source   ${m.sourceDigest}`);
  out(`  build    ${m.buildHash}`);
  out(`  actions  ${m.interface.actions.join(", ")}`);
  out(
    `  maps     ${
      m.interface.maps.map((f) => `${f.name} (${f.keySize ?? "?"} B → ${f.valueSize ?? "?"} B)`).join(", ") ||
      "none"
    }`,
  );
}

export function registerReleaseKeyCommands(program: Command): void {
  const rk = program
    .command("release-key")
    .description("Release signing keys: devices load only what one of their pinned keys signed");
  rk.command("init")
    .description(
      "Write an Ed25519 key pair: DIR/release.key (0600, keep it off the controller) and DIR/release.pub",
    )
    .requiredOption("--out <dir>", "directory for release.key and release.pub")
    .action((flags: { out: string }) => {
      const { keyFile, pubFile, keyId } = initReleaseKey(path.resolve(flags.out));
      out(`release key ${keyId}`);
      out(`  private: ${keyFile} (0600: keep it on the operator's machine, never on the controller)`);
      out(`  public:  ${pubFile} (pin it on devices: galette device enroll NAME --release-key ${pubFile})`);
    });

  rk.command("set-trusted")
    .description(
      "Sign and publish the set of release keys devices trust from now on (key rotation without re-enrolment)",
    )
    .argument("<public-keys...>", "release.pub files of every key devices should trust")
    .requiredOption("--key <file>", "a release.key devices trust now (signs the new set)")
    .action(async (pubs: string[], flags: { key: string }) => {
      const key = loadReleaseKey(flags.key);
      const keys = [...new Set(pubs.map(readReleasePublicKey))];
      const client = operatorClient();
      const current = (await client.getReleaseKeySet()).keySet;
      if (current && !current.document.keys.includes(key.publicKey))
        throw new Error(
          `key ${short(key.keyId)} is not in the current key set #${current.document.seq}: devices would ignore a set it signs`,
        );
      const document = { seq: (current?.document.seq ?? 0) + 1, keys };
      out(`signing release key set #${document.seq} with key ${key.keyId}:`);
      for (const k of keys) out(`  trust ${releaseKeyId(k)}`);
      const signature = signDocument(SIGNATURE_DOMAINS.keySet, document, key.pem);
      await client.putReleaseKeySet({ document, signatures: [signature] });
      out(`published key set #${document.seq}: devices adopt it with their next assignment`);
    });
}

export function registerNfRelease(nf: Command): void {
  nf.command("release")
    .description("Sign a published build after rebuilding it here and comparing every artifact digest")
    .argument("<name>", "published NF name")
    .requiredOption("--key <file>", "release.key to sign with")
    .option(
      "--build <digest>",
      "release digest, build hash or source digest of the build (default: the latest)",
    )
    .option("--source <dir>", "the NF's crate directory to rebuild from (default: nf-examples/NAME)")
    .option(
      "--trust-controller-build",
      "sign without rebuilding: trust the controller's artifacts as they are",
    )
    .action(
      async (
        name: string,
        flags: { key: string; build?: string; source?: string; trustControllerBuild?: boolean },
      ) => {
        const key = loadReleaseKey(flags.key);
        const client = operatorClient();
        const release = await client.getNfRelease(name, flags.build);
        // Never trust the controller's digest of the manifest: compute it.
        const digest = releaseDigest(release.manifest);
        if (digest !== release.digest)
          throw new Error(`the controller says release ${release.digest}, its manifest hashes to ${digest}`);
        out(`NF release to sign (key ${key.keyId}):`);
        printManifest(release);
        let checks: ArtifactCheck[];
        if (flags.trustControllerBuild) {
          checks = release.manifest.artifacts.map((a) => ({
            label: a.kind === "bpf-object" ? "bpf-object" : `native-lib ${a.triple}`,
            digest: a.digest,
            size: a.size,
            outcome: "NOT rebuilt (--trust-controller-build): trusting the controller's build",
            ok: true,
          }));
        } else {
          const source = path.resolve(flags.source ?? path.join("nf-examples", name));
          if (!existsSync(path.join(source, "Cargo.toml")))
            throw new Error(
              `${source} has no Cargo.toml: give the NF's crate with --source DIR (or --trust-controller-build to sign without rebuilding)`,
            );
          out(`  rebuilding from ${source}`);
          checks = await rebuildAndCompare(release.manifest, source);
        }
        for (const c of checks) out(`  ${c.label.padEnd(38)} ${c.digest} ${c.size} B: ${c.outcome}`);
        const bad = checks.filter((c) => !c.ok);
        if (release.manifest.artifacts.length === 0)
          throw new Error(
            `NF ${name} build ${short(digest)} has no artifacts (was it built?): nothing to sign`,
          );
        if (bad.length > 0)
          throw new Error(
            `not signed: ${bad.length} artifact(s) do not match a local rebuild (${bad.map((c) => c.label).join(", ")}); builds must be reproducible, or sign with --trust-controller-build`,
          );
        if (verifiedBy(SIGNATURE_DOMAINS.nfRelease, release.manifest, release.signatures, [key.publicKey])) {
          out(`already signed by key ${short(key.keyId)}`);
          return;
        }
        const signature = signDocument(SIGNATURE_DOMAINS.nfRelease, release.manifest, key.pem);
        const signed = await client.signNfRelease(name, { digest, signature, publicKey: key.publicKey });
        out(`released ${name} ${digest} (${signed.signatures.length} signature(s))`);
      },
    );
}

/**
 * `chain push --key`: asks the controller what it would store, plans the same file here
 * from the NF releases it names, signs only when both agree, then pushes with the signature.
 */
export async function signAndPushChain(
  client: OperatorClient,
  request: PushChainRequest,
  keyFile: string,
): Promise<Awaited<ReturnType<OperatorClient["pushChain"]>>> {
  const key = loadReleaseKey(keyFile);
  const plan = await client.planChain(request);
  const manifests = new Map<string, { manifest: NfReleaseManifest; digest: string; mine: boolean }>();
  for (const r of plan.releases) {
    const digest = releaseDigest(r.manifest);
    if (manifests.has(r.manifest.nf) && manifests.get(r.manifest.nf)!.digest !== digest)
      throw new Error(`the controller offers two builds of NF ${r.manifest.nf}`);
    const mine =
      verifiedBy(SIGNATURE_DOMAINS.nfRelease, r.manifest, r.signatures, [key.publicKey]) !== undefined;
    manifests.set(r.manifest.nf, { manifest: r.manifest, digest, mine });
  }
  // Plan locally from the manifests: the UUIDs, targets and map specs must come out the same.
  const local = await planChainForPush(
    {
      latestNf: async (name: string): Promise<NfRecord | undefined> => {
        const m = manifests.get(name)?.manifest;
        return m
          ? {
              name,
              sourceDigest: m.sourceDigest,
              build: "built",
              buildMessage: null,
              buildHash: m.buildHash,
              interface: interfaceFromManifest(m),
              artifacts: [],
              publishedAt: "",
            }
          : undefined;
      },
    },
    request.toml,
    request.file ?? "chain.toml",
    request.name,
  );
  const releases = Object.fromEntries(
    local.graph.nfs.map((nf) => [nf.uuid, manifests.get(nf.nf)?.digest ?? "missing"]),
  );
  const document: ChainVersionDocument = chainDocument(
    local.name,
    plan.document.version,
    local.graph,
    releases,
  );
  if (canonicalJson(document) !== canonicalJson(plan.document))
    throw new Error(
      `the controller's plan of ${request.file} differs from this machine's plan of the same file: not signing`,
    );
  out(`chain version to sign: ${document.chain} version ${document.version} (key ${key.keyId})`);
  const nameOf = new Map(document.nfs.map((n) => [n.uuid, n.instance]));
  out(
    document.entryB
      ? `  entry rx.a ${nameOf.get(document.entry)}, rx.b ${nameOf.get(document.entryB)}`
      : `  entry ${nameOf.get(document.entry)}`,
  );
  const unreleased: string[] = [];
  for (const nf of document.nfs) {
    const m = manifests.get(nf.nf)!;
    if (!m.mine) unreleased.push(nf.nf);
    out(
      `  ${nf.instance} ${nf.uuid} runs ${nf.nf} release ${short(nf.release)}${m.mine ? "" : " (NOT released with this key)"}`,
    );
    for (const [i, action] of nf.actions.entries())
      out(`    ${action} → ${nameOf.get(nf.next[i]!) ?? nf.next[i]}`);
  }
  for (const map of document.maps)
    out(`  map ${map.id}: ${map.type}, ${map.keySize} B → ${map.valueSize} B, ${map.maxEntries} entries`);
  if (unreleased.length > 0)
    process.stderr.write(
      `warning: ${[...new Set(unreleased)].join(", ")}: this build has no release signed by this key; devices refuse this version until it is released (galette nf release NAME --key ${keyFile})\n`,
    );
  const signature = signDocument(SIGNATURE_DOMAINS.chainVersion, document, key.pem);
  return client.pushChain({ ...request, signed: { signature, publicKey: key.publicKey } });
}

/** `map set --key`: the entries the map will hold, signed with the next sequence number. */
export async function signAndSetMapEntries(
  client: OperatorClient,
  chain: string,
  map: string,
  set: MapEntry[],
  remove: string[],
  keyFile: string,
) {
  const key = loadReleaseKey(keyFile);
  const previousSeq = (await client.getSignedMapEntries(chain, map)).signed?.document.seq ?? 0;
  const current = await client.getMapEntries(chain, map);
  const entries = new Map(current.entries.map((e) => [e.key, e.value]));
  for (const e of set) entries.set(e.key, e.value);
  for (const k of remove) entries.delete(k);
  const document = {
    chain,
    map,
    seq: previousSeq + 1,
    entries: [...entries].map(([k, value]) => ({ key: k, value })).sort((a, b) => (a.key < b.key ? -1 : 1)),
  };
  const signature = signDocument(SIGNATURE_DOMAINS.mapEntries, document, key.pem);
  return client.setMapEntries(chain, map, {
    set,
    delete: remove,
    signed: { document, signature, publicKey: key.publicKey },
  });
}
