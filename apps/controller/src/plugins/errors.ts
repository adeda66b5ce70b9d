import type { Socket } from "node:net";
import { describeZodError, Name } from "@galette/protocol";
import type { FastifyInstance, FastifyReply } from "fastify";
import fp from "fastify-plugin";
import type { z } from "zod";
import { RequestError } from "../control";
import { DatabaseUnavailable } from "../storage/repository";

/** Validates `value` with a protocol schema; a mismatch is a 400 naming the first bad key. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const details = describeZodError(result.error);
    throw new RequestError(400, `invalid ${what}: ${details[0]}`, details);
  }
  return result.data;
}

/**
 * Fastify's `frameworkErrors`: a URL the router cannot even decode is refused like an
 * unmatched one, without echoing it back.
 */
export function frameworkErrors(_error: Error, _request: unknown, reply: FastifyReply): void {
  reply.code(400).send({ error: "bad request" });
}

const BAD_REQUEST_BODY = JSON.stringify({ error: "bad request" });
const TIMEOUT_BODY = JSON.stringify({ error: "request timeout" });

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refuses gets the same
 * detail-free 400, one too slow to arrive a 408 (or nothing, when the socket is already
 * unusable).
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const [status, body] =
    error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? ["408 Request Timeout", TIMEOUT_BODY]
      : ["400 Bad Request", BAD_REQUEST_BODY];
  socket.end(
    `HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Error replies. A 4xx names the problem for the caller. A 5xx says only "internal error"
 * and the request id (also in every reply's x-request-id header): the cause, with paths
 * and stack, goes to the log under that id, never to the client.
 */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook("onRequest", async (request, reply) => {
      reply.header("x-request-id", request.id);
    });

    app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: "not found" }));

    app.setErrorHandler(
      (error: Error & { statusCode?: number; code?: string; details?: string[] }, request, reply) => {
        if (error instanceof RequestError) {
          return reply
            .code(error.statusCode)
            .send({ error: error.message, ...(error.details ? { details: error.details } : {}) });
        }
        if (error instanceof DatabaseUnavailable) {
          // the storage layer logged the database's error
          request.log.warn(
            { reason: error.message, url: request.url, reqId: request.id },
            "database unavailable: 503",
          );
          return reply.code(503).header("retry-after", String(error.retryAfterSeconds)).send({
            error: "the controller's database is unavailable for now; retry",
            requestId: request.id,
          });
        }
        if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
          return reply.code(413).send({
            error: `request body is larger than the limit of ${request.routeOptions.bodyLimit} bytes`,
          });
        }
        if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
          return reply.code(error.statusCode).send({ error: error.message });
        }
        request.log.error({ err: error, url: request.url, reqId: request.id }, "request failed");
        return reply.code(500).send({ error: "internal error", requestId: request.id });
      },
    );

    // Names in URLs are validated once here rather than per route.
    app.addHook("preHandler", async (request) => {
      const params = request.params as Record<string, string> | undefined;
      for (const key of ["name", "chain"] as const) {
        const value = params?.[key];
        if (value !== undefined) parse(Name, value, `${key} in URL`);
      }
    });
  },
  { name: "galette-errors" },
);
