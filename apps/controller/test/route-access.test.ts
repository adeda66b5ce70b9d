import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, initPkiDir, issueDeviceCert } from "@galette/pki";
import { type AuditEntry, TOKEN_SCOPES, type TokenScope } from "@galette/protocol";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDir } from "../src/control";
import { access } from "../src/plugins/auth";
import { buildController } from "../src/server";
import { type Harness, rawRequest, startHarness } from "./helpers";

/**
 * Who may call each route. The server's own route list must equal this table, so a new
 * route cannot appear without its access being reviewed here.
 */
const ROUTE_TABLE: Record<string, "public" | "device" | TokenScope> = {
  "GET /healthz": "public",
  "GET /metrics": "metrics",
  "GET /v1/device/assignment": "device",
  "GET /v1/device/artifacts/:digest": "device",
  "POST /v1/device/status": "device",
  "GET /v1/device/notifications": "device",
  "POST /v1/device/traces/:id": "device",
  "GET /v1/devices": "read",
  "GET /v1/devices/:name": "read",
  "POST /v1/devices": "admin",
  "POST /v1/devices/:name/revoke": "admin",
  // a version the device rolled back goes out again: a deployment decision
  "POST /v1/devices/:name/confirm": "deploy",
  // what a chain would become on one device (capabilities): plans, changes nothing
  "POST /v1/devices/:name/plan": "read",
  // packet traces carry packet contents: their own scope
  "POST /v1/devices/:name/trace": "trace",
  "GET /v1/tokens": "admin",
  "POST /v1/tokens": "admin",
  "POST /v1/tokens/:name/revoke": "admin",
  "GET /v1/audit": "admin",
  "GET /v1/chains": "read",
  "GET /v1/chains/:name": "read",
  "POST /v1/chains": "deploy",
  "GET /v1/assignments": "read",
  "POST /v1/assignments": "deploy",
  "DELETE /v1/assignments": "deploy",
  "GET /v1/chains/:chain/maps/:map/entries": "read",
  "PUT /v1/chains/:chain/maps/:map/entries": "deploy",
  "POST /v1/nfs": "publish",
  // release signing: the controller stores signatures, devices check them
  "GET /v1/nfs/:name/release": "read",
  "POST /v1/nfs/:name/release": "publish",
  "POST /v1/chains/plan": "deploy",
  "GET /v1/chains/:chain/maps/:map/signed": "read",
  "GET /v1/release-keys": "read",
  "PUT /v1/release-keys": "deploy",
  // staged rollouts
  "GET /v1/rollouts": "read",
  "GET /v1/rollouts/:id": "read",
  "POST /v1/rollouts": "deploy",
  "POST /v1/rollouts/:id/pause": "deploy",
  "POST /v1/rollouts/:id/resume": "deploy",
  "POST /v1/rollouts/:id/abort": "deploy",
  // the web console: its files and its login are public; the session is a token's
  "GET /": "public",
  "GET /index.html": "public",
  "GET /assets/:file": "public",
  "POST /v1/session": "public",
  "GET /v1/session": "read",
  "DELETE /v1/session": "read",
  "GET /v1/events": "read",
};

const DIGEST = "ab".repeat(32);
/** A concrete path for a route pattern (names that exist or not: the status is what matters). */
const concrete = (url: string) =>
  url
    .replace(":digest", DIGEST)
    .replace(":name", "ghost")
    .replace(":chain", "ghost")
    .replace(":map", "ghost.map")
    .replace(":id", "1");

const READS = new Set(["GET", "HEAD"]);

describe("every route declares its access and is served only with it", () => {
  let h: Harness;
  /** one token per scope, holding only that scope */
  const tokens = {} as Record<TokenScope, string>;
  let foreignDevice: { certPem: string; keyPem: string };

  beforeAll(async () => {
    h = await startHarness();
    for (const scope of TOKEN_SCOPES) {
      const res = await h.call("/v1/tokens", {
        method: "POST",
        token: h.token,
        body: { name: `only-${scope}`, scopes: [scope] },
      });
      expect(res.status, res.body.toString()).toBe(201);
      tokens[scope] = res.json<{ token: string }>().token;
    }
    await h.enrol("pi-1");
    await h.enrol("pi-2");
    expect((await h.call("/v1/devices/pi-2/revoke", { method: "POST", token: h.token })).status).toBe(200);
    const evil = createCa({ commonName: "evil CA" });
    foreignDevice = issueDeviceCert(evil, "pi-1");
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  const routes = () => h.controller.routes.filter((r) => r.method !== "HEAD");

  it("has exactly the routes of the table, each declaring the access the table gives it", () => {
    const served = Object.fromEntries(
      routes().map((r) => [
        `${r.method} ${r.url}`,
        r.access.kind === "operator" ? r.access.scope : r.access.kind,
      ]),
    );
    expect(served, "a route was added or changed: review its access, then update ROUTE_TABLE").toEqual(
      ROUTE_TABLE,
    );
    // HEAD twins of GET routes carry the same declaration.
    for (const head of h.controller.routes.filter((r) => r.method === "HEAD")) {
      expect(ROUTE_TABLE[`GET ${head.url}`], head.url).toBe(
        head.access.kind === "operator" ? head.access.scope : head.access.kind,
      );
    }
  });

  it("refuses every non-public route without a credential, with the other kind of credential, and with a foreign or revoked certificate", async () => {
    for (const { method, url, access: declared } of h.controller.routes) {
      if (declared.kind === "public") continue;
      const path = concrete(url);
      const body = READS.has(method) ? undefined : "{}";
      const headers: Record<string, string> = body ? { "content-type": "application/json" } : {};
      /** how the request is sent, its credential, the status it must get */
      const attempts: Array<[string, Parameters<typeof rawRequest>[3], number]> = [
        ["without a credential", {}, 401],
      ];
      if (declared.kind === "operator")
        attempts.push(["with a device certificate", { client: h.asDevice("pi-1") }, 401]);
      else
        attempts.push(
          ["with an operator token", { headers: { ...headers, authorization: `Bearer ${h.token}` } }, 401],
          ["with a foreign certificate", { client: foreignDevice }, 403],
          ["as a revoked device", { client: h.asDevice("pi-2") }, 403],
        );
      for (const [how, credential, status] of attempts) {
        const res = await rawRequest(h.controller.url, h.caPem, path, {
          method,
          body,
          headers,
          ...credential,
        });
        expect(res.status, `${method} ${path} ${how}`).toBe(status);
      }
    }
  });

  it("gives each token scope exactly its routes, and audits every mutating call under its token", async () => {
    const since = new Date().toISOString();
    const expectedAudit: Array<Pick<AuditEntry, "actor" | "method" | "route">> = [];
    for (const { method, url, access: declared } of routes()) {
      if (declared.kind !== "operator") continue;
      const path = concrete(url);
      for (const scope of TOKEN_SCOPES) {
        const res = await rawRequest(h.controller.url, h.caPem, path, {
          method,
          ...(READS.has(method) ? {} : { body: "{}" }),
          headers: {
            authorization: `Bearer ${tokens[scope]}`,
            ...(READS.has(method) ? {} : { "content-type": "application/json" }),
          },
        });
        const what = `${method} ${path} with a ${scope} token`;
        if (scope === declared.scope) {
          expect([401, 403], `${what}: ${res.body}`).not.toContain(res.status);
          expect(res.status, `${what}: ${res.body}`).toBeLessThan(500);
        } else {
          expect(res.status, what).toBe(403);
          expect(JSON.parse(res.body).error).toBe(
            `token only-${scope} lacks the ${declared.scope} scope this route needs`,
          );
        }
        if (!READS.has(method)) expectedAudit.push({ actor: `only-${scope}`, method, route: url });
      }
    }
    const audit = await h.call(`/v1/audit?since=${encodeURIComponent(since)}`, { token: h.token });
    expect(audit.status).toBe(200);
    const entries = audit.json<{ entries: AuditEntry[] }>().entries;
    expect(entries.map((e) => ({ actor: e.actor, method: e.method, route: e.route }))).toEqual(expectedAudit);
    for (const entry of entries) {
      expect(entry.remote).toBe("127.0.0.1");
      expect(Date.parse(entry.at)).toBeGreaterThanOrEqual(Date.parse(since));
      if (!entry.actor.endsWith(ROUTE_TABLE[`${entry.method} ${entry.route}`]!))
        expect(entry.status).toBe(403);
      else expect(entry.status).not.toBe(403);
    }
    const revoke = entries.find((e) => e.route === "/v1/devices/:name/revoke" && e.actor === "only-admin");
    expect(revoke?.target).toBe("ghost");
    // Reads are not audited.
    expect(entries.some((e) => e.method === "GET")).toBe(false);
  });

  it("serves no route to a spelling of its path without the right credential (property over every route)", async () => {
    const guarded = routes().filter((r) => r.access.kind !== "public");
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("encode" as const), at: fc.nat(), upper: fc.boolean() }),
      fc.record({ kind: fc.constant("case" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("double-slash" as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant("dot" as const),
        at: fc.nat(),
        form: fc.constantFrom("/.", "/x/..", "/%2e", "/%2E%2E", "/./."),
      }),
      fc.record({ kind: fc.constant("trailing-slash" as const) }),
      fc.record({
        kind: fc.constant("semicolon" as const),
        at: fc.nat(),
        param: fc.constantFrom(";", ";a=b", ";v1"),
      }),
      fc.record({
        kind: fc.constant("absolute" as const),
        scheme: fc.constantFrom("https://x", "http://127.0.0.1", "https://127.0.0.1:1"),
      }),
    );
    type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;
    const slashes = (path: string) => [...path].flatMap((c, i) => (c === "/" ? [i] : []));
    const apply = (path: string, m: Mutation): string => {
      switch (m.kind) {
        case "encode": {
          const chars = [...path].flatMap((c, i) => (c === "/" ? [] : [i]));
          if (chars.length === 0) return path;
          const i = chars[m.at % chars.length]!;
          const hex = path.charCodeAt(i).toString(16).padStart(2, "0");
          return `${path.slice(0, i)}%${m.upper ? hex.toUpperCase() : hex}${path.slice(i + 1)}`;
        }
        case "case": {
          const i = m.at % path.length;
          const c = path[i]!;
          const flipped = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
          return `${path.slice(0, i)}${flipped}${path.slice(i + 1)}`;
        }
        case "double-slash": {
          const at = slashes(path);
          const i = at[m.at % at.length]!;
          return `${path.slice(0, i)}/${path.slice(i)}`;
        }
        case "dot": {
          const at = slashes(path);
          const i = at[m.at % at.length]!;
          return `${path.slice(0, i)}${m.form}${path.slice(i)}`;
        }
        case "trailing-slash":
          return `${path}/`;
        case "semicolon": {
          const ends = [...slashes(path).slice(1), path.length];
          const i = ends[m.at % ends.length]!;
          return `${path.slice(0, i)}${m.param}${path.slice(i)}`;
        }
        case "absolute":
          return path.startsWith("/") ? `${m.scheme}${path}` : path;
      }
    };
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: guarded.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.constantFrom("none", "other-kind", "wrong-scope", "foreign-cert", "revoked-device"),
        async (index, mutations, credential) => {
          const route = guarded[index]!;
          const target = mutations.reduce(apply, concrete(route.url));
          const isDevice = route.access.kind === "device";
          const wrongScope: TokenScope = route.url === "/metrics" ? "read" : "metrics";
          const options: Parameters<typeof rawRequest>[3] = { method: route.method, headers: {} };
          if (!READS.has(route.method)) {
            options.body = "{}";
            options.headers = { "content-type": "application/json" };
          }
          if (credential === "other-kind" && isDevice) options.headers!.authorization = `Bearer ${h.token}`;
          if (credential === "other-kind" && !isDevice) options.client = h.asDevice("pi-1");
          if (credential === "wrong-scope") options.headers!.authorization = `Bearer ${tokens[wrongScope]}`;
          if (credential === "foreign-cert") options.client = foreignDevice;
          if (credential === "revoked-device") options.client = h.asDevice("pi-2");
          const res = await rawRequest(h.controller.url, h.caPem, target, options);
          const what = `${route.method} ${target} (${route.url}) with ${credential}: ${res.status} ${res.body}`;
          expect([400, 401, 403, 404], what).toContain(res.status);
          if (target.startsWith("/") === false) {
            expect(res.status, what).toBe(400);
            expect(JSON.parse(res.body), what).toEqual({ error: "bad request" });
          }
          if (res.status === 404) expect(JSON.parse(res.body), what).toEqual({ error: "not found" });
        },
      ),
      { numRuns: 300 },
    );
    // Nothing was run for a device without one, and nothing failed inside.
    expect(h.logs.filter((l) => l.msg === "request failed")).toEqual([]);
  }, 180_000);

  it("refuses absolute-form targets and unmatched paths before any handler, saying nothing about them", async () => {
    const refused: Array<[number, string, string[]]> = [
      [
        400,
        "bad request",
        [`${h.controller.url}/v1/devices`, "https://x/v1/devices", "http://x/healthz", "*"],
      ],
      [404, "not found", ["/v1/nope", "/V1/devices", "/v2/devices", "/v1/devices/pi-1/extra", "/etc/passwd"]],
    ];
    for (const [status, error, targets] of refused)
      for (const target of targets) {
        const res = await rawRequest(h.controller.url, h.caPem, target, {
          headers: { authorization: `Bearer ${h.token}` },
        });
        expect(res.status, target).toBe(status);
        expect(JSON.parse(res.body), target).toEqual({ error });
      }
    // The same path, spelt differently, is the same route with the same check.
    for (const target of ["/v%31/devices", "/%761/devices", "/v1/d%65vices"]) {
      expect((await rawRequest(h.controller.url, h.caPem, target)).status, target).toBe(401);
      const ok = await rawRequest(h.controller.url, h.caPem, target, {
        headers: { authorization: `Bearer ${tokens.read}` },
      });
      expect(ok.status, target).toBe(200);
    }
  });
});

describe("a route without an access declaration", () => {
  it("stops the server from starting, naming the route", async () => {
    const dir = mkdtempSync(join(tmpdir(), "galette-undeclared-"));
    initPkiDir(dir);
    const data = DataDir.open(dir);
    try {
      for (const [declared, url] of [
        [undefined, "/v1/undeclared"],
        [{ kind: "operator", scope: "root" }, "/v1/bad-scope"],
        [{ kind: "anyone" }, "/v1/bad-kind"],
      ] as const) {
        const app = await buildController(data, { logger: pino({ level: "silent" }) }, () => "");
        const start = async () => {
          await app.register(async (child) => {
            child.get(url, { config: declared ? { access: declared as never } : {} }, async () => "served");
          });
          await app.ready();
        };
        await expect(start(), url).rejects.toThrow(`route GET ${url} declares no access`);
        await app.close().catch(() => {});
      }
      // The same route declared is accepted.
      const app = await buildController(data, { logger: pino({ level: "silent" }) }, () => "");
      await app.register(async (child) => {
        child.get("/v1/declared", { config: { access: access.operator("read") } }, async () => "served");
      });
      await app.ready();
      await app.close();
    } finally {
      await data.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
