import {
  AssignChainRequest,
  OPERATOR_ROUTES,
  RemoveAssignmentRequest,
  type RemoveAssignmentResponse,
} from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { chainRefusal } from "../capabilities";
import { RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import type { ChainVersionRecord, DeviceRecord } from "../storage/repository";

/** Assignments: explicit per device and selector rules (deploy); list the rules (read). */
export async function assignmentsRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;

  /** Each device's effective assignment as a comparable string, to find whom a rule change affects. */
  const effectiveOf = (devices: DeviceRecord[]) =>
    new Map(
      devices
        .filter((d) => !d.revokedAt)
        .map((d) => [d.name, d.assignedChain ? `${d.assignedChain}@${d.assignedVersion ?? "latest"}` : ""]),
    );
  const effectiveAssignments = async () => effectiveOf(await data.repo.listDevices());
  const changedBetween = (before: Map<string, string>, now: Map<string, string>) =>
    [...now].filter(([name, value]) => before.get(name) !== value).map(([name]) => name);
  const changedSince = async (before: Map<string, string>) =>
    changedBetween(before, await effectiveAssignments());

  app.get(OPERATOR_ROUTES.assignmentRules, { config: { access: access.operator("read") } }, async () => ({
    rules: await data.repo.listSelectorRules(),
  }));

  app.post(OPERATOR_ROUTES.assign, { config: { access: access.operator("deploy") } }, async (request) => {
    const body = parse(AssignChainRequest, request.body, "assign request");
    request.auditTarget = body.chain;
    const chain = await data.repo.getChainVersion(body.chain, body.version);
    if (!chain) {
      throw new RequestError(
        404,
        `chain ${body.chain}${body.version ? ` version ${body.version}` : ""} does not exist (push it first)`,
      );
    }
    const all = await data.repo.listDevices();
    const explicit = new Set<string>();
    for (const name of body.devices ?? []) {
      const device = all.find((d) => d.name === name);
      if (!device) throw new RequestError(404, `device ${name} is not enrolled`);
      if (device.revokedAt) throw new RequestError(409, `device ${name} is revoked`);
      explicit.add(name);
    }
    const selector = body.selector ?? {};
    // (every device is read twice, before and after: with a large fleet each read is a
    // noticeable block of the event loop, so no more often than that)
    const before = effectiveOf(all);
    const version = body.version ?? null;
    const at = new Date().toISOString();
    // A selector is stored as a rule (devices enrolled later match it too), never copied
    // into per-device assignments, so a newer rule can still take over those devices.
    const rule = await data.repo.transaction(async (tx) => {
      if (explicit.size > 0) await tx.assignChain([...explicit], body.chain, version);
      if (body.graceSeconds !== undefined && explicit.size > 0)
        await tx.setGraceSeconds([...explicit], body.graceSeconds);
      return Object.keys(selector).length > 0
        ? await tx.addSelectorRule(body.chain, version, selector, at)
        : undefined;
    });
    const afterAll = await data.repo.listDevices();
    const after = afterAll.filter((d) => !d.revokedAt);
    const assigned = after
      .filter(
        (d) =>
          explicit.has(d.name) ||
          (rule && d.assignedBy?.kind === "selector" && d.assignedBy.rule === rule.id),
      )
      .map((d) => d.name)
      .sort();
    const overridden = rule
      ? after
          .filter((d) => d.assignedBy?.kind === "explicit" && !explicit.has(d.name))
          .filter((d) => Object.entries(selector).every(([k, v]) => d.labels[k] === v))
          .map((d) => d.name)
          .sort()
      : [];
    if (body.graceSeconds !== undefined && rule) {
      const matched = after.filter((d) => d.assignedBy?.kind === "selector" && d.assignedBy.rule === rule.id);
      await data.repo.setGraceSeconds(
        matched.map((d) => d.name),
        body.graceSeconds,
      );
    }
    // Devices whose reported capabilities the chain does not fit keep what they run
    // (each chain version read once, not once per device).
    const refused: Array<{ device: string; reasons: string[] }> = [];
    const assignedNames = new Set(assigned);
    const chains = new Map<string, Promise<ChainVersionRecord | undefined>>();
    for (const d of after) {
      if (!assignedNames.has(d.name) || !d.assignedChain || !d.status?.capabilities) continue;
      const key = `${d.assignedChain}@${d.assignedVersion ?? "latest"}`;
      let read = chains.get(key);
      if (!read) {
        read = data.repo.getChainVersion(d.assignedChain, d.assignedVersion ?? undefined);
        chains.set(key, read);
      }
      const chain = await read;
      const refusal = chain ? await chainRefusal(data.repo, data.artifacts, d, chain) : null;
      if (refusal) refused.push({ device: d.name, reasons: refusal.reasons });
    }
    request.log.info(
      {
        chain: body.chain,
        version: version ?? "latest",
        devices: assigned,
        rule: rule?.id,
        overridden,
        refused,
      },
      "chain assigned",
    );
    // Named devices are notified even when unchanged (as before: "assign again" re-pokes them).
    await app.notifications.assignmentChanged(
      [...new Set([...changedBetween(before, effectiveOf(afterAll)), ...explicit])],
      "assign",
    );
    return {
      chain: body.chain,
      version,
      assigned,
      ...(rule ? { rule, overridden } : {}),
      ...(refused.length > 0 ? { refused } : {}),
    };
  });

  app.delete(
    OPERATOR_ROUTES.assignmentRules,
    { config: { access: access.operator("deploy") } },
    async (request): Promise<RemoveAssignmentResponse> => {
      const body = parse(RemoveAssignmentRequest, request.body, "unassign request");
      const selector = body.selector ?? {};
      request.auditTarget = [
        ...(body.devices ?? []),
        ...Object.entries(selector).map(([k, v]) => `${k}=${v}`),
      ].join(",");
      for (const name of body.devices ?? []) {
        if (!(await data.repo.getDevice(name))) throw new RequestError(404, `device ${name} is not enrolled`);
      }
      const before = await effectiveAssignments();
      const removedRules = await data.repo.transaction(async (tx) => {
        await tx.clearExplicitAssignment(body.devices ?? []);
        if (Object.keys(selector).length === 0) return [];
        const removed = await tx.removeSelectorRule(selector);
        if (removed.length === 0) {
          // Throwing rolls back the cleared explicit assignments too: nothing changes on bad input.
          const shown = Object.entries(selector)
            .map(([k, v]) => `${k}=${v}`)
            .join(",");
          throw new RequestError(404, `no selector rule has exactly the selector ${shown}`);
        }
        return removed;
      });
      const changed = await changedSince(before);
      request.log.info(
        { removedRules: removedRules.map((r) => r.id), cleared: body.devices ?? [], changed },
        "assignment removed",
      );
      await app.notifications.assignmentChanged(changed, "unassign");
      return { removedRules, cleared: [...(body.devices ?? [])].sort(), changed };
    },
  );
}
