/**
 * Limits where the operator sees them: hard limits on the chain file itself (they bound
 * the work any input causes) and the device's limits (a chain a device cannot hold is an
 * error at validation, not a failed install). Both name the limit and file:line.
 */
import {
  CHAIN_INPUT_LIMITS,
  type ChainInputLimits,
  DEFAULT_DEVICE_LIMITS,
  type DeviceLimits,
  estimateMapBytes,
  formatBytes,
  maxChainInstances,
} from "@galette/vocabulary";
import type { Diagnostic, SourceLocation } from "./diagnostics";
import type { NfInterface } from "./interfaces";
import type { Chain, ChainMap } from "./model";
import { planChain } from "./plan";

export { CHAIN_INPUT_LIMITS, DEFAULT_DEVICE_LIMITS, type DeviceLimits };

const error = (
  at: SourceLocation,
  code: string,
  message: string,
  hint: string,
  related?: Diagnostic["related"],
): Diagnostic => ({ severity: "error", ...at, code, message, hint, ...(related ? { related } : {}) });

/** The file's size, before any parsing. */
export function checkInputSize(
  text: string,
  file: string,
  limits: ChainInputLimits = CHAIN_INPUT_LIMITS,
): Diagnostic | undefined {
  // UTF-16 length ≤ UTF-8 bytes ≤ 3 × length: skip the encode for small inputs
  if (text.length * 3 <= limits.tomlBytes) return undefined;
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes <= limits.tomlBytes) return undefined;
  return error(
    { file, line: 1, column: 1 },
    "input-limit",
    `the chain file is ${formatBytes(bytes)}; chain files are limited to ${formatBytes(limits.tomlBytes)} (input limit: TOML bytes)`,
    "split the chain, or shorten it: no device holds more than a few hundred NF instances anyway",
  );
}

/** Where the n-th (0-based) entry of a counted table or array is, for a located diagnostic. */
export type Locate = (index: number) => SourceLocation;

/**
 * Counts and lengths of the parsed TOML, before validation walks it. Returns the
 * diagnostics of every exceeded limit (validation should stop when there are any).
 */
export function checkInputCounts(
  raw: Record<string, unknown>,
  locateKey: (path: ReadonlyArray<string | number>) => SourceLocation,
  limits: ChainInputLimits = CHAIN_INPUT_LIMITS,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const isTable = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
  const count = (what: string, n: number, max: number, limitName: string, at: SourceLocation) => {
    if (n > max)
      out.push(
        error(
          at,
          "input-limit",
          `the chain has ${n} ${what}; at most ${max} are accepted (input limit: ${limitName})`,
          "a device holds at most a few hundred NF instances: split or shorten the chain",
        ),
      );
    return n <= max;
  };
  const name = (kind: string, value: string, at: SourceLocation) => {
    if (value.length > limits.nameLength)
      out.push(
        error(
          at,
          "input-limit",
          `${kind} name "${value.slice(0, 24)}…" is ${value.length} characters; names are limited to ${limits.nameLength} (input limit: name length)`,
          "use a shorter name",
        ),
      );
  };

  const functions = isTable(raw.functions) ? Object.keys(raw.functions) : [];
  if (
    count(
      "functions",
      functions.length,
      limits.functions,
      "NF count",
      locateKey(["functions", functions[limits.functions] ?? ""]),
    )
  ) {
    for (const f of functions) {
      name("function", f, locateKey(["functions", f]));
      const body = isTable(raw.functions) ? raw.functions[f] : undefined;
      if (!isTable(body)) continue;
      if (typeof body.path === "string" && body.path.length > limits.pathLength)
        out.push(
          error(
            locateKey(["functions", f, "path"]),
            "input-limit",
            `the path of [functions.${f.slice(0, 24)}] is ${body.path.length} characters; at most ${limits.pathLength} (input limit: path length)`,
            "use a shorter path",
          ),
        );
      if (isTable(body.maps)) {
        const maps = Object.keys(body.maps);
        if (
          count(
            `maps bound by "${f.slice(0, 24)}"`,
            maps.length,
            limits.mapsPerFunction,
            "maps per function",
            locateKey(["functions", f, "maps"]),
          )
        )
          for (const m of maps) name("map", m, locateKey(["functions", f, "maps", m]));
      }
    }
  }
  const shared = isTable(raw.maps) ? Object.keys(raw.maps) : [];
  if (count("shared maps", shared.length, limits.sharedMaps, "shared map count", locateKey(["maps"])))
    for (const m of shared) name("map", m, locateKey(["maps", m]));
  const links = Array.isArray(raw.links) ? raw.links : [];
  if (count("links", links.length, limits.links, "link count", locateKey(["links", limits.links]))) {
    links.forEach((link, i) => {
      if (!isTable(link)) return;
      if (typeof link.from === "string") name("link source", link.from, locateKey(["links", i, "from"]));
      if (!Array.isArray(link.to)) return;
      if (
        count(
          "targets in one link",
          link.to.length,
          limits.targetsPerLink,
          "targets per link",
          locateKey(["links", i, "to"]),
        )
      )
        link.to.forEach((t, j) => {
          // `!name` upcalls: the name after the marker is what is limited
          if (typeof t === "string")
            name("link target", t.replace(/^!/, ""), locateKey(["links", i, "to", j]));
        });
    });
  }
  if (isTable(raw.chain) && typeof raw.chain.name === "string")
    name("chain", raw.chain.name, locateKey(["chain", "name"]));
  return out;
}

const limitHint = 'the limits are in docs/chain-format.md "Limits"';

/**
 * A valid chain against a device's limits: NF instances, Action variants and maps per
 * NF, maps per chain, entries per map, map memory and userland NFs. Map memory uses the
 * NFs' key/value sizes when `interfaces` give them, else a lower bound (1-byte keys and
 * values), so a structure-only check never reports more than the real use.
 */
export function checkDeviceLimits(
  chain: Chain,
  options: { limits?: DeviceLimits; interfaces?: ReadonlyMap<string, NfInterface> } = {},
): Diagnostic[] {
  const limits = options.limits ?? DEFAULT_DEVICE_LIMITS;
  const out: Diagnostic[] = [];
  const maxInstances = maxChainInstances(limits);
  if (chain.functions.length > maxInstances) {
    const first = chain.functions[maxInstances]!;
    out.push(
      error(
        first.location,
        "limit-instances",
        `the chain has ${chain.functions.length} NF instances, but a device holds at most ${maxInstances}: ` +
          `the ${limits.instanceSlots}-instance limit (GALETTE_MAX_INSTANCES PROG_ARRAY slots, one kept for rx); "${first.name}" is number ${maxInstances + 1}`,
        "split the chain or share NF instances; every [functions.X] is one instance on the device",
      ),
    );
  }
  for (const nf of chain.functions) {
    if (nf.targets.length > limits.actionsPerNf)
      out.push(
        error(
          nf.linkLocation,
          "limit-actions",
          `"${nf.name}" has ${nf.targets.length} link targets, but an NF has at most ${limits.actionsPerNf} Action variants (GALETTE_MAX_ACTIONS, the size of its action table)`,
          limitHint,
        ),
      );
    if (nf.maps.length > limits.mapsPerNf)
      out.push(
        error(
          nf.location,
          "limit-maps-per-nf",
          `"${nf.name}" binds ${nf.maps.length} maps, but an NF has at most ${limits.mapsPerNf} (GALETTE_MAX_MAPS)`,
          limitHint,
        ),
      );
  }
  if (chain.maps.length > limits.mapsPerChain) {
    const first = chain.maps[limits.mapsPerChain]!;
    out.push(
      error(
        first.location,
        "limit-maps-per-chain",
        `the chain has ${chain.maps.length} maps (shared and owned), but a device holds at most ${limits.mapsPerChain} per chain (limit: maps per chain)`,
        "share maps between NFs, or split the chain",
      ),
    );
  }
  for (const m of chain.maps) {
    if (m.maxEntries > limits.entriesPerMap)
      out.push(
        error(
          m.location,
          "limit-map-entries",
          `map "${m.id}" has size ${m.maxEntries}, but a map holds at most ${limits.entriesPerMap} entries on a device (limit: entries per map)`,
          limitHint,
        ),
      );
  }
  const memory = mapMemory(chain, limits, options.interfaces);
  if (memory.bytes > limits.mapMemoryBytes) {
    const biggest = memory.perMap.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    out.push(
      error(
        biggest.map.location,
        "limit-map-memory",
        `the chain's maps need ${memory.exact ? "about" : "at least"} ${formatBytes(memory.bytes)} of kernel memory, ` +
          `more than the ${formatBytes(limits.mapMemoryBytes)} a device gives a chain's maps (limit: map memory per chain); ` +
          `the largest is "${biggest.map.id}" (${biggest.map.type}, size ${biggest.map.maxEntries}, ${formatBytes(biggest.bytes)})`,
        "make the largest maps smaller (size = max entries)",
      ),
    );
  }
  if (out.length === 0 && chain.functions.length > 0) {
    const plan = planChain(chain);
    const userland = plan.nfs.filter((n) => n.userland);
    if (userland.length > limits.userlandNfs) {
      const first = chain.functions.find((f) => f.name === userland[limits.userlandNfs]!.name)!;
      out.push(
        error(
          first.location,
          "limit-userland-nfs",
          `${userland.length} NF instances of the chain run in userland, but a device runs at most ${limits.userlandNfs} (limit: userland NFs; each is a native library in every worker)`,
          "keep more of the chain in XDP (fewer `!` upcalls and disable_xdp), or split it",
        ),
      );
    }
  }
  return out;
}

/** Estimated bytes of every map of the chain, with the NFs' key/value sizes where known. */
export function mapMemory(
  chain: Chain,
  limits: DeviceLimits = DEFAULT_DEVICE_LIMITS,
  interfaces?: ReadonlyMap<string, NfInterface>,
): { bytes: number; exact: boolean; perMap: Array<{ map: ChainMap; bytes: number }> } {
  let exact = true;
  const perMap = chain.maps.map((map) => {
    let keySize: number | undefined;
    let valueSize: number | undefined;
    for (const user of map.users) {
      const field = interfaces?.get(user)?.maps.find((f) => f.name === map.name);
      keySize ??= field?.keySize;
      valueSize ??= field?.valueSize;
    }
    if (keySize === undefined || valueSize === undefined) exact = false;
    return {
      map,
      bytes: estimateMapBytes(map.type, map.maxEntries, keySize ?? 1, valueSize ?? 1, limits.cpus),
    };
  });
  return { bytes: perMap.reduce((sum, m) => sum + m.bytes, 0), exact, perMap };
}
