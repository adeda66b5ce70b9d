import { PublishNfQuery } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { RequestError } from "../control";
import { publishNf } from "../nf-publish";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";

/**
 * NF uploads (publish). The only routes that take binary bodies: the tar/gzip/octet-stream
 * parser is registered in this module's encapsulated context, so every other route
 * answers such a body with 415.
 */
export async function nfsRoutes(app: FastifyInstance): Promise<void> {
  const { data, maxNfArchiveBytes, nfBuilder } = app.galette;

  app.addContentTypeParser(
    ["application/x-tar", "application/gzip", "application/octet-stream"],
    { parseAs: "buffer", bodyLimit: maxNfArchiveBytes },
    (_request, body, done) => done(null, body),
  );

  app.post<{ Querystring: { name?: string } }>(
    "/v1/nfs",
    { config: { access: access.operator("publish") }, bodyLimit: maxNfArchiveBytes },
    async (request, reply) => {
      const query = parse(PublishNfQuery, request.query, "query");
      if (query.name) request.auditTarget = query.name;
      if (!Buffer.isBuffer(request.body)) {
        throw new RequestError(415, "send the crate as a tar archive with Content-Type: application/x-tar");
      }
      const published = await publishNf(data, request.body, {
        ...(query.name ? { expectedName: query.name } : {}),
        ...(nfBuilder ? { builder: nfBuilder } : {}),
      });
      request.auditTarget = published.name;
      request.log.info(
        { nf: published.name, digest: published.sourceDigest, build: published.build },
        "NF published",
      );
      // Devices whose chain runs this NF get the new artifacts.
      const affected: string[] = [];
      for (const d of await data.repo.listDevices()) {
        if (!d.assignedChain) continue;
        const chain = await data.repo.getChainVersion(d.assignedChain, d.assignedVersion ?? undefined);
        if (chain?.graph.nfs.some((nf) => nf.nf === published.name)) affected.push(d.name);
      }
      await app.notifications.assignmentChanged(affected, "nf publish");
      return reply.code(201).send(published);
    },
  );
}
