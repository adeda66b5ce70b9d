import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataDir, type RunningController, startController, writeDeviceBundle } from "@galette/controller";
import { initPkiDir } from "@galette/pki";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

  it("names the bundle file it cannot read", () => {
    expect(
      () =>
        new DeviceClient(controller.url, { ...creds(join(dir, "dev-a")), keyFile: join(dir, "nope.key") }),
    ).toThrow(/cannot read the device key .*nope\.key/);
  });
});
