import {
  AssignmentQuery,
  DEVICE_ROUTES,
  type DeviceNotification,
  DeviceStatusReport,
  PROTOCOL_VERSION,
  Sha256Digest,
} from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { ArtifactCache } from "../artifact-cache";
import { RequestError } from "../control";
import { access, deviceOf } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { BODY_LIMITS } from "../plugins/limits";

/** If-None-Match names `etag` (a list, or `*`). */
function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  return ifNoneMatch?.split(",").some((tag) => tag.trim() === etag || tag.trim() === "*") ?? false;
}

/** The device API: mTLS, identity only from the certificate (no route names a device). */
export async function deviceRoutes(app: FastifyInstance): Promise<void> {
  const { data, assignments } = app.galette;
  // small artifacts from memory: after a push every device fetches the same few at once
  const artifacts = new ArtifactCache(data.artifacts);
  const device = { config: { access: access.device } };

  app.get(DEVICE_ROUTES.assignment, device, async (request, reply) => {
    const self = deviceOf(request);
    const query = parse(AssignmentQuery, request.query, "query");
    // A chain its capabilities refuse is not sent: the device keeps what it runs.
    const { body, etag } = await assignments.assignment(self, query.arch);
    reply.header("etag", etag).header("cache-control", "no-cache");
    if (etagMatches(request.headers["if-none-match"], etag)) return reply.code(304).send();
    // already serialised: the chain part is shared by every device that runs it
    return reply.type("application/json; charset=utf-8").send(body);
  });

  app.get<{ Params: { digest: string } }>("/v1/device/artifacts/:digest", device, async (request, reply) => {
    const self = deviceOf(request);
    const digest = parse(Sha256Digest, request.params.digest, "artifact digest");
    // Only what its assignment runs, never crate sources (artifactsAllowedFor leaves them out).
    if (!(await assignments.allowedArtifacts(self)).has(digest)) {
      request.log.warn({ device: self.name, digest }, "artifact not in the device's assignment");
      throw new RequestError(403, `artifact ${digest} is not part of device ${self.name}'s assignment`);
    }
    // Content-addressed: a digest's bytes never change, so any copy a client keeps is good for ever.
    const etag = `"${digest}"`;
    reply.header("etag", etag).header("cache-control", "private, max-age=31536000, immutable");
    if (etagMatches(request.headers["if-none-match"], etag)) return reply.code(304).send();
    const artifact = await artifacts.open(digest);
    if (!artifact) throw new RequestError(404, `artifact ${digest} is missing from the store`);
    reply
      .header("content-type", "application/octet-stream")
      .header("content-length", artifact.size)
      .header("x-galette-digest", digest);
    return reply.send("bytes" in artifact ? artifact.bytes : artifact.stream);
  });

  app.post(
    DEVICE_ROUTES.status,
    { ...device, bodyLimit: BODY_LIMITS.statusReport },
    async (request, reply) => {
      const self = deviceOf(request);
      const status = parse(DeviceStatusReport, request.body, "status report");
      if (status.protocolVersion !== PROTOCOL_VERSION) {
        throw new RequestError(
          400,
          `protocol version ${status.protocolVersion} is not supported (controller speaks ${PROTOCOL_VERSION})`,
        );
      }
      await data.repo.saveDeviceStatus(self.name, status, new Date().toISOString());
      app.notifications.reported(self.name, status);
      return reply.code(204).send();
    },
  );

  app.get(DEVICE_ROUTES.notifications, { ...device, websocket: true }, (socket, request) => {
    const self = deviceOf(request);
    app.notifications.attach(self, socket, request);
    const hello: DeviceNotification = { type: "hello", protocolVersion: PROTOCOL_VERSION, device: self.name };
    socket.send(JSON.stringify(hello));
  });
}
