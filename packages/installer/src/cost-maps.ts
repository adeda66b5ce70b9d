/**
 * The maps of per-NF XDP timing on an installation (galette_cost.h in @galette/xdp-native):
 * the "measuring" flag every generated NF shim reads (its `.data.cost` global) and the
 * per-CPU {ns, runs} slot of each instance. One of each per installation, pinned beside the
 * chain's other maps and shared by every NF object, so that opening a window is one write.
 */
import { existsSync } from "node:fs";
import { GALETTE_MAX_INSTANCES } from "@galette/vocabulary";
import { BpfMap, type MapSpec, MapType, type MapTypeName } from "@galette/xdp-native";

/** Map names in the NF objects (an object built before per-NF timing declares neither). */
export const CostNames = { on: ".data.cost", slots: "galette_nf_cost" } as const;

/** struct galette_nf_cost: u64 ns, u64 runs */
export const NF_COST_SIZE = 16;

export interface CostPins {
  on: string;
  slots: string;
}

export const costPins = (pinsDir: string): CostPins => ({
  on: `${pinsDir}/cost_on`,
  slots: `${pinsDir}/nf_cost`,
});

/** The installation's cost maps if it has them (none: installed before per-NF timing). */
export function openCostMaps(pinsDir: string): CostMaps | undefined {
  const pins = costPins(pinsDir);
  if (!existsSync(pins.on) || !existsSync(pins.slots)) return undefined;
  return ensureCostMaps(pinsDir);
}

export interface CostMaps {
  on: BpfMap;
  slots: BpfMap;
  close(): void;
}

const ON_SPEC: MapSpec = { type: "array", name: "galette_cost_on", keySize: 4, valueSize: 4, maxEntries: 1 };
const SLOTS_SPEC: MapSpec = {
  type: "percpu_array",
  name: CostNames.slots,
  keySize: 4,
  valueSize: NF_COST_SIZE,
  maxEntries: GALETTE_MAX_INSTANCES,
};

/**
 * The installation's cost maps, created and pinned when missing (a fresh installation, or
 * one made before per-NF timing: NF objects loaded from then on share them).
 */
export function ensureCostMaps(pinsDir: string): CostMaps {
  const pins = costPins(pinsDir);
  const opened: BpfMap[] = [];
  try {
    const get = (pin: string, spec: MapSpec): BpfMap => {
      if (existsSync(pin)) {
        const m = BpfMap.openPinned(pin);
        opened.push(m);
        const i = m.info;
        if (
          i.type !== MapType[spec.type as MapTypeName] ||
          i.keySize !== spec.keySize ||
          i.valueSize !== spec.valueSize ||
          i.maxEntries !== spec.maxEntries
        )
          throw new Error(
            `${pin} is not a per-NF cost map: type ${i.type}, key ${i.keySize}, value ${i.valueSize} bytes, ${i.maxEntries} entries; expected ${spec.type}, key ${spec.keySize}, value ${spec.valueSize} bytes, ${spec.maxEntries} entries`,
          );
        return m;
      }
      const m = BpfMap.create(spec);
      opened.push(m);
      m.pin(pin);
      return m;
    };
    const on = get(pins.on, ON_SPEC);
    const slots = get(pins.slots, SLOTS_SPEC);
    return { on, slots, close: () => closeAll(opened) };
  } catch (err) {
    closeAll(opened);
    throw err;
  }
}

function closeAll(maps: BpfMap[]): void {
  for (const m of maps) m.close();
}

/** The maps to hand an NF object at load (BpfObject reuseMapsIfDeclared). */
export const costReuse = (maps: CostMaps): Record<string, BpfMap> => ({
  [CostNames.on]: maps.on,
  [CostNames.slots]: maps.slots,
});

const KEY0 = Buffer.alloc(4);

/** Opens (true) or closes (false) the measuring window of every NF shim of the installation. */
export function setMeasuring(maps: CostMaps, on: boolean): void {
  const v = Buffer.alloc(4);
  v.writeUInt32LE(on ? 1 : 0);
  maps.on.update(KEY0, v);
}

export interface NfXdpTotals {
  ns: number;
  runs: number;
}

/** One instance's slot summed over the CPUs (counts only ever grow while its id is live). */
export function readNfCost(maps: CostMaps, instanceId: number): NfXdpTotals {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(instanceId);
  const per = maps.slots.lookupPerCpu(key) ?? [];
  return sumSlots(per);
}

/** Sums struct galette_nf_cost values (one per CPU). */
export function sumSlots(perCpu: Buffer[]): NfXdpTotals {
  let ns = 0n;
  let runs = 0n;
  for (const b of perCpu) {
    if (b.length < NF_COST_SIZE)
      throw new Error(`galette_nf_cost value of ${b.length} bytes, expected ${NF_COST_SIZE}`);
    ns += b.readBigUInt64LE(0);
    runs += b.readBigUInt64LE(8);
  }
  return { ns: Number(ns), runs: Number(runs) };
}
