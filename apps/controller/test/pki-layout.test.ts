import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer, connect as tlsConnect } from "node:tls";
import {
  type CertAndKey,
  certInfo,
  createCa,
  createIssuingCa,
  initPkiDir,
  loadPkiDir,
  normaliseSerial,
  PKI_FILES,
} from "@galette/pki";
import forge from "node-forge";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeDeviceBundle } from "../src/bundle";
import { startController } from "../src/server";
import { type Harness, runGalette, startHarness } from "./helpers";

const scratch = mkdtempSync(join(tmpdir(), "galette-pki-layout-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const galette = (args: string[]) => runGalette(args);

/**
 * A certificate with whatever extensions an attacker picks, signed by `ca` — built with
 * node-forge directly because @galette/pki refuses to make such things.
 */
function craft(
  ca: CertAndKey,
  commonName: string,
  serialHex: string,
  extensions: Record<string, unknown>[],
  ip?: string,
): { certPem: string; keyPem: string } {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialHex;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  cert.setSubject([
    { name: "commonName", value: commonName },
    { name: "organizationName", value: "Galette" },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    ...extensions,
    ...(ip ? [{ name: "subjectAltName", altNames: [{ type: 7, ip }] }] : []),
    { name: "authorityKeyIdentifier", keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

const assignment = "/v1/device/assignment";

describe("two-tier PKI: root offline, issuing CA in the controller", () => {
  let h: Harness;
  const offlineRootKey = join(scratch, "offline-root.key");
  let firstIssuerCn = "";
  /** `galette pki rotate-issuer` on the harness's data dir with the offline root key, plus `extra` */
  const rotateIssuer = (...extra: string[]) =>
    galette(["pki", "rotate-issuer", "--data", h.dir, "--root-key", offlineRootKey, ...extra]);

  beforeAll(async () => {
    h = await startHarness();
    firstIssuerCn = certInfo(readFileSync(join(h.dir, PKI_FILES.issuerCert), "utf8")).commonName;
    // The root key goes offline; the controller must start and enrol without it.
    renameSync(join(h.dir, PKI_FILES.caKey), offlineRootKey);
    await h.restart();
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("starts and enrols without the root key; the bundle carries the root, the certificate chains via the issuer", async () => {
    // Started once with ca.key in place (warned), then restarted without it (no warning).
    const warnings = h.logs.filter((l) =>
      String(l.msg).startsWith("the root CA key is in the data directory"),
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.file).toBe(join(h.dir, PKI_FILES.caKey));
    const bundle = await h.enrol("before");
    expect(bundle.caPem).toBe(readFileSync(join(h.dir, PKI_FILES.caCert), "utf8"));
    expect(certInfo(bundle.certPem).issuerCommonName).toBe(firstIssuerCn);
    expect((await h.call(assignment, { client: h.asDevice("before") })).status).toBe(200);
  });

  it("never opens ca.key even when it is there (a FIFO in its place would block any read)", async () => {
    const fifo = join(h.dir, PKI_FILES.caKey);
    execFileSync("mkfifo", ["-m", "0600", fifo]);
    try {
      await h.restart();
      await h.enrol("with-fifo");
      expect((await h.call(assignment, { client: h.asDevice("with-fifo") })).status).toBe(200);
    } finally {
      rmSync(fifo);
    }
  });

  it("device bundles carry the root CA, and refuse anything else as the trust anchor", async () => {
    const bundle = h.bundles.before!;
    const out = join(scratch, "bundle-before");
    writeDeviceBundle(out, bundle);
    expect(readFileSync(join(out, "ca.crt"), "utf8")).toBe(
      readFileSync(join(h.dir, PKI_FILES.caCert), "utf8"),
    );
    const issuerPem = readFileSync(join(h.dir, PKI_FILES.issuerCert), "utf8");
    for (const caPem of [issuerPem, bundle.certPem, "not a certificate"]) {
      expect(() => writeDeviceBundle(join(scratch, "bundle-bad"), { ...bundle, caPem })).toThrow(
        /not a self-signed root CA certificate/,
      );
    }
  });

  it("database and keys are 0600, the data dir 0700", () => {
    expect(statSync(h.dir).mode & 0o777).toBe(0o700);
    for (const name of ["galette.db", PKI_FILES.issuerKey, PKI_FILES.serverKey]) {
      expect(statSync(join(h.dir, name)).mode & 0o777, name).toBe(0o600);
    }
  });

  it("refuses client certificates from a rogue CA that copies our root's and issuer's names", async () => {
    const enrolled = h.bundles.before!;
    const root = readFileSync(join(h.dir, PKI_FILES.caCert), "utf8");
    const rogueRoot = createCa({ commonName: certInfo(root).commonName });
    const rogueIssuer = createIssuingCa(rogueRoot, { commonName: firstIssuerCn });
    const leafExt = [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", clientAuth: true },
    ];
    const viaIssuer = craft(rogueIssuer, "before", enrolled.serial, leafExt);
    const viaRoot = craft(rogueRoot, "before", enrolled.serial, leafExt);
    const attempts = [
      viaIssuer,
      // the rogue chain sent along, in case the server trusted what the client presents
      { certPem: viaIssuer.certPem + rogueIssuer.certPem, keyPem: viaIssuer.keyPem },
      viaRoot,
      { certPem: viaRoot.certPem + rogueRoot.certPem, keyPem: viaRoot.keyPem },
    ];
    for (const client of attempts) {
      const res = await h.call(assignment, { client });
      expect(res.status).toBe(403);
      expect(res.json<{ error: string }>().error).toMatch(/client certificate not accepted/);
    }
  });

  it("refuses certificates our issuing CA signed with the wrong purpose or CA flags", async () => {
    const enrolled = h.bundles.before!;
    const issuer = loadPkiDir(h.dir).issuer;
    const serial = enrolled.serial;
    // OpenSSL refuses the wrong purposes in the handshake; it takes a CA certificate with
    // clientAuth as a client certificate, which the enrolled-certificate check then refuses.
    const misuses: Array<[string, Record<string, unknown>[], RegExp]> = [
      [
        "serverAuth only",
        [
          { name: "basicConstraints", cA: false, critical: true },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
          { name: "extKeyUsage", serverAuth: true },
        ],
        /client certificate not accepted/,
      ],
      [
        "a CA certificate (keyCertSign only)",
        [
          { name: "basicConstraints", cA: true, critical: true },
          { name: "keyUsage", keyCertSign: true, critical: true },
          { name: "extKeyUsage", clientAuth: true },
        ],
        /client certificate not accepted/,
      ],
      [
        "a CA certificate that also claims clientAuth and digitalSignature",
        [
          { name: "basicConstraints", cA: true, critical: true },
          { name: "keyUsage", digitalSignature: true, keyCertSign: true, critical: true },
          { name: "extKeyUsage", clientAuth: true },
        ],
        /not the one issued to it/,
      ],
    ];
    for (const [what, extensions, refusedBy] of misuses) {
      const res = await h.call(assignment, { client: craft(issuer, "before", serial, extensions) });
      expect(res.status, what).toBe(403);
      expect(res.json<{ error: string }>().error, what).toMatch(refusedBy);
    }
    // A device certificate under a CA certificate the issuer signed (pathLen 0 forbids it).
    const subCa = craft(issuer, "sub-ca", "1234567890abcdef", [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, critical: true },
      { name: "subjectKeyIdentifier" },
    ]);
    const underSub = craft(subCa, "before", serial, [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", clientAuth: true },
    ]);
    const res = await h.call(assignment, {
      client: { certPem: underSub.certPem + subCa.certPem, keyPem: underSub.keyPem },
    });
    expect(res.status).toBe(403);
  });

  it("a server certificate made with the issuing key is refused by a device that trusts the root", async () => {
    const issuer = loadPkiDir(h.dir).issuer;
    const root = readFileSync(join(h.dir, PKI_FILES.caCert), "utf8");
    const fake = craft(
      issuer,
      "127.0.0.1",
      "0abcdef0123456789",
      [
        { name: "basicConstraints", cA: false, critical: true },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
        { name: "extKeyUsage", serverAuth: true },
      ],
      "127.0.0.1",
    );
    const server = createTlsServer({ cert: fake.certPem + issuer.certPem, key: fake.keyPem }, (s) => s.end());
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const port = (server.address() as { port: number }).port;
      const outcome = await new Promise<string>((resolve) => {
        const socket = tlsConnect({ host: "127.0.0.1", port, ca: root, servername: undefined }, () => {
          socket.end();
          resolve("connected");
        });
        socket.on("error", (err: NodeJS.ErrnoException) => resolve(String(err.code ?? err.message)));
      });
      expect(outcome).toMatch(/UNSUITABLE|INVALID_PURPOSE|unsuitable|purpose/i);
    } finally {
      server.close();
    }
  });

  it("rotate-issuer (root key from offline): earlier devices keep connecting, new ones get the new issuer", async () => {
    const rotated = await rotateIssuer();
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/new issuing CA/);
    expect(rotated.stdout).toContain(firstIssuerCn);
    await h.restart();
    expect((await h.call(assignment, { client: h.asDevice("before") })).status).toBe(200);
    const after = await h.enrol("after");
    expect(certInfo(after.certPem).issuerCommonName).not.toBe(firstIssuerCn);
    expect(after.caPem).toBe(h.bundles.before!.caPem);
    expect((await h.call(assignment, { client: h.asDevice("after") })).status).toBe(200);
    // Revocation still applies to certificates of the previous issuer.
    expect((await h.call("/v1/devices/before/revoke", { method: "POST", token: h.token })).status).toBe(200);
    expect((await h.call(assignment, { client: h.asDevice("before") })).status).toBe(403);
  });

  it("rotate-issuer --drop-previous stops accepting every earlier issuer's devices", async () => {
    await h.enrol("before-2");
    const rotated = await rotateIssuer("--drop-previous");
    expect(rotated.code, rotated.stderr).toBe(0);
    await h.restart();
    const refused = await h.call(assignment, { client: h.asDevice("before-2") });
    expect(refused.status).toBe(403);
    expect((await h.call(assignment, { client: h.asDevice("after") })).status).toBe(403);
    await h.enrol("after-2");
    expect((await h.call(assignment, { client: h.asDevice("after-2") })).status).toBe(200);
  });

  it("rotate-issuer without the root key names what to pass; a bad --validity-days is refused", async () => {
    const issuerBefore = readFileSync(join(h.dir, PKI_FILES.issuerCert), "utf8");
    const res = await galette(["pki", "rotate-issuer", "--data", h.dir]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("--root-key");
    const bad = await rotateIssuer("--validity-days", "-3");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--validity-days must be a positive whole number/);
    expect(readFileSync(join(h.dir, PKI_FILES.issuerCert), "utf8")).toBe(issuerBefore);
  });

  it("renew-server re-signs the server certificate with the offline root; devices keep working", async () => {
    const before = readFileSync(join(h.dir, PKI_FILES.serverCert), "utf8");
    const renewed = await galette(["pki", "renew-server", "--data", h.dir, "--root-key", offlineRootKey]);
    expect(renewed.code, renewed.stderr).toBe(0);
    const after = readFileSync(join(h.dir, PKI_FILES.serverCert), "utf8");
    expect(normaliseSerial(certInfo(after).serial)).not.toBe(normaliseSerial(certInfo(before).serial));
    await h.restart();
    expect((await h.call(assignment, { client: h.asDevice("after-2") })).status).toBe(200);
  });
});

describe("the controller refuses a data directory others can read", () => {
  const quiet = pino({ level: "silent" });

  it("a 0755 data dir: refuses to start and names chmod 0700 (also through the CLI)", async () => {
    const dir = join(scratch, "open-dir");
    initPkiDir(dir);
    chmodSync(dir, 0o755);
    await expect(startController({ dataDir: dir, port: 0, logger: quiet })).rejects.toThrow(
      `fix: chmod 0700 ${dir}`,
    );
    const cli = await galette(["controller", "serve", "--data", dir, "--listen", "127.0.0.1:0"]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain(`chmod 0700 ${dir}`);
    chmodSync(dir, 0o700);
    const running = await startController({ dataDir: dir, port: 0, logger: quiet });
    await running.close();
  });

  it("a 0644 key or database: refuses to start and names chmod 0600 for each", async () => {
    const dir = join(scratch, "open-key");
    initPkiDir(dir);
    (await startController({ dataDir: dir, port: 0, logger: quiet })).close();
    chmodSync(join(dir, PKI_FILES.serverKey), 0o644);
    chmodSync(join(dir, "galette.db"), 0o644);
    const refused = startController({ dataDir: dir, port: 0, logger: quiet });
    await expect(refused).rejects.toThrow(`fix: chmod 0600 ${join(dir, PKI_FILES.serverKey)}`);
    await expect(refused).rejects.toThrow(`fix: chmod 0600 ${join(dir, "galette.db")}`);
    // Also the root key, if it was left in the directory.
    chmodSync(join(dir, PKI_FILES.serverKey), 0o600);
    chmodSync(join(dir, "galette.db"), 0o600);
    chmodSync(join(dir, PKI_FILES.caKey), 0o640);
    await expect(startController({ dataDir: dir, port: 0, logger: quiet })).rejects.toThrow(
      `fix: chmod 0600 ${join(dir, PKI_FILES.caKey)}`,
    );
  });
});
