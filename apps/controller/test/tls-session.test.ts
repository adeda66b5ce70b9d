import { request as httpsRequest } from "node:https";
import type { TLSSocket } from "node:tls";
import { loadPkiDir, renewServerCert, rotateIssuer } from "@galette/pki";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { tlsTicketKeys } from "../src/tls-session";
import { type Harness, startHarness } from "./helpers";

/** A device request on a new connection offering `session`; what came back and whether TLS resumed. */
function deviceGet(
  h: Harness,
  device: string,
  session?: Buffer,
): Promise<{ status: number; reused: boolean; session: Buffer | undefined }> {
  const { certPem, keyPem } = h.asDevice(device);
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    const req = httpsRequest(
      new URL("/v1/device/assignment", h.controller.url),
      { ca: h.caPem, cert: certPem, key: keyPem, agent: false, ...(session ? { session } : {}) },
      (res) => {
        const socket = res.socket as TLSSocket;
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, reused: socket.isSessionReused(), session: ticket }),
        );
      },
    );
    req.on("socket", (s) => s.on("session", (t: Buffer) => (ticket = t)));
    req.on("error", reject);
    req.end();
  });
}

describe("TLS session resumption on the device API", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
    await h.enrol("pi-1");
    await h.enrol("pi-2");
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("resumes a device's session after a restart; a resumed session is still checked on every request", async () => {
    const first = await deviceGet(h, "pi-1");
    expect(first).toMatchObject({ status: 200, reused: false });
    expect(first.session).toBeDefined();
    const other = (await deviceGet(h, "pi-2")).session;
    await h.restart();
    const again = await deviceGet(h, "pi-1", first.session);
    expect(again).toMatchObject({ status: 200, reused: true });
    // revoked while its ticket is valid: resumed, and refused all the same
    const data = DataDir.open(h.dir);
    await data.revokeDevice("pi-2");
    await data.close();
    expect(await deviceGet(h, "pi-2", other)).toMatchObject({ status: 403, reused: true });
  });

  it("forgets every ticket when the PKI changes (issuer rotated, server certificate renewed)", async () => {
    const before = tlsTicketKeys(loadPkiDir(h.dir));
    expect(tlsTicketKeys(loadPkiDir(h.dir)).equals(before)).toBe(true);
    expect(before.length).toBe(48);
    const { session } = await deviceGet(h, "pi-1");
    rotateIssuer(h.dir);
    const rotated = tlsTicketKeys(loadPkiDir(h.dir));
    expect(rotated.equals(before)).toBe(false);
    await h.restart();
    // a full handshake: the certificate is verified again, against the new CA set
    expect(await deviceGet(h, "pi-1", session)).toMatchObject({ status: 200, reused: false });
    const { session: next } = await deviceGet(h, "pi-1");
    renewServerCert(h.dir);
    expect(tlsTicketKeys(loadPkiDir(h.dir)).equals(rotated)).toBe(false);
    await h.restart();
    expect(await deviceGet(h, "pi-1", next)).toMatchObject({ status: 200, reused: false });
  });
});
