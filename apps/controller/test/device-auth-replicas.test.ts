/**
 * Device authentication across controller replicas on one PostgreSQL database (real
 * PostgreSQL 15): every device request reads its device and the presented serial afresh,
 * so a revocation, a re-enrolment or a dead-man change made through another replica applies
 * to the very next request on this one, even over a connection kept alive from before.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initPkiDir } from "@galette/pki";
import { DEFAULT_GRACE_SECONDS, type DeviceAssignment, type EnrollDeviceResponse } from "@galette/protocol";
import { afterAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { type RunningController, startController } from "../src/server";
import { openPostgresRepository } from "../src/storage/postgres";
import { call, captureLogger, usePostgres } from "./helpers";

const postgres = usePostgres();
const dir = mkdtempSync(join(tmpdir(), "galette-device-auth-pg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One request over `agent` (kept alive: the same TLS connection as the previous request). */
function overAgent(
  agent: Agent,
  baseUrl: string,
  path: string,
): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, baseUrl), { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString("utf8"),
          reused: req.reusedSocket,
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("device authentication on PostgreSQL replicas", () => {
  it("refuses, on the very next request on replica A, a device revoked or re-enrolled through replica B", async () => {
    const database = postgres().createDatabase("device_auth");
    const pki = initPkiDir(dir);
    const { logger } = captureLogger();
    const start = () =>
      startController({ dataDir: dir, port: 0, database, logger, revocationSweepMs: 60_000 });
    const replicas: RunningController[] = [];
    const agents: Agent[] = [];
    const other = await openPostgresRepository(database);
    try {
      replicas.push(await start());
      replicas.push(await start());
      const [a, b] = replicas as [RunningController, RunningController];
      const direct = await DataDir.connect(dir, { database });
      const { token } = await direct.createToken("ops", ["admin", "read"]);
      await direct.close();
      const operator = async (replica: RunningController, path: string, body?: object) => {
        const res = await call(replica.url, pki.ca.certPem, path, {
          token,
          ...(body ? { method: "POST", body } : {}),
        });
        expect(res.status, res.body.toString()).toBeLessThan(300);
        return res;
      };
      const enrol = async () =>
        (await operator(b, "/v1/devices", { name: "pi-1", labels: {} })).json<EnrollDeviceResponse>();
      const keptAlive = (bundle: EnrollDeviceResponse) => {
        const agent = new Agent({
          keepAlive: true,
          maxSockets: 1,
          ca: pki.ca.certPem,
          cert: bundle.certPem,
          key: bundle.keyPem,
        });
        agents.push(agent);
        return () => overAgent(agent, a.url, "/v1/device/assignment");
      };

      const first = await enrol();
      const poll = keptAlive(first);
      const before = await poll();
      expect(before.status, before.body).toBe(200);
      expect((JSON.parse(before.body) as DeviceAssignment).deadMan).toEqual({
        graceSeconds: DEFAULT_GRACE_SECONDS,
      });

      // the dead-man grace written by another replica: in A's very next answer
      await other.setGraceSeconds(["pi-1"], 7);
      const grace = await poll();
      expect(grace.reused).toBe(true);
      expect((JSON.parse(grace.body) as DeviceAssignment).deadMan).toEqual({ graceSeconds: 7 });

      // revoked through B: A's next request on the same kept-alive connection is refused
      await operator(b, "/v1/devices/pi-1/revoke", {});
      const revoked = await poll();
      expect(revoked.reused).toBe(true);
      expect(revoked.status).toBe(403);
      expect(JSON.parse(revoked.body).error).toMatch(/revoked/);

      // enrolled again through B with a new certificate: the new one is accepted on A, the
      // old one (whose serial is revoked) still refused, also on a fresh connection
      const second = await enrol();
      expect(second.serial).not.toBe(first.serial);
      const pollNew = keptAlive(second);
      expect((await pollNew()).status).toBe(200);
      const old = await poll();
      expect(old.status).toBe(403);
      expect(JSON.parse(old.body).error).toMatch(/revoked/);
      const oldFresh = await call(a.url, pki.ca.certPem, "/v1/device/assignment", { client: first });
      expect(oldFresh.status).toBe(403);
      // the grace belongs to the name: the re-enrolled device is served it
      expect((JSON.parse((await pollNew()).body) as DeviceAssignment).deadMan).toEqual({ graceSeconds: 7 });

      // and revoking the new one through B refuses it on A at once
      await operator(b, "/v1/devices/pi-1/revoke", {});
      const after = await pollNew();
      expect(after.reused).toBe(true);
      expect(after.status).toBe(403);
    } finally {
      for (const agent of agents) agent.destroy();
      await Promise.all(replicas.map((r) => r.close()));
      await other.close();
    }
  }, 180_000);
});
