import { type Diagnostic, didYouMean, formatLocation, type SourceLocation } from "./diagnostics";
import { checkDeviceLimits, DEFAULT_DEVICE_LIMITS, type DeviceLimits, mapMemory } from "./limits";
import {
  type Chain,
  type ChainMap,
  canonicalMapName,
  canonicalMapType,
  type MapType,
  type NfInstance,
} from "./model";
import { targetText } from "./plan";

/** What an NF crate exposes, as the NF compiler reads it from src/lib.rs. */
export interface NfInterface {
  /** the NF's src/lib.rs */
  file: string;
  /** variants of the Action enum returned by `packet()`, in declaration order */
  actions: Array<{ name: string; location: SourceLocation }>;
  /** fields of the #[maps] struct, in declaration order */
  maps: Array<{
    name: string;
    keySize?: number;
    valueSize?: number;
    /** map type given in the source, if any (any spelling) */
    mapType?: string;
    /** max entries given in the source (#[map(size = N)]), if any */
    maxEntries?: number;
    location: SourceLocation;
  }>;
}

/** BPF_MAP_TYPE_LPM_TRIE keys are a u32 prefix length followed by 1..256 data bytes. */
const LPM_KEY_MIN = 4 + 1;
const LPM_KEY_MAX = 4 + 256;

/**
 * Checks a chain against the interfaces of its NF crates (by instance name): `to`
 * entries vs Action variants, TOML maps vs #[maps] fields by name, key/value sizes
 * against the map type and across the NFs sharing a map. Instances without an interface
 * are skipped. Pure: the caller (the NF compiler) supplies the interfaces.
 */
export function checkNfInterfaces(
  chain: Chain,
  interfaces: ReadonlyMap<string, NfInterface>,
  limits: DeviceLimits = DEFAULT_DEVICE_LIMITS,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const error = (
    at: SourceLocation,
    code: string,
    message: string,
    hint: string,
    related: Diagnostic["related"],
  ) => out.push({ severity: "error", ...at, code, message, hint, related });
  const mapsById = new Map(chain.maps.map((m) => [m.id, m]));
  /** sizes each NF's source gives a chain map, to compare NFs sharing it */
  const sizesByMap = new Map<
    string,
    Array<{ nf: string; keySize?: number; valueSize?: number; location: SourceLocation }>
  >();

  for (const nf of chain.functions) {
    const iface = interfaces.get(nf.name);
    if (!iface) continue;

    if (nf.targets.length !== iface.actions.length) {
      const variants = iface.actions.map((a) => a.name).join(", ") || "none";
      const targets = nf.targets.map(targetText).join(", ");
      error(
        nf.linkLocation,
        "action-count",
        `"${nf.name}" has ${nf.targets.length} link target(s) (${targets}) but its Action enum in ${iface.file} has ${iface.actions.length} variant(s) (${variants})`,
        "give exactly one `to` entry per Action variant, in declaration order",
        iface.actions[0]
          ? [{ ...iface.actions[0].location, message: `Action variants of ${nf.path}` }]
          : undefined,
      );
    }

    const fields = new Map(iface.maps.map((f) => [canonicalMapName(f.name), f]));
    const fieldNames = [...fields.keys()];
    const bound = new Set(nf.maps.map((b) => b.name));
    for (const binding of nf.maps) {
      const field = fields.get(binding.name);
      const map = mapsById.get(binding.map)!;
      if (!field) {
        const unbound = fieldNames.filter((n) => !bound.has(n));
        error(
          binding.location,
          "map-extra",
          `"${nf.name}" declares map "${binding.tomlName}" but ${iface.file} has no #[maps] field of that name${didYouMean(binding.name, unbound)}`,
          fieldNames.length
            ? `the #[maps] fields are: ${fieldNames.join(", ")}; map names bind to field names`
            : "the NF has no #[maps] struct; remove the map from the chain",
          undefined,
        );
        continue;
      }
      const fieldAt = [{ ...field.location, message: `#[maps] field ${field.name}` }];
      if (field.mapType !== undefined) {
        const declared = canonicalMapType(field.mapType);
        if (declared !== map.type) {
          error(
            binding.location,
            "map-type-mismatch",
            `map "${binding.tomlName}" of "${nf.name}" is ${map.type} in the chain but ${field.mapType} in ${formatLocation(field.location)}`,
            "make the chain's type match the NF source",
            fieldAt,
          );
        }
      }
      for (const problem of sizeProblems(map.type, field.keySize, field.valueSize)) {
        error(
          binding.location,
          "map-key-value-size",
          `map "${binding.tomlName}" of "${nf.name}" (${map.type}): ${problem} (${formatLocation(field.location)})`,
          "change the key/value types in the #[maps] struct or the map type in the chain",
          fieldAt,
        );
      }
      const list = sizesByMap.get(map.id) ?? [];
      list.push({
        nf: nf.name,
        keySize: field.keySize,
        valueSize: field.valueSize,
        location: field.location,
      });
      sizesByMap.set(map.id, list);
    }
    for (const field of iface.maps) {
      const name = canonicalMapName(field.name);
      if (bound.has(name) || attributeMap(field)) continue;
      const extras = nf.maps.filter((b) => !fields.has(b.name)).map((b) => b.tomlName);
      const type = (field.mapType && canonicalMapType(field.mapType)) || "hash_map";
      const size = field.maxEntries !== undefined && field.maxEntries >= 1 ? field.maxEntries : 1024;
      error(
        nf.location,
        "map-missing",
        `"${nf.name}" does not declare map "${field.name}" that ${formatLocation(field.location)} uses, and its #[map] attribute does not give both type and size${didYouMean(name, extras)}`,
        `add it under [functions.${nf.name}.maps]: ${field.name} = { type = "${type}", size = ${size} } (or "_" for a shared map), or write #[map(type = "${type}", size = ${size})] on the field`,
        [{ ...field.location, message: `#[maps] field ${field.name}` }],
      );
    }
  }

  for (const [id, uses] of sizesByMap) {
    const map = mapsById.get(id)!;
    for (const what of ["keySize", "valueSize"] as const) {
      const known = uses.filter((u) => u[what] !== undefined);
      const first = known[0];
      const other = known.find((u) => u[what] !== first?.[what]);
      if (!first || !other) continue;
      const label = what === "keySize" ? "key" : "value";
      error(
        map.location,
        "map-size-conflict",
        `shared map "${map.name}": "${first.nf}" uses a ${first[what]}-byte ${label} (${formatLocation(first.location)}) but "${other.nf}" uses ${other[what]} bytes (${formatLocation(other.location)})`,
        "every NF sharing a map must use the same key and value types",
        [
          { ...first.location, message: `${label} of ${first.nf}` },
          { ...other.location, message: `${label} of ${other.nf}` },
        ],
      );
    }
  }
  // With the NFs' key/value sizes the map memory estimate is exact; parseChain checked the
  // lower bound, so report here only what the real sizes add.
  const budget = limits.mapMemoryBytes;
  if (mapMemory(chain, limits).bytes <= budget && mapMemory(chain, limits, interfaces).bytes > budget)
    out.push(
      ...checkDeviceLimits(chain, { limits, interfaces }).filter((d) => d.code === "limit-map-memory"),
    );
  return out;
}

/** The kernel's constraints on key/value sizes per map type (map creation fails otherwise). */
function sizeProblems(type: MapType, keySize?: number, valueSize?: number): string[] {
  const problems: string[] = [];
  if (valueSize === 0) problems.push("the value type has size 0");
  if (keySize === undefined) return problems;
  if ((type === "array" || type === "percpu_array") && keySize !== 4) {
    problems.push(`array keys must be 4 bytes (u32), the key type has ${keySize}`);
  } else if (type === "lpm_trie" && (keySize < LPM_KEY_MIN || keySize > LPM_KEY_MAX)) {
    problems.push(
      `lpm-trie keys are a u32 prefix length plus 1..256 data bytes (${LPM_KEY_MIN}..${LPM_KEY_MAX} bytes), the key type has ${keySize}`,
    );
  } else if (keySize === 0) {
    problems.push("the key type has size 0");
  }
  return problems;
}

/** The map an undeclared #[maps] field gets from its #[map(type, size)], if the attribute gives both. */
function attributeMap(field: NfInterface["maps"][number]): { type: MapType; maxEntries: number } | undefined {
  const type = field.mapType === undefined ? undefined : canonicalMapType(field.mapType);
  if (!type || field.maxEntries === undefined || !Number.isInteger(field.maxEntries) || field.maxEntries < 1)
    return undefined;
  return { type, maxEntries: field.maxEntries };
}

/**
 * A chain may omit an owned map whose #[map(type = ..., size = N)] attribute describes it
 * fully: returns the chain with such maps added, owned by their instance, as if the chain had
 * declared them inline. Shared maps are always declared by the chain. Call before planning,
 * with the interfaces checkNfInterfaces was given; `chain` itself is left unchanged.
 */
export function withAttributeMaps(chain: Chain, interfaces: ReadonlyMap<string, NfInterface>): Chain {
  const added: ChainMap[] = [];
  const functions = chain.functions.map((nf): NfInstance => {
    const iface = interfaces.get(nf.name);
    if (!iface) return nf;
    const bound = new Set(nf.maps.map((b) => b.name));
    const extra = [];
    for (const field of iface.maps) {
      const name = canonicalMapName(field.name);
      const attr = attributeMap(field);
      if (bound.has(name) || !attr) continue;
      const id = `${nf.name}.${name}`;
      added.push({
        id,
        name,
        ...attr,
        shared: false,
        owner: nf.name,
        users: [nf.name],
        location: nf.location,
      });
      extra.push({ name, tomlName: field.name, map: id, shared: false, location: nf.location });
    }
    return extra.length ? { ...nf, maps: [...nf.maps, ...extra] } : nf;
  });
  return added.length ? { ...chain, functions, maps: [...chain.maps, ...added] } : chain;
}
