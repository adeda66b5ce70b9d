import { basename } from "node:path";
import {
  type ChainPlan,
  checkNfInterfaces,
  type Diagnostic,
  formatDiagnostic,
  hasErrors,
  type NfInterface,
  parseChain,
  planChain,
  withAttributeMaps,
} from "@galette/chain";
import {
  type AssignedAction,
  ChainGraph as ChainGraphSchema,
  describeZodError,
  type MapSpec,
  type DeviceCapabilities as ProbedCapabilities,
} from "@galette/protocol";
import {
  DEFAULT_DEVICE_LIMITS,
  type DeviceLimits,
  estimateMapBytes,
  formatBytes,
  maxChainInstances,
} from "@galette/vocabulary";
import { RequestError } from "./control";
import type { ChainGraph, NfRecord, Repository } from "./storage/repository";

/** The published NF an instance runs: the crate directory's base name (default path nf-examples/<instance>). */
export function nfNameOf(path: string): string {
  return basename(path.replace(/\/+$/, ""));
}

export interface PlannedChain {
  name: string;
  graph: ChainGraph;
  warnings: string[];
}

function fail(summary: string, diagnostics: Diagnostic[]): never {
  const errors = diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic);
  throw new RequestError(400, `${summary}: ${errors[0] ?? "invalid chain"}`, errors);
}

/**
 * TOML → validated chain (syntax, links, maps) → checked against the published NFs'
 * interfaces (arity, map fields and sizes) → placement plan → the graph devices get.
 * Throws RequestError(400) naming file:line and the problem; stores nothing.
 */
export async function planChainForPush(
  repo: Pick<Repository, "latestNf">,
  toml: string,
  file: string,
  name?: string,
): Promise<PlannedChain> {
  const parsed = parseChain(toml, file, name ? { chainName: name } : {});
  if (!parsed.chain || hasErrors(parsed.diagnostics)) fail(`chain ${file} is invalid`, parsed.diagnostics);
  let chain = parsed.chain;

  const published = new Map<string, NfRecord>();
  const interfaces = new Map<string, NfInterface>();
  const missing: string[] = [];
  for (const fn of chain.functions) {
    const nfName = nfNameOf(fn.path);
    const nf = await repo.latestNf(nfName);
    if (!nf) {
      missing.push(
        `${file}:${fn.location.line}: [functions.${fn.name}] runs NF "${nfName}", which is not published (galette nf publish ${fn.path})`,
      );
      continue;
    }
    published.set(fn.name, nf);
    interfaces.set(fn.name, nf.interface);
  }
  if (missing.length > 0) throw new RequestError(400, missing[0]!, missing);

  // owned maps the chain omits come from the NFs' #[map(type, size)]
  chain = withAttributeMaps(chain, interfaces);
  const interfaceProblems = checkNfInterfaces(chain, interfaces);
  if (hasErrors(interfaceProblems)) fail(`chain ${chain.name} does not match its NFs`, interfaceProblems);

  const buildHashes = new Map([...published].map(([instance, nf]) => [instance, nf.buildHash]));
  const plan = planChain(chain, {
    buildHashes,
    warnings: [...parsed.diagnostics, ...interfaceProblems].filter((d) => d.severity === "warning"),
  });
  const graph = graphFromPlan(plan, published);
  // The plan comes from @galette/chain; check it still fits the wire format before storing it.
  const checked = ChainGraphSchema.safeParse(graph);
  if (!checked.success) {
    throw new Error(
      `the chain plan does not fit the protocol's ChainGraph: ${describeZodError(checked.error).join("; ")}`,
    );
  }
  const unfit = graphFitsDevice(checked.data, STATIC_DEVICE_CAPABILITIES);
  if (unfit.length > 0)
    throw new RequestError(400, `chain ${chain.name} does not fit a device: ${unfit[0]}`, unfit);
  return {
    name: chain.name,
    graph: checked.data,
    warnings: plan.warnings.map(formatDiagnostic),
  };
}

/** The plan (instance names) → the device graph (UUIDs, action indices, sized map specs). */
export function graphFromPlan(plan: ChainPlan, published: ReadonlyMap<string, NfRecord>): ChainGraph {
  const uuidOf = new Map(plan.nfs.map((nf) => [nf.name, nf.uuid]));
  const uuid = (name: string): string => {
    const id = uuidOf.get(name);
    if (id === undefined) throw new Error(`plan of chain ${plan.chain}: "${name}" is no NF of the plan`);
    return id;
  };

  const maps: MapSpec[] = plan.maps.map((map) => {
    // Sizes come from the #[maps] field of any NF using the map (checkNfInterfaces made them agree).
    let keySize: number | undefined;
    let valueSize: number | undefined;
    for (const user of map.users) {
      const field = published.get(user)?.interface.maps.find((f) => f.name === map.name);
      keySize ??= field?.keySize;
      valueSize ??= field?.valueSize;
    }
    if (keySize === undefined || valueSize === undefined) {
      throw new RequestError(
        400,
        `map "${map.id}" of chain ${plan.chain}: the NF source does not give a computable ${keySize === undefined ? "key" : "value"} size (use fixed-size #[repr(C)] types)`,
      );
    }
    return {
      id: map.id,
      name: map.name,
      type: map.type,
      keySize,
      valueSize,
      maxEntries: map.maxEntries,
      shared: map.shared,
      ...(map.owner ? { owner: uuidOf.get(map.owner)! } : {}),
    };
  });

  const nfs = plan.nfs.map((nf) => {
    const record = published.get(nf.name)!;
    // The planner's decision, carried as it is: only instance names become UUIDs.
    const actions = nf.actions.map((action, i): AssignedAction => {
      const variant = record.interface.actions[i]?.name ?? `action${i}`;
      return "target" in action
        ? { variant, kind: action.kind, target: uuid(action.target) }
        : { variant, kind: action.kind };
    });
    return {
      uuid: nf.uuid,
      instance: nf.name,
      nf: record.name,
      buildHash: record.buildHash,
      xdp: nf.xdp,
      userland: nf.userland,
      actions,
      maps: nf.maps.map((m) => ({ field: m.name, map: m.map })),
    };
  });
  const entry: ChainGraph["entry"] = { kind: plan.entry.kind, target: uuid(plan.entry.target) };
  if (plan.entry.b) entry.b = { kind: plan.entry.b.kind, target: uuid(plan.entry.b.target) };
  return { entry, nfs, maps };
}

/**
 * What a device can hold and run: the static limits (sized for a 512 MB Smart SFP), and,
 * once its agent reported them, what its probe found (deviceCapabilities builds both).
 */
export interface DeviceCapabilities {
  limits: DeviceLimits;
  /** the agent's probe; absent: only the static limits are checked */
  probe?: ProbedCapabilities;
  /** UUIDs of the graph's XDP NFs whose BPF object calls bpf_loop (nf::repeat) */
  bpfLoopNfs?: ReadonlySet<string>;
}

/** The limits for a device whose agent reported `probe`: its CPUs, at most half its free memory for maps. */
export function deviceCapabilities(
  probe: ProbedCapabilities | undefined,
  bpfLoopNfs?: ReadonlySet<string>,
): DeviceCapabilities {
  if (!probe) return STATIC_DEVICE_CAPABILITIES;
  const limits: DeviceLimits = {
    ...DEFAULT_DEVICE_LIMITS,
    cpus: probe.cpus,
    mapMemoryBytes: Math.min(
      DEFAULT_DEVICE_LIMITS.mapMemoryBytes,
      Math.floor(probe.availableMemoryBytes / 2),
    ),
  };
  return { limits, probe, ...(bpfLoopNfs ? { bpfLoopNfs } : {}) };
}

export const STATIC_DEVICE_CAPABILITIES: DeviceCapabilities = { limits: DEFAULT_DEVICE_LIMITS };

/**
 * The problems (none when it fits) of running `graph` on a device with `capabilities`:
 * NF instances, Action variants and maps per NF, maps per chain, entries per map, map
 * memory (exact: the graph has key and value sizes) and userland NFs. Each names the limit.
 */
export function graphFitsDevice(graph: ChainGraph, capabilities: DeviceCapabilities): string[] {
  const { limits } = capabilities;
  const problems: string[] = [];
  const maxInstances = maxChainInstances(limits);
  if (graph.nfs.length > maxInstances)
    problems.push(
      `${graph.nfs.length} NF instances; the device holds at most ${maxInstances} (${limits.instanceSlots}-instance limit, one slot kept for rx)`,
    );
  for (const nf of graph.nfs) {
    if (nf.actions.length > limits.actionsPerNf)
      problems.push(
        `NF "${nf.instance}" has ${nf.actions.length} Action variants; at most ${limits.actionsPerNf}`,
      );
    if (nf.maps.length > limits.mapsPerNf)
      problems.push(`NF "${nf.instance}" binds ${nf.maps.length} maps; at most ${limits.mapsPerNf}`);
  }
  if (graph.maps.length > limits.mapsPerChain)
    problems.push(`${graph.maps.length} maps; the device holds at most ${limits.mapsPerChain} per chain`);
  let bytes = 0;
  for (const m of graph.maps) {
    if (m.maxEntries > limits.entriesPerMap)
      problems.push(`map "${m.id}" has ${m.maxEntries} entries; at most ${limits.entriesPerMap} per map`);
    bytes += estimateMapBytes(m.type, m.maxEntries, m.keySize, m.valueSize, limits.cpus);
  }
  if (bytes > limits.mapMemoryBytes)
    problems.push(
      `the maps need about ${formatBytes(bytes)}; the device gives a chain's maps ${formatBytes(limits.mapMemoryBytes)}`,
    );
  const userland = graph.nfs.filter((nf) => nf.userland).length;
  if (userland > limits.userlandNfs)
    problems.push(`${userland} userland NFs; the device runs at most ${limits.userlandNfs}`);
  const probe = capabilities.probe;
  if (!probe) return problems;
  const kernel = `kernel ${probe.kernelRelease}`;
  const inUserland = graph.nfs.filter((nf) => nf.userland).map((nf) => `"${nf.instance}"`);
  if (inUserland.length > 0 && !probe.afXdp)
    problems.push(
      `NF ${inUserland.join(", ")} run${inUserland.length === 1 ? "s" : ""} in userland, which needs AF_XDP; ${kernel} has no AF_XDP (XSKMAP)`,
    );
  if (graph.nfs.some((nf) => nf.xdp) && !probe.tailCalls)
    problems.push(`the chain's XDP NFs are entered by tail calls; ${kernel} cannot create a PROG_ARRAY`);
  for (const nf of graph.nfs) {
    if (nf.xdp && capabilities.bpfLoopNfs?.has(nf.uuid) && !probe.bpfLoop)
      problems.push(
        `NF "${nf.instance}" uses nf::repeat (the bpf_loop helper) in XDP; ${kernel} lacks bpf_loop (5.17 added it)`,
      );
  }
  const missingTypes = [...new Set(graph.maps.map((m) => m.type))].filter((t) => !probe.mapTypes.includes(t));
  for (const type of missingTypes) {
    const maps = graph.maps.filter((m) => m.type === type).map((m) => `"${m.id}"`);
    problems.push(`map ${maps.join(", ")} is a ${type}; ${kernel} does not create ${type} maps`);
  }
  if (graph.entry.b && probe.interfaces.length < 2)
    problems.push(
      `the chain has a direction per port (rx.a, rx.b) and needs two ports; the device reports ${probe.interfaces.length === 1 ? `one interface (${probe.interfaces[0]!.name})` : "no interface"} (set ports: [A, B] in its agent config)`,
    );
  for (const iface of probe.interfaces)
    if (iface.xdp === "none")
      problems.push(`interface ${iface.name} takes no XDP program (neither driver nor generic mode)`);
  return problems;
}
