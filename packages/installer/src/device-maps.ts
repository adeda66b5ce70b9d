/**
 * The maps an installation creates and fills: the device-wide ones every instance shares
 * (PROG_ARRAYs, XSKMAP, ports, action tables per slot, trace maps) and the NFs' own
 * `#[maps]`.
 */
import { GALETTE_MAX_ACTIONS } from "@galette/vocabulary";
import { AbiNames, BpfMap, encode, galetteAction, setDevmapEntry, u32 } from "@galette/xdp-native";
import { withContext } from "./errors";
import { ACTION_CODES, type ActionEntry, type MapInstallSpec } from "./spec";

export interface DeviceMaps {
  /**
   * One action table per slot (index = instance id), created with the installation and
   * all registered with the workers: a new instance fills the table of its fresh slot and
   * the workers pick it up with a reload, without a restart.
   */
  tables: BpfMap[];
  progs: BpfMap;
  xsks: BpfMap;
  xskCount: BpfMap;
  /** galette_ports: ingress ifindex → egress ifindex (empty on one port: `tx` reflects) */
  ports: BpfMap;
  rootProgs: BpfMap;
  /** galette_root_ports[0]: the port whose frames take root slot 1 (absent: an older root) */
  rootPorts?: BpfMap;
  /** packet tracing: the XDP records' ring buffer and the workers' queue (trace-maps.ts) */
  traceRing: BpfMap;
  traceQueue: BpfMap;
}

/** Entries of galette_ports (the ABI's DEVMAP_HASH size; an installation has one or two ports). */
export const PORTS_MAP_SIZE = 8;

export const key32 = (i: number): Buffer => encode(u32, i);

/**
 * Two ports: a frame arriving on one leaves (`tx`) through the other. Written from inside
 * the ports' namespace: the kernel resolves DEVMAP ifindexes in the writer's.
 */
export function fillPorts(ports: BpfMap, a: number, b: number, netns: string | undefined): void {
  setDevmapEntry(ports.fd, a, b, netns);
  setDevmapEntry(ports.fd, b, a, netns);
}

export function createActionTable(): BpfMap {
  return BpfMap.create({
    type: "array",
    name: AbiNames.actions,
    keySize: 4,
    valueSize: galetteAction.size,
    maxEntries: GALETTE_MAX_ACTIONS,
  });
}

const actionsBuffer = (actions: ActionEntry[]): Buffer[] =>
  Array.from({ length: GALETTE_MAX_ACTIONS }, (_, i) => {
    const a = actions[i];
    // Unused variants stay ABORT (0): an NF returning one is a bug worth seeing.
    return encode(galetteAction, a ? { kind: ACTION_CODES[a.kind], arg: a.arg } : { kind: 0, arg: 0 });
  });

/** Writes a slot's whole action table; `[]` returns it to idle (every variant ABORT). */
export function fillTable(table: BpfMap, actions: ActionEntry[]): void {
  for (const [k, v] of actionsBuffer(actions).entries()) table.update(key32(k), v);
}

export function createNfMap(m: MapInstallSpec): BpfMap {
  const type =
    m.type === "hash_map"
      ? "hash"
      : m.type === "lru_hash"
        ? "lru_hash"
        : (m.type as "array" | "lpm_trie" | "percpu_array" | "percpu_hash");
  try {
    return BpfMap.create({
      type,
      name: m.name,
      keySize: m.keySize,
      valueSize: m.valueSize,
      maxEntries: m.maxEntries,
      flags: m.flags,
    });
  } catch (err) {
    throw withContext(
      err,
      `creating map "${m.key}" (${m.type}[${m.maxEntries}], key ${m.keySize} B, value ${m.valueSize} B)`,
    );
  }
}
