import { ACTION_KINDS, EXITS, TRANSITIONS } from "@galette/vocabulary";
import { z } from "zod";
import { CpuTriple, describeZodError, MapEntry, MapType, Name, Sha256Digest, Uuid } from "./common";
import { TraceId, TraceRequest } from "./trace";

/** Where a packet ends when an NF returns an Action bound to a verdict. */
export const Exit = z.enum(EXITS);
export type Exit = z.infer<typeof Exit>;

/** Kinds that continue with another NF instance: tailcall (stays in XDP) and upcall (to userland). */
export const Transition = z.enum(TRANSITIONS);
export type Transition = z.infer<typeof Transition>;

/** Every kind an action-table entry may have (`enum galette_action_kind`). */
export const ActionKind = z.enum(ACTION_KINDS);
export type ActionKind = z.infer<typeof ActionKind>;

/**
 * How the chain is entered: the root program tail-calls the entry NF (kind tailcall), or,
 * when the entry runs only in userland, upcalls to it (kind upcall).
 */
export const ChainEntry = z.strictObject({ kind: Transition, target: Uuid });
export type ChainEntry = z.infer<typeof ChainEntry>;

/**
 * The chain's entry (frames from every port), or with `b` a chain per direction on a
 * two-port device: the entry then serves frames arriving on the first port (`rx.a` in the
 * chain file) and `b` those arriving on the second (`rx.b`). Strict on purpose: an agent
 * that predates directions refuses such an assignment instead of running one direction's
 * chain on both ports.
 */
export const ChainEntries = z.strictObject({ kind: Transition, target: Uuid, b: ChainEntry.optional() });
export type ChainEntries = z.infer<typeof ChainEntries>;

/**
 * What one Action variant does, as the controller's planner decided it: the agent writes
 * it into the instance's action table as it is. `variant` is the variant's name in the
 * NF's Action enum (for counters and logs); `target` is the NF instance that runs next and
 * is present exactly for tailcall and upcall. In userland both transitions mean "run that
 * instance next" (there is no way back into XDP). These entries are the graph's edges.
 */
export const AssignedAction = z.union([
  z.strictObject({ variant: z.string().min(1).max(128), kind: Exit }),
  z.strictObject({ variant: z.string().min(1).max(128), kind: Transition, target: Uuid }),
]);
export type AssignedAction = z.infer<typeof AssignedAction>;

/** A BPF map the agent creates once per chain; XDP and userland NFs share it by fd. */
export const MapSpec = z.object({
  /** unique in the chain: the shared map's name, or `<instance>.<field>` for an owned map */
  id: z.string().min(1),
  /** canonical snake_case name = the #[maps] field it binds to */
  name: z.string().min(1),
  type: MapType,
  keySize: z.number().int().positive(),
  valueSize: z.number().int().positive(),
  maxEntries: z.number().int().positive().max(0xffff_ffff),
  shared: z.boolean(),
  /** the NF instance owning an inline (non-shared) map */
  owner: Uuid.optional(),
});
export type MapSpec = z.infer<typeof MapSpec>;

/** A content-addressed artifact the agent downloads from GET /v1/device/artifacts/:digest and verifies. */
export const ArtifactRef = z.object({
  digest: Sha256Digest,
  size: z.number().int().nonnegative(),
});
export type ArtifactRef = z.infer<typeof ArtifactRef>;

/** One NF instance of the assigned chain. The UUID is stable while the NF build and position are unchanged. */
export const AssignedNf = z.object({
  uuid: Uuid,
  /** the instance's name in the chain TOML ([functions.NAME]) */
  instance: z.string().min(1).max(63),
  /** the crate (published NF) it runs */
  nf: Name,
  /** build hash of the NF (source + toolchain); empty until built */
  buildHash: z.string(),
  /** runs in XDP (has a BPF program) */
  xdp: z.boolean(),
  /** runs (also) in the userland worker (native library) */
  userland: z.boolean(),
  /**
   * One entry per Action variant, in declaration order (the instance's action table; at
   * most GALETTE_MAX_ACTIONS). An NF placed in XDP and userland has one table for both.
   */
  actions: z.array(AssignedAction).min(1).max(16),
  /** the #[maps] fields in order, each bound to a MapSpec.id */
  maps: z.array(z.object({ field: z.string().min(1), map: z.string().min(1) })).max(16),
  artifacts: z.object({
    /** present when xdp */
    bpfObject: ArtifactRef.optional(),
    /** for the device's CPU triple; present when userland and built for that triple */
    native: ArtifactRef.optional(),
  }),
});
export type AssignedNf = z.infer<typeof AssignedNf>;

/**
 * The device-independent graph of a pushed chain version: its entry, its NF instances
 * (each with its decided action table, whose targets are the graph's edges) and its map
 * specs. Deterministic: NFs and maps in the chain file's declaration order. Devices get
 * it plus artifact digests for their CPU and the map entries (AssignedChain).
 */
export const ChainGraph = z.object({
  entry: ChainEntries,
  nfs: z.array(AssignedNf.omit({ artifacts: true })),
  maps: z.array(MapSpec),
});
export type ChainGraph = z.infer<typeof ChainGraph>;

/** A ChainGraph as protocol version 1 stored it: edges instead of action tables. */
const ChainGraphV1 = z.object({
  nfs: z.array(
    AssignedNf.omit({ artifacts: true, actions: true }).extend({
      actionCount: z.number().int().nonnegative(),
      actions: z.array(z.string().min(1)).optional(),
    }),
  ),
  edges: z.array(
    z.object({
      from: z.string(),
      to: z.string(),
      kind: z.enum(["entry", "tailcall", "upcall", "call", "exit"]),
      actionIndex: z.number().int().nonnegative().nullable(),
      fromPlacement: z.enum(["xdp", "userland"]),
      toPlacement: z.enum(["xdp", "userland"]).optional(),
    }),
  ),
  maps: z.array(MapSpec),
});

/**
 * A chain graph read back from storage, in the current shape. A graph stored by a
 * protocol-1 controller is converted: its edges hold the same decisions (per variant, the
 * XDP copy's edge when the NF runs in XDP; a userland call is a tailcall entry).
 */
export function chainGraphFromStored(stored: unknown): ChainGraph {
  const current = ChainGraph.safeParse(stored);
  if (current.success) return current.data;
  const v1 = ChainGraphV1.safeParse(stored);
  if (!v1.success)
    throw new Error(
      `stored chain graph is not a valid ChainGraph: ${describeZodError(current.error).join("; ")}`,
    );
  const { nfs, edges, maps } = v1.data;
  const entryEdge = edges.find((e) => e.from === "rx");
  if (!entryEdge) throw new Error("stored chain graph (protocol 1) has no edge from rx");
  const entry = ChainEntry.parse({
    kind: entryEdge.toPlacement === "userland" ? "upcall" : "tailcall",
    target: entryEdge.to,
  });
  return ChainGraph.parse({
    entry,
    maps,
    nfs: nfs.map(({ actionCount, actions: variants, ...nf }) => ({
      ...nf,
      actions: Array.from({ length: actionCount }, (_, i) => {
        const out = edges.filter((e) => e.from === nf.uuid && e.actionIndex === i);
        const edge = out.find((e) => e.fromPlacement === (nf.xdp ? "xdp" : "userland")) ?? out[0];
        if (!edge)
          throw new Error(
            `stored chain graph (protocol 1): NF "${nf.instance}" has no edge for variant ${i}`,
          );
        const variant = variants?.[i] ?? `action${i}`;
        if (edge.kind === "exit") return { variant, kind: edge.to };
        return { variant, kind: edge.kind === "upcall" ? "upcall" : "tailcall", target: edge.to };
      }),
    })),
  });
}

export const AssignedChain = z.object({
  name: Name,
  /** monotonically increasing per chain name; each push stores a new version */
  version: z.number().int().positive(),
  entry: ChainEntries,
  nfs: z.array(AssignedNf),
  maps: z.array(MapSpec),
  /** entries operators set through the controller, applied by the agent after the maps exist */
  mapEntries: z.array(z.object({ map: z.string().min(1), entries: z.array(MapEntry) })),
});
export type AssignedChain = z.infer<typeof AssignedChain>;

/**
 * Body of GET /v1/device/assignment. Sent with an ETag (the sha256 of this body); a
 * request with a matching If-None-Match gets 304. `chain` is null for an enrolled device
 * that has no chain assigned yet.
 */
/** Dead-man's switch defaults: seconds an agent has to reach the controller after a change. */
export const DEFAULT_GRACE_SECONDS = 60;
export const MAX_GRACE_SECONDS = 3600;
export const GraceSeconds = z.number().int().min(0).max(MAX_GRACE_SECONDS);

/**
 * The dead-man's switch for this assignment: after installing a new chain the agent must
 * reach the controller within `graceSeconds` (0: no switch) or it goes back to what ran
 * before. `confirmed` is a version this device rolled back from that the operator
 * confirmed (`galette device confirm`): the agent installs it again, without the switch.
 */
export const DeadManSwitch = z.object({
  graceSeconds: GraceSeconds,
  confirmed: z.object({ chain: Name, version: z.number().int().positive() }).optional(),
});
export type DeadManSwitch = z.infer<typeof DeadManSwitch>;

export const DeviceAssignment = z.object({
  protocolVersion: z.number().int().positive(),
  device: Name,
  /** the triple the native artifacts were chosen for; absent until the device states its CPU */
  triple: CpuTriple.optional(),
  chain: AssignedChain.nullable(),
  /** absent from older controllers: the agent then uses DEFAULT_GRACE_SECONDS */
  deadMan: DeadManSwitch.optional(),
});
export type DeviceAssignment = z.infer<typeof DeviceAssignment>;

/**
 * Query of GET /v1/device/assignment: `arch` is the device's `uname -m`, so the first
 * request already gets the native artifacts for its CPU (otherwise the last reported one is used).
 */
export const AssignmentQuery = z.object({ arch: z.string().min(1).max(32).optional() });

export const DeviceState = z.enum(["idle", "installing", "converged", "error", "offline-cache"]);
export type DeviceState = z.infer<typeof DeviceState>;

export const DeviceError = z.object({
  message: z.string().min(1),
  /** ISO-8601 time the agent saw it */
  at: z.string().min(1),
  nf: Uuid.optional(),
});
export type DeviceError = z.infer<typeof DeviceError>;

export const NfCounters = z.object({
  uuid: Uuid,
  instance: z.string().optional(),
  /** counter name → value, e.g. packets, bytes, drops, upcalls */
  counters: z.record(z.string().min(1), z.number().nonnegative()),
});
export type NfCounters = z.infer<typeof NfCounters>;

/** Kernel bpf_stats of one program over a measuring window. */
export const ProgramRunCost = z.object({
  runCount: z.number().nonnegative(),
  runTimeNs: z.number().nonnegative(),
  /** runTimeNs / runCount (absent when it did not run) */
  nsPerRun: z.number().nonnegative().optional(),
});
export type ProgramRunCost = z.infer<typeof ProgramRunCost>;

/** What one NF instance costs. */
export const NfCost = z.object({
  uuid: Uuid,
  instance: z.string().optional(),
  /** "xdp", "userland" or "xdp+userland" */
  placement: z.string().max(32),
  /** frames this NF ran on in XDP during the measuring window (its action counters) */
  xdpRuns: z.number().nonnegative(),
  /**
   * its own XDP program's runs and time during the window, timed by its generated shim from
   * entry to tail call or verdict (absent: not in XDP, or an object built before per-NF timing)
   */
  xdp: ProgramRunCost.optional(),
  /** calls of its native (userland) build and the time inside it, since the workers started */
  userlandCalls: z.number().nonnegative(),
  userlandNs: z.number().nonnegative(),
  /** userlandNs / userlandCalls (absent before the first call) */
  userlandNsPerCall: z.number().nonnegative().optional(),
});
export type NfCost = z.infer<typeof NfCost>;

/**
 * Per-NF cost, from the agent's last measuring window (kernel bpf_stats and the NF shims'
 * timing are on only during it). `xdp` is the root program's bpf_stats: the kernel accounts a
 * tail-called program to the program that entered it, so that is the chain's whole XDP
 * path; each NF's own share is its `nfs[].xdp`.
 */
export const DeviceCost = z.object({
  /** ISO-8601 end of the window */
  measuredAt: z.string().min(1),
  windowMs: z.number().positive(),
  xdp: ProgramRunCost,
  nfs: z.array(NfCost).max(1024),
});
export type DeviceCost = z.infer<typeof DeviceCost>;

/** What the probe found one interface takes. */
export const InterfaceCapabilities = z.object({
  name: z.string().min(1).max(15),
  /** the best XDP mode an attach succeeded in */
  xdp: z.enum(["native", "generic", "none"]),
  rxQueues: z.number().int().nonnegative(),
  /** AF_XDP zero-copy; null when only binding a socket would tell */
  zeroCopy: z.boolean().nullable(),
  problems: z.array(z.string().max(500)).max(20),
});
export type InterfaceCapabilities = z.infer<typeof InterfaceCapabilities>;

/** What the agent's probe found this device's kernel and interfaces can run (by trying). */
export const DeviceCapabilities = z.object({
  probedAt: z.string().min(1),
  kernelRelease: z.string().min(1).max(128),
  kernel: z.object({ major: z.number().int().nonnegative(), minor: z.number().int().nonnegative() }),
  cpus: z.number().int().positive(),
  memoryBytes: z.number().int().nonnegative(),
  availableMemoryBytes: z.number().int().nonnegative(),
  btf: z.boolean(),
  /** the bpf_loop helper (what nf::repeat compiles to in XDP) */
  bpfLoop: z.boolean(),
  tailCalls: z.boolean(),
  /** AF_XDP sockets (userland NFs need them) */
  afXdp: z.boolean(),
  /** the NF map types the kernel creates */
  mapTypes: z.array(MapType),
  interfaces: z.array(InterfaceCapabilities).max(16),
  problems: z.array(z.string().max(500)).max(50),
});
export type DeviceCapabilities = z.infer<typeof DeviceCapabilities>;

/**
 * A chain version the dead-man's switch took back out: the agent restored `restored`
 * (null: nothing ran before) and will not install `chain` v`version` again until the
 * operator confirms it.
 */
export const RollbackReport = z.object({
  chain: Name,
  version: z.number().int().positive(),
  reason: z.string().min(1).max(1000),
  at: z.string().min(1),
  restored: z.object({ chain: Name, version: z.number().int().positive() }).nullable(),
});
export type RollbackReport = z.infer<typeof RollbackReport>;

/** Body of POST /v1/device/status (answered 204). */
export const DeviceStatusReport = z.object({
  protocolVersion: z.number().int().positive(),
  agentVersion: z.string().min(1).max(64),
  /** `uname -m` */
  arch: z.string().min(1).max(32),
  /** `uname -r` */
  kernelVersion: z.string().min(1).max(128),
  /** what is live on the interface now (null when nothing is installed) */
  installed: z
    .object({ chain: Name, version: z.number().int().positive(), etag: z.string().optional() })
    .nullable(),
  state: DeviceState,
  errors: z.array(DeviceError).max(100),
  counters: z.array(NfCounters).max(1024),
  /** the probe's findings (absent from older agents) */
  capabilities: DeviceCapabilities.optional(),
  /** a version the dead-man's switch rolled back and holds until confirmed */
  rollback: RollbackReport.nullable().optional(),
  /** per-NF cost from the last measuring window (absent: not measured yet, or an older agent) */
  cost: DeviceCost.nullable().optional(),
});
export type DeviceStatusReport = z.infer<typeof DeviceStatusReport>;

/** Messages the controller sends on ws /v1/device/notifications. The agent sends nothing. */
export const DeviceNotification = z.discriminatedUnion("type", [
  z.object({ type: z.literal("hello"), protocolVersion: z.number().int().positive(), device: Name }),
  /**
   * the assignment changed: GET it now. `etag` is computed for the CPU the device last
   * reported, so treat it as a hint: re-poll on every such message.
   */
  z.object({ type: z.literal("assignment-changed"), etag: z.string() }),
  /** an operator asks for a packet trace: run it, POST the frames to DEVICE_ROUTES.trace(id) */
  z.object({ type: z.literal("trace"), id: TraceId, request: TraceRequest }),
]);
export type DeviceNotification = z.infer<typeof DeviceNotification>;

/** The largest message either end of the notification channel accepts (notifications are a few hundred bytes). */
export const NOTIFICATION_MAX_BYTES = 64 * 1024;

/** Device API paths, so the agent and the server agree by construction. */
export const DEVICE_ROUTES = {
  assignment: "/v1/device/assignment",
  artifact: (digest: string) => `/v1/device/artifacts/${digest}`,
  status: "/v1/device/status",
  notifications: "/v1/device/notifications",
  trace: (id: string) => `/v1/device/traces/${id}`,
} as const;
