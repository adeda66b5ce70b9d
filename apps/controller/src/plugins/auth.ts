import type { PeerCertificate, TLSSocket } from "node:tls";
import fastifyCookie from "@fastify/cookie";
import { isIssuedCertificate, normaliseSerial } from "@galette/pki";
import {
  CSRF_HEADER,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  SESSION_COOKIE,
  TokenScope,
} from "@galette/protocol";
import type { FastifyInstance, FastifyRequest, RouteOptions } from "fastify";
import fp from "fastify-plugin";
import { RequestError } from "../control";
import { LastSeenBatch } from "../last-seen";
import { type ConsoleSessionRecord, ConsoleSessions, csrfMatches } from "../sessions";
import type { RequestDevice } from "../storage/repository";
import { hashToken, isExpired } from "../tokens";

/**
 * How a route declares who may call it. EVERY route passes one in its route options:
 *
 *   app.get("/v1/things", { config: { access: access.operator("read") } }, handler)
 *   app.post("/v1/device/thing", { config: { access: access.device } }, handler)
 *   app.get("/healthz", { config: { access: access.public } }, handler)
 *
 * - `device`: a client certificate chained to our CA, within its validity now, whose CN
 *   and serial are an enrolled, unrevoked device (read per request: revocation is immediate).
 * - `operator(scope)`: a bearer token that exists, has not expired and carries `scope`; or,
 *   without an Authorization header, a console session cookie made from such a token (the
 *   token is looked up again on every request), plus its CSRF header on every method but
 *   GET/HEAD/OPTIONS.
 * - `public`: nobody is authenticated (/healthz, the console's static files and its login).
 *
 * The server refuses to start when a route declares none. The onRequest hook below reads
 * the MATCHED route's declaration (request.routeOptions.config), never the URL text, so
 * however a path is spelt (percent-encoding, dot segments, …) it gets its route's check.
 */
export type Access = { kind: "public" } | { kind: "device" } | { kind: "operator"; scope: TokenScope };

export const access = {
  public: { kind: "public" } as Access,
  device: { kind: "device" } as Access,
  operator: (scope: TokenScope): Access => ({ kind: "operator", scope }),
};

export interface OperatorIdentity {
  /** token name: who, in logs and the audit table */
  name: string;
  scopes: TokenScope[];
  /** sha256 of the token: the rate limiter's key, never shown */
  tokenHash: string;
}

/** Each registered route with its declaration, for tests and the startup check. */
export interface RouteAccess {
  method: string;
  url: string;
  access: Access;
}

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    device: RequestDevice | null;
    operator: OperatorIdentity | null;
    /** the console session the operator came with (null: bearer token or not an operator) */
    consoleSession: ConsoleSessionRecord | null;
  }
  interface FastifyInstance {
    routeAccess: RouteAccess[];
    consoleSessions: ConsoleSessions;
  }
}

function checkAccess(value: unknown): Access | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const kind = (value as { kind?: unknown }).kind;
  if (kind === "public" || kind === "device") return { kind };
  if (kind === "operator") {
    const scope = TokenScope.safeParse((value as { scope?: unknown }).scope);
    return scope.success ? { kind, scope: scope.data } : undefined;
  }
  return undefined;
}

/** The device a device route runs for. Handlers call this; it cannot be null past the hook, and if it is, nothing runs. */
export function deviceOf(request: FastifyRequest): RequestDevice {
  if (!request.device) throw new RequestError(401, "client certificate required");
  return request.device;
}

/** When a certificate's validity window (as TLS reported it at handshake) no longer covers now. */
export function certificateExpired(
  validTo: string | undefined,
  validFrom?: string,
  now = Date.now(),
): boolean {
  const to = Date.parse(validTo ?? "");
  const from = Date.parse(validFrom ?? "");
  return Number.isNaN(to) || now > to || (!Number.isNaN(from) && now < from);
}

/**
 * When the browser says the request comes from another site or origin: fetch metadata
 * (`Sec-Fetch-Site`) other than same-origin or none (typed by the user), or an `Origin`
 * whose host is not the one the request was sent to. Clients that send neither (the CLI)
 * are not browsers and carry no cookie of ours.
 */
export function fromAnotherOrigin(request: FastifyRequest): boolean {
  const site = request.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") return true;
  const origin = request.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== request.headers.host;
  } catch {
    return true;
  }
}

const peers = new WeakMap<TLSSocket, PeerCertificate>();

/**
 * The client certificate of a connection, read once per connection: Node builds a new
 * object each call (names, key, three fingerprints), a cost every kept-alive device request
 * paid again. A TLS 1.3 connection's peer certificate cannot change (no renegotiation).
 */
export function peerCertificate(socket: TLSSocket): PeerCertificate | undefined {
  let peer = peers.get(socket);
  if (!peer) {
    peer = socket.getPeerCertificate?.();
    if (!peer) return undefined;
    peers.set(socket, peer);
  }
  return peer;
}

/** Methods that change nothing: the only ones a console session may use without its CSRF token. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export const authPlugin = fp(
  async (app: FastifyInstance, options: { data: import("../control").DataDir }) => {
    const { data } = options;
    app.decorateRequest("device", null);
    app.decorateRequest("operator", null);
    app.decorateRequest("consoleSession", null);
    app.decorate("routeAccess", [] as RouteAccess[]);
    const lastSeen = new LastSeenBatch(data.repo, app.log);
    app.addHook("onClose", async () => lastSeen.close());
    const sessions = new ConsoleSessions();
    app.decorate("consoleSessions", sessions);
    await app.register(fastifyCookie);

    app.addHook("onRoute", (route: RouteOptions) => {
      const declared = checkAccess(route.config?.access);
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      if (!declared) {
        throw new Error(
          `route ${methods.join(",")} ${route.url} declares no access: give config.access (access.device, access.operator(scope) or access.public)`,
        );
      }
      for (const method of methods) app.routeAccess.push({ method, url: route.url, access: declared });
    });

    const refuseDevice = (
      request: FastifyRequest,
      status: 401 | 403,
      reason: string,
      extra: object = {},
    ): never => {
      request.log.warn({ url: request.url, remote: request.ip, reason, ...extra }, "device request refused");
      throw new RequestError(status, reason);
    };

    const authenticateDevice = async (request: FastifyRequest): Promise<RequestDevice> => {
      const socket = request.raw.socket as TLSSocket;
      const peer = peerCertificate(socket);
      if (!peer || Object.keys(peer).length === 0)
        return refuseDevice(request, 401, "client certificate required");
      const cn = typeof peer.subject?.CN === "string" ? peer.subject.CN : "";
      const serial = normaliseSerial(peer.serialNumber ?? "");
      if (!socket.authorized) {
        return refuseDevice(
          request,
          403,
          `client certificate not accepted: ${String(socket.authorizationError)}`,
          {
            cn,
            serial,
          },
        );
      }
      // TLS checked validity at the handshake; a kept-alive or resumed connection outlives that.
      if (certificateExpired(peer.valid_to, peer.valid_from)) {
        return refuseDevice(
          request,
          403,
          `client certificate not accepted: CERT_HAS_EXPIRED (${peer.valid_to})`,
          {
            cn,
            serial,
          },
        );
      }
      // one statement: the device, its dead-man settings and the serial's revocation, read
      // afresh for every request (never cached: a revocation applies to the next request)
      const { device, serialRevoked } = await data.repo.deviceRequestState(cn, serial);
      if (serialRevoked) {
        return refuseDevice(request, 403, `certificate of device ${cn} (serial ${serial}) is revoked`, {
          cn,
          serial,
        });
      }
      if (!device) return refuseDevice(request, 403, `device ${cn} is not enrolled`, { cn, serial });
      if (device.serial !== serial) {
        return refuseDevice(
          request,
          403,
          `certificate serial ${serial} is not the one enrolled for device ${cn}`,
          {
            cn,
            serial,
          },
        );
      }
      if (device.revokedAt) return refuseDevice(request, 403, `device ${cn} is revoked`, { cn, serial });
      if (!isIssuedCertificate(peer.raw, device.certPem)) {
        return refuseDevice(request, 403, `certificate of device ${cn} is not the one issued to it`, {
          cn,
          serial,
        });
      }
      return device;
    };

    const requireScope = (request: FastifyRequest, identity: OperatorIdentity, scope: TokenScope) => {
      if (!identity.scopes.includes(scope)) {
        request.log.warn(
          { url: request.url, remote: request.ip, token: identity.name, scope },
          "token lacks scope",
        );
        throw new RequestError(403, `token ${identity.name} lacks the ${scope} scope this route needs`);
      }
    };

    /**
     * A console session: its token must still exist and be unexpired (revoking the token ends
     * its sessions); a mutating request must come from our own pages (no cross-site fetch
     * metadata, a same-host Origin when the browser sends one) and carry the session's CSRF token.
     */
    const authenticateSession = async (request: FastifyRequest, scope: TokenScope, cookie: string) => {
      const session = sessions.get(cookie);
      if (!session) {
        request.log.warn(
          { url: request.url, remote: request.ip },
          "console request with unknown or expired session",
        );
        throw new RequestError(401, "console session expired or logged out: log in again");
      }
      const token = await data.repo.findTokenByHash(session.tokenHash);
      if (!token || isExpired(token)) {
        sessions.deleteForToken(session.tokenHash);
        request.log.warn(
          { url: request.url, remote: request.ip, token: session.name },
          "console session of a revoked or expired token",
        );
        throw new RequestError(401, `token ${session.name} was revoked or has expired: log in again`);
      }
      const identity: OperatorIdentity = {
        name: token.name,
        scopes: session.scopes.filter((s) => token.scopes.includes(s)),
        tokenHash: session.tokenHash,
      };
      request.operator = identity;
      request.consoleSession = session;
      if (!SAFE_METHODS.has(request.method)) {
        const crossOrigin = fromAnotherOrigin(request);
        if (crossOrigin || !csrfMatches(request.headers[CSRF_HEADER], session.csrf)) {
          request.log.warn(
            {
              url: request.url,
              remote: request.ip,
              token: token.name,
              origin: request.headers.origin,
              site: request.headers["sec-fetch-site"],
            },
            crossOrigin ? "console request from another origin" : "console request without its CSRF token",
          );
          throw new RequestError(
            403,
            crossOrigin
              ? "cross-origin request refused"
              : `missing or wrong CSRF token (${CSRF_HEADER} header) for this session`,
          );
        }
      }
      await data.repo.touchToken(session.tokenHash, new Date().toISOString());
      requireScope(request, identity, scope);
      return identity;
    };

    const authenticateOperator = async (
      request: FastifyRequest,
      scope: TokenScope,
    ): Promise<OperatorIdentity> => {
      if (request.headers.authorization === undefined) {
        const cookie = request.cookies[SESSION_COOKIE];
        if (cookie !== undefined) return authenticateSession(request, scope, cookie);
      }
      const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "");
      if (!match) {
        request.log.warn({ url: request.url, remote: request.ip }, "operator request without bearer token");
        throw new RequestError(401, "missing bearer token (Authorization: Bearer <token>)");
      }
      const tokenHash = hashToken(match[1]!);
      const token = await data.repo.findTokenByHash(tokenHash);
      if (!token) {
        request.log.warn({ url: request.url, remote: request.ip }, "operator request with unknown token");
        throw new RequestError(401, "invalid bearer token");
      }
      if (isExpired(token)) {
        request.log.warn(
          { url: request.url, remote: request.ip, token: token.name },
          "operator request with expired token",
        );
        throw new RequestError(401, `token ${token.name} expired at ${token.expiresAt ?? "an unknown time"}`);
      }
      const identity = { name: token.name, scopes: token.scopes, tokenHash };
      // Set before the scope check so a refused mutating call is still audited under its token.
      request.operator = identity;
      await data.repo.touchToken(tokenHash, new Date().toISOString());
      requireScope(request, identity, scope);
      return identity;
    };

    app.addHook("onRequest", async (request) => {
      // Absolute-form (`GET https://host/v1/…`) and asterisk-form targets: an origin server
      // has no use for them and routers normalise them differently; refuse without detail.
      if (!request.raw.url?.startsWith("/")) throw new RequestError(400, "bad request");
      // Unmatched paths reach only the not-found handler, which says nothing.
      if (request.is404) return;
      const declared = checkAccess(request.routeOptions.config?.access);
      if (!declared) throw new RequestError(403, "forbidden"); // deny by default (startup refuses this)
      if (declared.kind === "public") return;
      if (declared.kind === "device") {
        const device = await authenticateDevice(request);
        request.device = device;
        const spoken = request.headers[PROTOCOL_VERSION_HEADER];
        if (spoken !== undefined && spoken !== String(PROTOCOL_VERSION)) {
          throw new RequestError(
            400,
            `agent speaks protocol ${String(spoken)}, this controller speaks ${PROTOCOL_VERSION}: upgrade the older side`,
          );
        }
        lastSeen.touch(device.name);
        return;
      }
      await authenticateOperator(request, declared.scope);
    });
  },
  { name: "galette-auth" },
);
