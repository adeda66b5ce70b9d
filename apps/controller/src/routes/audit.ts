import { AuditQuery } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";

/** GET /v1/audit?since=ISO&limit=N (admin): mutating operator calls, oldest first. */
export async function auditRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;
  app.get("/v1/audit", { config: { access: access.operator("admin") } }, async (request) => {
    const query = parse(AuditQuery, request.query, "query");
    // Rows store UTC ISO strings; compare in the same form.
    const since = query.since ? new Date(query.since).toISOString() : undefined;
    return { entries: await data.repo.listAudit({ ...(since ? { since } : {}), limit: query.limit }) };
  });
}
