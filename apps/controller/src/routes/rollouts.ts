import { ROLLOUT_ROUTES, type Rollout, StartRolloutRequest } from "@galette/protocol";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { RolloutEngine } from "../rollouts";

/** How often running rollouts read their devices' reports and judge their gates (ms). */
export const ROLLOUT_TICK_MS = 1000;

const IdParams = z.object({
  id: z.coerce
    .number()
    .int()
    .positive()
    .max(2 ** 31),
});

declare module "fastify" {
  interface FastifyInstance {
    rollouts: RolloutEngine;
  }
}

/** Staged rollouts: start, pause, resume, abort (deploy); list and show (read). */
export async function rolloutsRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;
  const engine = new RolloutEngine({
    repo: data.repo,
    log: app.log.child({ component: "rollouts" }),
    isOnline: (device) => app.notifications.isOnline(device),
    notify: (devices, reason) => app.notifications.assignmentChanged(devices, reason),
  });
  app.decorate("rollouts", engine);

  // Running rollouts (also ones a previous controller process left) carry on from their stored state.
  const timer = setInterval(() => void engine.tick(), ROLLOUT_TICK_MS);
  timer.unref();
  app.addHook("onClose", async () => clearInterval(timer));

  const actor = (request: FastifyRequest) => request.operator?.name ?? "unknown";
  const idOf = (request: FastifyRequest) => {
    const { id } = parse(IdParams, request.params, "rollout id");
    request.auditTarget = `rollout ${id}`;
    return id;
  };

  app.get(ROLLOUT_ROUTES.rollouts, { config: { access: access.operator("read") } }, async () => ({
    rollouts: await engine.list(),
  }));

  app.get("/v1/rollouts/:id", { config: { access: access.operator("read") } }, async (request) =>
    engine.get(idOf(request)),
  );

  app.post(
    ROLLOUT_ROUTES.rollouts,
    { config: { access: access.operator("deploy") } },
    async (request, reply) => {
      const body = parse(StartRolloutRequest, request.body, "rollout request");
      request.auditTarget = `${body.chain}${body.version ? ` v${body.version}` : ""}`;
      const rollout: Rollout = await engine.start(body, actor(request));
      request.auditTarget = `rollout ${rollout.id}: ${rollout.chain} v${rollout.version}`;
      return reply.code(201).send(rollout);
    },
  );

  app.post("/v1/rollouts/:id/pause", { config: { access: access.operator("deploy") } }, async (request) =>
    engine.pause(idOf(request), actor(request)),
  );
  app.post("/v1/rollouts/:id/resume", { config: { access: access.operator("deploy") } }, async (request) =>
    engine.resume(idOf(request), actor(request)),
  );
  app.post("/v1/rollouts/:id/abort", { config: { access: access.operator("deploy") } }, async (request) =>
    engine.abort(idOf(request), actor(request)),
  );
}
