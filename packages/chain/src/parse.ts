import { MAX_MAP_ENTRIES_U32 as MAX_MAP_SIZE } from "@galette/vocabulary";
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { type Diagnostic, didYouMean, hasErrors, type SourceLocation, sortDiagnostics } from "./diagnostics";
import { checkDeviceLimits, checkInputCounts, checkInputSize, type DeviceLimits } from "./limits";
import { indexToml, type KeyPath, type PositionIndex } from "./locate";
import {
  type Chain,
  type ChainMap,
  canonicalMapName,
  canonicalMapType,
  EXITS,
  isExit,
  isRxSource,
  type LinkTarget,
  MAP_TYPES,
  type MapBinding,
  type NfInstance,
  RX_SOURCES,
  type RxSource,
} from "./model";

/** Instance and chain names: used in UUID seeds, bpffs pin paths and CLI output. */
const INSTANCE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;
/** Map names must be usable as Rust field names once `-` becomes `_`. */
const MAP_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const RESERVED_NAMES = new Set<string>([...RX_SOURCES, ...EXITS]);
const SHARED_MARKER = "_";

const TOP_KEYS = ["chain", "functions", "maps", "links"] as const;
const FUNCTION_KEYS = ["path", "maps", "disable_xdp"] as const;
const MAP_KEYS = ["type", "size"] as const;
const LINK_KEYS = ["from", "to"] as const;
const CHAIN_KEYS = ["name", "description"] as const;

const table = z.record(z.string(), z.unknown());
const TopShape = z.strictObject({
  chain: table.optional(),
  functions: table.optional(),
  maps: table.optional(),
  links: z.array(z.unknown()).optional(),
});
const ChainShape = z.strictObject({
  name: z.string().regex(INSTANCE_NAME).optional(),
  description: z.string().optional(),
});
const FunctionShape = z.strictObject({
  path: z.string().min(1).optional(),
  maps: table.optional(),
  disable_xdp: z.boolean().optional(),
});
const MapSpecShape = z.strictObject({
  type: z.string().refine((t) => canonicalMapType(t) !== undefined),
  size: z.number().int().positive().max(MAX_MAP_SIZE),
});
const LinkShape = z.strictObject({
  from: z.string().min(1),
  to: z.array(z.string()).min(1),
});

export interface ParseResult {
  /** present only when there are no errors */
  chain?: Chain;
  /** errors and warnings, sorted by position */
  diagnostics: Diagnostic[];
}

export interface ParseOptions {
  /** overrides the chain name ([chain] name, else the file's base name) */
  chainName?: string;
  /** the device limits a valid chain must fit (default: DEFAULT_DEVICE_LIMITS) */
  limits?: DeviceLimits;
}

/**
 * Parses and validates a chain file's text. Never throws on bad input: every problem
 * becomes a Diagnostic naming file:line:column.
 */
export function parseChain(text: string, file: string, options: ParseOptions = {}): ParseResult {
  const tooLarge = checkInputSize(text, file);
  if (tooLarge) return { diagnostics: [tooLarge] };
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text, { integersAsBigInt: "asNeeded", maxDepth: 64 }) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    return { diagnostics: [tomlSyntaxDiagnostic(err, file)] };
  }
  const index = indexToml(text);
  const overLimits = checkInputCounts(raw, (path) => ({ file, ...index.key(path) }));
  if (overLimits.length > 0) return { diagnostics: sortDiagnostics(overLimits) };
  const v = new ChainValidator(raw, file, index, options);
  const chain = v.run();
  if (chain && !hasErrors(v.diagnostics))
    v.diagnostics.push(...checkDeviceLimits(chain, options.limits ? { limits: options.limits } : {}));
  return { chain: hasErrors(v.diagnostics) ? undefined : chain, diagnostics: sortDiagnostics(v.diagnostics) };
}

function tomlSyntaxDiagnostic(err: TomlError, file: string): Diagnostic {
  const firstLine = err.message.split("\n")[0] ?? err.message;
  const reason = firstLine.replace(/^Invalid TOML document:\s*/, "");
  return {
    severity: "error",
    file,
    line: Math.max(1, err.line || 1),
    column: Math.max(1, err.column || 1),
    code: "toml-syntax",
    message: `TOML syntax error: ${reason}`,
    hint: "fix the TOML at this position (the parser stopped here)",
  };
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return `a date (${String(value)})`;
  if (isTable(value)) return "a table";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "bigint") return `the integer ${value}`;
  return `${typeof value === "number" && !Number.isInteger(value) ? "the float" : `the ${typeof value}`} ${String(value)}`;
}

function quoteKey(key: string | number): string {
  if (typeof key === "number") return String(key);
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

/** Human name of the table at `path`, as the user wrote it. */
function tableName(path: KeyPath): string {
  if (path.length === 0) return "the top level";
  if (path[0] === "links" && typeof path[1] === "number") {
    const rest = path.slice(2);
    return `[[links]] #${path[1] + 1}${rest.length ? ` (${rest.map(quoteKey).join(".")})` : ""}`;
  }
  const inline = path[0] === "functions" && path[2] === "maps" && path.length >= 4;
  const dotted = path.map(quoteKey).join(".");
  return inline ? dotted : `[${dotted}]`;
}

interface ShapeContext {
  knownKeys: readonly string[];
  hints?: Record<string, string>;
}

class ChainValidator {
  readonly diagnostics: Diagnostic[] = [];
  private readonly functionNames: string[] = [];
  private readonly functionNameSet = new Set<string>();
  /** every [maps.X] written, valid or not (canonical names), to avoid cascading errors */
  private readonly declaredSharedMaps = new Set<string>();
  /** functions that have a [[links]] entry, valid or not */
  private readonly linkedFunctions = new Set<string>();
  private linksMalformed = false;
  /** "did you mean" costs an edit distance per candidate: only the first few errors get one */
  private suggestionsLeft = 50;

  constructor(
    private readonly raw: Record<string, unknown>,
    private readonly file: string,
    private readonly index: PositionIndex,
    private readonly options: ParseOptions,
  ) {}

  private suggest(word: string, candidates: () => Iterable<string>): string {
    if (this.suggestionsLeft <= 0) return "";
    this.suggestionsLeft--;
    return didYouMean(word, candidates());
  }

  private at(path: KeyPath, which: "key" | "value" = "key"): SourceLocation {
    const p = which === "key" ? this.index.key(path) : this.index.value(path);
    return { file: this.file, line: p.line, column: p.column };
  }

  private error(location: SourceLocation, code: string, message: string, hint?: string): Diagnostic {
    const d: Diagnostic = { severity: "error", ...location, code, message };
    if (hint) d.hint = hint;
    this.diagnostics.push(d);
    return d;
  }

  private warning(location: SourceLocation, code: string, message: string, hint?: string): void {
    const d: Diagnostic = { severity: "warning", ...location, code, message };
    if (hint) d.hint = hint;
    this.diagnostics.push(d);
  }

  /** Runs a zod shape and turns its issues into located diagnostics; true when valid. */
  private checkShape(schema: z.ZodType, value: unknown, base: KeyPath, ctx: ShapeContext): boolean {
    const result = schema.safeParse(value);
    if (result.success) return true;
    for (const issue of result.error.issues) {
      const path = [...base, ...(issue.path as Array<string | number>)];
      const parentValue = getAt(this.raw, path.slice(0, -1));
      const actual = getAt(this.raw, path);
      const key = path[path.length - 1];
      const keyText = quoteKey(key ?? "");
      const where = tableName(path.slice(0, -1));
      if (issue.code === "unrecognized_keys") {
        for (const unknown of issue.keys) {
          this.error(
            this.at([...path, unknown]),
            "unknown-key",
            `unknown key ${JSON.stringify(unknown)} in ${tableName(path)}${didYouMean(unknown, ctx.knownKeys)}`,
            `valid keys here: ${ctx.knownKeys.join(", ")}`,
          );
        }
      } else if (actual === undefined && isTable(parentValue)) {
        this.error(
          this.at(path.slice(0, -1)),
          "missing-key",
          `missing key "${keyText}" in ${where}`,
          ctx.hints?.[String(key)],
        );
      } else if (key === "size" && path.length >= 2) {
        this.error(
          this.at(path, "value"),
          "invalid-map-size",
          `map size in ${where} must be a positive integer no larger than ${MAX_MAP_SIZE}, not ${describeValue(actual)}`,
          "size is the map's max_entries, e.g. size = 1024",
        );
      } else if (key === "type" && typeof actual === "string") {
        this.error(
          this.at(path, "value"),
          "unknown-map-type",
          `unknown map type ${JSON.stringify(actual)} in ${where}${didYouMean(actual, MAP_TYPES)}`,
          `map types: ${MAP_TYPES.join(", ")} (- and _ are interchangeable)`,
        );
      } else if (key === "to" && Array.isArray(actual) && actual.length === 0) {
        this.error(
          this.at(path, "value"),
          "empty-link-targets",
          `"to" in ${where} is empty`,
          "list one target per Action variant of the NF (an NF, !NF, tx, pass, drop or abort)",
        );
      } else if (key === "name" && path[0] === "chain" && typeof actual === "string") {
        this.error(
          this.at(path, "value"),
          "invalid-name",
          `chain name ${JSON.stringify(actual)} is not a valid name`,
          "use letters, digits, _ and - (not starting with -)",
        );
      } else if ((key === "from" || key === "path") && actual === "") {
        this.error(this.at(path, "value"), "invalid-value", `"${keyText}" in ${where} must not be empty`);
      } else {
        const expected = ctx.hints?.[`${String(key)}:type`] ?? describeExpected(issue);
        this.error(
          this.at(path, "value"),
          "invalid-type",
          `"${keyText}" in ${where} must be ${expected}, not ${describeValue(actual)}`,
          ctx.hints?.[String(key)],
        );
      }
    }
    return false;
  }

  run(): Chain | undefined {
    const topValid = this.checkShape(TopShape, this.raw, [], {
      knownKeys: TOP_KEYS,
      hints: {
        "links:type": "an array of tables (write each link as [[links]])",
        "functions:type": "a table ([functions.NAME])",
        "maps:type": "a table ([maps.NAME])",
        "chain:type": "a table ([chain])",
      },
    });
    const chainName = this.chainName();
    const functionsRaw = isTable(this.raw.functions) ? this.raw.functions : {};
    const sharedRaw = isTable(this.raw.maps) ? this.raw.maps : {};
    const linksRaw = Array.isArray(this.raw.links) ? this.raw.links : [];
    for (const n of Object.keys(functionsRaw)) {
      if (RESERVED_NAMES.has(n)) continue;
      this.functionNames.push(n);
      this.functionNameSet.add(n);
    }
    this.linksMalformed = this.raw.links !== undefined && !Array.isArray(this.raw.links);

    const sharedMaps = this.sharedMaps(sharedRaw);
    const functions = this.functions(functionsRaw, sharedMaps);
    const links = this.links(linksRaw);
    this.linkRules(functions, links);
    this.unusedSharedMaps(sharedMaps, functions);

    if (!topValid || hasErrors(this.diagnostics) || !links.rx) return undefined;
    const maps: ChainMap[] = [...sharedMaps.values()].filter((m) => m.users.length > 0);
    for (const f of functions) {
      for (const b of f.instance.maps) {
        if (!b.shared) maps.push(f.ownedMaps.get(b.name)!);
      }
    }
    const rxTarget = links.rx.targets[0];
    if (rxTarget?.kind !== "nf") return undefined;
    const rxBTarget = links.rxB?.targets[0];
    if (links.rxB && rxBTarget?.kind !== "nf") return undefined;
    return {
      name: chainName,
      file: this.file,
      entry: rxTarget,
      rxLocation: links.rx.location,
      ...(links.rxB && rxBTarget?.kind === "nf"
        ? { entryB: rxBTarget, rxBLocation: links.rxB.location }
        : {}),
      functions: functions.map((f) => f.instance),
      maps,
    };
  }

  private chainName(): string {
    if (isTable(this.raw.chain)) {
      this.checkShape(ChainShape, this.raw.chain, ["chain"], { knownKeys: CHAIN_KEYS });
      const name = this.raw.chain.name;
      if (typeof name === "string" && name !== "") return this.options.chainName ?? name;
    }
    const base = this.file.split(/[\\/]/).pop() ?? this.file;
    return this.options.chainName ?? base.replace(/\.toml$/i, "");
  }

  private sharedMaps(rawMaps: Record<string, unknown>): Map<string, ChainMap> {
    const out = new Map<string, ChainMap>();
    for (const [tomlName, spec] of Object.entries(rawMaps)) {
      const path = ["maps", tomlName];
      if (!this.mapName(tomlName, path, "[maps]")) continue;
      const name = canonicalMapName(tomlName);
      this.declaredSharedMaps.add(name);
      const earlier = out.get(name);
      if (earlier) {
        this.duplicateMap(path, tomlName, earlier.location, "[maps]");
        continue;
      }
      const parsed = this.mapSpec(spec, path);
      if (parsed)
        out.set(name, { id: name, name, ...parsed, shared: true, users: [], location: this.at(path) });
    }
    return out;
  }

  private mapName(tomlName: string, path: KeyPath, where: string): boolean {
    if (MAP_NAME.test(tomlName)) return true;
    this.error(
      this.at(path),
      "invalid-name",
      `map name ${JSON.stringify(tomlName)} in ${where} is not a valid name`,
      "map names bind to Rust #[maps] field names: letters, digits, _ (and - which means _)",
    );
    return false;
  }

  private duplicateMap(path: KeyPath, tomlName: string, first: SourceLocation, where: string): void {
    const d = this.error(
      this.at(path),
      "duplicate-map",
      `map ${JSON.stringify(tomlName)} is declared twice in ${where} (- and _ are the same in map names)`,
      "remove one of the two declarations",
    );
    d.related = [{ ...first, message: "first declared here" }];
  }

  /** Validates `{ type, size }`; returns the canonical spec when valid. */
  private mapSpec(spec: unknown, path: KeyPath): { type: ChainMap["type"]; maxEntries: number } | undefined {
    if (!isTable(spec)) {
      this.error(
        this.at(path, "value"),
        "invalid-type",
        `${tableName(path)} must be a table with "type" and "size", not ${describeValue(spec)}`,
      );
      return undefined;
    }
    const ok = this.checkShape(MapSpecShape, spec, path, {
      knownKeys: MAP_KEYS,
      hints: {
        type: `one of ${MAP_TYPES.join(", ")}`,
        size: "the map's max_entries, a positive integer",
        "type:type": "a string",
        "size:type": "a positive integer",
      },
    });
    if (!ok) return undefined;
    return { type: canonicalMapType(spec.type as string)!, maxEntries: spec.size as number };
  }

  private functions(
    rawFunctions: Record<string, unknown>,
    sharedMaps: Map<string, ChainMap>,
  ): Array<{ instance: NfInstance; ownedMaps: Map<string, ChainMap> }> {
    const out: Array<{ instance: NfInstance; ownedMaps: Map<string, ChainMap> }> = [];
    for (const [name, body] of Object.entries(rawFunctions)) {
      const path = ["functions", name];
      if (RESERVED_NAMES.has(name)) {
        this.error(
          this.at(path),
          "reserved-name",
          `"${name}" cannot name a function: rx, tx, pass, drop and abort are reserved`,
          'rename the instance and set path = "nf-examples/..." to keep using the crate',
        );
        continue;
      } else if (!INSTANCE_NAME.test(name)) {
        this.error(
          this.at(path),
          "invalid-name",
          `function name ${JSON.stringify(name)} is not a valid name`,
          "use letters, digits, _ and - (not starting with -)",
        );
      }
      if (!isTable(body)) {
        this.error(
          this.at(path, "value"),
          "invalid-type",
          `[functions.${quoteKey(name)}] must be a table, not ${describeValue(body)}`,
        );
        continue;
      }
      this.checkShape(FunctionShape, body, path, {
        knownKeys: FUNCTION_KEYS,
        hints: {
          "path:type": "a string (the NF crate directory)",
          "disable_xdp:type": "a boolean",
          "maps:type": 'a table of map bindings (name = "_" or name = { type, size })',
        },
      });
      const instance: NfInstance = {
        name,
        path: typeof body.path === "string" && body.path !== "" ? body.path : `nf-examples/${name}`,
        pathIsDefault: typeof body.path !== "string",
        disableXdp: body.disable_xdp === true,
        maps: [],
        targets: [],
        location: this.at(path),
        linkLocation: this.at(path),
      };
      const ownedMaps = new Map<string, ChainMap>();
      if (isTable(body.maps)) this.bindings(instance, body.maps, sharedMaps, ownedMaps);
      out.push({ instance, ownedMaps });
    }
    return out;
  }

  private bindings(
    instance: NfInstance,
    rawMaps: Record<string, unknown>,
    sharedMaps: Map<string, ChainMap>,
    ownedMaps: Map<string, ChainMap>,
  ): void {
    const seen = new Map<string, SourceLocation>();
    for (const [tomlName, value] of Object.entries(rawMaps)) {
      const path = ["functions", instance.name, "maps", tomlName];
      const where = `the maps of [functions.${quoteKey(instance.name)}]`;
      if (!this.mapName(tomlName, path, where)) continue;
      const name = canonicalMapName(tomlName);
      const location = this.at(path);
      const first = seen.get(name);
      if (first) {
        this.duplicateMap(path, tomlName, first, where);
        continue;
      }
      seen.set(name, location);
      if (typeof value === "string") {
        if (value !== SHARED_MARKER) {
          this.error(
            this.at(path, "value"),
            "invalid-map-binding",
            `map ${JSON.stringify(tomlName)} of function "${instance.name}" must be "_" or { type = ..., size = ... }, not ${describeValue(value)}`,
            `"_" binds the shared map [maps.${tomlName}]; an inline table declares a map owned by this instance`,
          );
          continue;
        }
        const shared = sharedMaps.get(name);
        if (!shared && this.declaredSharedMaps.has(name)) continue; // its own error is reported
        if (!shared) {
          this.error(
            this.at(path, "value"),
            "shared-map-undeclared",
            `function "${instance.name}" binds shared map "${tomlName}" but there is no [maps.${tomlName}]${this.suggest(name, () => sharedMaps.keys())}`,
            `declare it: [maps.${tomlName}] with type and size, or declare it inline: ${tomlName} = { type = "hash_map", size = 1024 }`,
          );
          continue;
        }
        shared.users.push(instance.name);
        instance.maps.push({ name, tomlName, map: shared.id, shared: true, location });
        continue;
      }
      const spec = this.mapSpec(value, path);
      if (!spec) continue;
      const id = `${instance.name}.${name}`;
      ownedMaps.set(name, {
        id,
        name,
        ...spec,
        shared: false,
        owner: instance.name,
        users: [instance.name],
        location,
      });
      const binding: MapBinding = { name, tomlName, map: id, shared: false, location };
      instance.maps.push(binding);
    }
  }

  private links(rawLinks: unknown[]): ParsedLinks {
    const result: ParsedLinks = { byFrom: new Map() };
    const rxLinks = new Map<RxSource, ParsedLink[]>(RX_SOURCES.map((r) => [r, []]));
    rawLinks.forEach((body, i) => {
      const path = ["links", i];
      if (!isTable(body)) {
        this.error(this.at(path, "value"), "invalid-type", `links entry #${i + 1} must be a table`);
        return;
      }
      if (typeof body.from === "string") this.linkedFunctions.add(body.from);
      if (!this.checkShape(LinkShape, body, path, { knownKeys: LINK_KEYS, hints: linkHints })) return;
      const from = body.from as string;
      const fromLocation = this.at([...path, "from"], "value");
      const link: ParsedLink = {
        from,
        location: fromLocation,
        toLocation: this.at([...path, "to"], "value"),
        targets: [],
        targetCount: (body.to as string[]).length,
      };
      (body.to as string[]).forEach((text, j) => {
        const target = this.target(text, this.at([...path, "to", j], "value"));
        if (target) link.targets.push(target);
      });
      if (isRxSource(from)) {
        rxLinks.get(from)!.push(link);
        return;
      }
      if (/^rx[.:@]/i.test(from) || from.toLowerCase() === "rx") {
        this.error(
          fromLocation,
          "invalid-link-source",
          `[[links]] #${i + 1}: from = ${JSON.stringify(from)} is no entry: the entries are "rx" (frames from every port), "rx.a" (frames arriving on the first port) and "rx.b" (on the second)${didYouMean(from, RX_SOURCES)}`,
          'one chain for both directions: from = "rx"; a chain per direction on two ports: one link from "rx.a" and one from "rx.b"',
        );
        return;
      }
      if (from.startsWith("!") || isExit(from)) {
        this.error(
          fromLocation,
          "invalid-link-source",
          `a link cannot start from ${JSON.stringify(from)}`,
          "from is rx, rx.a, rx.b or the name of a function",
        );
        return;
      }
      if (!this.functionNameSet.has(from)) {
        this.error(
          fromLocation,
          "unknown-function",
          `link from undeclared function ${JSON.stringify(from)}${this.suggest(from, () => this.functionNames)}`,
          `declare it with [functions.${quoteKey(from)}] or fix the name`,
        );
        return;
      }
      const earlier = result.byFrom.get(from);
      if (earlier) {
        const d = this.error(
          fromLocation,
          "duplicate-link",
          `function "${from}" already has a link (line ${earlier.location.line}); each function has exactly one [[links]] entry`,
          "merge the targets into one `to` list with one entry per Action variant",
        );
        d.related = [{ ...earlier.location, message: "first link from it" }];
        return;
      }
      result.byFrom.set(from, link);
    });

    const written = (source: RxSource) => rxLinks.get(source)!.length > 0 || this.linkedFunctions.has(source);
    if (!RX_SOURCES.some(written) && !this.linksMalformed) {
      const where = this.index.hasKey(["links"]) ? this.at(["links"]) : this.at([]);
      this.error(
        where,
        "missing-rx-link",
        "no link from rx: the chain has no entry",
        'add [[links]] from = "rx" to = ["<first function>"] (or one link from "rx.a" and one from "rx.b" for a chain per direction on two ports)',
      );
    }
    for (const source of RX_SOURCES) {
      const list = rxLinks.get(source)!;
      for (const extra of list.slice(1)) {
        const d = this.error(
          extra.location,
          "multiple-rx-links",
          `more than one link from ${source} (first at line ${list[0]!.location.line})`,
          `a chain has exactly one entry per port; keep one ${source} link`,
        );
        d.related = [{ ...list[0]!.location, message: `first ${source} link` }];
      }
    }
    const both = rxLinks.get("rx")![0];
    const a = rxLinks.get("rx.a")![0];
    const b = rxLinks.get("rx.b")![0];
    if (both && (a || b)) {
      const other = (a ?? b)!;
      const d = this.error(
        other.location,
        "mixed-rx-links",
        `from = "${other.from}" next to from = "rx" (line ${both.location.line}): "rx" already serves frames from both ports`,
        'either one link from "rx" (one chain for both directions) or one link from "rx.a" and one from "rx.b" (a chain per direction)',
      );
      d.related = [{ ...both.location, message: "the rx link" }];
      return result;
    }
    if ((a && !b) || (b && !a)) {
      const [present, missing, port] = a ? ["rx.a", "rx.b", "second"] : ["rx.b", "rx.a", "first"];
      this.error(
        (a ?? b)!.location,
        "missing-rx-direction",
        `there is a link from ${present} but none from ${missing}: frames arriving on the ${port} port would have no chain`,
        `add [[links]] from = "${missing}" to = ["<first function of that direction>"], or write from = "rx" for one chain in both directions`,
      );
      return result;
    }
    const entry = (link: ParsedLink | undefined): ParsedLink | undefined => {
      if (!link) return undefined;
      const count = link.targetCount;
      if (count !== 1) {
        this.error(
          link.toLocation,
          "rx-target-count",
          `the ${link.from} link must have exactly one target, it has ${count}`,
          `${link.from} hands every packet to the entry function: to = ["<first function>"]`,
        );
      } else if (link.targets[0]?.kind === "exit") {
        this.error(
          link.targets[0].location,
          "rx-target-exit",
          `${link.from} links straight to the exit "${link.targets[0].exit}": the chain would run no function`,
          `link ${link.from} to the first function`,
        );
      } else if (link.targets.length === 1) {
        return link;
      }
      return undefined;
    };
    if (both) {
      const rx = entry(both);
      if (rx) result.rx = rx;
    } else if (a && b) {
      const rxA = entry(a);
      const rxB = entry(b);
      if (rxA && rxB) {
        result.rx = rxA;
        result.rxB = rxB;
      }
    }
    return result;
  }

  private target(text: string, location: SourceLocation): LinkTarget | undefined {
    const upcall = text.startsWith("!");
    const name = upcall ? text.slice(1) : text;
    if (isExit(name)) {
      if (!upcall) return { kind: "exit", exit: name, location };
      this.error(location, "invalid-target", `"${text}": exits cannot be upcalled`, `write "${name}"`);
      return undefined;
    }
    if (isRxSource(name)) {
      this.error(
        location,
        "invalid-target",
        `"${text}": a link cannot lead back to ${name}`,
        "use tx, pass, drop or abort",
      );
      return undefined;
    }
    if (!this.functionNameSet.has(name)) {
      this.error(
        location,
        "unknown-target",
        `unknown link target ${JSON.stringify(text)}${this.suggest(name, () => [...this.functionNames, ...(upcall ? [] : EXITS)]).replace(/"([^"]+)"\?$/, (_m, s) => `"${upcall ? "!" : ""}${s}"?`)}`,
        "a target is a function name, !function (upcall to userland), tx, pass, drop or abort",
      );
      return undefined;
    }
    return { kind: "nf", nf: name, upcall, location };
  }

  private linkRules(
    functions: Array<{ instance: NfInstance; ownedMaps: Map<string, ChainMap> }>,
    links: ParsedLinks,
  ): void {
    for (const { instance } of functions) {
      const link = links.byFrom.get(instance.name);
      if (!link && (this.linkedFunctions.has(instance.name) || this.linksMalformed)) continue; // reported already
      if (!link) {
        this.error(
          instance.location,
          "no-outgoing-link",
          `function "${instance.name}" has no outgoing link`,
          `add [[links]] from = "${instance.name}" with one target per Action variant`,
        );
        continue;
      }
      instance.targets = link.targets;
      instance.linkLocation = link.toLocation;
    }
    this.cycles(links);
    // an unknown target usually explains an "unreachable" function: don't pile on
    const targetErrors = this.diagnostics.some((d) => d.code === "unknown-target");
    if (links.rx && !targetErrors)
      this.unreachable(
        functions.map((f) => f.instance),
        links,
      );
  }

  /** Iterative depth-first search (chains from files can be long); reports each cycle once. */
  private cycles(links: ParsedLinks): void {
    const state = new Map<string, "open" | "done">();
    /** the open path; position of each open NF in it */
    const stack: Array<{ nf: string; next: number }> = [];
    const onStack = new Map<string, number>();
    const reported = new Set<string>();
    const open = (nf: string) => {
      state.set(nf, "open");
      onStack.set(nf, stack.length);
      stack.push({ nf, next: 0 });
    };
    for (const root of this.functionNames) {
      if (state.has(root)) continue;
      open(root);
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const targets = links.byFrom.get(top.nf)?.targets ?? [];
        if (top.next >= targets.length) {
          stack.pop();
          onStack.delete(top.nf);
          state.set(top.nf, "done");
          continue;
        }
        const t = targets[top.next++]!;
        if (t.kind !== "nf") continue;
        const s = state.get(t.nf);
        if (s === undefined) {
          open(t.nf);
        } else if (s === "open") {
          const cycle = [...stack.slice(onStack.get(t.nf)!).map((e) => e.nf), t.nf];
          const key = cycle.slice(0, -1).sort().join("\0");
          if (!reported.has(key)) {
            reported.add(key);
            const shown = cycle.length > 12 ? [...cycle.slice(0, 5), "…", ...cycle.slice(-5)] : cycle;
            this.error(
              t.location,
              "cycle",
              `cycle: ${shown.join(" → ")}${cycle.length > 12 ? ` (${cycle.length - 1} NFs)` : ""}`,
              "chains must be acyclic (in XDP a loop hits the tail-call limit, in userland it never ends)",
            );
          }
        }
      }
    }
  }

  private unreachable(functions: NfInstance[], links: ParsedLinks): void {
    const seen = new Set<string>();
    const queue: string[] = [];
    for (const link of [links.rx, links.rxB]) {
      const entry = link?.targets[0];
      if (entry?.kind === "nf") queue.push(entry.nf);
    }
    for (let head = 0; head < queue.length; head++) {
      const nf = queue[head]!;
      if (seen.has(nf)) continue;
      seen.add(nf);
      for (const t of links.byFrom.get(nf)?.targets ?? []) if (t.kind === "nf") queue.push(t.nf);
    }
    for (const f of functions) {
      if (!seen.has(f.name)) {
        this.warning(
          f.location,
          "unreachable",
          `function "${f.name}" is unreachable from ${links.rxB ? "rx.a and rx.b" : "rx"} and will not run`,
          "link to it from rx or another function, or remove it",
        );
      }
    }
  }

  private unusedSharedMaps(
    sharedMaps: Map<string, ChainMap>,
    functions: Array<{ instance: NfInstance }>,
  ): void {
    if (functions.length === 0) return;
    for (const m of sharedMaps.values()) {
      if (m.users.length === 0) {
        this.warning(
          m.location,
          "unused-map",
          `[maps.${m.name}] is not bound by any function`,
          `bind it with maps = { ${m.name} = "_" } in a function, or remove it`,
        );
      }
    }
  }
}

const linkHints: Record<string, string> = {
  from: 'from = "rx" (or "rx.a" / "rx.b", one chain per direction on two ports) or the name of a function',
  to: 'to = ["tx"]: one target per Action variant (function, !function, tx, reflect, pass, drop, abort)',
  "from:type": "a string",
  "to:type": "an array of strings",
};

interface ParsedLink {
  from: string;
  location: SourceLocation;
  toLocation: SourceLocation;
  /** entries written in `to`, including invalid ones */
  targetCount: number;
  targets: LinkTarget[];
}

interface ParsedLinks {
  /** the rx link, or the rx.a link of a chain with directions */
  rx?: ParsedLink;
  /** the rx.b link */
  rxB?: ParsedLink;
  byFrom: Map<string, ParsedLink>;
}

function getAt(root: unknown, path: KeyPath): unknown {
  let cur: unknown = root;
  for (const k of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}

function describeExpected(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") {
    const expected = String(issue.expected);
    if (expected === "record" || expected === "object") return "a table";
    if (expected === "array") return "an array";
    if (expected === "boolean") return "a boolean (true or false)";
    return `a ${expected}`;
  }
  return "valid";
}
