/**
 * Packet traces on devices (`galette trace --device NAME`). The operator's request (scope
 * `trace`: traces carry packet contents) opens a session and reaches the device over its
 * notification ws; the agent runs the trace on its installation and uploads the frames
 * over its mTLS device API (only to its own session); the operator's response streams
 * them as NDJSON (TraceStreamLine) until the count, the timeout or the device ends it.
 * Sessions live in this controller: the device must hold its ws with this replica.
 */
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { Name, TraceId, TraceRequest, type TraceStreamLine, TraceUpload } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { RequestError } from "../control";
import { access, deviceOf } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { BODY_LIMITS } from "../plugins/limits";

interface Session {
  device: string;
  out: PassThrough;
  count: number;
  sent: number;
  timer: NodeJS.Timeout;
  end(reason: string): void;
}

/** Frames a session may receive beyond its count (the device stops at count; a margin for batching). */
const GRACE_S = 5;

export async function traceRoutes(app: FastifyInstance): Promise<void> {
  const sessions = new Map<string, Session>();
  app.addHook("onClose", async () => {
    for (const s of sessions.values()) s.end("controller stopping");
  });

  app.post<{ Params: { name: string } }>(
    "/v1/devices/:name/trace",
    { config: { access: access.operator("trace") } },
    async (request, reply) => {
      const name = parse(Name, request.params.name, "device name");
      const body = parse(TraceRequest, request.body ?? {}, "trace request");
      const device = await app.galette.data.repo.getDevice(name);
      if (!device) throw new RequestError(404, `device ${name} is not enrolled`);
      if (device.revokedAt) throw new RequestError(409, `device ${name} is revoked`);
      if (!app.notifications.isOnline(name))
        throw new RequestError(
          409,
          `device ${name} is not connected to this controller (its notification channel is closed or held by another replica)`,
        );
      for (const s of sessions.values())
        if (s.device === name) throw new RequestError(409, `a trace is already running on device ${name}`);
      const id = randomBytes(16).toString("hex");
      const out = new PassThrough();
      const write = (line: TraceStreamLine) => out.write(`${JSON.stringify(line)}\n`);
      const session: Session = {
        device: name,
        out,
        count: body.count,
        sent: 0,
        timer: setTimeout(() => session.end("timed out"), (body.timeoutSeconds + GRACE_S) * 1000),
        end(reason) {
          if (!sessions.delete(id)) return;
          clearTimeout(session.timer);
          write({ type: "end", frames: session.sent, reason });
          out.end();
        },
      };
      sessions.set(id, session);
      // the operator went away: stop waiting (the device stops by its own count/timeout)
      request.raw.on("close", () => {
        if (sessions.has(id)) session.end("client closed");
      });
      if (!app.notifications.send(name, { type: "trace", id, request: body })) {
        session.end("device disconnected");
        throw new RequestError(409, `device ${name} disconnected`);
      }
      request.log.info({ device: name, trace: id, filter: body.filter, count: body.count }, "trace started");
      return reply
        .header("content-type", "application/x-ndjson")
        .header("cache-control", "no-cache")
        .send(out);
    },
  );

  app.post<{ Params: { id: string } }>(
    "/v1/device/traces/:id",
    { config: { access: access.device }, bodyLimit: BODY_LIMITS.statusReport * 4 },
    async (request) => {
      const self = deviceOf(request);
      const id = parse(TraceId, request.params.id, "trace id");
      const session = sessions.get(id);
      // another device's session looks exactly like none: ids are not an oracle
      if (!session || session.device !== self.name)
        throw new RequestError(404, `no trace ${id} for this device`);
      const upload = parse(TraceUpload, request.body, "trace upload");
      for (const frame of upload.frames) {
        if (session.sent >= session.count) break;
        session.out.write(`${JSON.stringify({ type: "frame", frame } satisfies TraceStreamLine)}\n`);
        session.sent++;
      }
      if (upload.error) {
        session.out.write(
          `${JSON.stringify({ type: "error", error: upload.error } satisfies TraceStreamLine)}\n`,
        );
        session.end("failed on the device");
      } else if (upload.done || session.sent >= session.count)
        session.end(session.sent >= session.count ? "count reached" : "ended on the device");
      return { ok: true, more: sessions.has(id) };
    },
  );
}
