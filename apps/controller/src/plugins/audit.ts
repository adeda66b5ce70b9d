import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { DataDir } from "../control";

declare module "fastify" {
  interface FastifyRequest {
    /** what a mutating call acted on, for the audit row; handlers set it when the URL does not name it */
    auditTarget: string | null;
    /** the audit row written before the handler ran */
    auditId: number | null;
  }
}

const READS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Status of a row whose call ran but was never answered (the client went away first). */
export const AUDIT_NO_RESPONSE = 0;

/**
 * Every mutating operator call, allowed or refused for lack of scope, becomes an audit
 * row: who (token name), what (method, route pattern, target), when, from where. The row
 * is written BEFORE the handler runs and completed with the status when the reply is
 * sent, so a call whose client disconnects mid-way is still on record (status 0). Calls
 * without a valid token are not operator calls; they are only logged.
 */
export const auditPlugin = fp(
  async (app: FastifyInstance, options: { data: DataDir }) => {
    const { repo } = options.data;
    app.decorateRequest("auditTarget", null);
    app.decorateRequest("auditId", null);

    const audited = (request: FastifyRequest) =>
      request.operator !== null && !READS.has(request.method) && !request.is404;
    /** What the call names: the handler's word, else the URL's names, else a name in the query or body. */
    const target = (request: FastifyRequest) => {
      if (request.auditTarget !== null) return request.auditTarget;
      const params = (request.params ?? {}) as Record<string, string>;
      const fromUrl = [params.name, params.chain, params.map].filter((v) => v !== undefined).join("/");
      if (fromUrl) return fromUrl;
      for (const source of [request.query, request.body]) {
        const named = (source as { name?: unknown; chain?: unknown } | null | undefined) ?? {};
        const value = typeof named.name === "string" ? named.name : named.chain;
        if (typeof value === "string" && value.length > 0) return value.slice(0, 100);
      }
      return null;
    };
    const row = (request: FastifyRequest, status: number) => ({
      at: new Date().toISOString(),
      actor: request.operator!.name,
      method: request.method,
      route: request.routeOptions.url ?? request.url,
      target: target(request),
      status,
      remote: request.ip,
    });

    // No row, no call: if the audit log cannot be written, the call is not made.
    app.addHook("preHandler", async (request) => {
      if (audited(request)) request.auditId = await repo.insertAudit(row(request, AUDIT_NO_RESPONSE));
    });

    app.addHook("onResponse", async (request, reply: FastifyReply) => {
      if (!audited(request)) return;
      try {
        // Refused before the handler (scope, body): the row is written now.
        if (request.auditId === null) await repo.insertAudit(row(request, reply.statusCode));
        else await repo.finishAudit(request.auditId, reply.statusCode, target(request));
      } catch (err) {
        request.log.error(
          { err, operator: request.operator?.name, route: request.routeOptions.url },
          "audit row not completed",
        );
      }
    });
  },
  { name: "galette-audit", dependencies: ["galette-auth"] },
);
