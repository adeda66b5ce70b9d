import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { DataDir } from "../control";

declare module "fastify" {
  interface FastifyRequest {
    /** what a mutating call acted on, for the audit row; handlers set it when the URL does not name it */
    auditTarget: string | null;
  }
}

const READS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Every mutating operator call, allowed or refused for lack of scope, becomes an audit
 * row: who (token name), what (method, route pattern, target), when, from where. Calls
 * without a valid token are not operator calls; they are only logged.
 */
export const auditPlugin = fp(
  async (app: FastifyInstance, options: { data: DataDir }) => {
    app.decorateRequest("auditTarget", null);
    app.addHook("onResponse", async (request, reply) => {
      if (!request.operator || READS.has(request.method) || request.is404) return;
      const params = (request.params ?? {}) as Record<string, string>;
      const fromUrl = [params.name, params.chain, params.map].filter((v) => v !== undefined).join("/");
      try {
        options.data.repo.insertAudit({
          at: new Date().toISOString(),
          actor: request.operator.name,
          method: request.method,
          route: request.routeOptions.url ?? request.url,
          target: request.auditTarget ?? (fromUrl || null),
          status: reply.statusCode,
          remote: request.ip,
        });
      } catch (err) {
        // The call already happened; losing its row must at least be loud.
        request.log.error(
          { err, operator: request.operator.name, route: request.routeOptions.url },
          "audit row not written",
        );
      }
    });
  },
  { name: "galette-audit", dependencies: ["galette-auth"] },
);
