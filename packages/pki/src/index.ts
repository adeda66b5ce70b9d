/**
 * The controller's CAs, built on node-forge (no hand-rolled X.509).
 *
 * Two tiers. A root CA signs the controller's server certificate and an issuing CA; the
 * issuing CA signs device (client) certificates and nothing else: it is a CA with
 * pathLenConstraint 0 and extendedKeyUsage clientAuth, so OpenSSL refuses any server
 * certificate chained through it. Devices trust the root only, so the serving controller,
 * which holds the issuing key but never the root key, cannot mint a server certificate
 * devices would accept, and the issuing CA can be replaced without touching devices.
 *
 * Keys: RSA only (node-forge supports no EC certificates). The CA key is RSA-3072
 * (≈128-bit security, good beyond 2030); server and device keys are RSA-2048 (≈112-bit),
 * because small ARM devices pay for every handshake and the certificates are short-lived
 * and revocable. See docs/security.md. Signatures are SHA-256.
 *
 * Revocation is not expressed in certificates: the controller keeps the revoked serials in
 * its database and checks them on every request (node-forge cannot produce CRLs).
 */
import { createPublicKey, generateKeyPair, randomBytes, sign, X509Certificate } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import forge from "node-forge";

export const CA_KEY_BITS = 3072;
export const LEAF_KEY_BITS = 2048;
export const DEFAULT_CA_VALIDITY_DAYS = 3650;
export const DEFAULT_ISSUER_VALIDITY_DAYS = 1825;
export const DEFAULT_SERVER_VALIDITY_DAYS = 825;
export const DEFAULT_DEVICE_VALIDITY_DAYS = 825;
export const DEFAULT_SERVER_HOSTS = ["127.0.0.1", "localhost"];

/**
 * File names in the controller's data directory.
 *
 * `ca.crt`/`ca.key` are the ROOT CA: devices and operators trust `ca.crt`; `ca.key` is only
 * needed by `pki init`, `pki rotate-issuer` and `pki renew-server` and can live offline.
 * `issuer.crt`/`issuer.key` are the issuing CA the serving controller signs device
 * certificates with. `previous-issuers.crt` holds retired issuing CAs whose device
 * certificates are still accepted until they expire.
 */
export const PKI_FILES = {
  caCert: "ca.crt",
  caKey: "ca.key",
  issuerCert: "issuer.crt",
  issuerKey: "issuer.key",
  previousIssuers: "previous-issuers.crt",
  serverCert: "server.crt",
  serverKey: "server.key",
} as const;

export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

export interface IssuedCert extends CertAndKey {
  /** lowercase hex, as Node's TLS getPeerCertificate().serialNumber prints it (uppercased there) */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface CertInfo {
  commonName: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  issuerCommonName: string;
}

/** An explicit validity window (tests use it to make expired certificates). */
export interface ValidityWindow {
  notBefore: Date;
  notAfter: Date;
}

/** A positive 128-bit serial in lowercase hex (RFC 5280: ≤20 octets, positive). */
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x10; // positive, and no leading zero byte that DER would strip
  return bytes.toString("hex");
}

function keyPair(bits: number): forge.pki.rsa.KeyPair {
  // node-forge delegates to Node's native crypto.generateKeyPairSync when available, so this is fast.
  return forge.pki.rsa.generateKeyPair({ bits, e: 0x10001 });
}

/**
 * Sets the validity: `explicit`, or from 5 minutes ago (a device whose clock lags by
 * minutes still accepts) for `days`, never past `notAfterLimit` (a certificate outliving
 * its issuer would stop verifying when the issuer expires, earlier than it says).
 */
function validity(
  cert: forge.pki.Certificate,
  days: number,
  explicit?: ValidityWindow,
  notAfterLimit?: Date,
): void {
  if (explicit) {
    cert.validity.notBefore = explicit.notBefore;
    cert.validity.notAfter = explicit.notAfter;
    return;
  }
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60_000);
  const wanted = now + days * 86_400_000;
  cert.validity.notAfter = new Date(notAfterLimit ? Math.min(wanted, notAfterLimit.getTime()) : wanted);
}

function subject(commonName: string): forge.pki.CertificateField[] {
  return [
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "Galette" },
  ];
}

function signed(cert: forge.pki.Certificate, keys: forge.pki.rsa.KeyPair, serial: string): IssuedCert {
  return {
    certPem: forge.pki.certificateToPem(cert),
    keyPem: forge.pki.privateKeyToPem(keys.privateKey),
    serial,
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
  };
}

export interface InitCaOptions {
  commonName?: string;
  validityDays?: number;
}

/**
 * A new self-signed root CA: basicConstraints CA with pathLen 1 (it signs the issuing CA,
 * which may sign no further CA), keyUsage keyCertSign + cRLSign.
 */
export function createCa(options: InitCaOptions = {}): IssuedCert {
  const keys = keyPair(CA_KEY_BITS);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  validity(cert, options.validityDays ?? DEFAULT_CA_VALIDITY_DAYS);
  const name = subject(options.commonName ?? "Galette root CA");
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 1, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return signed(cert, keys, serial);
}

function loadCaObjects(ca: CertAndKey): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } {
  const cert = forge.pki.certificateFromPem(ca.certPem);
  const key = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!key.n || publicKey.n?.compareTo(key.n) !== 0) {
    throw new Error(`the CA key does not belong to the CA certificate "${commonNameOf(cert.subject)}"`);
  }
  return { cert, key };
}

function issueCert(
  ca: CertAndKey,
  commonName: string,
  bits: number,
  validityDays: number,
  extensions: Record<string, unknown>[],
  window?: ValidityWindow,
): IssuedCert {
  const { cert: caCert, key: caKey } = loadCaObjects(ca);
  const keys = keyPair(bits);
  const { cert, serial } = unsignedCert(caCert, keys, commonName, validityDays, extensions, window);
  cert.sign(caKey, forge.md.sha256.create());
  return signed(cert, keys, serial);
}

/** A certificate for `keys` under `caCert`, everything but the signature. */
function unsignedCert(
  caCert: forge.pki.Certificate,
  keys: forge.pki.rsa.KeyPair,
  commonName: string,
  validityDays: number,
  extensions: Record<string, unknown>[],
  window?: ValidityWindow,
): { cert: forge.pki.Certificate; serial: string } {
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  validity(cert, validityDays, window, caCert.validity.notAfter);
  cert.setSubject(subject(commonName));
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    ...extensions,
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  return { cert, serial };
}

const LEAF_EXTENSIONS = [
  { name: "basicConstraints", cA: false, critical: true },
  { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
];

export interface IssuerOptions {
  commonName?: string;
  validityDays?: number;
}

/**
 * The issuing CA, signed by the root: it may sign end-entity certificates only
 * (pathLenConstraint 0, keyUsage keyCertSign) and only for client authentication
 * (extendedKeyUsage clientAuth: OpenSSL applies a CA's EKU to everything under it).
 * Name constraints would add nothing here: device certificates carry no names beyond the
 * CN, and node-forge cannot encode them.
 */
export function createIssuingCa(root: CertAndKey, options: IssuerOptions = {}): IssuedCert {
  const stamp = new Date().toISOString().slice(0, 10);
  return issueCert(
    root,
    options.commonName ?? `Galette issuing CA ${stamp} ${randomBytes(3).toString("hex")}`,
    CA_KEY_BITS,
    options.validityDays ?? DEFAULT_ISSUER_VALIDITY_DAYS,
    [
      { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
      { name: "keyUsage", keyCertSign: true, critical: true },
      { name: "extKeyUsage", clientAuth: true },
    ],
  );
}

export interface ServerCertOptions {
  /** DNS names and IP addresses the controller is reached at; default 127.0.0.1 and localhost */
  hosts?: string[];
  validityDays?: number;
}

/** The controller's TLS server certificate, signed by the root; SANs from `hosts` (IPs become iPAddress entries). */
export function issueServerCert(root: CertAndKey, options: ServerCertOptions = {}): IssuedCert {
  const hosts = options.hosts && options.hosts.length > 0 ? options.hosts : DEFAULT_SERVER_HOSTS;
  for (const host of hosts) {
    if (
      isIP(host) === 0 &&
      !/^[a-zA-Z0-9*]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/.test(host)
    ) {
      throw new Error(
        `server certificate host ${JSON.stringify(host)} is neither an IP address nor a DNS name`,
      );
    }
  }
  const altNames = hosts.map((host) => (isIP(host) !== 0 ? { type: 7, ip: host } : { type: 2, value: host }));
  return issueCert(root, hosts[0]!, LEAF_KEY_BITS, options.validityDays ?? DEFAULT_SERVER_VALIDITY_DAYS, [
    ...LEAF_EXTENSIONS,
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames },
  ]);
}

/** The DNS names and IPs of a server certificate's subjectAltName, in order. */
export function serverCertHosts(certPem: string): string[] {
  const cert = forge.pki.certificateFromPem(certPem);
  const ext = cert.getExtension("subjectAltName") as
    | { altNames?: Array<{ type: number; value?: string; ip?: string }> }
    | undefined;
  return (ext?.altNames ?? [])
    .map((n) => (n.type === 7 ? n.ip : n.type === 2 ? n.value : undefined))
    .filter((h): h is string => typeof h === "string" && h.length > 0);
}

export interface DeviceCertOptions {
  validityDays?: number;
  validity?: ValidityWindow;
  /**
   * issueDeviceCertAsync only: certify this existing RSA private key (PKCS#8 PEM) instead of
   * generating one (a simulated fleet shares one key: a new 2048-bit key costs ~0.4 s).
   */
  keyPem?: string;
}

/**
 * A device client certificate from the issuing CA: CN = device name, extKeyUsage
 * clientAuth only; never valid past the issuer.
 */
export function issueDeviceCert(
  issuer: CertAndKey,
  deviceName: string,
  options: DeviceCertOptions = {},
): IssuedCert {
  checkDeviceName(deviceName);
  return issueCert(
    issuer,
    deviceName,
    LEAF_KEY_BITS,
    options.validityDays ?? DEFAULT_DEVICE_VALIDITY_DAYS,
    [...LEAF_EXTENSIONS, { name: "extKeyUsage", clientAuth: true }],
    options.validity,
  );
}

function checkDeviceName(deviceName: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/.test(deviceName)) {
    throw new Error(
      `device name ${JSON.stringify(deviceName)} is not valid (letters, digits, . _ -; max 63)`,
    );
  }
}

const generateKeyPairAsync = promisify(generateKeyPair);
const signAsync = promisify(sign);

/**
 * issueDeviceCert without holding the event loop (a server enrolling devices keeps
 * serving the others): node:crypto generates the key pair and computes the signature on
 * libuv's thread pool; node-forge only assembles the certificate around them. The result
 * is the same certificate issueDeviceCert makes (same fields, same key format).
 */
export async function issueDeviceCertAsync(
  issuer: CertAndKey,
  deviceName: string,
  options: DeviceCertOptions = {},
): Promise<IssuedCert> {
  checkDeviceName(deviceName);
  const caCert = forge.pki.certificateFromPem(issuer.certPem);
  const pair = options.keyPem
    ? {
        privateKey: options.keyPem,
        publicKey: createPublicKey(options.keyPem).export({ type: "spki", format: "pem" }) as string,
      }
    : await generateKeyPairAsync("rsa", {
        modulusLength: LEAF_KEY_BITS,
        publicExponent: 0x10001,
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      });
  const keys = {
    privateKey: forge.pki.privateKeyFromPem(pair.privateKey) as forge.pki.rsa.PrivateKey,
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey) as forge.pki.rsa.PublicKey,
  };
  const { cert, serial } = unsignedCert(
    caCert,
    keys,
    deviceName,
    options.validityDays ?? DEFAULT_DEVICE_VALIDITY_DAYS,
    [...LEAF_EXTENSIONS, { name: "extKeyUsage", clientAuth: true }],
    options.validity,
  );
  // what cert.sign does, with the RSA operation in node:crypto (sha256WithRSAEncryption, PKCS#1 v1.5)
  cert.signatureOid = forge.pki.oids.sha256WithRSAEncryption!;
  cert.siginfo.algorithmOid = cert.signatureOid;
  const tbs = (
    forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert);
  (cert as forge.pki.Certificate & { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate = tbs;
  const signature = await signAsync(
    "sha256",
    Buffer.from(forge.asn1.toDer(tbs).getBytes(), "binary"),
    issuer.keyPem,
  );
  cert.signature = signature.toString("binary");
  // the issuer's key must be the certificate's: a signature that does not verify is refused here
  let verifies = false;
  try {
    verifies = caCert.verify(cert);
  } catch {
    // forge throws on a signature made with another key ("Encryption block is invalid")
  }
  if (!verifies)
    throw new Error(`the CA key does not belong to the CA certificate "${commonNameOf(caCert.subject)}"`);
  return signed(cert, keys, serial);
}

function commonNameOf(attributes: forge.pki.Certificate["subject"]): string {
  const field = attributes.getField("CN") as { value?: unknown } | null;
  return typeof field?.value === "string" ? field.value : "";
}

export function certInfo(certPem: string): CertInfo {
  const cert = forge.pki.certificateFromPem(certPem);
  return {
    commonName: commonNameOf(cert.subject),
    issuerCommonName: commonNameOf(cert.issuer),
    serial: normaliseSerial(cert.serialNumber),
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
  };
}

/** Serials compare as lowercase hex without leading zeros (Node prints them uppercase, forge may pad). */
export function normaliseSerial(serial: string): string {
  return serial
    .replace(/:/g, "")
    .toLowerCase()
    .replace(/^0+(?=.)/, "");
}

export type VerifyResult = { ok: true; info: CertInfo } | { ok: false; reason: string };

/**
 * Verify a certificate chains to one of `caCertPems` (root and/or issuing CAs) and is
 * within its validity at `at`. TLS does the authoritative check (OpenSSL, with key usage
 * purposes); this one serves data-dir operations and tests.
 */
export function verifyAgainstCa(
  certPem: string,
  caCertPems: string | string[],
  at: Date = new Date(),
): VerifyResult {
  let cert: forge.pki.Certificate;
  let caCerts: forge.pki.Certificate[];
  try {
    cert = forge.pki.certificateFromPem(certPem);
    caCerts = (Array.isArray(caCertPems) ? caCertPems : [caCertPems])
      .flatMap(splitPem)
      .map((pem) => forge.pki.certificateFromPem(pem));
  } catch (err) {
    return {
      ok: false,
      reason: `not a PEM certificate: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
  const store = forge.pki.createCaStore(caCerts);
  try {
    forge.pki.verifyCertificateChain(store, [cert], { validityCheckDate: at });
  } catch (err) {
    const message = (err as { message?: string }).message ?? String(err);
    return { ok: false, reason: `certificate does not verify against our CA: ${message}` };
  }
  return { ok: true, info: certInfo(certPem) };
}

/**
 * Whether a certificate a peer presented (DER, as Node's getPeerCertificate().raw) is
 * byte for byte the one recorded at enrolment. TLS checks the chain, purposes and validity
 * but accepts, for instance, a CA certificate used as a client certificate; anything our
 * issuer signed that is not exactly the recorded certificate (a leaked issuing key, a
 * copied serial) is refused by this check.
 */
export function isIssuedCertificate(peerDer: Buffer | undefined, recordedPem: string): boolean {
  if (!peerDer || peerDer.length === 0) return false;
  const recorded = recordedDer(recordedPem);
  return recorded?.equals(peerDer) === true;
}

/** Decoded recorded certificates by PEM: every device request checks one. */
const recordedDers = new Map<string, Buffer | undefined>();
const RECORDED_DERS_MAX = 65_536;

const SINGLE_PEM_CERTIFICATE =
  /^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\s*$/;

/**
 * The DER bytes of one PEM certificate, by its base64 alone: the comparison is byte for byte
 * with a certificate TLS verified, so nothing needs parsing (an X509Certificate costs
 * ~0.2 ms, paid for every device again after a restart). Non-canonical base64 matches nothing.
 */
function recordedDer(pem: string): Buffer | undefined {
  if (recordedDers.has(pem)) return recordedDers.get(pem);
  const body = SINGLE_PEM_CERTIFICATE.exec(pem)?.[1]?.replace(/\r?\n/g, "");
  let der: Buffer | undefined = body ? Buffer.from(body, "base64") : undefined;
  // an unreadable recorded certificate matches nothing
  if (der && (der.length === 0 || der.toString("base64") !== body)) der = undefined;
  // oldest first out: a fleet larger than the cache still works, only slower
  if (recordedDers.size >= RECORDED_DERS_MAX) recordedDers.delete(recordedDers.keys().next().value as string);
  recordedDers.set(pem, der);
  return der;
}

/** Whether `pem` is a self-signed CA certificate: what a device may use as its trust anchor. */
export function isRootCaCertificate(pem: string): boolean {
  try {
    const cert = new X509Certificate(pem);
    return cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey);
  } catch {
    // not a certificate at all: not a root CA
    return false;
  }
}

/** The PEM certificates in a file that may hold several (empty text gives none). */
export function splitPem(text: string): string[] {
  const found = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return found.map((pem) => `${pem}\n`);
}

/** Write a private key readable by its owner only (0600, also when the file existed). */
export function writePrivateKey(path: string, keyPem: string): void {
  writeFileSync(path, keyPem, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** Replace a file in one step (write beside it, rename), so a crash leaves old or new, never half. */
function replaceFile(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

export interface InitDataDirOptions {
  serverHosts?: string[];
  /** replace an existing CA (otherwise an existing ca.key or issuer.key is an error) */
  force?: boolean;
}

/** What `pki init` made; `root` includes the root key (the caller decides where it goes). */
export interface InitializedPki {
  root: IssuedCert;
  issuer: IssuedCert;
  server: IssuedCert;
  /** the root CA (same as `root`), the certificate devices and operators trust */
  ca: IssuedCert;
  caInfo: CertInfo;
}

/** What the serving controller loads: no root key, ever. */
export interface ControllerPki {
  /** the root CA certificate: what device bundles carry to verify the server */
  rootCertPem: string;
  /** the current issuing CA: device certificates are signed with it */
  issuer: CertAndKey;
  /** retired issuing CAs whose device certificates are still accepted (unexpired only) */
  previousIssuerPems: string[];
  server: CertAndKey;
  /** what TLS verifies client certificates against: the root and every accepted issuer */
  clientCaPems: string[];
}

/**
 * `galette pki init --data DIR`: the root CA (ca.crt, ca.key), the server certificate
 * signed by it (server.crt, server.key) and an issuing CA (issuer.crt, issuer.key). DIR is
 * made 0700 and keys 0600. Refuses to overwrite an existing CA (that would orphan every
 * enrolled device).
 */
export function initPkiDir(dir: string, options: InitDataDirOptions = {}): InitializedPki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  for (const name of [PKI_FILES.caKey, PKI_FILES.issuerKey, PKI_FILES.caCert]) {
    const path = join(dir, name);
    if (existsSync(path) && !options.force) {
      throw new Error(
        `${path} exists: this directory already has a CA (re-initialising would orphan every enrolled device)`,
      );
    }
  }
  const root = createCa();
  const issuer = createIssuingCa(root);
  const server = issueServerCert(root, options.serverHosts ? { hosts: options.serverHosts } : {});
  replaceFile(join(dir, PKI_FILES.caCert), root.certPem, 0o644);
  writePrivateKey(join(dir, PKI_FILES.caKey), root.keyPem);
  replaceFile(join(dir, PKI_FILES.issuerCert), issuer.certPem, 0o644);
  writePrivateKey(join(dir, PKI_FILES.issuerKey), issuer.keyPem);
  replaceFile(join(dir, PKI_FILES.previousIssuers), "", 0o644);
  replaceFile(join(dir, PKI_FILES.serverCert), server.certPem, 0o644);
  writePrivateKey(join(dir, PKI_FILES.serverKey), server.keyPem);
  return { root, issuer, server, ca: root, caInfo: certInfo(root.certPem) };
}

function readPkiFile(dir: string, name: string): string {
  const path = join(dir, name);
  if (!existsSync(path)) {
    if (name === PKI_FILES.issuerCert || name === PKI_FILES.issuerKey) {
      if (existsSync(join(dir, PKI_FILES.caCert))) {
        throw new Error(
          `${path} is missing: ${dir} has a single-tier CA from an older \`galette pki init\`; ` +
            `create a new one with \`galette pki init --data ${dir} --force\` and re-enrol the devices`,
        );
      }
    }
    throw new Error(`${path} is missing: run \`galette pki init --data ${dir}\` first`);
  }
  return readFileSync(path, "utf8");
}

/**
 * Load what the serving controller needs: root certificate, issuing CA (with key), retired
 * issuers and the server certificate. Never reads the root key. Refuses an expired issuer
 * or server certificate, naming the command that renews it.
 */
export function loadPkiDir(dir: string, now: Date = new Date()): ControllerPki {
  const rootCertPem = readPkiFile(dir, PKI_FILES.caCert);
  const issuer = {
    certPem: readPkiFile(dir, PKI_FILES.issuerCert),
    keyPem: readPkiFile(dir, PKI_FILES.issuerKey),
  };
  const server = {
    certPem: readPkiFile(dir, PKI_FILES.serverCert),
    keyPem: readPkiFile(dir, PKI_FILES.serverKey),
  };
  const previousPath = join(dir, PKI_FILES.previousIssuers);
  const previousIssuerPems = existsSync(previousPath)
    ? splitPem(readFileSync(previousPath, "utf8")).filter((pem) => certInfo(pem).notAfter > now)
    : [];
  const expired = (pem: string) => certInfo(pem).notAfter <= now;
  if (expired(issuer.certPem)) {
    throw new Error(
      `${join(dir, PKI_FILES.issuerCert)} expired at ${certInfo(issuer.certPem).notAfter.toISOString()}: ` +
        `run \`galette pki rotate-issuer --data ${dir} --root-key FILE\``,
    );
  }
  if (expired(server.certPem)) {
    throw new Error(
      `${join(dir, PKI_FILES.serverCert)} expired at ${certInfo(server.certPem).notAfter.toISOString()}: ` +
        `run \`galette pki renew-server --data ${dir} --root-key FILE\``,
    );
  }
  const chained = verifyAgainstCa(issuer.certPem, rootCertPem, now);
  if (!chained.ok) {
    throw new Error(
      `${join(dir, PKI_FILES.issuerCert)} is not signed by ${join(dir, PKI_FILES.caCert)}: ${chained.reason}`,
    );
  }
  loadCaObjects(issuer); // the key must match the certificate
  return {
    rootCertPem,
    issuer,
    previousIssuerPems,
    server,
    clientCaPems: [rootCertPem, issuer.certPem, ...previousIssuerPems],
  };
}

/** The root CA (certificate from DIR/ca.crt, key from `rootKeyPath`), checked to belong together. */
function loadRoot(dir: string, rootKeyPath?: string): CertAndKey {
  const keyPath = rootKeyPath ?? join(dir, PKI_FILES.caKey);
  if (!existsSync(keyPath)) {
    throw new Error(`root CA key ${keyPath} is missing: pass the offline copy with --root-key FILE`);
  }
  const root = { certPem: readPkiFile(dir, PKI_FILES.caCert), keyPem: readFileSync(keyPath, "utf8") };
  try {
    loadCaObjects(root);
  } catch (err) {
    throw new Error(
      `${keyPath} is not the key of ${join(dir, PKI_FILES.caCert)}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return root;
}

export interface RotateIssuerOptions {
  /** the root key file; default DIR/ca.key */
  rootKeyPath?: string;
  /** stop accepting devices of every earlier issuer now (after an issuing key leaked) */
  dropPrevious?: boolean;
  validityDays?: number;
}

export interface RotateIssuerResult {
  issuer: CertInfo;
  /** the issuers whose device certificates stay accepted */
  previous: CertInfo[];
}

/**
 * `galette pki rotate-issuer`: a new issuing CA signed by the root. The old one moves to
 * previous-issuers.crt (its devices keep working until their certificates expire or are
 * revoked) unless `dropPrevious`; expired ones are dropped. Devices need nothing new:
 * they trust the root. The controller picks the new issuer up when restarted.
 */
export function rotateIssuer(dir: string, options: RotateIssuerOptions = {}): RotateIssuerResult {
  const root = loadRoot(dir, options.rootKeyPath);
  const now = new Date();
  const currentPem = readPkiFile(dir, PKI_FILES.issuerCert);
  const previousPath = join(dir, PKI_FILES.previousIssuers);
  const earlier = existsSync(previousPath) ? splitPem(readFileSync(previousPath, "utf8")) : [];
  const kept = options.dropPrevious
    ? []
    : [currentPem, ...earlier].filter((pem) => certInfo(pem).notAfter > now);
  const issuer = createIssuingCa(root, options.validityDays ? { validityDays: options.validityDays } : {});
  // Previous issuers first: a crash between the writes leaves the old issuer accepted.
  replaceFile(previousPath, kept.join(""), 0o644);
  replaceFile(join(dir, PKI_FILES.issuerKey), issuer.keyPem, 0o600);
  replaceFile(join(dir, PKI_FILES.issuerCert), issuer.certPem, 0o644);
  return { issuer: certInfo(issuer.certPem), previous: kept.map(certInfo) };
}

export interface RenewServerOptions {
  rootKeyPath?: string;
  /** default: the names of the current server certificate */
  hosts?: string[];
  validityDays?: number;
}

/** `galette pki renew-server`: a new server certificate signed by the root (offline step). */
export function renewServerCert(
  dir: string,
  options: RenewServerOptions = {},
): CertInfo & { hosts: string[] } {
  const root = loadRoot(dir, options.rootKeyPath);
  const currentPath = join(dir, PKI_FILES.serverCert);
  const hosts =
    options.hosts && options.hosts.length > 0
      ? options.hosts
      : existsSync(currentPath)
        ? serverCertHosts(readFileSync(currentPath, "utf8"))
        : DEFAULT_SERVER_HOSTS;
  const server = issueServerCert(root, {
    hosts,
    ...(options.validityDays ? { validityDays: options.validityDays } : {}),
  });
  replaceFile(join(dir, PKI_FILES.serverKey), server.keyPem, 0o600);
  replaceFile(currentPath, server.certPem, 0o644);
  return { ...certInfo(server.certPem), hosts };
}

/** A data directory or secret file others can read or write. */
export class InsecurePermissionsError extends Error {
  constructor(readonly problems: string[]) {
    super(`refusing to run with insecure permissions:\n  ${problems.join("\n  ")}`);
    this.name = "InsecurePermissionsError";
  }
}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, "0");

/**
 * The controller refuses to run unless its data directory is 0700 (or stricter) and every
 * key file (`*.key`) and `secretFiles` entry present in it is 0600 (or stricter). Each
 * problem names the command that fixes it.
 */
export function checkDataDirPermissions(dir: string, secretFiles: readonly string[] = []): void {
  const problems: string[] = [];
  const dirStat = statSync(dir);
  if (!dirStat.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((dirStat.mode & 0o077) !== 0) {
    problems.push(
      `data directory ${dir} is mode ${octal(dirStat.mode)} (others can reach it); fix: chmod 0700 ${dir}`,
    );
  }
  for (const name of readdirSync(dir)) {
    if (!name.endsWith(".key") && !secretFiles.includes(name)) continue;
    const path = join(dir, name);
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) {
      problems.push(`${path} is mode ${octal(mode)} (others can read it); fix: chmod 0600 ${path}`);
    }
  }
  if (problems.length > 0) throw new InsecurePermissionsError(problems);
}
