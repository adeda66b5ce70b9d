import { CreateTokenRequest } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { tokenSummary } from "../tokens";

/** Operator tokens: only `admin` creates, lists and revokes them. */
export async function tokensRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;
  const admin = { config: { access: access.operator("admin") } };

  app.get("/v1/tokens", admin, async () => ({ tokens: (await data.repo.listTokens()).map(tokenSummary) }));

  app.post("/v1/tokens", admin, async (request, reply) => {
    const body = parse(CreateTokenRequest, request.body, "token request");
    request.auditTarget = body.name;
    const created = await data.createToken(body.name, body.scopes, body.expiresAt);
    request.log.info(
      {
        token: body.name,
        scopes: created.scopes,
        expiresAt: created.expiresAt,
        operator: request.operator?.name,
      },
      "token created",
    );
    return reply.code(201).send(created);
  });

  app.post<{ Params: { name: string } }>("/v1/tokens/:name/revoke", admin, async (request) => {
    const revoked = await data.revokeTokens(request.params.name);
    request.log.info(
      { token: revoked.name, count: revoked.revoked, operator: request.operator?.name },
      "token revoked",
    );
    return revoked;
  });
}
