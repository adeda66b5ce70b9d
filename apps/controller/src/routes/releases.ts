import {
  type NfReleaseResponse,
  PlanChainResponse,
  PushChainRequest,
  PutReleaseKeySetRequest,
  RELEASE_ROUTES,
  releaseDigest,
  releaseKeyId,
  SIGNATURE_DOMAINS,
  SignNfReleaseRequest,
  verifiedBy,
} from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { planChainForPush } from "../chains";
import { RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { BODY_LIMITS } from "../plugins/limits";
import {
  buildByRelease,
  chainDocument,
  checkUploadedSignature,
  manifestOf,
  releaseResponse,
} from "../releases";
import type { NfRecord } from "../storage/repository";

/** `?build=`: a release digest, a build hash or a source digest (a unique prefix of 8+ hex digits will do). */
const ReleaseQuery = z.object({
  build: z
    .string()
    .regex(/^[0-9a-f]{8,64}$/, "expected 8 to 64 lowercase hex digits")
    .optional(),
});

/**
 * Release signing: NF build manifests and their signatures (read / publish), the chain
 * version document a push would store (deploy), the release key set (deploy). The
 * controller stores and relays signatures; it never holds a release key.
 */
export async function releasesRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;

  const findBuild = async (name: string, build: string | undefined): Promise<NfRecord> => {
    const builds = await data.repo.listNfBuilds(name);
    if (builds.length === 0) throw new RequestError(404, `NF ${name} is not published`);
    if (!build) return builds[0]!;
    const matches = builds.filter((b) => {
      const digest = releaseDigest(manifestOf(b));
      return [digest, b.buildHash, b.sourceDigest].some((d) => d.startsWith(build));
    });
    const distinct = new Set(matches.map((b) => releaseDigest(manifestOf(b))));
    if (distinct.size === 0) throw new RequestError(404, `NF ${name} has no build ${build}`);
    if (distinct.size > 1)
      throw new RequestError(400, `build ${build} of NF ${name} is ambiguous: give more digits`);
    return matches[0]!;
  };

  app.get<{ Params: { name: string } }>(
    "/v1/nfs/:name/release",
    { config: { access: access.operator("read") } },
    async (request): Promise<NfReleaseResponse> => {
      const { build } = parse(ReleaseQuery, request.query, "query");
      return releaseResponse(data.repo, await findBuild(request.params.name, build));
    },
  );

  app.post<{ Params: { name: string } }>(
    "/v1/nfs/:name/release",
    { config: { access: access.operator("publish") } },
    async (request, reply): Promise<NfReleaseResponse> => {
      const body = parse(SignNfReleaseRequest, request.body, "release request");
      const name = request.params.name;
      request.auditTarget = `${name} ${body.digest.slice(0, 12)}`;
      const build = await buildByRelease(data.repo, name, body.digest);
      if (!build)
        throw new RequestError(404, `NF ${name} has no build whose release digest is ${body.digest}`);
      const released = await releaseResponse(data.repo, build);
      checkUploadedSignature(
        SIGNATURE_DOMAINS.nfRelease,
        released.manifest,
        body.signature,
        body.publicKey,
        `the manifest of ${name} build ${body.digest.slice(0, 12)}`,
      );
      await data.repo.addReleaseSignature(body.digest, name, body.signature, new Date().toISOString());
      request.log.info(
        { nf: name, release: body.digest, keyId: body.signature.keyId, operator: request.operator?.name },
        "NF release signed",
      );
      // Devices whose chain version runs this build get the signature with their assignment.
      const affected: string[] = [];
      for (const d of await data.repo.listDevices()) {
        if (!d.assignedChain || d.revokedAt) continue;
        const chain = await data.repo.getChainVersion(d.assignedChain, d.assignedVersion ?? undefined);
        if (!chain) continue;
        const recorded = await data.repo.getChainRelease(chain.name, chain.version);
        if (Object.values(recorded?.releases ?? {}).includes(body.digest)) affected.push(d.name);
      }
      await app.notifications.assignmentChanged(affected, "nf release");
      return reply.code(201).send(await releaseResponse(data.repo, build));
    },
  );

  app.post(
    RELEASE_ROUTES.planChain,
    { config: { access: access.operator("deploy") }, bodyLimit: BODY_LIMITS.chainPush },
    async (request) => {
      const body = parse(PushChainRequest, request.body, "plan request");
      const planned = await planChainForPush(data.repo, body.toml, body.file, body.name);
      const version = ((await data.repo.getChainVersion(planned.name))?.version ?? 0) + 1;
      const releases: Record<string, string> = {};
      const responses = new Map<string, NfReleaseResponse>();
      for (const nf of planned.graph.nfs) {
        const build = (await data.repo.listNfBuilds(nf.nf)).find((b) => b.buildHash === nf.buildHash);
        if (!build)
          throw new RequestError(409, `NF ${nf.nf} build ${nf.buildHash} disappeared while planning`);
        const r = await releaseResponse(data.repo, build);
        releases[nf.uuid] = r.digest;
        responses.set(r.digest, r);
      }
      return PlanChainResponse.parse({
        document: chainDocument(planned.name, version, planned.graph, releases),
        releases: [...responses.values()],
      });
    },
  );

  app.get<{ Params: { chain: string; map: string } }>(
    "/v1/chains/:chain/maps/:map/signed",
    { config: { access: access.operator("read") } },
    async (request) => ({
      signed: (await data.repo.getSignedMapEntries(request.params.chain, request.params.map)) ?? null,
    }),
  );

  app.get(RELEASE_ROUTES.keySet, { config: { access: access.operator("read") } }, async () => ({
    keySet: (await data.repo.latestKeySet()) ?? null,
  }));

  app.put(RELEASE_ROUTES.keySet, { config: { access: access.operator("deploy") } }, async (request) => {
    const { keySet } = parse(PutReleaseKeySetRequest, request.body, "key set");
    const latest = await data.repo.latestKeySet();
    if (latest && keySet.document.seq <= latest.document.seq)
      throw new RequestError(
        409,
        `key set #${keySet.document.seq} is not newer than the controller's #${latest.document.seq}`,
      );
    // Devices adopt it only when a key they trust signed it; the controller checks that
    // much against the set it relays now (or the set's own keys for the first one).
    const trusted = latest?.document.keys ?? keySet.document.keys;
    if (!verifiedBy(SIGNATURE_DOMAINS.keySet, keySet.document, keySet.signatures, trusted))
      throw new RequestError(
        400,
        `key set #${keySet.document.seq} is not signed by a key of ${latest ? `key set #${latest.document.seq}` : "itself"}`,
      );
    await data.repo.saveKeySet(keySet, new Date().toISOString());
    request.log.info(
      {
        seq: keySet.document.seq,
        keys: keySet.document.keys.map((k) => releaseKeyId(k)),
        operator: request.operator?.name,
      },
      "release key set stored",
    );
    await app.notifications.assignmentChanged(
      (await data.repo.listDevices()).filter((d) => !d.revokedAt).map((d) => d.name),
      "release key set",
    );
    return { keySet };
  });
}
