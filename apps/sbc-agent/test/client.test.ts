import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { DataDir, type RunningController, startController, writeDeviceBundle } from "@galette/controller";
import { initPkiDir, PKI_FILES } from "@galette/pki";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { ControllerError, DeviceClient } from "../src/client";

// The agent's side of mutual TLS against a real controller (in-process here; the fleet
// e2e tests run it as a separate process).
describe("device client (mutual TLS)", () => {
  const dir = mkdtempSync(join(tmpdir(), "galette-agent-client-"));
  const data = join(dir, "controller");
  const otherCa = join(dir, "other");
  let controller: RunningController;
  const creds = (bundle: string, caFile = join(bundle, "ca.crt")) => ({
    certFile: join(bundle, "device.crt"),
    keyFile: join(bundle, "device.key"),
    caFile,
  });

  /** A TLS server that presents the controller's certificate and asks for the device's, as the controller does. */
  const controllerTls = () => {
    const pem = (f: string) => readFileSync(join(data, f));
    return {
      key: pem(PKI_FILES.serverKey),
      cert: pem(PKI_FILES.serverCert),
      ca: [pem(PKI_FILES.caCert), pem(PKI_FILES.issuerCert)],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3" as const,
    };
  };

  beforeAll(async () => {
    initPkiDir(data);
    initPkiDir(otherCa);
    controller = await startController({ dataDir: data, port: 0, logger: pino({ level: "silent" }) });
    const direct = DataDir.open(data);
    writeDeviceBundle(join(dir, "dev-a"), await direct.enrolDevice("dev-a", {}, controller.url));
    writeDeviceBundle(join(dir, "dev-b"), await direct.enrolDevice("dev-b", {}, controller.url));
    await direct.revokeDevice("dev-b");
    await direct.close();
  });
  afterAll(async () => {
    await controller?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("gets its assignment, then a 304 for the same ETag", async () => {
    const client = new DeviceClient(controller.url, creds(join(dir, "dev-a")));
    try {
      const first = await client.getAssignment(undefined, "x86_64");
      expect(first.changed).toBe(true);
      if (!first.changed) return;
      expect(first.assignment).toMatchObject({
        device: "dev-a",
        chain: null,
        triple: "x86_64-unknown-linux-gnu",
      });
      expect(await client.getAssignment(first.etag, "x86_64")).toEqual({ changed: false });
    } finally {
      client.close();
    }
  });

  it("moves on to the next controller URL when one cannot be reached, and names every failure when none can", async () => {
    // a port nothing listens on: connection refused
    const dead = "https://127.0.0.1:1";
    const client = new DeviceClient([dead, controller.url], creds(join(dir, "dev-a")));
    try {
      expect(client.baseUrl).toBe(dead);
      expect((await client.getAssignment(undefined, "x86_64")).changed).toBe(true);
      expect(client.baseUrl).toBe(controller.url);
    } finally {
      client.close();
    }
    const none = new DeviceClient([dead, "https://127.0.0.1:2"], creds(join(dir, "dev-a")));
    try {
      await expect(none.getAssignment(undefined, "x86_64")).rejects.toThrow(
        /no controller answered: GET https:\/\/127\.0\.0\.1:1\/.*ECONNREFUSED.*; GET https:\/\/127\.0\.0\.1:2\/.*ECONNREFUSED/,
      );
    } finally {
      none.close();
    }
    // an HTTP error is an answer: no fail-over for a refused device
    const revoked = new DeviceClient([controller.url, dead], creds(join(dir, "dev-b")));
    try {
      await expect(revoked.getAssignment(undefined, "x86_64")).rejects.toThrow(ControllerError);
      expect(revoked.baseUrl).toBe(controller.url);
    } finally {
      revoked.close();
    }
  });

  it("refuses a controller whose certificate is not from the bundle's CA", async () => {
    const client = new DeviceClient(controller.url, creds(join(dir, "dev-a"), join(otherCa, "ca.crt")));
    try {
      await expect(client.getAssignment(undefined, "x86_64")).rejects.toThrow(
        /GET https:\/\/127\.0\.0\.1:\d+\/v1\/device\/assignment\?arch=x86_64: .*(self[- ]signed|unable to verify|certificate)/,
      );
    } finally {
      client.close();
    }
  });

  it("reports the controller's refusal of a revoked device with its status", async () => {
    const client = new DeviceClient(controller.url, creds(join(dir, "dev-b")));
    try {
      const err = await client.getAssignment(undefined, "x86_64").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ControllerError);
      expect((err as ControllerError).status).toBe(403);
      expect((err as Error).message).toMatch(
        /GET \/v1\/device\/assignment\?arch=x86_64: HTTP 403: certificate of device dev-b \(serial [0-9a-f]+\) is revoked/,
      );
    } finally {
      client.close();
    }
  });

  it("resumes its TLS session on new connections and the ws channel, also after failed attempts while the controller restarts", async () => {
    // A TLS server with the controller's certificate and fixed ticket keys (as the
    // controller's survive its restarts), restarted on the same port.
    const ticketKeys = randomBytes(48);
    const seen: Array<{ what: string; reused: boolean }> = [];
    const listen = (port: number) =>
      new Promise<Server>((resolve, reject) => {
        const server = createServer({ ...controllerTls(), ticketKeys }, (req, res) => {
          seen.push({ what: "request", reused: (req.socket as TLSSocket).isSessionReused() });
          res.writeHead(304).end();
        });
        new WebSocketServer({ server }).on("connection", (_ws, req) =>
          seen.push({ what: "ws", reused: (req.socket as TLSSocket).isSessionReused() }),
        );
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve(server));
      });
    const stop = (server: Server) =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    let server = await listen(0);
    const port = (server.address() as AddressInfo).port;
    const client = new DeviceClient(`https://127.0.0.1:${port}`, creds(join(dir, "dev-a")));
    const openWs = () =>
      new Promise<void>((resolve, reject) => {
        const ws = client.openNotifications({
          onOpen: () => {
            ws.close();
            resolve();
          },
          onNotification: () => undefined,
          onInvalid: () => undefined,
          onClose: (reason) => reject(new Error(reason)),
        });
      });
    try {
      expect(await client.getAssignment("x", "x86_64")).toEqual({ changed: false });
      await stop(server);
      // the controller is down: the kept-alive connection and a new one fail (Node's own
      // agent forgets the session on each)
      await expect(client.getAssignment("x", "x86_64")).rejects.toThrow(/hang up|ECONNRESET|ECONNREFUSED/);
      await expect(client.getAssignment("x", "x86_64")).rejects.toThrow(/ECONNREFUSED/);
      server = await listen(port);
      expect(await client.getAssignment("x", "x86_64")).toEqual({ changed: false });
      await openWs();
      expect(seen).toEqual([
        { what: "request", reused: false },
        { what: "request", reused: true },
        { what: "ws", reused: true },
      ]);
    } finally {
      client.close();
      await stop(server);
    }
  });

  it("bounds what a slow or hostile controller can hold: a notification, answer size, a trickling answer, a request queued behind it", async () => {
    const server = createServer(controllerTls(), (req, res) => {
      if (req.url?.includes("huge")) {
        // chunked, no length announced: counted as it arrives
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (res.write(chunk));
          if (!res.destroyed) res.once("drain", pump);
        };
        pump();
        return;
      }
      if (req.url?.includes("announced")) {
        res.writeHead(200, { "content-length": String(1 << 30) }).write("x");
        return;
      }
      // everything else trickles: a byte every 50 ms, never idle long enough to time out
      res.writeHead(200);
      const timer = setInterval(() => res.write("x"), 50);
      res.on("close", () => clearInterval(timer));
    });
    // a notification channel that sends one message far over what a notification needs
    new WebSocketServer({ server }).on("connection", (ws) => ws.send(Buffer.alloc(1 << 20, 0x20)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new DeviceClient(url, creds(join(dir, "dev-a")), {
      idleMs: 1000,
      deadlineMs: 800,
      maxResponseBytes: 1 << 20,
      artifactDeadlineMs: 60_000,
      maxArtifactBytes: 4 << 20,
    });
    try {
      const notified: string[] = [];
      const closed = await new Promise<string>((resolve) =>
        client.openNotifications({
          onOpen: () => undefined,
          onNotification: (n) => notified.push(n.type),
          onInvalid: (text) => notified.push(text),
          onClose: resolve,
        }),
      );
      expect(closed).toMatch(/max payload size exceeded/i);
      expect(notified).toEqual([]);
      await expect(client.fetchArtifact("sha256:huge")).rejects.toThrow(/over the limit of 4194304 bytes/);
      await expect(client.fetchArtifact("sha256:announced")).rejects.toThrow(
        /1073741824 bytes are over the limit of 4194304/,
      );
      // a trickling artifact holds the one kept-alive connection; the poll queued behind it
      // never gets the connection, and its deadline counts the wait
      const artifact = client.fetchArtifact("sha256:slow").catch((e: Error) => e);
      const started = Date.now();
      await expect(client.getAssignment(undefined, "x86_64")).rejects.toThrow(
        /did not complete within 800 ms/,
      );
      expect(Date.now() - started).toBeLessThan(5000);
      client.close();
      expect(await artifact).toBeInstanceOf(Error);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("names the bundle file it cannot read", () => {
    expect(
      () =>
        new DeviceClient(controller.url, { ...creds(join(dir, "dev-a")), keyFile: join(dir, "nope.key") }),
    ).toThrow(/cannot read the device key .*nope\.key/);
  });
});
