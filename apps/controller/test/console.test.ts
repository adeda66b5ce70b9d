import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initPkiDir } from "@galette/pki";
import { type ConsoleEvent, type ConsoleSession, CSRF_HEADER, SESSION_COOKIE } from "@galette/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { type RunningController, startController } from "../src/server";
import { SESSION_MAX_MS } from "../src/sessions";
import { call, captureLogger, statusReport, type TestResponse } from "./helpers";

/** The cookie a login answered with: its value and its attributes, as the browser reads them. */
function sessionCookie(res: TestResponse): { value: string; attributes: string[] } {
  const header = res.headers["set-cookie"];
  const line = (Array.isArray(header) ? header : [header ?? ""]).find((c) =>
    c.startsWith(`${SESSION_COOKIE}=`),
  );
  if (!line) throw new Error(`no ${SESSION_COOKIE} cookie in ${JSON.stringify(header)}`);
  const [pair, ...attributes] = line.split(";").map((s) => s.trim());
  return { value: pair!.slice(SESSION_COOKIE.length + 1), attributes };
}

describe("web console: static files, cookie sessions with CSRF, event stream", () => {
  let dir: string;
  let consoleDir: string;
  let controller: RunningController;
  let caPem: string;
  const tokens = {} as Record<
    "all" | "read" | "deployOnly" | "short" | "revocable" | "streamer" | "many" | "watcher",
    string
  >;
  const logs = captureLogger();
  const req = (path: string, options: Parameters<typeof call>[3] = {}) =>
    call(controller.url, caPem, path, options);

  const login = async (token: string) => {
    const res = await req("/v1/session", { method: "POST", body: { token } });
    expect(res.status, res.body.toString()).toBe(201);
    return { cookie: sessionCookie(res), session: res.json<ConsoleSession>() };
  };
  const withCookie = (value: string, extra: Record<string, string> = {}) => ({
    cookie: `${SESSION_COOKIE}=${value}`,
    ...extra,
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "galette-console-"));
    caPem = initPkiDir(dir).ca.certPem;
    consoleDir = join(dir, "console-dist");
    mkdirSync(join(consoleDir, "assets"), { recursive: true });
    writeFileSync(
      join(consoleDir, "index.html"),
      '<!doctype html><script type="module" src="/assets/app-1.js"></script>',
    );
    writeFileSync(join(consoleDir, "assets", "app-1.js"), "console.log(1)");
    writeFileSync(join(dir, "secret.txt"), "not for the web");
    const direct = DataDir.open(dir);
    tokens.all = (await direct.createToken("all", ["admin", "deploy", "read"])).token;
    tokens.read = (await direct.createToken("reader", ["read"])).token;
    tokens.deployOnly = (await direct.createToken("deployer", ["deploy"])).token;
    tokens.short = (
      await direct.createToken("short", ["read", "deploy"], new Date(Date.now() + 3_600_000).toISOString())
    ).token;
    tokens.revocable = (await direct.createToken("revocable", ["read", "deploy"])).token;
    tokens.streamer = (await direct.createToken("streamer", ["read"])).token;
    tokens.many = (await direct.createToken("many", ["read"])).token;
    tokens.watcher = (await direct.createToken("watcher", ["read"])).token;
    await direct.close();
    controller = await startController({ dataDir: dir, port: 0, logger: logs.logger, consoleDir });
  });
  afterAll(async () => {
    await controller?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the built files publicly, with a strict CSP, and nothing else from disk", async () => {
    const index = await req("/");
    expect(index.status).toBe(200);
    expect(index.headers["content-type"]).toMatch(/^text\/html/);
    expect(index.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(index.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(index.headers["x-content-type-options"]).toBe("nosniff");
    const asset = await req("/assets/app-1.js");
    expect(asset.status).toBe(200);
    expect(asset.headers["content-type"]).toMatch(/^text\/javascript/);
    expect(asset.body.toString()).toBe("console.log(1)");
    for (const path of [
      "/assets/..%2fsecret.txt",
      "/assets/..%2F..%2Fsecret.txt",
      "/assets/%2e%2e%2findex.html",
      "/assets/..\\secret.txt",
      "/assets/index.html",
      "/assets/app-1.js%00.html",
      "/assets/APP-1.JS",
    ]) {
      const res = await req(path);
      expect([400, 404], `${path}: ${res.status}`).toContain(res.status);
      expect(res.body.toString()).not.toContain("not for the web");
    }
  });

  it("refuses the API without a cookie or token, and logins with a bad, expired or read-less token", async () => {
    expect((await req("/v1/devices")).status).toBe(401);
    expect((await req("/v1/events")).status).toBe(401);
    expect((await req("/v1/session")).status).toBe(401);
    expect((await req("/v1/session", { method: "POST", body: { token: "glt_nope" } })).status).toBe(401);
    expect((await req("/v1/session", { method: "POST", body: { token: "" } })).status).toBe(400);
    expect(
      (await req("/v1/session", { method: "POST", body: { token: tokens.read, scopes: ["admin"] } })).status,
    ).toBe(400);
    const noRead = await req("/v1/session", { method: "POST", body: { token: tokens.deployOnly } });
    expect(noRead.status).toBe(403);
    expect(noRead.json<{ error: string }>().error).toContain("lacks the read scope");
    // another site's page cannot log this browser in
    const crossSite: Array<Record<string, string>> = [
      { origin: "https://evil.example" },
      { "sec-fetch-site": "cross-site" },
    ];
    for (const headers of crossSite) {
      const res = await req("/v1/session", { method: "POST", body: { token: tokens.read }, headers });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers["set-cookie"]).toBeUndefined();
    }
    // a made-up session id is no session
    const forged = await req("/v1/devices", { headers: withCookie("A".repeat(43)) });
    expect(forged.status).toBe(401);
  });

  it("sets an HttpOnly, Secure, SameSite=Strict __Host- cookie ending no later than the token, with the token's scopes only", async () => {
    const { cookie, session } = await login(tokens.short);
    const attrs = cookie.attributes.map((a) => a.toLowerCase());
    expect(attrs).toContain("httponly");
    expect(attrs).toContain("secure");
    expect(attrs).toContain("samesite=strict");
    expect(attrs).toContain("path=/");
    expect(attrs.some((a) => a.startsWith("domain="))).toBe(false);
    const expires = Date.parse(cookie.attributes.find((a) => /^expires=/i.test(a))!.slice(8));
    expect(expires).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
    expect(Date.parse(session.expiresAt)).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
    expect([...session.scopes].sort()).toEqual(["deploy", "read"]);
    expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(cookie.value).not.toBe(session.csrf);
    const long = await login(tokens.all);
    expect(Date.parse(long.session.expiresAt)).toBeLessThanOrEqual(Date.now() + SESSION_MAX_MS + 1000);
    // GET /v1/session with the cookie gives the same session back
    const again = await req("/v1/session", { headers: withCookie(cookie.value) });
    expect(again.status).toBe(200);
    expect(again.json<ConsoleSession>()).toEqual(session);
  });

  it("requires the CSRF header (and a same-origin request) on every mutating request made with the cookie", async () => {
    const { cookie, session } = await login(tokens.all);
    const put = (headers: Record<string, string>) =>
      req("/v1/chains/ghost/maps/m/entries", {
        method: "PUT",
        headers: withCookie(cookie.value, headers),
        body: { set: [{ key: "00", value: "00" }] },
      });
    expect((await req("/v1/devices", { headers: withCookie(cookie.value) })).status).toBe(200);
    const noCsrf = await put({});
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.json<{ error: string }>().error).toContain(CSRF_HEADER);
    expect((await put({ [CSRF_HEADER]: "" })).status).toBe(403);
    expect((await put({ [CSRF_HEADER]: `${session.csrf}x` })).status).toBe(403);
    expect((await put({ [CSRF_HEADER]: session.csrf.toUpperCase() })).status).toBe(403);
    // another session's CSRF token is not this one's
    const other = await login(tokens.all);
    expect((await put({ [CSRF_HEADER]: other.session.csrf })).status).toBe(403);
    // the right token from another site is still refused
    expect((await put({ [CSRF_HEADER]: session.csrf, origin: "https://evil.example" })).status).toBe(403);
    expect((await put({ [CSRF_HEADER]: session.csrf, origin: "null" })).status).toBe(403);
    expect((await put({ [CSRF_HEADER]: session.csrf, "sec-fetch-site": "cross-site" })).status).toBe(403);
    expect((await put({ [CSRF_HEADER]: session.csrf, "sec-fetch-site": "same-site" })).status).toBe(403);
    // other mutating routes and methods: the same check
    for (const [method, path] of [
      ["POST", "/v1/assignments"],
      ["DELETE", "/v1/assignments"],
      ["POST", "/v1/tokens"],
      ["DELETE", "/v1/session"],
    ] as const) {
      const res = await req(path, { method, headers: withCookie(cookie.value), body: {} });
      expect(res.status, `${method} ${path}`).toBe(403);
    }
    // with the header, from this origin: through to the route (the chain does not exist)
    const ok = await put({
      [CSRF_HEADER]: session.csrf,
      origin: controller.url,
      "sec-fetch-site": "same-origin",
    });
    expect(ok.status, ok.body.toString()).toBe(404);
    // the refused attempts were audited under the token
    const audit = await req("/v1/audit", { token: tokens.all });
    const refused = audit
      .json<{ entries: Array<{ actor: string; status: number; route: string }> }>()
      .entries.filter((e) => e.route === "/v1/chains/:chain/maps/:map/entries");
    expect(refused.filter((e) => e.status === 403).every((e) => e.actor === "all")).toBe(true);
    expect(refused.length).toBeGreaterThanOrEqual(8);
  });

  it("gives a read-only session no map editing, and a cookie never adds to a bearer token", async () => {
    const { cookie, session } = await login(tokens.read);
    expect(session.scopes).toEqual(["read"]);
    const res = await req("/v1/chains/ghost/maps/m/entries", {
      method: "PUT",
      headers: withCookie(cookie.value, { [CSRF_HEADER]: session.csrf }),
      body: { set: [{ key: "00", value: "00" }] },
    });
    expect(res.status).toBe(403);
    expect(res.json<{ error: string }>().error).toContain("lacks the deploy scope");
    // A bearer header wins over the cookie: a deploy-only token with a read session's cookie still cannot read.
    const mixed = await req("/v1/devices", { token: tokens.deployOnly, headers: withCookie(cookie.value) });
    expect(mixed.status).toBe(403);
  });

  it("ends sessions at logout and when their token is revoked", async () => {
    const a = await login(tokens.revocable);
    const b = await login(tokens.revocable);
    const out = await req("/v1/session", {
      method: "DELETE",
      headers: withCookie(a.cookie.value, { [CSRF_HEADER]: a.session.csrf }),
    });
    expect(out.status).toBe(204);
    expect(String(out.headers["set-cookie"])).toMatch(new RegExp(`${SESSION_COOKIE}=;`));
    expect((await req("/v1/devices", { headers: withCookie(a.cookie.value) })).status).toBe(401);
    expect((await req("/v1/devices", { headers: withCookie(b.cookie.value) })).status).toBe(200);
    const revoke = await req("/v1/tokens/revocable/revoke", { method: "POST", token: tokens.all });
    expect(revoke.status).toBe(200);
    const after = await req("/v1/devices", { headers: withCookie(b.cookie.value) });
    expect(after.status).toBe(401);
    expect(after.json<{ error: string }>().error).toContain("revoked");
  });

  it("streams device snapshots to a session, not to a bearer token, and ends the stream when the token is revoked", async () => {
    const bearer = await req("/v1/events", { token: tokens.read });
    expect(bearer.status).toBe(400);
    const { cookie } = await login(tokens.streamer);
    const url = new URL("/v1/events", controller.url);
    const events: ConsoleEvent[] = [];
    const ended = new Promise<number>((resolve, reject) => {
      const r = httpsRequest(url, { ca: caPem, agent: false, headers: withCookie(cookie.value) }, (res) => {
        let buffer = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          let at = buffer.indexOf("\n\n");
          while (at >= 0) {
            const line = buffer.slice(0, at);
            buffer = buffer.slice(at + 2);
            if (line.startsWith("data: ")) events.push(JSON.parse(line.slice(6)) as ConsoleEvent);
            at = buffer.indexOf("\n\n");
          }
          if (events.length === 1) {
            expect(res.headers["content-type"]).toMatch(/^text\/event-stream/);
            void req("/v1/tokens/streamer/revoke", { method: "POST", token: tokens.all });
          }
        });
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      r.on("error", reject);
      r.end();
    });
    const status = await Promise.race([
      ended,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("stream not ended")), 15_000)),
    ]);
    expect(status).toBe(200);
    expect(events[0]).toEqual({ type: "devices", devices: [] });
  });

  it("holds at most 8 event streams per token", async () => {
    const sessions = await Promise.all(Array.from({ length: 3 }, () => login(tokens.many)));
    const open: Array<() => void> = [];
    const stream = (cookie: string) =>
      new Promise<number>((resolve, reject) => {
        const r = httpsRequest(
          new URL("/v1/events", controller.url),
          { ca: caPem, agent: false, headers: withCookie(cookie) },
          (res) => {
            if (res.statusCode === 200) open.push(() => r.destroy());
            else res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        r.on("error", reject);
        r.end();
      });
    try {
      for (let i = 0; i < 8; i++) expect(await stream(sessions[i % 3]!.cookie.value)).toBe(200);
      // the limit is the token's, whichever of its sessions asks
      for (const s of sessions) expect(await stream(s.cookie.value)).toBe(429);
      open.pop()!();
      await expect.poll(() => stream(sessions[0]!.cookie.value), { timeout: 5000 }).toBe(200);
    } finally {
      for (const close of open) close();
    }
  });

  it("starts without the console when its files are missing or unreadable: / answers 503, the APIs serve", async () => {
    for (const broken of ["missing", "unreadable"]) {
      const brokenDir = join(dir, `console-${broken}`);
      if (broken === "unreadable") mkdirSync(join(brokenDir, "index.html"), { recursive: true });
      const other = await startController({
        dataDir: dir,
        port: 0,
        logger: captureLogger().logger,
        consoleDir: brokenDir,
      });
      try {
        const page = await call(other.url, caPem, "/");
        expect(page.status, broken).toBe(503);
        expect(page.json<{ error: string }>().error).toContain("not built");
        expect((await call(other.url, caPem, "/healthz")).status).toBe(200);
        expect((await call(other.url, caPem, "/v1/devices", { token: tokens.all })).status).toBe(200);
      } finally {
        await other.close();
      }
    }
  });

  it("sends a device as it reports, coalescing a burst of reports into one event", async () => {
    const enrolled = await req("/v1/devices", {
      method: "POST",
      token: tokens.all,
      body: { name: "watched", labels: {} },
    });
    expect(enrolled.status, enrolled.body.toString()).toBe(201);
    const bundle = enrolled.json<{ certPem: string; keyPem: string }>();
    const { cookie } = await login(tokens.watcher);
    const events: ConsoleEvent[] = [];
    let close = () => {};
    await new Promise<void>((resolve, reject) => {
      const r = httpsRequest(
        new URL("/v1/events", controller.url),
        { ca: caPem, agent: false, headers: withCookie(cookie.value) },
        (res) => {
          let buffer = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffer += chunk;
            for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
              events.push(JSON.parse(buffer.slice(6, at)) as ConsoleEvent);
              buffer = buffer.slice(at + 2);
            }
          });
          resolve();
        },
      );
      close = () => r.destroy();
      r.on("error", reject);
      r.end();
    });
    try {
      const report = (packets: number) =>
        statusReport({
          counters: [
            { uuid: "6c0a6f1e-3b1d-4f5e-9a57-2f4d1c8e0b7a", instance: "acl", counters: { packets } },
          ],
        });
      await expect.poll(() => events.length, { timeout: 5000 }).toBeGreaterThanOrEqual(1);
      expect(events[0]!.type).toBe("devices");
      for (const packets of [1, 2, 3]) {
        const res = await req("/v1/device/status", {
          method: "POST",
          client: { certPem: bundle.certPem, keyPem: bundle.keyPem },
          body: report(packets),
        });
        expect(res.status).toBe(204);
      }
      const deviceEvents = () =>
        events.flatMap((e) => (e.type === "device" && e.device.name === "watched" ? [e.device] : []));
      await expect
        .poll(() => deviceEvents().at(-1)?.counters[0]?.counters.packets, { timeout: 5000 })
        .toBe(3);
      // three reports within the flush interval: one event (a slow machine may split them in two)
      expect(deviceEvents().length).toBeLessThanOrEqual(2);
    } finally {
      close();
    }
  });
});
