/**
 * The controller's CA, built on node-forge (no hand-rolled X.509).
 *
 * Keys: RSA only (node-forge supports no EC certificates). The CA key is RSA-3072
 * (≈128-bit security, good beyond 2030); server and device keys are RSA-2048 (≈112-bit),
 * because small ARM devices pay for every handshake and the certificates are short-lived
 * and revocable. See docs/security.md. Signatures are SHA-256.
 *
 * Revocation is not expressed in certificates: the controller keeps the revoked serials in
 * its database and checks them on every request (node-forge cannot produce CRLs).
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import forge from "node-forge";

export const CA_KEY_BITS = 3072;
export const LEAF_KEY_BITS = 2048;
export const DEFAULT_CA_VALIDITY_DAYS = 3650;
export const DEFAULT_SERVER_VALIDITY_DAYS = 825;
export const DEFAULT_DEVICE_VALIDITY_DAYS = 825;
export const DEFAULT_SERVER_HOSTS = ["127.0.0.1", "localhost"];

/** File names in the controller's data directory. */
export const PKI_FILES = {
  caCert: "ca.crt",
  caKey: "ca.key",
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

function validity(cert: forge.pki.Certificate, days: number, explicit?: ValidityWindow): void {
  if (explicit) {
    cert.validity.notBefore = explicit.notBefore;
    cert.validity.notAfter = explicit.notAfter;
    return;
  }
  // Backdate a little so a device whose clock lags the controller's by minutes still accepts.
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 5 * 60_000);
  cert.validity.notAfter = new Date(now + days * 86_400_000);
}

function subject(commonName: string): forge.pki.CertificateField[] {
  return [
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "Galette" },
  ];
}

/** An explicit validity window (tests use it to make expired certificates). */
export interface ValidityWindow {
  notBefore: Date;
  notAfter: Date;
}

export interface InitCaOptions {
  commonName?: string;
  validityDays?: number;
}

/** A new self-signed CA (key usage keyCertSign + cRLSign, basicConstraints CA, pathLen 0). */
export function createCa(options: InitCaOptions = {}): IssuedCert {
  const keys = keyPair(CA_KEY_BITS);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  validity(cert, options.validityDays ?? DEFAULT_CA_VALIDITY_DAYS);
  const name = subject(options.commonName ?? "Galette controller CA");
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return {
    certPem: forge.pki.certificateToPem(cert),
    keyPem: forge.pki.privateKeyToPem(keys.privateKey),
    serial,
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
  };
}

function loadCaObjects(ca: CertAndKey): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } {
  const cert = forge.pki.certificateFromPem(ca.certPem);
  const key = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  return { cert, key };
}

function issueLeaf(
  ca: CertAndKey,
  commonName: string,
  validityDays: number,
  extensions: Record<string, unknown>[],
  window?: ValidityWindow,
): IssuedCert {
  const { cert: caCert, key: caKey } = loadCaObjects(ca);
  const keys = keyPair(LEAF_KEY_BITS);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  validity(cert, validityDays, window);
  cert.setSubject(subject(commonName));
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    ...extensions,
    { name: "subjectKeyIdentifier" },
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return {
    certPem: forge.pki.certificateToPem(cert),
    keyPem: forge.pki.privateKeyToPem(keys.privateKey),
    serial,
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
  };
}

export interface ServerCertOptions {
  /** DNS names and IP addresses the controller is reached at; default 127.0.0.1 and localhost */
  hosts?: string[];
  validityDays?: number;
}

/** The controller's TLS server certificate, SANs from `hosts` (IPs become iPAddress entries). */
export function issueServerCert(ca: CertAndKey, options: ServerCertOptions = {}): IssuedCert {
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
  return issueLeaf(ca, hosts[0]!, options.validityDays ?? DEFAULT_SERVER_VALIDITY_DAYS, [
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames },
  ]);
}

export interface DeviceCertOptions {
  validityDays?: number;
  validity?: ValidityWindow;
}

/** A device client certificate: CN = device name, extKeyUsage clientAuth only. */
export function issueDeviceCert(
  ca: CertAndKey,
  deviceName: string,
  options: DeviceCertOptions = {},
): IssuedCert {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/.test(deviceName)) {
    throw new Error(
      `device name ${JSON.stringify(deviceName)} is not valid (letters, digits, . _ -; max 63)`,
    );
  }
  return issueLeaf(
    ca,
    deviceName,
    options.validityDays ?? DEFAULT_DEVICE_VALIDITY_DAYS,
    [{ name: "extKeyUsage", clientAuth: true }],
    options.validity,
  );
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
 * Verify a certificate was signed by our CA and is within its validity at `at`. This is
 * the same check TLS does; the controller uses it for direct data-dir operations and tests.
 */
export function verifyAgainstCa(certPem: string, caCertPem: string, at: Date = new Date()): VerifyResult {
  let cert: forge.pki.Certificate;
  let caCert: forge.pki.Certificate;
  try {
    cert = forge.pki.certificateFromPem(certPem);
    caCert = forge.pki.certificateFromPem(caCertPem);
  } catch (err) {
    return {
      ok: false,
      reason: `not a PEM certificate: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
  const store = forge.pki.createCaStore([caCert]);
  try {
    forge.pki.verifyCertificateChain(store, [cert], { validityCheckDate: at });
  } catch (err) {
    const message = (err as { message?: string }).message ?? String(err);
    return { ok: false, reason: `certificate does not verify against our CA: ${message}` };
  }
  return { ok: true, info: certInfo(certPem) };
}

/** Write a private key readable by its owner only (0600, also when the file existed). */
export function writePrivateKey(path: string, keyPem: string): void {
  writeFileSync(path, keyPem, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export interface InitDataDirOptions {
  serverHosts?: string[];
  /** replace an existing CA (otherwise an existing ca.key is an error) */
  force?: boolean;
}

export interface ControllerPki {
  ca: CertAndKey;
  server: CertAndKey;
}

/**
 * `galette pki init --data DIR`: DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key.
 * Refuses to overwrite an existing CA (that would orphan every enrolled device).
 */
export function initPkiDir(
  dir: string,
  options: InitDataDirOptions = {},
): ControllerPki & { caInfo: CertInfo } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKeyPath = join(dir, PKI_FILES.caKey);
  if (existsSync(caKeyPath) && !options.force) {
    throw new Error(
      `${caKeyPath} exists: this directory already has a CA (re-initialising would orphan every enrolled device)`,
    );
  }
  const ca = createCa();
  const server = issueServerCert(ca, options.serverHosts ? { hosts: options.serverHosts } : {});
  writeFileSync(join(dir, PKI_FILES.caCert), ca.certPem, { mode: 0o644 });
  writePrivateKey(caKeyPath, ca.keyPem);
  writeFileSync(join(dir, PKI_FILES.serverCert), server.certPem, { mode: 0o644 });
  writePrivateKey(join(dir, PKI_FILES.serverKey), server.keyPem);
  return { ca, server, caInfo: certInfo(ca.certPem) };
}

/** Read the CA and server certificate of a data dir, naming the missing file if any. */
export function loadPkiDir(dir: string): ControllerPki {
  const read = (name: string): string => {
    const path = join(dir, name);
    if (!existsSync(path))
      throw new Error(`${path} is missing: run \`galette pki init --data ${dir}\` first`);
    return readFileSync(path, "utf8");
  };
  return {
    ca: { certPem: read(PKI_FILES.caCert), keyPem: read(PKI_FILES.caKey) },
    server: { certPem: read(PKI_FILES.serverCert), keyPem: read(PKI_FILES.serverKey) },
  };
}
