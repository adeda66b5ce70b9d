import type { TLSSocket } from "node:tls";
import fastifyWebsocket from "@fastify/websocket";
import { createLogger } from "@galette/log";
import { isIssuedCertificate, normaliseSerial } from "@galette/pki";
import {
  AssignChainRequest,
  AssignmentQuery,
  CreateTokenRequest,
  DEVICE_ROUTES,
  type DeviceNotification,
  DeviceStatusReport,
  type DeviceSummary,
  describeZodError,
  EnrollDeviceRequest,
  type MapEntry,
  Name,
  OPERATOR_ROUTES,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  PublishNfQuery,
  PushChainRequest,
  RemoveAssignmentRequest,
  type RemoveAssignmentResponse,
  SetMapEntriesRequest,
  Sha256Digest,
} from "@galette/protocol";
import Fastify, { type FastifyBaseLogger, type FastifyRequest } from "fastify";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { WebSocket } from "ws";
import { z } from "zod";
import { planChainForPush } from "./chains";
import {
  artifactsAllowedFor,
  assignmentEtag,
  buildAssignment,
  DataDir,
  deviceSummary,
  deviceTriple,
  hashToken,
  RequestError,
} from "./control";
import { DEFAULT_MAX_NF_ARCHIVE_BYTES, type NfBuilder, publishNf } from "./nf-publish";
import type { DeviceRecord } from "./storage/repository";

export interface ControllerOptions {
  dataDir: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 8443; 0 picks a free port */
  port?: number;
  /** the URL written into device bundles; default https://HOST:PORT as listened */
  publicUrl?: string;
  logger?: FastifyBaseLogger;
  nfBuilder?: NfBuilder;
  maxNfArchiveBytes?: number;
  /** how often open ws connections are re-checked against revocation (ms) */
  revocationSweepMs?: number;
}

export interface RunningController {
  url: string;
  port: number;
  data: DataDir;
  close(): Promise<void>;
}

declare module "fastify" {
  interface FastifyRequest {
    device: DeviceRecord | null;
    operator: string | null;
  }
}

const ChainVersionQuery = z.object({ version: z.coerce.number().int().positive().optional() });

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const details = describeZodError(result.error);
    throw new RequestError(400, `invalid ${what}: ${details[0]}`, details);
  }
  return result.data;
}

/**
 * Starts the controller: one HTTPS listener for both APIs. TLS asks every client for a
 * certificate (requestCert) but does not reject the handshake without one
 * (rejectUnauthorized: false), because operators authenticate with bearer tokens on the
 * same port. Every /v1/device/ request then requires `socket.authorized` (chain verified
 * against our CA, within validity) AND a certificate whose CN and serial match an enrolled,
 * unrevoked device in the database — read per request, so revocation is immediate.
 */
export async function startController(options: ControllerOptions): Promise<RunningController> {
  const data = DataDir.open(options.dataDir);
  const logger = options.logger ?? createLogger("galette-controller");
  const maxArchive = options.maxNfArchiveBytes ?? DEFAULT_MAX_NF_ARCHIVE_BYTES;
  const host = options.host ?? "127.0.0.1";

  const app = Fastify({
    loggerInstance: logger,
    // A stuck client (e.g. a half-read response) must not keep close() waiting forever.
    forceCloseConnections: true,
    bodyLimit: 2 * 1024 * 1024,
    https: {
      key: data.pki.server.keyPem,
      cert: data.pki.server.certPem,
      // root + every accepted issuing CA; client certificates chain leaf → issuer → root
      ca: data.pki.clientCaPems,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
    },
  });
  app.decorateRequest("device", null);
  app.decorateRequest("operator", null);

  // ---- metrics ----
  const registry = new Registry();
  const requests = new Counter({
    name: "galette_http_requests_total",
    help: "HTTP requests handled, by route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const sockets = new Map<string, Set<WebSocket>>();
  new Gauge({
    name: "galette_devices_online",
    help: "Devices holding a notification connection",
    registers: [registry],
    collect() {
      this.set([...sockets.values()].filter((set) => set.size > 0).length);
    },
  });
  const convergence = new Histogram({
    name: "galette_push_to_converged_seconds",
    help: "From a push/assign that changed a device's chain to the device reporting it installed",
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  /** device → the version it was told to converge to, and when */
  const pendingConvergence = new Map<string, { chain: string; version: number; since: number }>();

  // ---- authentication ----
  const refuseDevice = (request: FastifyRequest, status: 401 | 403, reason: string, extra: object = {}) => {
    request.log.warn({ url: request.url, remote: request.ip, reason, ...extra }, "device request refused");
    throw new RequestError(status, reason);
  };

  const authenticateDevice = (request: FastifyRequest): DeviceRecord => {
    const socket = request.raw.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
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
    const device = data.repo.getDevice(cn);
    if (data.repo.isSerialRevoked(serial)) {
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

  const authenticateOperator = (request: FastifyRequest): string => {
    const header = request.headers.authorization;
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
    if (!match) {
      request.log.warn({ url: request.url, remote: request.ip }, "operator request without bearer token");
      throw new RequestError(401, "missing bearer token (Authorization: Bearer <token>)");
    }
    const token = data.repo.findTokenByHash(hashToken(match[1]!));
    if (!token) {
      request.log.warn({ url: request.url, remote: request.ip }, "operator request with unknown token");
      throw new RequestError(401, "invalid bearer token");
    }
    return token.name;
  };

  app.addHook("onRequest", async (request) => {
    const path = request.url.split("?")[0]!;
    if (path.startsWith("/v1/device/")) {
      request.device = authenticateDevice(request);
      const spoken = request.headers[PROTOCOL_VERSION_HEADER];
      if (spoken !== undefined && spoken !== String(PROTOCOL_VERSION)) {
        throw new RequestError(
          400,
          `agent speaks protocol ${String(spoken)}, this controller speaks ${PROTOCOL_VERSION}: upgrade the older side`,
        );
      }
      data.repo.touchDevice(request.device.name, new Date().toISOString());
    } else if (path.startsWith("/v1/")) {
      request.operator = authenticateOperator(request);
    }
  });

  app.addHook("onResponse", async (request, reply) => {
    requests.inc({
      method: request.method,
      route: request.routeOptions.url ?? "unmatched",
      status: reply.statusCode,
    });
  });

  app.setErrorHandler(
    (error: Error & { statusCode?: number; code?: string; details?: string[] }, request, reply) => {
      if (error instanceof RequestError) {
        return reply
          .code(error.statusCode)
          .send({ error: error.message, ...(error.details ? { details: error.details } : {}) });
      }
      if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
        const limit = request.url.startsWith("/v1/nfs") ? maxArchive : 2 * 1024 * 1024;
        return reply.code(413).send({ error: `request body is larger than the limit of ${limit} bytes` });
      }
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        return reply.code(error.statusCode).send({ error: error.message });
      }
      request.log.error({ err: error, url: request.url }, "request failed");
      return reply.code(500).send({ error: `internal error: ${error.message}` });
    },
  );

  await app.register(fastifyWebsocket, { options: { maxPayload: 64 * 1024 } });

  // ---- notifications ----
  const notify = (device: DeviceRecord, reason: string) => {
    const set = sockets.get(device.name);
    if (!set || set.size === 0) return;
    const assignment = buildAssignment(data.repo, device, deviceTriple(device));
    const message: DeviceNotification = { type: "assignment-changed", etag: assignmentEtag(assignment) };
    for (const socket of set) socket.send(JSON.stringify(message));
    logger.debug({ device: device.name, reason }, "notified device");
  };

  /** After a push/assign/map change: tell each device and remember what it should converge to. */
  const assignmentChanged = (names: string[], reason: string) => {
    const now = Date.now();
    for (const name of names) {
      const device = data.repo.getDevice(name);
      if (!device || device.revokedAt) continue;
      pendingConvergence.delete(name);
      // A device left without a chain is told too, so it stops running the old one.
      const chain = device.assignedChain
        ? data.repo.getChainVersion(device.assignedChain, device.assignedVersion ?? undefined)
        : undefined;
      if (chain) pendingConvergence.set(name, { chain: chain.name, version: chain.version, since: now });
      notify(device, reason);
    }
  };

  // A revoked device's open ws must not outlive the revocation, also when it was revoked by another process.
  const revocationSweep = setInterval(() => {
    for (const [name, set] of sockets) {
      if (set.size === 0) continue;
      const device = data.repo.getDevice(name);
      const serials = [...set].map((s) => (s as WebSocket & { galetteSerial?: string }).galetteSerial);
      const revoked = !device || device.revokedAt !== null || serials.some((s) => s !== device.serial);
      if (!revoked) continue;
      logger.warn({ device: name }, "closing notification connection of a revoked device");
      for (const socket of set) socket.close(4403, "revoked");
    }
  }, options.revocationSweepMs ?? 2000);
  revocationSweep.unref();

  // ---- device API ----
  app.get(DEVICE_ROUTES.assignment, async (request, reply) => {
    const device = request.device!;
    const query = parse(AssignmentQuery, request.query, "query");
    const triple = deviceTriple(device, query.arch);
    const assignment = buildAssignment(data.repo, device, triple);
    const etag = assignmentEtag(assignment);
    reply.header("etag", etag).header("cache-control", "no-cache");
    const ifNoneMatch = request.headers["if-none-match"];
    if (ifNoneMatch?.split(",").some((tag) => tag.trim() === etag)) {
      return reply.code(304).send();
    }
    return assignment;
  });

  app.get<{ Params: { digest: string } }>(`${"/v1/device/artifacts"}/:digest`, async (request, reply) => {
    const device = request.device!;
    const digest = parse(Sha256Digest, request.params.digest, "artifact digest");
    if (!artifactsAllowedFor(data.repo, device).has(digest)) {
      request.log.warn({ device: device.name, digest }, "artifact not in the device's assignment");
      throw new RequestError(403, `artifact ${digest} is not part of device ${device.name}'s assignment`);
    }
    if (!data.artifacts.has(digest))
      throw new RequestError(404, `artifact ${digest} is missing from the store`);
    reply
      .header("content-type", "application/octet-stream")
      .header("content-length", data.artifacts.size(digest))
      .header("x-galette-digest", digest);
    return reply.send(data.artifacts.open(digest));
  });

  app.post(DEVICE_ROUTES.status, async (request, reply) => {
    const device = request.device!;
    const status = parse(DeviceStatusReport, request.body, "status report");
    if (status.protocolVersion !== PROTOCOL_VERSION) {
      throw new RequestError(
        400,
        `protocol version ${status.protocolVersion} is not supported (controller speaks ${PROTOCOL_VERSION})`,
      );
    }
    data.repo.saveDeviceStatus(device.name, status, new Date().toISOString());
    const pending = pendingConvergence.get(device.name);
    if (
      pending &&
      status.installed?.chain === pending.chain &&
      status.installed.version === pending.version
    ) {
      convergence.observe((Date.now() - pending.since) / 1000);
      pendingConvergence.delete(device.name);
    }
    return reply.code(204).send();
  });

  app.get(DEVICE_ROUTES.notifications, { websocket: true }, (socket, request) => {
    const device = request.device!;
    (socket as WebSocket & { galetteSerial?: string }).galetteSerial = device.serial;
    let set = sockets.get(device.name);
    if (!set) {
      set = new Set();
      sockets.set(device.name, set);
    }
    set.add(socket);
    socket.on("close", () => set.delete(socket));
    const hello: DeviceNotification = {
      type: "hello",
      protocolVersion: PROTOCOL_VERSION,
      device: device.name,
    };
    socket.send(JSON.stringify(hello));
  });

  // ---- operator API ----
  const summary = (device: DeviceRecord): DeviceSummary =>
    deviceSummary(device, (sockets.get(device.name)?.size ?? 0) > 0);

  let publicUrl = options.publicUrl ?? "";

  app.get("/v1/devices", async () => ({ devices: data.repo.listDevices().map(summary) }));

  app.get<{ Params: { name: string } }>("/v1/devices/:name", async (request) => {
    const device = data.repo.getDevice(request.params.name);
    if (!device) throw new RequestError(404, `device ${request.params.name} is not enrolled`);
    return summary(device);
  });

  app.post("/v1/devices", async (request, reply) => {
    const body = parse(EnrollDeviceRequest, request.body, "enrol request");
    const bundle = data.enrolDevice(body.name, body.labels, publicUrl, body.validityDays);
    const enrolled = data.repo.getDevice(body.name);
    request.log.info(
      {
        device: body.name,
        serial: bundle.serial,
        operator: request.operator,
        assignedBy: enrolled?.assignedBy ?? null,
      },
      "device enrolled",
    );
    // A matching selector rule gives it a chain at once (its first poll picks it up).
    assignmentChanged([body.name], "enrol");
    return reply.code(201).send(bundle);
  });

  app.post<{ Params: { name: string } }>("/v1/devices/:name/revoke", async (request) => {
    const revoked = data.revokeDevice(request.params.name);
    request.log.info(
      { device: revoked.name, serial: revoked.serial, operator: request.operator },
      "device revoked",
    );
    for (const socket of sockets.get(revoked.name) ?? []) socket.close(4403, "revoked");
    return { name: revoked.name, serial: revoked.serial, revokedAt: revoked.revokedAt! };
  });

  app.post("/v1/tokens", async (request, reply) => {
    const body = parse(CreateTokenRequest, request.body, "token request");
    const created = data.createToken(body.name);
    request.log.info({ token: body.name, operator: request.operator }, "token created");
    return reply.code(201).send(created);
  });

  app.post<{ Params: { name: string } }>("/v1/tokens/:name/revoke", async (request) => {
    const revoked = data.revokeTokens(request.params.name);
    request.log.info(
      { token: revoked.name, count: revoked.revoked, operator: request.operator },
      "token revoked",
    );
    return revoked;
  });

  app.get("/v1/chains", async () => ({ chains: data.repo.listChains() }));

  app.get<{ Params: { name: string }; Querystring: { version?: string } }>(
    "/v1/chains/:name",
    async (request) => {
      const { version } = parse(ChainVersionQuery, request.query, "query");
      const chain = data.repo.getChainVersion(request.params.name, version);
      if (!chain) {
        throw new RequestError(
          404,
          `chain ${request.params.name}${version ? ` version ${version}` : ""} does not exist`,
        );
      }
      return chain;
    },
  );

  app.post("/v1/chains", async (request, reply) => {
    const body = parse(PushChainRequest, request.body, "push request");
    const planned = planChainForPush(data.repo, body.toml, body.file, body.name);
    const version = data.repo.insertChainVersion({
      name: planned.name,
      toml: body.toml,
      file: body.file,
      graph: planned.graph,
      warnings: planned.warnings,
      createdAt: new Date().toISOString(),
    });
    const following = data.repo
      .devicesAssignedTo(planned.name)
      .filter((d) => d.assignedVersion === null && !d.revokedAt)
      .map((d) => d.name);
    request.log.info({ chain: planned.name, version, operator: request.operator }, "chain pushed");
    assignmentChanged(following, "push");
    return reply.code(201).send({
      name: planned.name,
      version,
      warnings: planned.warnings,
      nfs: planned.graph.nfs.map((nf) => ({ instance: nf.instance, nf: nf.nf, uuid: nf.uuid })),
      notified: following,
    });
  });

  /** Each device's effective assignment as a comparable string, to find whom a rule change affects. */
  const effectiveAssignments = () =>
    new Map(
      data.repo
        .listDevices()
        .filter((d) => !d.revokedAt)
        .map((d) => [d.name, d.assignedChain ? `${d.assignedChain}@${d.assignedVersion ?? "latest"}` : ""]),
    );
  const changedSince = (before: Map<string, string>) =>
    [...effectiveAssignments()].filter(([name, now]) => before.get(name) !== now).map(([name]) => name);

  app.get(OPERATOR_ROUTES.assignmentRules, async () => ({ rules: data.repo.listSelectorRules() }));

  app.post(OPERATOR_ROUTES.assign, async (request) => {
    const body = parse(AssignChainRequest, request.body, "assign request");
    const chain = data.repo.getChainVersion(body.chain, body.version);
    if (!chain) {
      throw new RequestError(
        404,
        `chain ${body.chain}${body.version ? ` version ${body.version}` : ""} does not exist (push it first)`,
      );
    }
    const all = data.repo.listDevices();
    const explicit = new Set<string>();
    for (const name of body.devices ?? []) {
      const device = all.find((d) => d.name === name);
      if (!device) throw new RequestError(404, `device ${name} is not enrolled`);
      if (device.revokedAt) throw new RequestError(409, `device ${name} is revoked`);
      explicit.add(name);
    }
    const selector = body.selector ?? {};
    const before = effectiveAssignments();
    const version = body.version ?? null;
    const at = new Date().toISOString();
    // A selector is stored as a rule (devices enrolled later match it too), never copied
    // into per-device assignments, so a newer rule can still take over those devices.
    const rule = data.repo.transaction(() => {
      if (explicit.size > 0) data.repo.assignChain([...explicit], body.chain, version);
      return Object.keys(selector).length > 0
        ? data.repo.addSelectorRule(body.chain, version, selector, at)
        : undefined;
    });
    const after = data.repo.listDevices().filter((d) => !d.revokedAt);
    const assigned = after
      .filter(
        (d) =>
          explicit.has(d.name) ||
          (rule && d.assignedBy?.kind === "selector" && d.assignedBy.rule === rule.id),
      )
      .map((d) => d.name)
      .sort();
    const overridden = rule
      ? after
          .filter((d) => d.assignedBy?.kind === "explicit" && !explicit.has(d.name))
          .filter((d) => Object.entries(selector).every(([k, v]) => d.labels[k] === v))
          .map((d) => d.name)
          .sort()
      : [];
    request.log.info(
      { chain: body.chain, version: version ?? "latest", devices: assigned, rule: rule?.id, overridden },
      "chain assigned",
    );
    // Named devices are notified even when unchanged (as before: "assign again" re-pokes them).
    assignmentChanged([...new Set([...changedSince(before), ...explicit])], "assign");
    return {
      chain: body.chain,
      version,
      assigned,
      ...(rule ? { rule, overridden } : {}),
    };
  });

  app.delete(OPERATOR_ROUTES.assignmentRules, async (request): Promise<RemoveAssignmentResponse> => {
    const body = parse(RemoveAssignmentRequest, request.body, "unassign request");
    const selector = body.selector ?? {};
    for (const name of body.devices ?? []) {
      if (!data.repo.getDevice(name)) throw new RequestError(404, `device ${name} is not enrolled`);
    }
    const before = effectiveAssignments();
    const removedRules = data.repo.transaction(() => {
      data.repo.clearExplicitAssignment(body.devices ?? []);
      if (Object.keys(selector).length === 0) return [];
      const removed = data.repo.removeSelectorRule(selector);
      if (removed.length === 0) {
        // Throwing rolls back the cleared explicit assignments too: nothing changes on bad input.
        const shown = Object.entries(selector)
          .map(([k, v]) => `${k}=${v}`)
          .join(",");
        throw new RequestError(404, `no selector rule has exactly the selector ${shown}`);
      }
      return removed;
    });
    const changed = changedSince(before);
    request.log.info(
      { removedRules: removedRules.map((r) => r.id), cleared: body.devices ?? [], changed },
      "assignment removed",
    );
    assignmentChanged(changed, "unassign");
    return { removedRules, cleared: [...(body.devices ?? [])].sort(), changed };
  });

  const mapOf = (chainName: string, mapId: string) => {
    const chain = data.repo.getChainVersion(chainName);
    if (!chain) throw new RequestError(404, `chain ${chainName} does not exist`);
    const map = chain.graph.maps.find((m) => m.id === mapId);
    if (!map) {
      const known = chain.graph.maps.map((m) => m.id).join(", ") || "none";
      throw new RequestError(404, `chain ${chainName} has no map "${mapId}" (its maps: ${known})`);
    }
    return map;
  };

  app.get<{ Params: { chain: string; map: string } }>(
    "/v1/chains/:chain/maps/:map/entries",
    async (request) => {
      mapOf(request.params.chain, request.params.map);
      return {
        chain: request.params.chain,
        map: request.params.map,
        entries: data.repo.getMapEntries(request.params.chain, request.params.map),
      };
    },
  );

  app.put<{ Params: { chain: string; map: string } }>(
    "/v1/chains/:chain/maps/:map/entries",
    async (request) => {
      const { chain, map: mapId } = request.params;
      const map = mapOf(chain, mapId);
      const body = parse(SetMapEntriesRequest, request.body, "map entries request");
      const problems: string[] = [];
      body.set.forEach((entry: MapEntry, i: number) => {
        if (entry.key.length / 2 !== map.keySize)
          problems.push(
            `set.${i}.key: ${entry.key.length / 2} bytes, map "${mapId}" has ${map.keySize}-byte keys`,
          );
        if (entry.value.length / 2 !== map.valueSize)
          problems.push(
            `set.${i}.value: ${entry.value.length / 2} bytes, map "${mapId}" has ${map.valueSize}-byte values`,
          );
      });
      body.delete.forEach((key: string, i: number) => {
        if (key.length / 2 !== map.keySize)
          problems.push(`delete.${i}: ${key.length / 2} bytes, map "${mapId}" has ${map.keySize}-byte keys`);
      });
      if (problems.length > 0) throw new RequestError(400, `invalid map entries: ${problems[0]}`, problems);
      data.repo.setMapEntries(chain, mapId, body.set, body.delete, new Date().toISOString());
      assignmentChanged(
        data.repo.devicesAssignedTo(chain).map((d) => d.name),
        "map entries",
      );
      return { chain, map: mapId, entries: data.repo.getMapEntries(chain, mapId) };
    },
  );

  app.addContentTypeParser(
    ["application/x-tar", "application/gzip", "application/octet-stream"],
    { parseAs: "buffer", bodyLimit: maxArchive },
    (_request, body, done) => done(null, body),
  );

  app.post<{ Querystring: { name?: string } }>(
    "/v1/nfs",
    { bodyLimit: maxArchive },
    async (request, reply) => {
      const query = parse(PublishNfQuery, request.query, "query");
      if (!Buffer.isBuffer(request.body)) {
        throw new RequestError(415, "send the crate as a tar archive with Content-Type: application/x-tar");
      }
      const published = await publishNf(data, request.body, {
        ...(query.name ? { expectedName: query.name } : {}),
        ...(options.nfBuilder ? { builder: options.nfBuilder } : {}),
      });
      request.log.info(
        { nf: published.name, digest: published.sourceDigest, build: published.build },
        "NF published",
      );
      // Devices whose chain runs this NF get the new artifacts.
      const affected = data.repo
        .listDevices()
        .filter((d) => {
          if (!d.assignedChain) return false;
          const chain = data.repo.getChainVersion(d.assignedChain, d.assignedVersion ?? undefined);
          return chain?.graph.nfs.some((nf) => nf.nf === published.name) ?? false;
        })
        .map((d) => d.name);
      assignmentChanged(affected, "nf publish");
      return reply.code(201).send(published);
    },
  );

  // ---- health and metrics (unauthenticated: they reveal counts, not data) ----
  app.get("/healthz", async () => {
    data.repo.listChains();
    return { ok: true, protocolVersion: PROTOCOL_VERSION };
  });
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });

  // Names in URLs are validated once here rather than per route.
  app.addHook("preHandler", async (request) => {
    const params = request.params as Record<string, string> | undefined;
    for (const key of ["name", "chain"] as const) {
      const value = params?.[key];
      if (value !== undefined) parse(Name, value, `${key} in URL`);
    }
  });

  await app.listen({ host, port: options.port ?? 8443 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 8443);
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `https://${urlHost}:${port}`;
  if (!publicUrl) publicUrl = url;
  logger.info({ url, dataDir: data.dir }, "controller listening");

  return {
    url,
    port,
    data,
    async close() {
      clearInterval(revocationSweep);
      for (const set of sockets.values()) for (const socket of set) socket.terminate();
      await app.close();
      data.close();
    },
  };
}
