import { randomUUID } from "node:crypto";
import { createLogger } from "@galette/log";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { AssignmentCache } from "./assignment-cache";
import type { DataDir as DataDirType } from "./control";
import { DataDir } from "./control";
import { watchConnectionCapacity } from "./file-limit";
import { DEFAULT_MAX_NF_ARCHIVE_BYTES, type NfBuilder } from "./nf-publish";
import { auditPlugin } from "./plugins/audit";
import { authPlugin, type RouteAccess } from "./plugins/auth";
import { clientErrorHandler, errorsPlugin, frameworkErrors } from "./plugins/errors";
import { BODY_LIMITS, limitsPlugin, type RateLimits } from "./plugins/limits";
import { metricsOnlyRoutes, metricsPlugin, metricsRoutes } from "./plugins/metrics";
import { notificationsPlugin } from "./plugins/notifications";
import { RequestLogController, requestLogPlugin } from "./plugins/request-log";
import { assignmentsRoutes } from "./routes/assignments";
import { auditRoutes } from "./routes/audit";
import { chainsRoutes } from "./routes/chains";
import { consoleRoutes } from "./routes/console";
import { deviceRoutes } from "./routes/device";
import { devicesRoutes } from "./routes/devices";
import { healthRoutes } from "./routes/health";
import { mapsRoutes } from "./routes/maps";
import { nfsRoutes } from "./routes/nfs";
import { releasesRoutes } from "./routes/releases";
import { rolloutsRoutes } from "./routes/rollouts";
import { tokensRoutes } from "./routes/tokens";
import { traceRoutes } from "./routes/trace";
import { TLS_SESSION_CONTEXT, TLS_SESSION_LIFETIME_S, tlsTicketKeys } from "./tls-session";

export type { RouteAccess } from "./plugins/auth";

export interface ControllerOptions {
  /** PKI (and, without `database`, the SQLite database and artifacts) */
  dataDir: string;
  /** a postgres:// URL: state and artifacts shared with every replica using the same database */
  database?: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 8443; 0 picks a free port */
  port?: number;
  /** the URL written into device bundles; default https://HOST:PORT as listened */
  publicUrl?: string;
  /**
   * every replica's device API URL (publicUrl first), written into bundles so agents can
   * move to another replica when theirs is gone
   */
  replicaUrls?: string[];
  logger?: FastifyBaseLogger;
  nfBuilder?: NfBuilder;
  maxNfArchiveBytes?: number;
  /** how often open ws connections are re-checked against revocation and certificate expiry (ms) */
  revocationSweepMs?: number;
  /** also serve GET /metrics WITHOUT a token, plain HTTP, on this address (port 0 picks one) */
  metricsListen?: { host: string; port: number };
  rateLimits?: RateLimits;
  /** how long a client may take to send a whole request (ms); default 60 s */
  requestTimeoutMs?: number;
  /** the web console's built files (default: apps/console/dist, found beside this app or the bundle) */
  consoleDir?: string;
}

export interface RunningController {
  url: string;
  port: number;
  data: DataDir;
  /** every route with its declared access */
  routes: RouteAccess[];
  /** the separate metrics listener, when metricsListen was given */
  metricsUrl?: string;
  close(): Promise<void>;
}

/** What routes get from the server, beside the plugins' decorations. */
export interface GaletteContext {
  data: DataDirType;
  nfBuilder?: NfBuilder;
  maxNfArchiveBytes: number;
  /** the device API URL written into bundles */
  publicUrl(): string;
  /** every replica's device API URL for bundles (empty: just publicUrl) */
  replicaUrls: readonly string[];
  /** device assignments built once per chain version and triple (assignment-cache.ts) */
  assignments: AssignmentCache;
}

declare module "fastify" {
  interface FastifyInstance {
    galette: GaletteContext;
  }
}

/**
 * Connections the kernel queues for accept(). A restarted controller is met by its whole
 * fleet reconnecting at once while it is still busy starting; with Node's default (511)
 * the queue overflows, the kernel drops SYNs and those devices wait out TCP's 1 s, 3 s, …
 * retransmission timers. The kernel caps this at net.core.somaxconn.
 */
export const LISTEN_BACKLOG = 4096;

/** TLS of the one listener. Everything about certificates the server trusts is here. */
function tlsOptions(data: DataDirType) {
  return {
    key: data.pki.server.keyPem,
    cert: data.pki.server.certPem,
    // root + every accepted issuing CA; client certificates chain leaf → issuer → root
    ca: data.pki.clientCaPems,
    // Ask every client for a certificate but let operators (bearer tokens, no certificate)
    // through the handshake: the auth plugin then requires a verified one on device routes.
    requestCert: true,
    rejectUnauthorized: false,
    // Galette's own parts (agent, CLI) all speak TLS 1.3.
    minVersion: "TLSv1.3" as const,
    // Sessions resume, also across a restart (tls-session.ts says why that is safe).
    ticketKeys: tlsTicketKeys(data.pki),
    sessionTimeout: TLS_SESSION_LIFETIME_S,
    sessionIdContext: TLS_SESSION_CONTEXT,
  };
}

/**
 * The controller's Fastify app, not yet listening: plugins (errors, auth, audit, limits,
 * metrics, notifications), then one module per route group. A route added here must
 * declare its access (see plugins/auth.ts) or ready() fails.
 */
export async function buildController(
  data: DataDirType,
  options: Omit<ControllerOptions, "dataDir" | "host" | "port">,
  publicUrl: () => string,
): Promise<FastifyInstance> {
  const requestTimeout = options.requestTimeoutMs ?? 60_000;
  // device requests at debug, with a summary a minute at info (plugins/request-log.ts)
  const requestLog = new RequestLogController();
  const app = Fastify({
    loggerInstance: options.logger ?? createLogger("galette-controller"),
    logController: requestLog,
    // A stuck client (e.g. a half-read response) must not keep close() waiting forever.
    forceCloseConnections: true,
    // A client has this long to send its whole request (headers and body): a slow sender
    // cannot hold a connection open for ever (408). Websockets are not affected once upgraded.
    requestTimeout,
    bodyLimit: BODY_LIMITS.default,
    genReqId: () => randomUUID(),
    frameworkErrors,
    clientErrorHandler,
    https: {
      ...tlsOptions(data),
      headersTimeout: requestTimeout,
      // How often Node looks for connections past those timeouts (its default is 30 s).
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, requestTimeout / 4)),
    },
  });
  // JSON only, except the NF upload routes (routes/nfs.ts adds its archive parser).
  app.removeContentTypeParser("text/plain");
  app.decorate("galette", {
    data,
    ...(options.nfBuilder ? { nfBuilder: options.nfBuilder } : {}),
    maxNfArchiveBytes: options.maxNfArchiveBytes ?? DEFAULT_MAX_NF_ARCHIVE_BYTES,
    publicUrl,
    replicaUrls: options.replicaUrls ?? [],
    assignments: new AssignmentCache(data.repo, data.artifacts),
  } satisfies GaletteContext);
  app.addHook("onClose", async () => app.galette.assignments.close());

  await app.register(errorsPlugin);
  await app.register(requestLogPlugin, { controller: requestLog });
  await app.register(authPlugin, { data });
  await app.register(auditPlugin, { data });
  await app.register(limitsPlugin, options.rateLimits ?? {});
  await app.register(metricsPlugin);
  await app.register(notificationsPlugin, { data, sweepMs: options.revocationSweepMs ?? 2000 });

  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  await app.register(deviceRoutes);
  await app.register(devicesRoutes);
  await app.register(tokensRoutes);
  await app.register(auditRoutes);
  await app.register(chainsRoutes);
  await app.register(assignmentsRoutes);
  await app.register(mapsRoutes);
  await app.register(nfsRoutes);
  await app.register(releasesRoutes);
  await app.register(rolloutsRoutes);
  await app.register(traceRoutes);
  await app.register(consoleRoutes, options.consoleDir ? { distDir: options.consoleDir } : {});
  return app;
}

/** The separate, token-less metrics listener (plain HTTP: bind it to loopback or a management network). */
async function startMetricsListener(
  controller: FastifyInstance,
  listen: { host: string; port: number },
): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({
    loggerInstance: controller.log,
    genReqId: () => randomUUID(),
    frameworkErrors,
    clientErrorHandler,
  });
  await app.register(errorsPlugin);
  await app.register(authPlugin, { data: controller.galette.data });
  await app.register(metricsOnlyRoutes(controller.metrics.registry));
  await app.listen(listen);
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : listen.port;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return { app, url: `http://${host}:${port}` };
}

/**
 * Starts the controller: one HTTPS listener for both APIs (device API over mTLS, operator
 * API with bearer tokens), authentication bound to each matched route (plugins/auth.ts).
 */
export async function startController(options: ControllerOptions): Promise<RunningController> {
  const data = await DataDir.connect(options.dataDir, options.database ? { database: options.database } : {});
  const host = options.host ?? "127.0.0.1";
  let publicUrl = options.publicUrl ?? "";
  let app: FastifyInstance | undefined;
  let metrics: { app: FastifyInstance; url: string } | undefined;
  try {
    app = await buildController(data, options, () => publicUrl);
    watchConnectionCapacity(app.server, app.log);
    await app.listen({ host, port: options.port ?? 8443, backlog: LISTEN_BACKLOG });
    if (options.metricsListen) metrics = await startMetricsListener(app, options.metricsListen);
  } catch (err) {
    await metrics?.app.close();
    await app?.close();
    await data.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 8443);
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `https://${urlHost}:${port}`;
  if (!publicUrl) publicUrl = url;
  app.log.info(
    { url, dataDir: data.dir, database: data.repo.dialect, ...(metrics ? { metricsUrl: metrics.url } : {}) },
    "controller listening",
  );
  const rootKey = data.rootKeyLeftBehind;
  if (rootKey) {
    app.log.warn(
      { file: rootKey },
      "the root CA key is in the data directory: the controller never reads it; move it offline (pki rotate-issuer and pki renew-server take it with --root-key)",
    );
  }

  const running = app;
  return {
    url,
    port,
    data,
    routes: [...app.routeAccess],
    ...(metrics ? { metricsUrl: metrics.url } : {}),
    async close() {
      await metrics?.app.close();
      await running.close();
      await data.close();
    },
  };
}
