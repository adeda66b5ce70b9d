import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CA_KEY_BITS,
  certInfo,
  createCa,
  initPkiDir,
  issueDeviceCert,
  issueServerCert,
  loadPkiDir,
  normaliseSerial,
  verifyAgainstCa,
} from "../src/index";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("pki", () => {
  const ca = createCa();

  it("creates an RSA-3072 CA that Node reads as a CA", () => {
    const x509 = new X509Certificate(ca.certPem);
    expect(x509.ca).toBe(true);
    expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).toBe(CA_KEY_BITS);
    expect(x509.checkIssued(x509)).toBe(true);
  });

  it("issues a device certificate: CN = name, clientAuth only, serial as Node prints it", () => {
    const device = issueDeviceCert(ca, "pi-1");
    const x509 = new X509Certificate(device.certPem);
    expect(x509.subject).toContain("CN=pi-1");
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(normaliseSerial(x509.serialNumber)).toBe(normaliseSerial(device.serial));
    expect(x509.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    const verified = verifyAgainstCa(device.certPem, ca.certPem);
    expect(verified.ok && verified.info.commonName).toBe("pi-1");
    expect(certInfo(device.certPem).serial).toBe(normaliseSerial(device.serial));
  });

  it("gives every certificate a distinct serial", () => {
    const serials = new Set([1, 2, 3, 4].map(() => issueDeviceCert(ca, "d").serial));
    expect(serials.size).toBe(4);
  });

  it("refuses a certificate from another CA and an expired one", () => {
    const other = createCa({ commonName: "someone else" });
    const foreign = issueDeviceCert(other, "pi-1");
    const result = verifyAgainstCa(foreign.certPem, ca.certPem);
    expect(result.ok).toBe(false);
    const later = new Date(Date.now() + 900 * 86_400_000);
    const expired = verifyAgainstCa(issueDeviceCert(ca, "pi-2").certPem, ca.certPem, later);
    expect(expired.ok).toBe(false);
    expect(!expired.ok && expired.reason).toMatch(/does not verify/);
    expect(verifyAgainstCa("garbage", ca.certPem).ok).toBe(false);
  });

  it("puts IPs and DNS names into the server certificate's SANs", () => {
    const server = issueServerCert(ca, { hosts: ["10.1.2.3", "controller.lan", "localhost"] });
    const x509 = new X509Certificate(server.certPem);
    expect(x509.subjectAltName).toContain("IP Address:10.1.2.3");
    expect(x509.subjectAltName).toContain("DNS:controller.lan");
    expect(x509.checkHost("controller.lan")).toBe("controller.lan");
    expect(x509.checkIP("10.1.2.3")).toBe("10.1.2.3");
    expect(() => issueServerCert(ca, { hosts: ["bad host!"] })).toThrow(/bad host!/);
  });

  it("rejects device names that cannot be a CN we match on", () => {
    expect(() => issueDeviceCert(ca, "../etc")).toThrow(/not valid/);
    expect(() => issueDeviceCert(ca, "")).toThrow(/not valid/);
  });

  it("initialises a data dir with 0600 keys and refuses to overwrite the CA", () => {
    const dir = mkdtempSync(join(tmpdir(), "galette-pki-"));
    dirs.push(dir);
    initPkiDir(dir);
    expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "server.key")).mode & 0o777).toBe(0o600);
    const loaded = loadPkiDir(dir);
    const x509 = new X509Certificate(loaded.server.certPem);
    expect(x509.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(x509.subjectAltName).toContain("DNS:localhost");
    expect(() => initPkiDir(dir)).toThrow(/already has a CA/);
    expect(() => loadPkiDir(join(dir, "nope"))).toThrow(/ca\.crt is missing/);
  });
});
