/**
 * The pure half of the installer: from a chain plan and the built artifacts of its NFs,
 * decide every instance id (= PROG_ARRAY slot), action-table entry, map and pin path; and,
 * given a live installation, which instances and maps are reused, created and retired.
 * No kernel access here: kernel.ts carries the result out.
 */
import type { ChainPlan, PlanNf } from "@galette/chain";
import {
  ACTION_CODES as ABI_ACTION_CODES,
  type ActionKind,
  canonicalMapType,
  DEFAULT_DEVICE_LIMITS,
  isExit,
} from "@galette/vocabulary";

/** PROG_ARRAY slots per device (GALETTE_MAX_INSTANCES in galette_abi.h). */
export const MAX_INSTANCES = DEFAULT_DEVICE_LIMITS.instanceSlots;
/** Action variants per NF (GALETTE_MAX_ACTIONS). */
export const MAX_ACTIONS = DEFAULT_DEVICE_LIMITS.actionsPerNf;
/**
 * The "rx" pseudo-instance: when the chain's entry runs only in userland, the root slot
 * holds a small XDP program that upcalls as instance RX_INSTANCE, variant 0, and this
 * instance's action table (in the workers) points at the entry. Never given to an NF.
 */
export const RX_INSTANCE = MAX_INSTANCES - 1;
export const BPFFS_ROOT = "/sys/fs/bpf/galette";

export type ActionKindName = ActionKind;

/**
 * What the installer needs of a plan: the entry, and each placed NF with its decided
 * action table (`actions`). A @galette/chain ChainPlan is one; the agent builds one from
 * the controller's assignment without deciding anything again.
 */
export interface InstallPlan {
  chain: string;
  entry: ChainPlan["entry"];
  nfs: Array<Pick<PlanNf, "name" | "uuid" | "xdp" | "userland" | "path" | "maps" | "actions">>;
}
type InstallNf = InstallPlan["nfs"][number];

/** One entry of an action table: what variant `index` of an NF does. */
export interface ActionEntry {
  kind: ActionKindName;
  /** instance id for tailcall/upcall, else 0 */
  arg: number;
  /** the target as the chain names it (an NF instance or an exit), for humans */
  target: string;
}

/** A map as an NF's build declares it (nf-build's manifest `maps`, in #[maps] order). */
export interface ArtifactMap {
  name: string;
  type: string;
  maxEntries: number;
  keySize: number;
  valueSize: number;
}

/** What the installer needs of one NF build (from nf-build's NfBuildResult). */
export interface NfArtifacts {
  /** the build hash */
  hash: string;
  /** Action variants in order */
  variants: string[];
  maps: ArtifactMap[];
  /** <hash>.bpf.o; required when the NF runs in XDP */
  bpfObject?: string;
  /** <hash>.<triple>.so for this CPU; required when the NF runs in userland */
  library?: string;
}

export interface MapInstallSpec {
  /** unique in an installation: `shared.<name>`, or `<instance name>.<field>.<type>-<size>-<key>x<value>` */
  key: string;
  /** kernel map name (the #[maps] field / shared name, cut to 15 characters) */
  name: string;
  /** map type, canonical spelling (hash_map, array, lpm_trie, …) */
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* map flags (lpm_trie needs BPF_F_NO_PREALLOC) */
  flags: number;
  shared: boolean;
  /** bpffs pin path */
  pin: string;
}

export interface InstanceSpec {
  /** instance id = galette_progs slot = upcall metadata instance */
  id: number;
  name: string;
  uuid: string;
  hash: string;
  xdp: boolean;
  userland: boolean;
  bpfObject?: string;
  library?: string;
  variants: string[];
  /** one entry per variant */
  actions: ActionEntry[];
  /** MapInstallSpec keys, in #[maps] declaration order (what galette_nf_packet gets) */
  maps: string[];
  /** the #[maps] field names, same order (the object's maps are nf_map_<field>) */
  mapFields: string[];
  pins: { prog: string; actions: string; counts: string };
}

/**
 * The rx pseudo-instance of a chain whose entry runs in userland. The rx upcall program
 * tags frames of a two-port installation's second port as variant 1, all others as
 * variant 0: variant 0 leads to the first port's entry, variant 1 to the second's (the
 * same NF unless the chain has a direction per port; a direction entered in XDP never
 * reaches the rx program, so its variant repeats the other one).
 */
export interface RxSpec {
  id: typeof RX_INSTANCE;
  actions: ActionEntry[];
  pins: { prog: string; actions: string };
}

export interface InterfaceTarget {
  iface: string;
  /**
   * The second port of a two-port installation (same namespace): a frame arriving on one
   * port that exits with `tx` leaves through the other. Absent: `tx` reflects.
   */
  peer?: string;
  /** network namespace name (under /run/netns), when the interface is not in ours */
  netns?: string;
}

/** The installation's ports, in order: [iface] or [iface, peer]. */
export const targetPorts = (t: InterfaceTarget): string[] => (t.peer ? [t.iface, t.peer] : [t.iface]);

export interface DevicePins {
  dir: string;
  /** the attached root program */
  root: string;
  /**
   * its PROG_ARRAY: slot 0 = the chain's entry, slot 1 = the entry of frames arriving on
   * the port in rootPorts (a chain per direction; empty otherwise: they take slot 0)
   */
  rootProgs: string;
  /**
   * galette_root_ports[0] = ifindex of the second port. Absent in records written before
   * chains per direction (their root program has one slot and no such map).
   */
  rootPorts?: string;
  /** galette_progs (PROG_ARRAY, slot = instance id) */
  progs: string;
  xsks: string;
  xskCount: string;
  /** galette_ports (DEVMAP_HASH ingress ifindex → egress ifindex; empty on one port) */
  ports: string;
}

export interface InstallSpec {
  chain: string;
  target: InterfaceTarget;
  pins: DevicePins;
  /** the instance id the root slot points at (the entry NF, or RX_INSTANCE) */
  entry: number;
  /**
   * A chain per direction: the instance id root slot 1 points at (frames arriving on the
   * second port; the entry NF of rx.b, or RX_INSTANCE). Absent: both ports take `entry`.
   */
  entryB?: number;
  rx?: RxSpec;
  instances: InstanceSpec[];
  maps: MapInstallSpec[];
}

/** The parts of a live installation the diff looks at (an InstallationRecord has them). */
export interface LiveState {
  instances: InstanceSpec[];
  maps: MapInstallSpec[];
  entry: number;
  entryB?: number;
  rx?: RxSpec;
}

export interface Reconfiguration {
  spec: InstallSpec;
  /** instance ids kept as they are (program, action table, counters) */
  reused: number[];
  /** instance ids to load beside the live chain */
  created: number[];
  /** live instance ids to remove after the swap */
  retired: number[];
  maps: { reused: string[]; created: string[]; retired: string[] };
}

/** A plan the installer cannot carry out; says which NF/map and why. Nothing was touched. */
export class InstallSpecError extends Error {
  override name = "InstallSpecError";
}

/** BPF_F_NO_PREALLOC */
const NO_PREALLOC = 1;
/** BPF_F_MMAPABLE: native NFs read and write an array through a shared mapping, not bpf() */
const MMAPABLE = 1 << 10;

const canonicalType = (t: string): string => canonicalMapType(t) ?? t;

/** bpffs refuses names with a dot (EPERM); `~` never appears in keys or interface names. */
const bpffsName = (s: string): string => s.replaceAll(".", "~");

/**
 * `eth0`, `eth0+eth1` for a two-port installation, with `@NETNS` for interfaces in a named
 * namespace: one bpffs dir and state file each.
 */
export function interfaceScope(t: InterfaceTarget): string {
  for (const name of targetPorts(t))
    if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(name)) throw new InstallSpecError(`invalid interface name "${name}"`);
  if (t.peer !== undefined && t.peer === t.iface)
    throw new InstallSpecError(`the two ports of an installation must differ, got "${t.iface}" twice`);
  if (t.netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(t.netns))
    throw new InstallSpecError(`invalid network namespace name "${t.netns}"`);
  const ports = targetPorts(t).join("+");
  return t.netns ? `${ports}@${t.netns}` : ports;
}

export function devicePins(t: InterfaceTarget, root = BPFFS_ROOT): DevicePins {
  const dir = `${root}/${bpffsName(interfaceScope(t))}`;
  return {
    dir,
    root: `${dir}/root`,
    rootProgs: `${dir}/root_progs`,
    rootPorts: `${dir}/root_ports`,
    progs: `${dir}/progs`,
    xsks: `${dir}/xsks`,
    xskCount: `${dir}/xsk_count`,
    ports: `${dir}/ports`,
  };
}

/** Action tables live per slot (tables/<id>), for the life of the installation: see kernel.ts. */
export const slotTablePin = (dir: string, id: number): string => `${dir}/tables/${id}`;

const instancePins = (dir: string, id: number) => ({
  prog: `${dir}/nf/${id}/prog`,
  actions: slotTablePin(dir, id),
  counts: `${dir}/nf/${id}/counts`,
});

export interface SpecOptions {
  /** bpffs root (default /sys/fs/bpf/galette) */
  bpffsRoot?: string;
  /** the live installation on this interface: reuse what is unchanged, never touch its slots */
  live?: LiveState;
}

/**
 * Computes the installation of `plan` on `target`, reusing what `options.live` already
 * runs. Throws InstallSpecError for a missing artifact, a variant/map mismatch between the
 * plan and a build, or a map conflict — before anything is touched.
 */
export function planInstallation(
  plan: InstallPlan,
  artifacts: ReadonlyMap<string, NfArtifacts>,
  target: InterfaceTarget,
  options: SpecOptions = {},
): Reconfiguration {
  const pins = devicePins(target, options.bpffsRoot);
  const live = options.live ?? { instances: [], maps: [], entry: -1 };
  const placed = plan.nfs.filter((nf) => nf.xdp || nf.userland);
  const byName = new Map(placed.map((nf) => [nf.name, nf]));
  // Bounds the work below (and the recursion of visit) whatever the plan's origin.
  if (placed.length > MAX_INSTANCES - 1)
    throw new InstallSpecError(
      `chain "${plan.chain}" places ${placed.length} NF instances; a device holds at most ${MAX_INSTANCES - 1} (GALETTE_MAX_INSTANCES = ${MAX_INSTANCES}, one slot kept for rx)`,
    );

  // Maps first: a conflict must stop us before any id is handed out.
  const maps = new Map<string, MapInstallSpec>();
  const nfMapKeys = new Map<string, string[]>();
  for (const nf of placed) {
    const art = artifactsOf(nf, artifacts);
    checkArtifact(plan, nf, art);
    const keys: string[] = [];
    for (const field of art.maps) {
      const binding = nf.maps.find((m) => m.name === field.name)!;
      const type = canonicalType(field.type);
      // Owned maps belong to the chain's instance name, not its build: a new build of the NF
      // keeps its state (allow-lists…) as long as the map's shape is unchanged.
      const key = binding.shared
        ? `shared.${binding.map}`
        : `${nf.name}.${field.name}.${type}-${field.maxEntries}-${field.keySize}x${field.valueSize}`;
      const spec: MapInstallSpec = {
        key,
        name: (binding.shared ? binding.map : field.name).slice(0, 15),
        type,
        keySize: field.keySize,
        valueSize: field.valueSize,
        maxEntries: field.maxEntries,
        flags: type === "lpm_trie" ? NO_PREALLOC : type === "array" ? MMAPABLE : 0,
        shared: binding.shared,
        pin: `${pins.dir}/maps/${bpffsName(key)}`,
      };
      const seen = maps.get(key);
      if (seen && !sameMap(seen, spec))
        throw new InstallSpecError(
          `shared map "${binding.map}": NF "${nf.name}" needs ${describeMap(spec)}, but another NF of the chain needs ${describeMap(seen)}`,
        );
      maps.set(key, spec);
      keys.push(key);
    }
    nfMapKeys.set(nf.name, keys);
  }
  const liveMaps = new Map(live.maps.map((m) => [m.key, m]));
  for (const m of maps.values()) {
    const old = liveMaps.get(m.key);
    // An array created before BPF_F_MMAPABLE keeps its state; native NFs use bpf() on it.
    if (old && (old.flags ^ m.flags) === MMAPABLE) m.flags = old.flags;
    if (old && !sameMap(old, m))
      throw new InstallSpecError(
        `map "${m.key}" conflicts with the live installation: the new chain needs ${describeMap(m)}, the live map is ${describeMap(old)} (uninstall first, or rename the map)`,
      );
  }

  // Instances bottom-up: an instance is reused only if everything it points at is reused
  // too, so a changed NF forces new copies of its XDP ancestors (their tables change).
  const used = new Set<number>([...live.instances.map((i) => i.id), RX_INSTANCE]);
  const liveByUuid = new Map<string, InstanceSpec[]>();
  for (const i of live.instances) liveByUuid.set(i.uuid, [...(liveByUuid.get(i.uuid) ?? []), i]);
  const assigned = new Map<string, InstanceSpec>();
  const reused: number[] = [];
  const created: number[] = [];
  let nextFree = 0;
  const allocate = (nf: string): number => {
    while (nextFree < MAX_INSTANCES && used.has(nextFree)) nextFree++;
    if (nextFree >= MAX_INSTANCES)
      throw new InstallSpecError(
        `no free NF slot for "${nf}": ${MAX_INSTANCES - 1} instance slots, ${live.instances.length} live and ${assigned.size} new (reconfigure in two steps or uninstall first)`,
      );
    used.add(nextFree);
    return nextFree;
  };
  const visit = (name: string, stack: string[]): InstanceSpec => {
    const done = assigned.get(name);
    if (done) return done;
    if (stack.includes(name))
      throw new InstallSpecError(`chain cycle through ${[...stack, name].join(" → ")}`);
    const nf = byName.get(name);
    if (!nf) throw new InstallSpecError(`plan edge leads to "${name}", which the plan does not place`);
    const art = artifactsOf(nf, artifacts);
    // The plan decided every variant's kind and target; here they only become slot ids.
    const actions = nf.actions.map((action): ActionEntry => {
      if (!("target" in action)) return { kind: action.kind, arg: 0, target: action.kind };
      const next = visit(action.target, [...stack, name]);
      return { kind: action.kind, arg: next.id, target: action.target };
    });
    const candidate: Omit<InstanceSpec, "id" | "pins"> = {
      name,
      uuid: nf.uuid,
      hash: art.hash,
      xdp: nf.xdp,
      userland: nf.userland,
      ...(nf.xdp ? { bpfObject: art.bpfObject! } : {}),
      ...(nf.userland ? { library: art.library! } : {}),
      variants: [...art.variants],
      actions,
      maps: nfMapKeys.get(name)!,
      mapFields: art.maps.map((m) => m.name),
    };
    const match = (liveByUuid.get(nf.uuid) ?? []).find(
      (l) => !reused.includes(l.id) && sameInstance(l, candidate),
    );
    let spec: InstanceSpec;
    if (match) {
      spec = { ...candidate, id: match.id, pins: match.pins };
      reused.push(match.id);
    } else {
      const id = allocate(name);
      spec = { ...candidate, id, pins: instancePins(pins.dir, id) };
      created.push(id);
    }
    assigned.set(name, spec);
    return spec;
  };
  if (plan.entry.b && !target.peer)
    throw new InstallSpecError(
      `chain "${plan.chain}" has a direction per port (rx.a, rx.b): install it on two ports (--ports A,B, or ports: [A, B] in the agent config), not on ${target.iface} alone`,
    );
  const entryOf = (entry: { kind: string; target: string }, role: string): InstanceSpec => {
    const nf = byName.get(entry.target);
    if (!nf) throw new InstallSpecError(`the chain's ${role} "${entry.target}" is not placed by the plan`);
    const fits = entry.kind === "tailcall" ? nf.xdp : entry.kind === "upcall" && nf.userland;
    if (!fits)
      throw new InstallSpecError(
        `the chain's ${role} "${nf.name}" is reached by ${entry.kind} but runs ${nf.xdp ? (nf.userland ? "in XDP and userland" : "only in XDP") : "only in userland"}`,
      );
    return visit(nf.name, []);
  };
  const entry = entryOf(plan.entry, plan.entry.b ? "rx.a entry" : "entry");
  const entryB = plan.entry.b ? entryOf(plan.entry.b, "rx.b entry") : undefined;
  for (const nf of placed) visit(nf.name, []);

  // rx variant 0: frames of the first port (or the only one), variant 1: of the second
  const upcallTo = (kind: string, inst: InstanceSpec | undefined): ActionEntry | undefined =>
    kind === "upcall" && inst ? { kind: "upcall", arg: inst.id, target: inst.name } : undefined;
  const rxA = upcallTo(plan.entry.kind, entry);
  const rxB = plan.entry.b ? upcallTo(plan.entry.b.kind, entryB) : rxA;
  let rx: RxSpec | undefined;
  if (rxA || rxB) {
    rx = {
      id: RX_INSTANCE,
      actions: target.peer ? [(rxA ?? rxB)!, (rxB ?? rxA)!] : [rxA!],
      pins: { prog: `${pins.dir}/nf/rx/prog`, actions: slotTablePin(pins.dir, RX_INSTANCE) },
    };
  }

  const instances = [...assigned.values()].sort((a, b) => a.id - b.id);
  const keep = new Set(reused);
  return {
    spec: {
      chain: plan.chain,
      target: { ...target },
      pins,
      entry: rxA ? RX_INSTANCE : entry.id,
      ...(plan.entry.b ? { entryB: rxB ? RX_INSTANCE : entryB!.id } : {}),
      ...(rx ? { rx } : {}),
      instances,
      maps: [...maps.values()],
    },
    reused: [...reused].sort((a, b) => a - b),
    created: [...created].sort((a, b) => a - b),
    retired: live.instances.map((i) => i.id).filter((id) => !keep.has(id)),
    maps: {
      reused: [...maps.keys()].filter((k) => liveMaps.has(k)),
      created: [...maps.keys()].filter((k) => !liveMaps.has(k)),
      retired: [...liveMaps.keys()].filter((k) => !maps.has(k)),
    },
  };
}

function artifactsOf(nf: InstallNf, artifacts: ReadonlyMap<string, NfArtifacts>): NfArtifacts {
  const art = artifacts.get(nf.name);
  if (!art) throw new InstallSpecError(`NF "${nf.name}" (${nf.path}): no build artifacts were given for it`);
  return art;
}

function checkArtifact(plan: InstallPlan, nf: InstallNf, art: NfArtifacts): void {
  const where = `NF "${nf.name}" (${nf.path}, build ${art.hash})`;
  if (nf.xdp && !art.bpfObject)
    throw new InstallSpecError(
      `${where} runs in XDP but has no eBPF object (<hash>.bpf.o); was it built with the bpf target?`,
    );
  if (nf.userland && !art.library)
    throw new InstallSpecError(
      `${where} runs in userland but has no native library for this CPU; was it built for it?`,
    );
  if (art.variants.length !== nf.actions.length)
    throw new InstallSpecError(
      `${where}: the build has ${art.variants.length} Action variants (${art.variants.join(", ")}) but the chain links ${nf.actions.length} (${nf.actions.map(describeAction).join(", ")})`,
    );
  for (const action of nf.actions) {
    const ok =
      "target" in action ? action.kind === "tailcall" || action.kind === "upcall" : isExit(action.kind);
    if (!ok)
      throw new InstallSpecError(`${where}: action ${describeAction(action)} is not one the dataplane knows`);
    if (action.kind === "tailcall" && "target" in action && nf.xdp) {
      const next = plan.nfs.find((n) => n.name === action.target);
      if (next && !next.xdp)
        throw new InstallSpecError(
          `${where}: tail call to "${action.target}", which the plan does not place in XDP`,
        );
    }
  }
  if (art.variants.length > MAX_ACTIONS)
    throw new InstallSpecError(
      `${where}: ${art.variants.length} Action variants, at most ${MAX_ACTIONS} fit an action table`,
    );
  const declared = art.maps.map((m) => m.name);
  const bound = nf.maps.map((m) => m.name);
  if (declared.length !== bound.length || declared.some((n) => !bound.includes(n)))
    throw new InstallSpecError(
      `${where}: the build declares maps [${declared.join(", ")}] but the chain binds [${bound.join(", ")}]`,
    );
  for (const m of art.maps) {
    const b = nf.maps.find((x) => x.name === m.name)!;
    if (canonicalType(b.type) !== canonicalType(m.type) || b.maxEntries !== m.maxEntries)
      throw new InstallSpecError(
        `${where}: map "${m.name}" is ${canonicalType(m.type)}[${m.maxEntries}] in the build but ${b.type}[${b.maxEntries}] in chain "${plan.chain}" (rebuild the NF with the chain's map overrides)`,
      );
  }
}

const sameMap = (a: MapInstallSpec, b: MapInstallSpec): boolean =>
  a.type === b.type &&
  a.keySize === b.keySize &&
  a.valueSize === b.valueSize &&
  a.maxEntries === b.maxEntries &&
  a.flags === b.flags;

const describeMap = (m: MapInstallSpec): string =>
  `${m.type}[${m.maxEntries}] with ${m.keySize}-byte keys and ${m.valueSize}-byte values`;

function sameInstance(live: InstanceSpec, c: Omit<InstanceSpec, "id" | "pins">): boolean {
  return (
    live.hash === c.hash &&
    live.xdp === c.xdp &&
    live.userland === c.userland &&
    JSON.stringify(live.maps) === JSON.stringify(c.maps) &&
    live.actions.length === c.actions.length &&
    live.actions.every((a, i) => a.kind === c.actions[i]!.kind && a.arg === c.actions[i]!.arg)
  );
}

const describeAction = (a: InstallNf["actions"][number]): string =>
  "target" in a ? `${a.kind} ${a.target}` : a.kind;

/** The codes written into an instance's galette_actions map ({kind, arg}), from the one vocabulary. */
export const ACTION_CODES: Readonly<Record<ActionKindName, number>> = ABI_ACTION_CODES;
