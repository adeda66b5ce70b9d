import { createPrivateKey, X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import forge from "node-forge";
import { afterAll, describe, expect, it } from "vitest";
import {
  CA_KEY_BITS,
  certInfo,
  checkDataDirPermissions,
  createCa,
  createIssuingCa,
  InsecurePermissionsError,
  initPkiDir,
  isIssuedCertificate,
  isRootCaCertificate,
  issueDeviceCert,
  issueDeviceCertAsync,
  issueServerCert,
  loadPkiDir,
  normaliseSerial,
  PKI_FILES,
  renewServerCert,
  rotateIssuer,
  serverCertHosts,
  splitPem,
  verifyAgainstCa,
} from "../src/index";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "galette-pki-"));
  dirs.push(dir);
  return dir;
};
const mode = (path: string) => statSync(path).mode & 0o777;

describe("pki", () => {
  const root = createCa();
  const issuer = createIssuingCa(root);

  it("creates an RSA-3072 root CA that may sign one tier of CA below it", () => {
    const x509 = new X509Certificate(root.certPem);
    expect(x509.ca).toBe(true);
    expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).toBe(CA_KEY_BITS);
    expect(x509.checkIssued(x509)).toBe(true);
    const bc = forge.pki.certificateFromPem(root.certPem).getExtension("basicConstraints") as {
      pathLenConstraint?: number;
    };
    expect(bc.pathLenConstraint).toBe(1);
  });

  it("creates an issuing CA for client certificates only: pathLen 0, keyCertSign, clientAuth", () => {
    const x509 = new X509Certificate(issuer.certPem);
    expect(x509.ca).toBe(true);
    expect(x509.checkIssued(new X509Certificate(root.certPem))).toBe(true);
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    const cert = forge.pki.certificateFromPem(issuer.certPem);
    const bc = cert.getExtension("basicConstraints") as { cA?: boolean; pathLenConstraint?: number };
    expect(bc.pathLenConstraint).toBe(0);
    const ku = cert.getExtension("keyUsage") as Record<string, unknown>;
    expect(ku.keyCertSign).toBe(true);
    expect(ku.digitalSignature).toBeFalsy();
    expect(certInfo(issuer.certPem).notAfter <= certInfo(root.certPem).notAfter).toBe(true);
  });

  it("issues a device certificate from the issuer: CN = name, clientAuth only, serial as Node prints it", () => {
    const device = issueDeviceCert(issuer, "pi-1");
    const x509 = new X509Certificate(device.certPem);
    expect(x509.subject).toContain("CN=pi-1");
    expect(x509.ca).toBe(false);
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(normaliseSerial(x509.serialNumber)).toBe(normaliseSerial(device.serial));
    expect(x509.verify(new X509Certificate(issuer.certPem).publicKey)).toBe(true);
    const verified = verifyAgainstCa(device.certPem, [root.certPem, issuer.certPem]);
    expect(verified.ok && verified.info.commonName).toBe("pi-1");
    expect(certInfo(device.certPem).serial).toBe(normaliseSerial(device.serial));
  });

  it("issues the same device certificate off the event loop (node:crypto key and signature)", async () => {
    const device = await issueDeviceCertAsync(issuer, "pi-async", { validityDays: 30 });
    const sync = issueDeviceCert(issuer, "pi-sync", { validityDays: 30 });
    const x509 = new X509Certificate(device.certPem);
    expect(x509.subject).toContain("CN=pi-async");
    expect(x509.ca).toBe(false);
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(x509.verify(new X509Certificate(issuer.certPem).publicKey)).toBe(true);
    expect(x509.checkPrivateKey(createPrivateKey(device.keyPem))).toBe(true);
    expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(normaliseSerial(x509.serialNumber)).toBe(normaliseSerial(device.serial));
    const verified = verifyAgainstCa(device.certPem, [root.certPem, issuer.certPem]);
    expect(verified.ok && verified.info.commonName).toBe("pi-async");
    // the same key format and the same extensions as the synchronous path
    expect(device.keyPem.split("\n")[0]).toBe(sync.keyPem.split("\n")[0]);
    const ext = (pem: string) =>
      forge.pki
        .certificateFromPem(pem)
        .extensions.map((e: { name: string; critical?: boolean }) => [e.name, !!e.critical]);
    expect(ext(device.certPem)).toEqual(ext(sync.certPem));
    expect(device.notAfter.getTime() - device.notBefore.getTime()).toBe(
      sync.notAfter.getTime() - sync.notBefore.getTime(),
    );
    await expect(issueDeviceCertAsync(issuer, "bad name")).rejects.toThrow(/is not valid/);
    const other = createCa({ commonName: "someone else" });
    await expect(
      issueDeviceCertAsync({ certPem: issuer.certPem, keyPem: other.keyPem }, "pi-1"),
    ).rejects.toThrow(/does not belong/);
  });

  it("certifies an existing key when given one (and only parses it as a key)", async () => {
    const first = await issueDeviceCertAsync(issuer, "sim-1");
    const second = await issueDeviceCertAsync(issuer, "sim-2", { keyPem: first.keyPem });
    const x509 = new X509Certificate(second.certPem);
    expect(x509.subject).toContain("CN=sim-2");
    expect(x509.checkPrivateKey(createPrivateKey(first.keyPem))).toBe(true);
    expect(x509.verify(new X509Certificate(issuer.certPem).publicKey)).toBe(true);
    expect(second.serial).not.toBe(first.serial);
    await expect(issueDeviceCertAsync(issuer, "sim-3", { keyPem: "not a key" })).rejects.toThrow();
    // each certificate matches only itself, also when the check is repeated (cached parse)
    const der = new X509Certificate(second.certPem).raw;
    for (let i = 0; i < 2; i++) {
      expect(isIssuedCertificate(der, second.certPem)).toBe(true);
      expect(isIssuedCertificate(der, first.certPem)).toBe(false);
      expect(
        isIssuedCertificate(der, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----"),
      ).toBe(false);
      // the same certificate with CRLF line ends is the same bytes; two certificates in one
      // record, or the body with stray characters, match nothing
      expect(isIssuedCertificate(der, second.certPem.replace(/\r?\n/g, "\r\n"))).toBe(true);
      expect(isIssuedCertificate(der, `${second.certPem}${first.certPem}`)).toBe(false);
      expect(isIssuedCertificate(der, second.certPem.replace(/\n(?!-----END)/, "\n*"))).toBe(false);
    }
  });

  it("never issues past the issuer's own expiry", () => {
    const shortIssuer = createIssuingCa(root, { validityDays: 10 });
    const device = issueDeviceCert(shortIssuer, "pi-1", { validityDays: 825 });
    expect(device.notAfter.getTime()).toBe(certInfo(shortIssuer.certPem).notAfter.getTime());
  });

  it("refuses to sign with a key that is not the CA certificate's", () => {
    const other = createCa({ commonName: "someone else" });
    expect(() => issueDeviceCert({ certPem: issuer.certPem, keyPem: other.keyPem }, "pi-1")).toThrow(
      /does not belong/,
    );
  });

  it("gives every certificate a distinct serial", () => {
    const serials = new Set([1, 2, 3, 4].map(() => issueDeviceCert(issuer, "d").serial));
    expect(serials.size).toBe(4);
  });

  it("refuses a certificate from another CA with the same names, and an expired one", () => {
    const rogueRoot = createCa({ commonName: certInfo(root.certPem).commonName });
    const rogueIssuer = createIssuingCa(rogueRoot, { commonName: certInfo(issuer.certPem).commonName });
    const foreign = issueDeviceCert(rogueIssuer, "pi-1");
    expect(verifyAgainstCa(foreign.certPem, [root.certPem, issuer.certPem]).ok).toBe(false);
    const later = new Date(Date.now() + 900 * 86_400_000);
    const expired = verifyAgainstCa(
      issueDeviceCert(issuer, "pi-2").certPem,
      [root.certPem, issuer.certPem],
      later,
    );
    expect(expired.ok).toBe(false);
    expect(!expired.ok && expired.reason).toMatch(/does not verify/);
    expect(verifyAgainstCa("garbage", root.certPem).ok).toBe(false);
  });

  it("puts IPs and DNS names into the root-signed server certificate's SANs", () => {
    const server = issueServerCert(root, { hosts: ["10.1.2.3", "controller.lan", "localhost"] });
    const x509 = new X509Certificate(server.certPem);
    expect(x509.subjectAltName).toContain("IP Address:10.1.2.3");
    expect(x509.subjectAltName).toContain("DNS:controller.lan");
    expect(x509.checkHost("controller.lan")).toBe("controller.lan");
    expect(x509.checkIP("10.1.2.3")).toBe("10.1.2.3");
    expect(x509.checkIssued(new X509Certificate(root.certPem))).toBe(true);
    expect(serverCertHosts(server.certPem)).toEqual(["10.1.2.3", "controller.lan", "localhost"]);
    expect(() => issueServerCert(root, { hosts: ["bad host!"] })).toThrow(/bad host!/);
  });

  it("matches a presented certificate only against the exact recorded one", () => {
    const device = issueDeviceCert(issuer, "pi-1");
    const der = new X509Certificate(device.certPem).raw;
    expect(isIssuedCertificate(der, device.certPem)).toBe(true);
    expect(isIssuedCertificate(der, issueDeviceCert(issuer, "pi-1").certPem)).toBe(false);
    expect(isIssuedCertificate(undefined, device.certPem)).toBe(false);
    expect(isIssuedCertificate(Buffer.alloc(0), device.certPem)).toBe(false);
    expect(isIssuedCertificate(der, "not a certificate")).toBe(false);
  });

  it("tells a self-signed root CA from an issuing CA or a leaf", () => {
    expect(isRootCaCertificate(root.certPem)).toBe(true);
    expect(isRootCaCertificate(issuer.certPem)).toBe(false);
    expect(isRootCaCertificate(issueDeviceCert(issuer, "pi-1").certPem)).toBe(false);
    expect(isRootCaCertificate("garbage")).toBe(false);
  });

  it("rejects device names that cannot be a CN we match on", () => {
    expect(() => issueDeviceCert(issuer, "../etc")).toThrow(/not valid/);
    expect(() => issueDeviceCert(issuer, "")).toThrow(/not valid/);
  });
});

describe("pki data directory", () => {
  it("initialises a 0700 dir with 0600 keys and refuses to overwrite the CA", () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const made = initPkiDir(dir);
    expect(mode(dir)).toBe(0o700);
    for (const key of [PKI_FILES.caKey, PKI_FILES.issuerKey, PKI_FILES.serverKey]) {
      expect(mode(join(dir, key))).toBe(0o600);
    }
    expect(made.ca.certPem).toBe(made.root.certPem);
    const loaded = loadPkiDir(dir);
    expect(loaded.rootCertPem).toBe(made.root.certPem);
    expect(loaded.issuer.certPem).toBe(made.issuer.certPem);
    expect(loaded.clientCaPems).toEqual([made.root.certPem, made.issuer.certPem]);
    const x509 = new X509Certificate(loaded.server.certPem);
    expect(x509.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(x509.subjectAltName).toContain("DNS:localhost");
    expect(() => initPkiDir(dir)).toThrow(/already has a CA/);
    expect(() => loadPkiDir(join(dir, "nope"))).toThrow(/ca\.crt is missing/);
  });

  it("loads without the root key: the serving side never needs it", () => {
    const dir = tempDir();
    initPkiDir(dir);
    const rootKey = readFileSync(join(dir, PKI_FILES.caKey), "utf8");
    renameSync(join(dir, PKI_FILES.caKey), join(tempDir(), "root.key"));
    const loaded = loadPkiDir(dir);
    const body = rootKey.split(/\r?\n/)[1]!;
    expect(JSON.stringify(loaded)).not.toContain(body);
    expect(loaded.issuer.keyPem).toContain("PRIVATE KEY");
  });

  it("names the fix for a data dir from the single-tier layout", () => {
    const dir = tempDir();
    initPkiDir(dir);
    rmSync(join(dir, PKI_FILES.issuerCert));
    expect(() => loadPkiDir(dir)).toThrow(/older `galette pki init`.*--force/);
  });

  it("rotates the issuer with the root key from elsewhere, keeping the previous one accepted", () => {
    const dir = tempDir();
    const made = initPkiDir(dir);
    const offline = join(tempDir(), "root.key");
    renameSync(join(dir, PKI_FILES.caKey), offline);
    expect(() => rotateIssuer(dir)).toThrow(
      /root CA key .* is missing: pass the offline copy with --root-key/,
    );
    const first = rotateIssuer(dir, { rootKeyPath: offline });
    expect(first.previous.map((p) => p.commonName)).toEqual([certInfo(made.issuer.certPem).commonName]);
    const loaded = loadPkiDir(dir);
    expect(loaded.issuer.certPem).not.toBe(made.issuer.certPem);
    expect(loaded.previousIssuerPems.map((pem) => certInfo(pem).serial)).toEqual([
      normaliseSerial(made.issuer.serial),
    ]);
    expect(loaded.clientCaPems).toHaveLength(3);
    expect(mode(join(dir, PKI_FILES.issuerKey))).toBe(0o600);
    const second = rotateIssuer(dir, { rootKeyPath: offline });
    expect(second.previous).toHaveLength(2);
    expect(splitPem(readFileSync(join(dir, PKI_FILES.previousIssuers), "utf8"))).toHaveLength(2);
    const dropped = rotateIssuer(dir, { rootKeyPath: offline, dropPrevious: true });
    expect(dropped.previous).toEqual([]);
    expect(loadPkiDir(dir).clientCaPems).toHaveLength(2);
  });

  it("refuses a root key that does not belong to ca.crt", () => {
    const dir = tempDir();
    initPkiDir(dir);
    const wrong = join(tempDir(), "wrong.key");
    writeFileSync(wrong, createCa().keyPem);
    const before = [PKI_FILES.issuerCert, PKI_FILES.issuerKey, PKI_FILES.serverCert, PKI_FILES.serverKey].map(
      (name) => readFileSync(join(dir, name), "utf8"),
    );
    expect(() => rotateIssuer(dir, { rootKeyPath: wrong })).toThrow(/is not the key of .*ca\.crt/);
    expect(() => renewServerCert(dir, { rootKeyPath: wrong })).toThrow(/is not the key of/);
    writeFileSync(wrong, "not a key");
    expect(() => rotateIssuer(dir, { rootKeyPath: wrong })).toThrow(/is not the key of/);
    // nothing was replaced
    const after = [PKI_FILES.issuerCert, PKI_FILES.issuerKey, PKI_FILES.serverCert, PKI_FILES.serverKey].map(
      (name) => readFileSync(join(dir, name), "utf8"),
    );
    expect(after).toEqual(before);
  });

  it("drops expired previous issuers", () => {
    const dir = tempDir();
    initPkiDir(dir);
    const later = new Date(Date.now() + 2000 * 86_400_000);
    rotateIssuer(dir);
    expect(loadPkiDir(dir).previousIssuerPems).toHaveLength(1);
    // 2000 days on, the first issuer (1825 days) has expired; so have the current one and the server's.
    expect(() => loadPkiDir(dir, later)).toThrow(/issuer\.crt expired .*rotate-issuer/);
  });

  it("renews the server certificate with the same names unless told otherwise", () => {
    const dir = tempDir();
    initPkiDir(dir, { serverHosts: ["10.9.9.9", "ctl.lan"] });
    const before = readFileSync(join(dir, PKI_FILES.serverCert), "utf8");
    const renewed = renewServerCert(dir);
    expect(renewed.hosts).toEqual(["10.9.9.9", "ctl.lan"]);
    const after = readFileSync(join(dir, PKI_FILES.serverCert), "utf8");
    expect(after).not.toBe(before);
    expect(renewServerCert(dir, { hosts: ["ctl2.lan"] }).hosts).toEqual(["ctl2.lan"]);
    expect(mode(join(dir, PKI_FILES.serverKey))).toBe(0o600);
  });

  it("checks the data dir is 0700 and keys and named files 0600, naming each fix", () => {
    const dir = tempDir();
    initPkiDir(dir);
    writeFileSync(join(dir, "galette.db"), "", { mode: 0o600 });
    expect(() => checkDataDirPermissions(dir, ["galette.db"])).not.toThrow();
    chmodSync(dir, 0o755);
    chmodSync(join(dir, PKI_FILES.issuerKey), 0o644);
    chmodSync(join(dir, "galette.db"), 0o640);
    let error: unknown;
    try {
      checkDataDirPermissions(dir, ["galette.db"]);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InsecurePermissionsError);
    const message = (error as Error).message;
    expect(message).toContain(`fix: chmod 0700 ${dir}`);
    expect(message).toContain(`fix: chmod 0600 ${join(dir, PKI_FILES.issuerKey)}`);
    expect(message).toContain(`fix: chmod 0600 ${join(dir, "galette.db")}`);
    expect(message).not.toContain(PKI_FILES.serverKey);
  });
});
