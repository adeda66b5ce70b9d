import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { Agent, request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { issueDeviceCert } from "@galette/pki";
import {
  type AuditEntry,
  PROTOCOL_VERSION,
  type PublishNfResponse,
  type TokenSummary,
} from "@galette/protocol";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { DataDir, hashToken } from "../src/control";
import type { NfBuilder } from "../src/nf-publish";
import { DATABASE_FILE, MIGRATIONS, openSqliteRepository } from "../src/storage/sqlite";
import {
  call,
  deviceSocket,
  fakeBuilder,
  type Harness,
  MACSWAP_RS,
  MACSWAP_TOML,
  rawRequest,
  startHarness,
  tarOf,
  writeCrate,
} from "./helpers";

const DAY = 86_400_000;

/** Plain HTTP GET (the separate metrics listener). */
function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on("error", reject)
      .end();
  });
}

describe("limits, expiry and hygiene", () => {
  let h: Harness;
  let crates: string;
  const op = (path: string, options: Parameters<Harness["call"]>[1] = {}) =>
    h.call(path, { token: h.token, ...options });

  beforeAll(async () => {
    h = await startHarness({ nfBuilder: fakeBuilder, metricsListen: { host: "127.0.0.1", port: 0 } });
    crates = mkdtempSync(join(tmpdir(), "galette-limits-crates-"));
  });
  afterAll(async () => {
    await h?.cleanup();
    rmSync(crates, { recursive: true, force: true });
  });

  it("limits bodies per route and takes binary bodies only where NFs are uploaded", async () => {
    const big = await op("/v1/devices", { method: "POST", body: { name: "x", pad: "a".repeat(100 * 1024) } });
    expect(big.status).toBe(413);
    expect(big.json().error).toBe("request body is larger than the limit of 65536 bytes");
    const bundle = await h.enrol("limits-1");
    const status = await h.call("/v1/device/status", {
      method: "POST",
      client: { certPem: bundle.certPem, keyPem: bundle.keyPem },
      body: { protocolVersion: PROTOCOL_VERSION, pad: "a".repeat(300 * 1024) },
    });
    expect(status.status).toBe(413);
    expect(status.json().error).toBe("request body is larger than the limit of 262144 bytes");
    for (const type of ["application/octet-stream", "application/x-tar", "text/plain"]) {
      const res = await op("/v1/chains", { method: "POST", headers: { "content-type": type }, body: "x" });
      expect(res.status, type).toBe(415);
    }
    // A chain push may be larger than the default limit; its schema caps the TOML itself.
    const toml = await op("/v1/chains", { method: "POST", body: { toml: "#".repeat(1024 * 1024 + 1) } });
    expect(toml.status).toBe(400);
    expect(toml.json().error).toBe("invalid push request: toml: toml is larger than 1 MiB");
  });

  it("never lets a map hold more entries than its size, and changes nothing when refused", async () => {
    writeCrate(crates, "macswap", MACSWAP_RS);
    const published = await op("/v1/nfs", {
      method: "POST",
      headers: { "content-type": "application/x-tar" },
      body: tarOf(crates, "macswap"),
    });
    expect(published.status, published.body.toString()).toBe(201);
    expect((await op("/v1/chains", { method: "POST", body: { toml: MACSWAP_TOML } })).status).toBe(201);
    const path = "/v1/chains/macswap/maps/macswap.counters/entries";
    const entry = (key: string) => ({ key, value: "0000000000000000" });
    const two = await op(path, { method: "PUT", body: { set: [entry("00000000"), entry("01000000")] } });
    expect(two.status).toBe(400);
    expect(two.json().error).toBe(
      'map "macswap.counters" holds at most 1 entries; this change would leave 2',
    );
    expect((await op(path)).json().entries).toEqual([]);
    expect((await op(path, { method: "PUT", body: { set: [entry("00000000")] } })).status).toBe(200);
    expect((await op(path, { method: "PUT", body: { set: [entry("01000000")] } })).status).toBe(400);
    const swapped = await op(path, {
      method: "PUT",
      body: { set: [entry("01000000")], delete: ["00000000"] },
    });
    expect(swapped.status, swapped.body.toString()).toBe(200);
    expect(swapped.json().entries).toEqual([entry("01000000")]);
  });

  it("never serves a crate source to a device, even one whose chain runs that NF", async () => {
    const published = (
      await op("/v1/nfs?name=macswap", {
        method: "POST",
        headers: { "content-type": "application/x-tar" },
        body: tarOf(crates, "macswap"),
      })
    ).json<PublishNfResponse>();
    // The uploaded crate is kept in the artifact store under its digest.
    const source = { digest: published.sourceDigest };
    const bpf = published.artifacts.find((a) => a.kind === "bpf-object");
    const data = DataDir.open(h.dir);
    expect(await data.artifacts.has(source.digest)).toBe(true);
    await data.close();
    await h.enrol("runs-macswap");
    const assigned = await op("/v1/assignments", {
      method: "POST",
      body: { chain: "macswap", devices: ["runs-macswap"] },
    });
    expect(assigned.status).toBe(200);
    const device = { client: h.asDevice("runs-macswap") };
    expect((await h.call(`/v1/device/artifacts/${bpf!.digest}`, device)).status).toBe(200);
    const refused = await h.call(`/v1/device/artifacts/${source.digest}`, device);
    expect(refused.status).toBe(403);
    expect(refused.json().error).toBe(
      `artifact ${source.digest} is not part of device runs-macswap's assignment`,
    );
  });

  it("keeps one notification connection per device: the newest wins", async () => {
    const bundle = await h.enrol("ws-1");
    const client = { certPem: bundle.certPem, keyPem: bundle.keyPem };
    const first = deviceSocket(h, client);
    await first.hello;
    const second = deviceSocket(h, client);
    await second.hello;
    expect((await first.closed).code).toBe(4409);
    expect(second.ws.readyState).toBe(WebSocket.OPEN);
    expect((await op("/v1/devices/ws-1")).json().online).toBe(true);
    second.ws.close();
    await second.closed;
  });

  it("re-checks certificate expiry on kept-alive connections and open websockets", async () => {
    const data = DataDir.open(h.dir);
    const notAfter = new Date(Math.ceil((Date.now() + 4000) / 1000) * 1000);
    const issued = issueDeviceCert(data.pki.issuer, "short-lived", {
      validity: { notBefore: new Date(Date.now() - 60_000), notAfter },
    });
    await data.repo.insertDevice({
      name: "short-lived",
      labels: {},
      serial: issued.serial,
      certPem: issued.certPem,
      enrolledAt: new Date().toISOString(),
      notAfter: notAfter.toISOString(),
    });
    await data.close();
    const client = { certPem: issued.certPem, keyPem: issued.keyPem };
    const ws = deviceSocket(h, client);
    await ws.hello;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ status: number; reused: boolean; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          `${h.controller.url}/v1/device/assignment`,
          { agent, ca: h.caPem, cert: client.certPem, key: client.keyPem },
          (res) => {
            let body = "";
            res.on("data", (c: Buffer) => {
              body += c.toString();
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, body }));
          },
        );
        req.on("error", reject);
        req.end();
      });
    expect((await get()).status).toBe(200);
    await new Promise((r) => setTimeout(r, notAfter.getTime() - Date.now() + 500));
    const after = await get();
    expect(after).toMatchObject({ status: 403, reused: true });
    expect(JSON.parse(after.body).error).toMatch(/CERT_HAS_EXPIRED/);
    expect((await ws.closed).code).toBe(4401);
    agent.destroy();
  }, 20_000);

  it("speaks TLS 1.3 only", async () => {
    await expect(
      rawRequest(h.controller.url, h.caPem, "/healthz", { maxVersion: "TLSv1.2" }),
    ).rejects.toThrow();
    expect((await rawRequest(h.controller.url, h.caPem, "/healthz", { minVersion: "TLSv1.3" })).status).toBe(
      200,
    );
  });

  it("serves /metrics with the metrics scope, and without a token only on the separate metrics address", async () => {
    expect((await h.call("/metrics")).status).toBe(401);
    expect(h.controller.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const plain = await httpGet(`${h.controller.metricsUrl}/metrics`);
    expect(plain.status).toBe(200);
    expect(plain.body).toContain("galette_http_requests_total");
    const other = await httpGet(`${h.controller.metricsUrl}/v1/devices`);
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body)).toEqual({ error: "not found" });
  });

  it("refuses expired and revoked tokens, and bad token requests, and lists tokens without secrets", async () => {
    const data = DataDir.open(h.dir);
    await data.repo.insertToken({
      name: "old",
      hash: hashToken("glt_old-token"),
      scopes: ["read"],
      createdAt: new Date(Date.now() - 100 * DAY).toISOString(),
      expiresAt: new Date(Date.now() - DAY).toISOString(),
    });
    await data.close();
    const expired = await h.call("/v1/devices", { token: "glt_old-token" });
    expect(expired.status).toBe(401);
    expect(expired.json().error).toMatch(/^token old expired at \d{4}-/);

    const created = await op("/v1/tokens", { method: "POST", body: { name: "short", scopes: ["read"] } });
    expect(created.status).toBe(201);
    const { token, expiresAt, createdAt } = created.json<{
      token: string;
      expiresAt: string;
      createdAt: string;
    }>();
    expect(Date.parse(expiresAt) - Date.parse(createdAt)).toBe(90 * DAY);
    expect((await h.call("/v1/devices", { token })).status).toBe(200);
    const listed = (await op("/v1/tokens")).json<{ tokens: TokenSummary[] }>().tokens;
    const short = listed.find((t) => t.name === "short")!;
    expect(Object.keys(short).sort()).toEqual(["createdAt", "expiresAt", "lastUsedAt", "name", "scopes"]);
    expect(short.lastUsedAt).not.toBeNull();
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(JSON.stringify(listed)).not.toContain(hashToken(token));
    expect((await op("/v1/tokens/short/revoke", { method: "POST" })).status).toBe(200);
    const revoked = await h.call("/v1/devices", { token });
    expect(revoked.status).toBe(401);
    expect(revoked.json().error).toBe("invalid bearer token");

    const cases: Array<[object, RegExp]> = [
      [{ name: "t", scopes: [] }, /^invalid token request: scopes: give at least one scope/],
      [{ name: "t", scopes: ["root"] }, /^invalid token request: scopes\.0:/],
      [{ name: "t", scopes: ["read", "read"] }, /^invalid token request: scopes: a scope is listed twice/],
      [{ name: "t" }, /^invalid token request: scopes:/],
      [
        { name: "t", scopes: ["read"], expiresAt: new Date(Date.now() - 1000).toISOString() },
        /is not in the future$/,
      ],
      [
        { name: "t", scopes: ["read"], expiresAt: new Date(Date.now() + 3651 * DAY).toISOString() },
        /is more than 3650 days away$/,
      ],
      [{ name: "t", scopes: ["read"], expiresAt: "tomorrow" }, /^invalid token request: expiresAt:/],
    ];
    for (const [body, error] of cases) {
      const res = await op("/v1/tokens", { method: "POST", body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json().error, JSON.stringify(body)).toMatch(error);
    }
    expect(
      (await op("/v1/tokens")).json<{ tokens: TokenSummary[] }>().tokens.map((t) => t.name),
    ).not.toContain("t");
  });
});

describe("API revocation", () => {
  let h: Harness;
  beforeAll(async () => {
    // The periodic sweep is far away: only the revocation itself can close the socket.
    h = await startHarness({ revocationSweepMs: 600_000 });
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("closes the device's websocket at once", async () => {
    await h.enrol("pi-ws");
    const ws = deviceSocket(h, h.asDevice("pi-ws"));
    await ws.hello;
    const revokedAt = Date.now();
    expect((await h.call("/v1/devices/pi-ws/revoke", { method: "POST", token: h.token })).status).toBe(200);
    const closed = await ws.closed;
    expect(closed.code).toBe(4403);
    expect(closed.at - revokedAt).toBeLessThan(2000);
  });
});

describe("audit of a call whose client goes away", () => {
  let h: Harness;
  let crates: string;
  beforeAll(async () => {
    // A build that takes a while: the client is gone before the answer.
    const slowBuilder: NfBuilder = async (input) => {
      await new Promise((r) => setTimeout(r, 800));
      return fakeBuilder(input);
    };
    h = await startHarness({ nfBuilder: slowBuilder });
    crates = mkdtempSync(join(tmpdir(), "galette-audit-crates-"));
  });
  afterAll(async () => {
    await h?.cleanup();
    rmSync(crates, { recursive: true, force: true });
  });

  it("is on record before the handler runs, even when no answer is ever sent", async () => {
    writeCrate(crates, "macswap", MACSWAP_RS);
    const archive = tarOf(crates, "macswap");
    const url = new URL(h.controller.url);
    await new Promise<void>((resolve, reject) => {
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: h.caPem }, () => {
        socket.write(
          `POST /v1/nfs?name=macswap HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${h.token}\r\n` +
            `content-type: application/x-tar\r\ncontent-length: ${archive.length}\r\n\r\n`,
        );
        socket.write(archive, () => setTimeout(() => socket.destroy(), 200));
      });
      socket.on("close", () => resolve());
      socket.on("error", reject);
    });
    const deadline = Date.now() + 10_000;
    let published = false;
    while (!published && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const data = DataDir.open(h.dir);
      published = (await data.repo.latestNf("macswap")) !== undefined;
      await data.close();
    }
    expect(published, "the publish ran to the end").toBe(true);
    const audit = await h.call("/v1/audit", { token: h.token });
    const rows = audit.json<{ entries: AuditEntry[] }>().entries.filter((e) => e.route === "/v1/nfs");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      actor: "test-operator",
      method: "POST",
      target: "macswap",
      remote: "127.0.0.1",
    });
    // 0 = no answer reached the client; 201 when the server still got to send it.
    expect([0, 201]).toContain(rows[0]!.status);
  });
});

describe("rate limits, slow clients and internal errors", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ rateLimits: { devicePerMinute: 5, tokenPerMinute: 5 }, requestTimeoutMs: 1000 });
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  it("limits each device and each token on its own", async () => {
    await h.enrol("rl-1"); // the harness token's first request
    await h.enrol("rl-2");
    const data = DataDir.open(h.dir);
    const other = (await data.createToken("other", ["read"])).token;
    await data.close();
    for (let i = 0; i < 3; i++) expect((await h.call("/v1/devices", { token: h.token })).status).toBe(200);
    const limited = await h.call("/v1/devices", { token: h.token });
    expect(limited.status).toBe(429);
    expect(limited.json().error).toMatch(
      /^rate limit: 5 requests per minute for token test-operator; retry in \d+ s$/,
    );
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect((await h.call("/v1/devices", { token: other })).status).toBe(200);

    for (let i = 0; i < 5; i++) {
      expect((await h.call("/v1/device/assignment", { client: h.asDevice("rl-1") })).status).toBe(200);
    }
    const device = await h.call("/v1/device/assignment", { client: h.asDevice("rl-1") });
    expect(device.status).toBe(429);
    expect(device.json().error).toMatch(/for device rl-1;/);
    expect((await h.call("/v1/device/assignment", { client: h.asDevice("rl-2") })).status).toBe(200);
  });

  it("cuts off a client that sends its request too slowly", async () => {
    const url = new URL(h.controller.url);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: h.caPem }, () => {
        // Headers begun, never finished (a slowloris client).
        socket.write(`GET /healthz HTTP/1.1\r\nhost: ${url.host}\r\nx-slow: 1`);
      });
      let text = "";
      socket.on("data", (c: Buffer) => {
        text += c.toString();
      });
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
      setTimeout(() => {
        socket.destroy();
        reject(new Error("the server kept the slow connection open for 10 s"));
      }, 10_000).unref();
    });
    expect(Date.now() - started).toBeLessThan(9000);
    expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(answer.endsWith('{"error":"request timeout"}')).toBe(true);
  });

  it("answers a 5xx with a request id only: no paths, no stack, no internals", async () => {
    const data = DataDir.open(h.dir);
    const token = (await data.createToken("fresh", ["read"])).token;
    await data.close();
    // The database going away under the server is an internal error if anything is.
    await h.controller.data.repo.close();
    const res = await call(h.controller.url, h.caPem, "/v1/chains", { token });
    expect(res.status).toBe(500);
    const body = res.json<{ error: string; requestId: string }>();
    expect(Object.keys(body).sort()).toEqual(["error", "requestId"]);
    expect(body.error).toBe("internal error");
    expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers["x-request-id"]).toBe(body.requestId);
    const logged = h.logs.find((l) => l.msg === "request failed" && l.reqId === body.requestId);
    expect(logged, "the cause is logged under the request id").toBeDefined();
  });
});

describe("schema migration of tokens made before scopes", () => {
  it("keeps their powers for 90 days after the upgrade, then they expire", async () => {
    const dir = mkdtempSync(join(tmpdir(), "galette-migrate-"));
    try {
      mkdirSync(dir, { recursive: true });
      const db = new Database(join(dir, DATABASE_FILE));
      for (const migration of MIGRATIONS.slice(0, 2)) db.exec(migration.sqlite);
      db.pragma("user_version = 2");
      db.prepare("INSERT INTO tokens (token_hash, name, created_at) VALUES (?, ?, ?)").run(
        hashToken("glt_legacy"),
        "legacy",
        "2026-01-01T00:00:00.000Z",
      );
      db.close();
      const repo = openSqliteRepository(dir);
      const token = (await repo.findTokenByHash(hashToken("glt_legacy")))!;
      expect(token.scopes).toEqual(["admin", "publish", "deploy", "read", "metrics"]);
      expect(Math.abs(Date.parse(token.expiresAt!) - (Date.now() + 90 * DAY))).toBeLessThan(60_000);
      expect(await repo.listAudit({ limit: 10 })).toEqual([]);
      await repo.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
