import { PROTOCOL_VERSION } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { access } from "../plugins/auth";

/** GET /healthz: the only public route; says the database answers, nothing else. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;
  app.get("/healthz", { config: { access: access.public } }, async () => {
    await data.repo.listChains();
    return { ok: true, protocolVersion: PROTOCOL_VERSION };
  });
}
