import { PushChainRequest, PushChainSignature } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { planChainForPush } from "../chains";
import { RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { BODY_LIMITS } from "../plugins/limits";
import { recordChainRelease } from "../releases";

const ChainVersionQuery = z.object({ version: z.coerce.number().int().positive().optional() });

/** Chains: read them (read), push a new version (deploy). */
export async function chainsRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;

  app.get("/v1/chains", { config: { access: access.operator("read") } }, async () => ({
    chains: await data.repo.listChains(),
  }));

  app.get<{ Params: { name: string } }>(
    "/v1/chains/:name",
    { config: { access: access.operator("read") } },
    async (request) => {
      const { version } = parse(ChainVersionQuery, request.query, "query");
      const chain = await data.repo.getChainVersion(request.params.name, version);
      if (!chain) {
        throw new RequestError(
          404,
          `chain ${request.params.name}${version ? ` version ${version}` : ""} does not exist`,
        );
      }
      return chain;
    },
  );

  app.post(
    "/v1/chains",
    { config: { access: access.operator("deploy") }, bodyLimit: BODY_LIMITS.chainPush },
    async (request, reply) => {
      const body = parse(PushChainRequest, request.body, "push request");
      const { signed } = parse(PushChainSignature, request.body, "push signature");
      const planned = await planChainForPush(data.repo, body.toml, body.file, body.name);
      request.auditTarget = planned.name;
      // The version, the NF builds it runs and its signed document are stored together.
      const version = await data.repo.transaction(async (tx) => {
        const v = await tx.insertChainVersion({
          name: planned.name,
          toml: body.toml,
          file: body.file,
          graph: planned.graph,
          warnings: planned.warnings,
          createdAt: new Date().toISOString(),
        });
        await recordChainRelease(tx, planned.name, v, planned.graph, signed);
        return v;
      });
      request.auditTarget = `${planned.name} v${version}`;
      const following = (await data.repo.devicesAssignedTo(planned.name))
        .filter((d) => d.assignedVersion === null && !d.revokedAt)
        .map((d) => d.name);
      request.log.info({ chain: planned.name, version, operator: request.operator?.name }, "chain pushed");
      await app.notifications.assignmentChanged(following, "push");
      return reply.code(201).send({
        name: planned.name,
        version,
        warnings: planned.warnings,
        nfs: planned.graph.nfs.map((nf) => ({ instance: nf.instance, nf: nf.nf, uuid: nf.uuid })),
        notified: following,
      });
    },
  );
}
