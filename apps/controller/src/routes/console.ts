import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  CONSOLE_ROUTES,
  type ConsoleEvent,
  ConsoleLoginRequest,
  type ConsoleSession,
  SESSION_COOKIE,
} from "@galette/protocol";
import type { FastifyInstance, FastifyReply } from "fastify";
import { deviceSummary, RequestError } from "../control";
import { access, fromAnotherOrigin } from "../plugins/auth";
import { parse } from "../plugins/errors";
import type { ConsoleSessionRecord } from "../sessions";
import { hashToken, isExpired } from "../tokens";

/**
 * Where the console's built files are: apps/console/dist beside this module's app in the
 * repository, and at the same relative place in the bundle's mirrored tree.
 */
export const CONSOLE_DIST = fileURLToPath(new URL("../../../console/dist/", import.meta.url));

/** Event streams one token may hold open at once (each costs a snapshot every SNAPSHOT_MS). */
const MAX_STREAMS_PER_TOKEN = 8;

/** How often a stream sends the devices that reported since the last time. */
const FLUSH_MS = 500;
/** Bytes a stream may have waiting for a slow client before it is closed. */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

/** How often an open event stream gets a full snapshot (online flags, devices gone quiet) and its session is re-checked. */
const SNAPSHOT_MS = 5000;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};

/** Same-origin scripts, styles and connections only; no framing, no inline script, no plugins. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header("content-security-policy", CSP)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .header("x-frame-options", "DENY")
    .header("cross-origin-opener-policy", "same-origin");
}

interface StaticFile {
  body: Buffer;
  type: string;
}

/** Reads the built files once: the only files ever served are the ones listed here at startup. */
function loadConsole(dir: string): { index: StaticFile | null; assets: Map<string, StaticFile> } {
  const assets = new Map<string, StaticFile>();
  const indexFile = path.join(dir, "index.html");
  if (!existsSync(indexFile)) return { index: null, assets };
  const assetsDir = path.join(dir, "assets");
  if (existsSync(assetsDir)) {
    for (const name of readdirSync(assetsDir)) {
      const type = CONTENT_TYPES[path.extname(name)];
      if (type) assets.set(name, { body: readFileSync(path.join(assetsDir, name)), type });
    }
  }
  return { index: { body: readFileSync(indexFile), type: CONTENT_TYPES[".html"]! }, assets };
}

/**
 * The web console: its static files (public), the session login/logout that turns an
 * operator token into a cookie, and a server-sent event stream of device summaries.
 */
export async function consoleRoutes(app: FastifyInstance, options: { distDir?: string } = {}): Promise<void> {
  const { data } = app.galette;
  const sessions = app.consoleSessions;
  const dist = options.distDir ?? CONSOLE_DIST;
  let files: ReturnType<typeof loadConsole> = { index: null, assets: new Map() };
  try {
    files = loadConsole(dist);
    if (!files.index) app.log.warn({ dir: dist }, "web console is not built (run make setup): / answers 503");
  } catch (err) {
    // e.g. a rebuild replacing the files as we read them: the APIs still serve
    app.log.error({ dir: dist, err }, "web console files could not be read: / answers 503");
  }

  const sendIndex = async (_request: unknown, reply: FastifyReply) => {
    if (!files.index) throw new RequestError(503, "the web console is not built on this controller");
    return securityHeaders(reply)
      .header("content-type", files.index.type)
      .header("cache-control", "no-cache")
      .send(files.index.body);
  };
  app.get("/", { config: { access: access.public } }, sendIndex);
  app.get("/index.html", { config: { access: access.public } }, sendIndex);

  app.get<{ Params: { file: string } }>(
    "/assets/:file",
    { config: { access: access.public } },
    async (request, reply) => {
      // A name from the startup listing, nothing else: no path is ever built from the URL.
      const file = files.assets.get(request.params.file);
      if (!file) throw new RequestError(404, "not found");
      return (
        securityHeaders(reply)
          .header("content-type", file.type)
          // vite names built files by content hash
          .header("cache-control", "public, max-age=31536000, immutable")
          .send(file.body)
      );
    },
  );

  const cookieOptions = (expiresAt: number) => ({
    httpOnly: true,
    secure: true,
    sameSite: "strict" as const,
    path: "/",
    expires: new Date(expiresAt),
  });
  const sessionView = (session: ConsoleSessionRecord): ConsoleSession => ({
    name: session.name,
    scopes: session.scopes,
    expiresAt: new Date(session.expiresAt).toISOString(),
    csrf: session.csrf,
  });

  // Public: it is the exchange that authenticates. Rate limited per address like every public route.
  app.post(CONSOLE_ROUTES.session, { config: { access: access.public } }, async (request, reply) => {
    // Nobody else's page may log a browser in (into their own session, say).
    if (fromAnotherOrigin(request)) {
      request.log.warn(
        { remote: request.ip, origin: request.headers.origin },
        "console login from another origin",
      );
      throw new RequestError(403, "cross-origin request refused");
    }
    const body = parse(ConsoleLoginRequest, request.body, "login request");
    const tokenHash = hashToken(body.token);
    const token = await data.repo.findTokenByHash(tokenHash);
    if (!token || isExpired(token)) {
      request.log.warn({ remote: request.ip, known: Boolean(token) }, "console login refused");
      throw new RequestError(401, token ? `token ${token.name} has expired` : "invalid token");
    }
    if (!token.scopes.includes("read")) {
      request.log.warn({ remote: request.ip, token: token.name }, "console login refused: no read scope");
      throw new RequestError(403, `token ${token.name} lacks the read scope the console needs`);
    }
    const { id, session } = sessions.create(token, tokenHash);
    await data.repo.touchToken(tokenHash, new Date().toISOString());
    request.log.info(
      { token: token.name, scopes: session.scopes, expiresAt: new Date(session.expiresAt).toISOString() },
      "console session opened",
    );
    return reply
      .header("cache-control", "no-store")
      .setCookie(SESSION_COOKIE, id, cookieOptions(session.expiresAt))
      .code(201)
      .send(sessionView(session));
  });

  app.get(CONSOLE_ROUTES.session, { config: { access: access.operator("read") } }, async (request, reply) => {
    const session = request.consoleSession;
    if (!session) throw new RequestError(400, "no console session: this request came with a bearer token");
    return reply.header("cache-control", "no-store").send(sessionView(session));
  });

  app.delete(
    CONSOLE_ROUTES.session,
    { config: { access: access.operator("read") } },
    async (request, reply) => {
      const cookie = request.cookies[SESSION_COOKIE];
      if (cookie !== undefined) sessions.delete(cookie);
      request.log.info({ token: request.operator?.name }, "console session closed");
      return reply
        .clearCookie(SESSION_COOKIE, { path: "/", secure: true, httpOnly: true, sameSite: "strict" })
        .code(204)
        .send();
    },
  );

  const streams = new Set<() => void>();
  const streamsPerToken = new Map<string, number>();
  app.addHook("onClose", async () => {
    for (const stop of streams) stop();
  });

  app.get(CONSOLE_ROUTES.events, { config: { access: access.operator("read") } }, async (request, reply) => {
    const session = request.consoleSession;
    // A stream for the console's pages; scripts poll GET /v1/devices with their token.
    if (!session) throw new RequestError(400, "the event stream is for console sessions (log in at /)");
    const cookie = request.cookies[SESSION_COOKIE];
    const tokenHash = request.operator!.tokenHash;
    const open = streamsPerToken.get(tokenHash) ?? 0;
    if (open >= MAX_STREAMS_PER_TOKEN) {
      throw new RequestError(
        429,
        `token ${request.operator!.name} already holds ${open} event streams (at most ${MAX_STREAMS_PER_TOKEN})`,
      );
    }
    // The stream outlives the request that authenticated it: re-check what the hook checked.
    const stillAllowed = async () => {
      const token = await data.repo.findTokenByHash(tokenHash);
      if (!token || isExpired(token) || !token.scopes.includes("read")) return false;
      return cookie !== undefined && sessions.get(cookie) === session;
    };
    const summary = async (name: string) => {
      const device = await data.repo.getDevice(name);
      return device ? deviceSummary(device, app.notifications.isOnline(name)) : undefined;
    };
    const snapshot = async (): Promise<ConsoleEvent> => ({
      type: "devices",
      devices: (await data.repo.listDevices()).map((d) =>
        deviceSummary(d, app.notifications.isOnline(d.name)),
      ),
    });
    /** A timer's step; a database error ends the stream (the console reconnects). */
    const step = (fn: () => Promise<void>) => () => {
      fn().catch((err: unknown) => {
        request.log.error({ err, token: request.operator?.name }, "console event stream failed; closing it");
        stop();
      });
    };

    streamsPerToken.set(tokenHash, open + 1);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      // no proxy buffering between the controller and the browser
      "x-accel-buffering": "no",
    });
    const send = (event: ConsoleEvent) => {
      // A client that does not read is not buffered for without bound: its stream ends.
      if (res.writableLength > MAX_UNSENT_BYTES) return stop();
      res.write(`data: ${JSON.stringify(event)}\n\n`);
    };
    let closed = false;
    const stop = () => {
      if (closed) return;
      closed = true;
      const left = (streamsPerToken.get(tokenHash) ?? 1) - 1;
      if (left > 0) streamsPerToken.set(tokenHash, left);
      else streamsPerToken.delete(tokenHash);
      clearInterval(timer);
      clearInterval(flusher);
      unsubscribe();
      res.end();
    };
    // Reports are coalesced: each device at most once per FLUSH_MS, however often it reports.
    const pending = new Set<string>();
    const unsubscribe = app.notifications.subscribe((name) => pending.add(name));
    const flusher = setInterval(
      step(async () => {
        if (pending.size === 0) return;
        if (!(await stillAllowed())) return stop();
        const names = [...pending];
        pending.clear();
        for (const name of names) {
          const device = await summary(name);
          if (device && !closed) send({ type: "device", device });
        }
      }),
      FLUSH_MS,
    );
    flusher.unref();
    const timer = setInterval(
      step(async () => {
        if (!(await stillAllowed())) return stop();
        const event = await snapshot();
        if (!closed) send(event);
      }),
      SNAPSHOT_MS,
    );
    timer.unref();
    streams.add(stop);
    request.raw.on("close", () => {
      streams.delete(stop);
      stop();
    });
    send(await snapshot());
  });
}
