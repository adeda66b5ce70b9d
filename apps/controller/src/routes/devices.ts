import {
  DEFAULT_GRACE_SECONDS,
  type DevicePlanResponse,
  type DeviceSummary,
  EnrollDeviceRequest,
  PushChainRequest,
} from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { assignmentRefusal, bpfLoopNfs } from "../capabilities";
import { deviceCapabilities, graphFitsDevice, planChainForPush } from "../chains";
import { deviceSummary, RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import type { ChainVersionRecord, DeviceRecord } from "../storage/repository";

/** Operator view of devices and a chain planned for one (read); confirm a rolled-back chain (deploy); enrol and revoke (admin). */
export async function devicesRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;
  const summary = async (device: DeviceRecord): Promise<DeviceSummary> =>
    deviceSummary(device, app.notifications.isOnline(device.name), {
      refusal: await assignmentRefusal(data.repo, data.artifacts, device),
      graceSeconds: (await data.repo.getDeadMan(device.name)).graceSeconds ?? DEFAULT_GRACE_SECONDS,
    });

  app.get("/v1/devices", { config: { access: access.operator("read") } }, async () => {
    const devices: DeviceSummary[] = [];
    for (const device of await data.repo.listDevices()) devices.push(await summary(device));
    return { devices };
  });

  app.get<{ Params: { name: string } }>(
    "/v1/devices/:name",
    { config: { access: access.operator("read") } },
    async (request) => {
      const device = await data.repo.getDevice(request.params.name);
      if (!device) throw new RequestError(404, `device ${request.params.name} is not enrolled`);
      return summary(device);
    },
  );

  app.post("/v1/devices", { config: { access: access.operator("admin") } }, async (request, reply) => {
    const body = parse(EnrollDeviceRequest, request.body, "enrol request");
    request.auditTarget = body.name;
    const enrolled = await data.enrolDeviceAsync(
      body.name,
      body.labels,
      app.galette.publicUrl(),
      body.validityDays,
    );
    const replicas = [...new Set([enrolled.controllerUrl, ...app.galette.replicaUrls])];
    const bundle = replicas.length > 1 ? { ...enrolled, controllerUrls: replicas } : enrolled;
    const record = await data.repo.getDevice(body.name);
    request.log.info(
      {
        device: body.name,
        serial: bundle.serial,
        operator: request.operator?.name,
        assignedBy: record?.assignedBy ?? null,
      },
      "device enrolled",
    );
    // A matching selector rule gives it a chain at once (its first poll picks it up).
    await app.notifications.assignmentChanged([body.name], "enrol");
    return reply.code(201).send(bundle);
  });

  // The operator confirms the version the dead-man's switch rolled back: it goes out again
  // and the agent installs it without the switch.
  app.post<{ Params: { name: string } }>(
    "/v1/devices/:name/confirm",
    { config: { access: access.operator("deploy") } },
    async (request) => {
      const device = await data.repo.getDevice(request.params.name);
      if (!device) throw new RequestError(404, `device ${request.params.name} is not enrolled`);
      const rollback = device.status?.rollback;
      if (!rollback)
        throw new RequestError(
          409,
          `device ${device.name} has no rolled-back chain to confirm (its agent reports none)`,
        );
      await data.repo.confirmRollback(device.name, rollback.chain, rollback.version);
      request.log.info(
        {
          device: device.name,
          chain: rollback.chain,
          version: rollback.version,
          operator: request.operator?.name,
        },
        "rolled-back chain confirmed",
      );
      await app.notifications.assignmentChanged([device.name], "confirm");
      return { name: device.name, confirmed: { chain: rollback.chain, version: rollback.version } };
    },
  );

  // A chain file planned for one device: placement and its capability check; nothing stored.
  app.post<{ Params: { name: string } }>(
    "/v1/devices/:name/plan",
    { config: { access: access.operator("read") } },
    async (request): Promise<DevicePlanResponse> => {
      const device = await data.repo.getDevice(request.params.name);
      if (!device) throw new RequestError(404, `device ${request.params.name} is not enrolled`);
      const body = parse(PushChainRequest, request.body, "plan request");
      const planned = await planChainForPush(data.repo, body.toml, body.file, body.name);
      const probe = device.status?.capabilities ?? null;
      // version 0: no pushed version, so each NF's build is its latest published one
      const record = { name: planned.name, version: 0, graph: planned.graph } as ChainVersionRecord;
      const refusals = probe
        ? graphFitsDevice(
            planned.graph,
            deviceCapabilities(probe, await bpfLoopNfs(data.repo, data.artifacts, record)),
          )
        : [];
      return {
        device: device.name,
        chain: planned.name,
        capabilities: probe,
        xdpMode: probe?.interfaces[0]?.xdp ?? null,
        nfs: planned.graph.nfs.map((nf) => ({
          instance: nf.instance,
          nf: nf.nf,
          xdp: nf.xdp,
          userland: nf.userland,
        })),
        refusals,
        warnings: planned.warnings,
      };
    },
  );

  app.post<{ Params: { name: string } }>(
    "/v1/devices/:name/revoke",
    { config: { access: access.operator("admin") } },
    async (request) => {
      const revoked = await data.revokeDevice(request.params.name);
      request.log.info(
        { device: revoked.name, serial: revoked.serial, operator: request.operator?.name },
        "device revoked",
      );
      app.notifications.disconnect(revoked.name, 4403, "revoked");
      return { name: revoked.name, serial: revoked.serial, revokedAt: revoked.revokedAt! };
    },
  );
}
