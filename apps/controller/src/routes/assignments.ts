import {
  AssignChainRequest,
  OPERATOR_ROUTES,
  RemoveAssignmentRequest,
  type RemoveAssignmentResponse,
} from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { assignmentRefusal } from "../capabilities";
import { RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";

/** Assignments: explicit per device and selector rules (deploy); list the rules (read). */
export async function assignmentsRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;

  /** Each device's effective assignment as a comparable string, to find whom a rule change affects. */
  const effectiveAssignments = () =>
    new Map(
      data.repo
        .listDevices()
        .filter((d) => !d.revokedAt)
        .map((d) => [d.name, d.assignedChain ? `${d.assignedChain}@${d.assignedVersion ?? "latest"}` : ""]),
    );
  const changedSince = (before: Map<string, string>) =>
    [...effectiveAssignments()].filter(([name, now]) => before.get(name) !== now).map(([name]) => name);

  app.get(OPERATOR_ROUTES.assignmentRules, { config: { access: access.operator("read") } }, async () => ({
    rules: data.repo.listSelectorRules(),
  }));

  app.post(OPERATOR_ROUTES.assign, { config: { access: access.operator("deploy") } }, async (request) => {
    const body = parse(AssignChainRequest, request.body, "assign request");
    request.auditTarget = body.chain;
    const chain = data.repo.getChainVersion(body.chain, body.version);
    if (!chain) {
      throw new RequestError(
        404,
        `chain ${body.chain}${body.version ? ` version ${body.version}` : ""} does not exist (push it first)`,
      );
    }
    const all = data.repo.listDevices();
    const explicit = new Set<string>();
    for (const name of body.devices ?? []) {
      const device = all.find((d) => d.name === name);
      if (!device) throw new RequestError(404, `device ${name} is not enrolled`);
      if (device.revokedAt) throw new RequestError(409, `device ${name} is revoked`);
      explicit.add(name);
    }
    const selector = body.selector ?? {};
    const before = effectiveAssignments();
    const version = body.version ?? null;
    const at = new Date().toISOString();
    // A selector is stored as a rule (devices enrolled later match it too), never copied
    // into per-device assignments, so a newer rule can still take over those devices.
    const rule = data.repo.transaction(() => {
      if (explicit.size > 0) data.repo.assignChain([...explicit], body.chain, version);
      if (body.graceSeconds !== undefined && explicit.size > 0)
        data.repo.setGraceSeconds([...explicit], body.graceSeconds);
      return Object.keys(selector).length > 0
        ? data.repo.addSelectorRule(body.chain, version, selector, at)
        : undefined;
    });
    const after = data.repo.listDevices().filter((d) => !d.revokedAt);
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
      data.repo.setGraceSeconds(
        matched.map((d) => d.name),
        body.graceSeconds,
      );
    }
    // Devices whose reported capabilities the chain does not fit keep what they run.
    const refused = after
      .filter((d) => assigned.includes(d.name))
      .map((d) => ({ device: d.name, refusal: assignmentRefusal(data.repo, data.artifacts, d) }))
      .filter((r) => r.refusal !== null)
      .map((r) => ({ device: r.device, reasons: r.refusal!.reasons }));
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
    app.notifications.assignmentChanged([...new Set([...changedSince(before), ...explicit])], "assign");
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
        if (!data.repo.getDevice(name)) throw new RequestError(404, `device ${name} is not enrolled`);
      }
      const before = effectiveAssignments();
      const removedRules = data.repo.transaction(() => {
        data.repo.clearExplicitAssignment(body.devices ?? []);
        if (Object.keys(selector).length === 0) return [];
        const removed = data.repo.removeSelectorRule(selector);
        if (removed.length === 0) {
          // Throwing rolls back the cleared explicit assignments too: nothing changes on bad input.
          const shown = Object.entries(selector)
            .map(([k, v]) => `${k}=${v}`)
            .join(",");
          throw new RequestError(404, `no selector rule has exactly the selector ${shown}`);
        }
        return removed;
      });
      const changed = changedSince(before);
      request.log.info(
        { removedRules: removedRules.map((r) => r.id), cleared: body.devices ?? [], changed },
        "assignment removed",
      );
      app.notifications.assignmentChanged(changed, "unassign");
      return { removedRules, cleared: [...(body.devices ?? [])].sort(), changed };
    },
  );
}
