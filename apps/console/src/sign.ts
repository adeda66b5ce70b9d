/**
 * Signing map entries in the browser with the operator's release key (Ed25519, WebCrypto),
 * as `galette chain set-map-entries` does: the key is read from a file the operator picks
 * and never leaves the page; the controller only relays the signature to devices.
 */
import {
  canonicalJson,
  type MapEntriesDocument,
  type MapEntry,
  SIGNATURE_DOMAINS,
  type Signature,
} from "@galette/protocol";

const b64 = (bytes: ArrayBuffer) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const hex = (bytes: ArrayBuffer) =>
  [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");

/** A PKCS#8 PEM ("BEGIN PRIVATE KEY", as `galette release-key init` writes it) → an Ed25519 signing key. */
export async function importReleaseKey(
  pem: string,
): Promise<{ key: CryptoKey; publicKey: string; keyId: string }> {
  const body = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem)?.[1];
  if (!body) throw new Error("not a PEM private key (expected -----BEGIN PRIVATE KEY-----)");
  const der = Uint8Array.from(atob(body.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  } catch (err) {
    throw new Error(`not an Ed25519 release key: ${(err as Error).message}`);
  }
  // The public half: JWK gives x; SPKI DER is the fixed Ed25519 prefix + x.
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const x = Uint8Array.from(atob((jwk.x ?? "").replace(/-/g, "+").replace(/_/g, "/")), (c) =>
    c.charCodeAt(0),
  );
  const spki = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, ...x]);
  return {
    key,
    publicKey: b64(spki.buffer),
    keyId: hex(await crypto.subtle.digest("SHA-256", spki)),
  };
}

/** The document a change leaves, numbered after the last signed one, and its signature. */
export async function signMapEntries(
  releaseKey: { key: CryptoKey; publicKey: string; keyId: string },
  chain: string,
  map: string,
  current: MapEntry[],
  previousSeq: number,
  set: MapEntry[],
  remove: string[],
): Promise<{ document: MapEntriesDocument; signature: Signature; publicKey: string }> {
  const entries = new Map(current.map((e) => [e.key, e.value]));
  for (const e of set) entries.set(e.key, e.value);
  for (const k of remove) entries.delete(k);
  const document: MapEntriesDocument = {
    chain,
    map,
    seq: previousSeq + 1,
    entries: [...entries].map(([key, value]) => ({ key, value })).sort((a, b) => (a.key < b.key ? -1 : 1)),
  };
  const bytes = new TextEncoder().encode(`${SIGNATURE_DOMAINS.mapEntries}\0${canonicalJson(document)}`);
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, releaseKey.key, bytes);
  return { document, signature: { keyId: releaseKey.keyId, sig: b64(sig) }, publicKey: releaseKey.publicKey };
}
