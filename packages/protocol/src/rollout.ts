import { z } from "zod";
import { Labels, Name } from "./common";

/**
 * Staged rollouts (operator API): a chain version goes to the devices a selector matches
 * phase by phase; each phase soaks, its devices' reports are checked against a gate
 * expression, and a failed gate stops the rollout and rolls that phase back.
 */
export const ROLLOUT_ROUTES = {
  /** POST starts one (deploy), GET lists them, newest first (read) */
  rollouts: "/v1/rollouts",
  rollout: (id: number) => `/v1/rollouts/${id}`,
  pause: (id: number) => `/v1/rollouts/${id}/pause`,
  resume: (id: number) => `/v1/rollouts/${id}/resume`,
  abort: (id: number) => `/v1/rollouts/${id}/abort`,
} as const;

/** What happens to a phase device that is offline when its soak ends. */
export const RolloutOfflinePolicy = z.enum(["wait", "skip", "fail"]);
export type RolloutOfflinePolicy = z.infer<typeof RolloutOfflinePolicy>;

/** A phase: a device count (`1`) or a percentage of the selected devices (`10%`), cumulative. */
export const RolloutPhaseSpec = z
  .string()
  .regex(
    /^(?:[1-9]\d{0,6}|(?:100|[1-9]\d?)(?:\.\d{1,3})?%|0\.\d{1,3}%)$/,
    "a device count (5) or a percentage (10%)",
  );

export const MAX_ROLLOUT_SOAK_SECONDS = 7 * 24 * 3600;

/** POST /v1/rollouts */
export const StartRolloutRequest = z.object({
  chain: Name,
  /** default: the chain's latest version */
  version: z.number().int().positive().optional(),
  /** the devices whose labels include all of these (revoked ones excluded) */
  selector: Labels.refine((s) => Object.keys(s).length > 0, "give at least one label"),
  phases: z.array(RolloutPhaseSpec).min(1).max(32),
  soakSeconds: z.number().int().positive().max(MAX_ROLLOUT_SOAK_SECONDS),
  gate: z.string().min(1).max(1024),
  offline: RolloutOfflinePolicy.default("wait"),
});
export type StartRolloutRequest = z.input<typeof StartRolloutRequest>;

/** A gate term that held the wrong value, with the values it read. */
export const RolloutGateTerm = z.object({
  term: z.string(),
  values: z.record(z.string(), z.union([z.boolean(), z.number()])),
});
export type RolloutGateTerm = z.infer<typeof RolloutGateTerm>;

export const RolloutState = z.enum(["running", "paused", "completed", "aborted"]);
export type RolloutState = z.infer<typeof RolloutState>;

/**
 * pending: not reached yet; updating: assigned the version, soaking; waiting: offline at
 * the end of its soak (policy wait); passed: its gate held; rolled-back: back on what it
 * ran before; skipped: offline (policy skip), back on its previous assignment.
 */
export const RolloutDeviceState = z.enum([
  "pending",
  "updating",
  "waiting",
  "passed",
  "rolled-back",
  "skipped",
]);
export type RolloutDeviceState = z.infer<typeof RolloutDeviceState>;

const ChainRef = z.object({ chain: Name, version: z.number().int().positive() });

export const RolloutDevice = z.object({
  name: Name,
  /** index into the rollout's phases */
  phase: z.number().int().nonnegative(),
  state: RolloutDeviceState,
  /** what it ran when the rollout reached it */
  ran: ChainRef.nullable(),
  assignedAt: z.string().nullable(),
  installedAt: z.string().nullable(),
  soakEndsAt: z.string().nullable(),
  /** the gate's last verdict on this device (empty when it held) */
  failed: z.array(RolloutGateTerm),
  note: z.string().nullable(),
});
export type RolloutDevice = z.infer<typeof RolloutDevice>;

/** Why a rollout is not running. */
export const RolloutStop = z.object({
  kind: z.enum(["gate-failed", "operator", "aborted"]),
  at: z.string(),
  /** one line, e.g. `phase 1: edge-a failed the gate: aborts == 0 (aborts=812)` */
  message: z.string(),
  device: Name.optional(),
  phase: z.number().int().nonnegative().optional(),
  failed: z.array(RolloutGateTerm).optional(),
  by: z.string().optional(),
});
export type RolloutStop = z.infer<typeof RolloutStop>;

export const RolloutEvent = z.object({ at: z.string(), message: z.string() });

export const Rollout = z.object({
  id: z.number().int().positive(),
  chain: Name,
  version: z.number().int().positive(),
  selector: Labels,
  /** as given, and how many devices have been reached once each phase is done */
  phases: z.array(z.object({ spec: RolloutPhaseSpec, devices: z.number().int().nonnegative() })),
  soakSeconds: z.number().int().positive(),
  gate: z.string(),
  offline: RolloutOfflinePolicy,
  state: RolloutState,
  /** index of the phase in progress (or the last one, once completed) */
  phase: z.number().int().nonnegative(),
  stop: RolloutStop.nullable(),
  createdAt: z.string(),
  createdBy: z.string(),
  updatedAt: z.string(),
  devices: z.array(RolloutDevice),
  /** the newest 200 steps, oldest first */
  events: z.array(RolloutEvent),
});
export type Rollout = z.infer<typeof Rollout>;

/** GET /v1/rollouts */
export const ListRolloutsResponse = z.object({ rollouts: z.array(Rollout) });
export type ListRolloutsResponse = z.infer<typeof ListRolloutsResponse>;
