/**
 * The NF analyser: reads an NF crate's Cargo.toml and src/lib.rs with a real Rust parser
 * (tree-sitter-rust, via web-tree-sitter's wasm runtime) and extracts what the chain checker
 * and the compiler need: the #[maps] struct's (K, V) fields with their sizes, and the enum
 * `packet` returns with its variants in order.
 *
 * Size assumptions: map keys and values must have one layout on every target the NF is built
 * for (bpf, x86_64, aarch64, riscv64 — all 64-bit — and armv7, 32-bit). Fixed-width integers,
 * bool, char, f32/f64, arrays and #[repr(C)] structs of those lay out identically on all of
 * them (AAPCS aligns u64 to 8 like the 64-bit ABIs). usize/isize and pointers are 8 bytes on
 * bpf and the 64-bit natives but 4 on armv7, so they are rejected in maps.
 */
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { canonicalMapType, GALETTE_MAX_ACTIONS, GALETTE_MAX_MAPS, MAP_TYPES } from "@galette/vocabulary";
import { parse as parseToml, TomlError } from "smol-toml";
import { Language, type Node, Parser, type Tree } from "web-tree-sitter";
import type {
  NfActionVariant,
  NfAnalysis,
  NfDiagnostic,
  NfMapField,
  RustType,
  SourceLocation,
} from "./types";

/** GALETTE_MAX_ACTIONS in packages/xdp-native/include/galette_abi.h (action table entries). */
export const MAX_ACTIONS = GALETTE_MAX_ACTIONS;
/** GALETTE_MAX_MAPS in packages/xdp-native/include/galette_abi.h. */
export const MAX_MAPS = GALETTE_MAX_MAPS;

/** Map types an NF may ask for in #[map(type = "...")]: the chain format's, canonical spelling. */
export const NF_MAP_TYPES = MAP_TYPES;

/**
 * Types the `nf` crate exports for use in maps, by name (used when lib.rs does not define a
 * type of that name). LPM-trie keys are the kernel's struct bpf_lpm_trie_key layout:
 * u32 prefix length followed by the address bytes.
 */
export const NF_CRATE_TYPES: Readonly<Record<string, { size: number; align: number }>> = {
  LpmKeyV4: { size: 8, align: 4 },
  LpmKeyV6: { size: 20, align: 4 },
};

/** Thrown when a crate cannot be analysed; carries every error (and warning) found. */
export class NfAnalysisError extends Error {
  readonly diagnostics: NfDiagnostic[];
  constructor(diagnostics: NfDiagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === "error");
    super(errors.map((d) => formatNfDiagnostic(d)).join("\n"));
    this.name = "NfAnalysisError";
    this.diagnostics = diagnostics;
  }
}

/**
 * `file:line:col: error: message` plus an indented hint, like @galette/chain's formatDiagnostic.
 * With `relativeTo`, files under that directory are shown relative to it.
 */
export function formatNfDiagnostic(d: NfDiagnostic, relativeTo?: string): string {
  let file = d.file;
  if (relativeTo !== undefined) {
    const rel = path.relative(relativeTo, d.file);
    if (rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel)) file = rel;
  }
  let text = `${file}:${d.line}:${d.column}: ${d.severity}: ${d.message}`;
  if (d.hint) text += `\n  hint: ${d.hint}`;
  return text;
}

// ---------------------------------------------------------------------------------------------
// Parser: the wasm runtime and the grammar load once per process. Versions are pinned in
// package.json: tree-sitter-rust 0.24.0 ships tree-sitter-rust.wasm (language ABI 14), which
// web-tree-sitter 0.25.10 (ABI 13-15, runs on Node 20) loads.

let rustParser: Promise<Parser> | undefined;

function loadRustParser(): Promise<Parser> {
  rustParser ??= (async () => {
    const require = createRequire(import.meta.url);
    await Parser.init();
    const rust = await Language.load(require.resolve("tree-sitter-rust/tree-sitter-rust.wasm"));
    const parser = new Parser();
    parser.setLanguage(rust);
    return parser;
  })();
  // A failed load (e.g. missing wasm) must not be cached forever: the next call retries.
  rustParser.catch(() => {
    rustParser = undefined;
  });
  return rustParser;
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** Analyses the crate in `crateDir` (Cargo.toml + its lib file). Throws NfAnalysisError. */
export async function analyzeNf(crateDir: string): Promise<NfAnalysis> {
  const dir = path.resolve(crateDir);
  const manifest = await readManifest(dir);
  let source: string;
  try {
    source = await readFile(manifest.libFile, "utf8");
  } catch (err) {
    throw new NfAnalysisError([
      {
        severity: "error",
        file: manifest.libFile,
        line: 1,
        column: 1,
        code: "nf-no-lib",
        message: `cannot read the crate's library source: ${errorText(err)}`,
        hint: "an NF crate is a library: put the NF in src/lib.rs",
      },
    ]);
  }
  return analyzeNfSource(source, {
    file: manifest.libFile,
    crateName: manifest.name,
    crateDir: dir,
    ...(manifest.nfCrateDir ? { nfCrateDir: manifest.nfCrateDir } : {}),
  });
}

/**
 * Analyses lib.rs source text (the part of analyzeNf after Cargo.toml). Throws NfAnalysisError.
 * `nfCrateDir`: the nf crate the NF depends on; its types (LpmKeyV4, …) are laid out from its
 * source, else from NF_CRATE_TYPES.
 */
export async function analyzeNfSource(
  source: string,
  options: { file: string; crateName: string; crateDir?: string; nfCrateDir?: string },
): Promise<NfAnalysis> {
  const parser = await loadRustParser();
  const trees: Tree[] = [];
  try {
    const tree = parser.parse(source);
    if (!tree) throw new Error(`tree-sitter returned no tree for ${options.file}`);
    trees.push(tree);
    const extraDiagnostics: NfDiagnostic[] = [];
    let nfScope: Scope | undefined;
    if (options.nfCrateDir) {
      try {
        nfScope = await loadCrateScope(parser, options.nfCrateDir, trees);
      } catch (err) {
        extraDiagnostics.push({
          severity: "warning",
          file: options.file,
          line: 1,
          column: 1,
          code: "nf-crate-unreadable",
          message: `cannot read the nf crate at ${options.nfCrateDir} (${errorText(err)}); sizes of nf types come from nf-build's built-in table`,
        });
      }
    }
    const crateDir = options.crateDir ?? path.dirname(path.dirname(options.file));
    return new LibAnalyser(tree.rootNode, options.file, nfScope, extraDiagnostics).run(
      options.crateName,
      crateDir,
    );
  } finally {
    for (const tree of trees) tree.delete();
  }
}

/** Top-level items of every .rs file under `<crateDir>/src`, merged (the nf crate re-exports them flat). */
async function loadCrateScope(parser: Parser, crateDir: string, trees: Tree[]): Promise<Scope> {
  const srcDir = path.join(crateDir, "src");
  const files = (await readdir(srcDir, { recursive: true }))
    .filter((f) => f.endsWith(".rs"))
    .sort()
    .map((f) => path.join(srcDir, f));
  if (files.length === 0) throw new Error(`no .rs files in ${srcDir}`);
  const scope: Scope = { file: srcDir, items: new Map(), consts: new Map() };
  for (const file of files) {
    const tree = parser.parse(await readFile(file, "utf8"));
    if (!tree) throw new Error(`tree-sitter returned no tree for ${file}`);
    trees.push(tree);
    collectTopLevel(tree.rootNode, file, scope);
  }
  return scope;
}

// ---------------------------------------------------------------------------------------------
// Cargo.toml

interface Manifest {
  name: string;
  libFile: string;
  /** the `nf` dependency's directory, when it is a path dependency */
  nfCrateDir?: string;
}

async function readManifest(crateDir: string): Promise<Manifest> {
  const file = path.join(crateDir, "Cargo.toml");
  const fail = (message: string, hint?: string, line = 1, column = 1): never => {
    throw new NfAnalysisError([
      { severity: "error", file, line, column, code: "nf-manifest", message, hint },
    ]);
  };
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    return fail(
      `cannot read the NF crate's manifest: ${errorText(err)}`,
      "is the path a Rust crate directory?",
    );
  }
  let toml: Record<string, unknown>;
  try {
    toml = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError)
      return fail(`invalid TOML: ${firstLine(err.message)}`, undefined, err.line, err.column);
    throw err;
  }
  const pkg = toml.package;
  const name = isRecord(pkg) ? pkg.name : undefined;
  if (typeof name !== "string" || name === "") return fail("missing [package] name");
  const lib = toml.lib;
  const libPath = isRecord(lib) && typeof lib.path === "string" ? lib.path : "src/lib.rs";
  const dependencies = toml.dependencies;
  const nf = isRecord(dependencies) ? dependencies.nf : undefined;
  const nfPath = isRecord(nf) && typeof nf.path === "string" ? nf.path : undefined;
  return {
    name,
    libFile: path.resolve(crateDir, libPath),
    ...(nfPath !== undefined ? { nfCrateDir: path.resolve(crateDir, nfPath) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// lib.rs

/** A top-level item of lib.rs with the outer attributes written before it. */
interface Item {
  node: Node;
  attributes: Attribute[];
}

interface Attribute {
  /** `maps`, `nf::maps`, `repr`, … */
  path: string;
  /** the `(...)` token tree, if any */
  args?: Node;
  node: Node;
}

/** Size and alignment of a type that has one fixed layout on every target. */
interface Layout {
  size: number;
  align: number;
  /** padding bytes anywhere inside (matters for hash keys: padding is not initialised) */
  padding: number;
}

/** Why a layout could not be computed; `fatal` ones are errors, the rest warnings. */
interface LayoutProblem {
  fatal: boolean;
  code: string;
  message: string;
  hint?: string;
  at: Node;
}

type LayoutResult = { layout: Layout } | { problem: LayoutProblem };

const PRIMITIVES: Readonly<Record<string, { size: number; align: number }>> = {
  u8: { size: 1, align: 1 },
  i8: { size: 1, align: 1 },
  bool: { size: 1, align: 1 },
  u16: { size: 2, align: 2 },
  i16: { size: 2, align: 2 },
  u32: { size: 4, align: 4 },
  i32: { size: 4, align: 4 },
  f32: { size: 4, align: 4 },
  char: { size: 4, align: 4 },
  u64: { size: 8, align: 8 },
  i64: { size: 8, align: 8 },
  f64: { size: 8, align: 8 },
  u128: { size: 16, align: 16 },
  i128: { size: 16, align: 16 },
};

const INTEGER_REPRS = new Set(["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]);

/** Top-level items of one source file (lib.rs, or the nf crate's files merged). */
interface Scope {
  file: string;
  items: Map<string, Item>;
  consts: Map<string, Node>;
}

/** Where a type is being laid out: its scope and the generic arguments bound so far. */
interface Env {
  scope: Scope;
  types: Map<string, { node: Node; env: Env }>;
  consts: Map<string, number>;
  /** items being laid out (`file#name`), to stop on recursive types */
  visiting: Set<string>;
}

interface TopLevel {
  scope: Scope;
  functions: Map<string, Item>;
  mapsStructs: Item[];
  noStd: boolean;
}

/** Collects a file's top-level items with the outer attributes written before each. */
function collectTopLevel(root: Node, file: string, into?: Scope): TopLevel {
  const top: TopLevel = {
    scope: into ?? { file, items: new Map(), consts: new Map() },
    functions: new Map(),
    mapsStructs: [],
    noStd: false,
  };
  let pending: Attribute[] = [];
  for (const child of namedChildren(root)) {
    if (isComment(child)) continue;
    if (child.type === "inner_attribute_item") {
      if (declaresNoStd(child)) top.noStd = true;
      continue;
    }
    if (child.type === "attribute_item") {
      const attribute = parseAttribute(child);
      if (attribute) pending.push(attribute);
      continue;
    }
    const item: Item = { node: child, attributes: pending };
    pending = [];
    const name = child.childForFieldName("name")?.text;
    if (name === undefined) continue;
    switch (child.type) {
      case "struct_item":
      case "enum_item":
      case "type_item":
      case "union_item":
        top.scope.items.set(name, item);
        if (child.type === "struct_item" && item.attributes.some((a) => isMapsAttribute(a.path)))
          top.mapsStructs.push(item);
        break;
      case "const_item":
        top.scope.consts.set(name, child);
        break;
      case "function_item":
        top.functions.set(name, item);
        break;
    }
  }
  return top;
}

class LibAnalyser {
  private readonly diagnostics: NfDiagnostic[] = [];
  private readonly scope: Scope;
  private readonly functions: Map<string, Item>;
  private readonly mapsStructs: Item[];
  private readonly usesStd: boolean;

  /** `nfScope`: the nf crate's top-level types, when its source is at hand (sizes of nf::LpmKeyV4 …). */
  constructor(
    private readonly root: Node,
    private readonly file: string,
    private readonly nfScope?: Scope,
    extraDiagnostics: NfDiagnostic[] = [],
  ) {
    this.diagnostics.push(...extraDiagnostics);
    const top = collectTopLevel(root, file);
    this.scope = top.scope;
    this.functions = top.functions;
    this.mapsStructs = top.mapsStructs;
    this.usesStd = !top.noStd;
  }

  run(crateName: string, crateDir: string): NfAnalysis {
    this.checkSyntax();

    const packet = this.functions.get("packet");
    let actionEnum = "";
    let actions: NfActionVariant[] = [];
    if (!packet) {
      this.error(
        this.root,
        "nf-no-packet-fn",
        "no `packet` function in the crate's lib file",
        "an NF defines `pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action` at the top level of src/lib.rs",
      );
    } else {
      ({ actionEnum, actions } = this.analysePacketReturn(packet.node));
    }

    const mapsStruct = this.findMapsStruct(packet?.node);
    const maps = mapsStruct ? this.analyseMaps(mapsStruct) : [];

    const errors = this.diagnostics.filter((d) => d.severity === "error");
    if (errors.length > 0) throw new NfAnalysisError(this.diagnostics);
    const warnings = this.diagnostics;
    return {
      name: crateName,
      crateDir,
      libFile: this.file,
      maps,
      ...(mapsStruct ? { mapsStructName: nameOf(mapsStruct.node) } : {}),
      actionEnum,
      actions,
      usesStd: this.usesStd,
      warnings,
    };
  }

  // --- collection ----------------------------------------------------------------------------

  private checkSyntax(): void {
    if (!this.root.hasError) return;
    const bad = firstErrorNode(this.root);
    const at = bad ?? this.root;
    const what = bad?.isMissing ? `missing \`${bad.type}\`` : `unexpected \`${truncate(at.text, 30)}\``;
    this.error(
      at,
      "nf-syntax",
      `Rust syntax error: ${what}`,
      "run `cargo check` in the crate for the compiler's explanation",
    );
  }

  // --- packet's return enum ------------------------------------------------------------------

  private analysePacketReturn(packet: Node): { actionEnum: string; actions: NfActionVariant[] } {
    const none = { actionEnum: "", actions: [] };
    const returnType = packet.childForFieldName("return_type");
    const fnName = packet.childForFieldName("name") ?? packet;
    if (!returnType) {
      this.error(
        fnName,
        "nf-packet-return",
        "`packet` returns nothing; it must return the NF's action enum",
        "declare e.g. `pub enum Action { Tx, Drop }` in src/lib.rs and return it: `-> Action`",
      );
      return none;
    }
    const name = localTypeName(returnType);
    const item = name === undefined ? undefined : this.resolveAlias(name);
    if (item?.node.type !== "enum_item") {
      const what = !item
        ? name === undefined
          ? ""
          : " (it is not defined in src/lib.rs)"
        : ` (\`${name}\` is a ${itemKind(item.node)})`;
      this.error(
        returnType,
        "nf-packet-return",
        `\`packet\` must return an enum defined in src/lib.rs, not \`${oneLine(returnType.text)}\`${what}`,
        "its variants are the NF's actions, in order: e.g. `pub enum Action { Tx, Drop }`",
      );
      return none;
    }
    const actionEnum = nameOf(item.node);
    const actions: NfActionVariant[] = [];
    const body = item.node.childForFieldName("body");
    for (const variant of body ? namedChildren(body).filter((n) => n.type === "enum_variant") : []) {
      const variantName = variant.childForFieldName("name") ?? variant;
      if (variant.childForFieldName("body")) {
        this.error(
          variantName,
          "nf-action-data",
          `action variant \`${actionEnum}::${variantName.text}\` carries data; action variants must be plain names`,
          "the dataplane only sees which variant was returned; keep per-packet data in maps",
        );
      }
      const value = variant.childForFieldName("value");
      if (value) {
        this.error(
          value,
          "nf-action-discriminant",
          `action variant \`${actionEnum}::${variantName.text}\` has an explicit discriminant`,
          "actions are numbered by declaration order (the `to` entries of the chain); remove `= …`",
        );
      }
      actions.push({ name: variantName.text, location: this.loc(variantName) });
      if (actions.length === MAX_ACTIONS + 1) {
        this.error(
          variantName,
          "nf-too-many-actions",
          `enum \`${actionEnum}\` has more than ${MAX_ACTIONS} variants (GALETTE_MAX_ACTIONS); \`${variantName.text}\` is number ${MAX_ACTIONS + 1}`,
          "merge actions that lead to the same place, or split the NF",
        );
      }
    }
    if (actions.length === 0) {
      this.error(
        item.node.childForFieldName("name") ?? item.node,
        "nf-no-actions",
        `enum \`${actionEnum}\` returned by \`packet\` has no variants`,
        "add at least one action, e.g. `Tx`",
      );
    }
    return { actionEnum, actions };
  }

  /** Follows `type A = B;` aliases (within lib.rs) to the item they name. */
  private resolveAlias(name: string): Item | undefined {
    const seen = new Set<string>();
    let item = this.scope.items.get(name);
    while (item && item.node.type === "type_item" && !seen.has(name)) {
      seen.add(name);
      const target = item.node.childForFieldName("type");
      const next = target ? localTypeName(target) : undefined;
      if (next === undefined) return item;
      name = next;
      item = this.scope.items.get(name);
    }
    return item;
  }

  // --- #[maps] -------------------------------------------------------------------------------

  private findMapsStruct(packet: Node | undefined): Item | undefined {
    for (const extra of this.mapsStructs.slice(1)) {
      this.error(
        extra.node.childForFieldName("name") ?? extra.node,
        "nf-maps-duplicate",
        `more than one #[maps] struct (\`${nameOf(this.mapsStructs[0]!.node)}\` and \`${nameOf(extra.node)}\`)`,
        "an NF has one #[maps] struct holding all of its maps",
      );
    }
    const mapsStruct = this.mapsStructs[0];
    if (mapsStruct || !packet) return mapsStruct;
    // No #[maps] struct: fine only if `packet` takes no maps argument.
    const params = packet.childForFieldName("parameters");
    const mapsParam = params
      ? namedChildren(params).filter((n) => n.type === "parameter" || n.type === "self_parameter")[1]
      : undefined;
    if (mapsParam) {
      const typeNode = mapsParam.childForFieldName("type");
      const typeName = typeNode ? localTypeName(stripReferences(typeNode)) : undefined;
      const declared = typeName === undefined ? undefined : this.scope.items.get(typeName);
      const hint =
        declared?.node.type === "struct_item"
          ? `annotate \`struct ${typeName}\` with #[maps] (or #[nf::maps])`
          : "declare the maps as `#[maps] pub struct Maps { name: (Key, Value), … }`";
      this.error(
        mapsParam,
        "nf-no-maps-struct",
        `\`packet\` takes a maps argument (\`${oneLine(mapsParam.text)}\`) but no struct is annotated #[maps]`,
        hint,
      );
    }
    return undefined;
  }

  private analyseMaps(mapsStruct: Item): NfMapField[] {
    const structName = nameOf(mapsStruct.node);
    const body = mapsStruct.node.childForFieldName("body");
    if (body?.type !== "field_declaration_list") {
      this.error(
        mapsStruct.node.childForFieldName("name") ?? mapsStruct.node,
        "nf-maps-shape",
        `#[maps] struct \`${structName}\` must have named fields \`name: (Key, Value)\``,
      );
      return [];
    }
    const fields: NfMapField[] = [];
    let pending: Attribute[] = [];
    for (const child of namedChildren(body)) {
      if (child.type === "attribute_item") {
        const attribute = parseAttribute(child);
        if (attribute) pending.push(attribute);
        continue;
      }
      if (child.type !== "field_declaration") continue;
      const attributes = pending;
      pending = [];
      const field = this.analyseMapField(child, attributes);
      if (!field) continue;
      fields.push(field);
      if (fields.length === MAX_MAPS + 1) {
        this.error(
          child.childForFieldName("name") ?? child,
          "nf-too-many-maps",
          `#[maps] struct \`${structName}\` has more than ${MAX_MAPS} maps (GALETTE_MAX_MAPS); \`${field.name}\` is number ${MAX_MAPS + 1}`,
          "combine maps (e.g. one map with a struct value)",
        );
      }
    }
    return fields;
  }

  private analyseMapField(field: Node, attributes: Attribute[]): NfMapField | undefined {
    const nameNode = field.childForFieldName("name");
    const typeNode = field.childForFieldName("type");
    if (!nameNode || !typeNode) return undefined;
    const name = nameNode.text;
    const parts = typeNode.type === "tuple_type" ? namedChildren(typeNode).filter((n) => !isComment(n)) : [];
    if (parts.length !== 2) {
      this.error(
        typeNode,
        "nf-map-field-shape",
        `map field \`${name}\` has type \`${oneLine(typeNode.text)}\`; #[maps] fields must be \`(Key, Value)\` tuples`,
        `e.g. \`${name}: (u32, u64)\``,
      );
      return undefined;
    }
    const [keyNode, valueNode] = parts as [Node, Node];
    const key = this.mapSideType(name, "key", keyNode);
    const value = this.mapSideType(name, "value", valueNode);
    const result: NfMapField = { name, key, value, location: this.loc(nameNode) };
    for (const attribute of attributes) {
      if (attribute.path === "map") this.applyMapAttribute(result, attribute);
    }
    return result;
  }

  private mapSideType(field: string, side: "key" | "value", typeNode: Node): RustType {
    const text = oneLine(typeNode.text);
    const result = this.layoutOf(typeNode, this.libEnv());
    if ("problem" in result) {
      const { problem } = result;
      const message = `map field \`${field}\`: ${side} type \`${text}\`: ${problem.message}`;
      if (problem.fatal) this.error(problem.at, problem.code, message, problem.hint);
      else
        this.warning(
          problem.at,
          problem.code,
          `${message}; its size cannot be checked against the chain`,
          problem.hint,
        );
      return { text };
    }
    if (side === "key" && result.layout.padding > 0) {
      this.warning(
        typeNode,
        "nf-map-key-padding",
        `map field \`${field}\`: key type \`${text}\` has ${result.layout.padding} padding byte(s); uninitialised padding makes hash-map lookups miss`,
        "add explicit padding fields (e.g. `_pad: [u8; N]`) and set them to zero",
      );
    }
    return { text, size: result.layout.size };
  }

  /** #[map(type = "lpm-trie", size = 1024)] */
  private applyMapAttribute(field: NfMapField, attribute: Attribute): void {
    const args = attribute.args ? childList(attribute.args) : [];
    // Token tree children: "(" key "=" value "," … ")"; keywords like `type` are anonymous tokens.
    const tokens = args.slice(1, -1).filter((t) => !isComment(t));
    for (let i = 0; i < tokens.length; i += 4) {
      const keyToken = tokens[i]!;
      const eq = tokens[i + 1];
      const valueToken = tokens[i + 2];
      const separator = tokens[i + 3];
      if (eq?.text !== "=" || !valueToken || (separator && separator.text !== ",")) {
        this.error(
          keyToken,
          "nf-map-attribute",
          `cannot read #[map(...)] on \`${field.name}\`: expected \`key = value\` pairs, got \`${oneLine(attribute.args?.text ?? "")}\``,
          'e.g. #[map(type = "lpm-trie", size = 1024)]',
        );
        return;
      }
      if (keyToken.text === "type") {
        const spelling = valueToken.type === "string_literal" ? stringValue(valueToken) : undefined;
        const canonical = spelling === undefined ? undefined : canonicalMapType(spelling);
        if (!canonical) {
          this.error(
            valueToken,
            "nf-map-type",
            `unknown map type ${valueToken.text} on \`${field.name}\``,
            `one of: ${NF_MAP_TYPES.map((t) => `"${t}"`).join(", ")} (- and _ are interchangeable)`,
          );
          continue;
        }
        field.mapType = canonical;
      } else if (keyToken.text === "size") {
        const size = valueToken.type === "integer_literal" ? parseIntegerLiteral(valueToken.text) : undefined;
        if (size === undefined || size < 1 || size > 0xffff_ffff) {
          this.error(
            valueToken,
            "nf-map-size",
            `map size \`${valueToken.text}\` on \`${field.name}\` must be an integer from 1 to 4294967295`,
          );
          continue;
        }
        field.maxEntries = size;
      } else {
        this.error(
          keyToken,
          "nf-map-attribute",
          `unknown #[map] key \`${keyToken.text}\` on \`${field.name}\``,
          "known keys: type, size",
        );
      }
    }
  }

  // --- layout --------------------------------------------------------------------------------

  private libEnv(): Env {
    return { scope: this.scope, types: new Map(), consts: new Map(), visiting: new Set() };
  }

  private layoutOf(typeNode: Node, env: Env): LayoutResult {
    const problem = (p: Omit<LayoutProblem, "at"> & { at?: Node }): LayoutResult => ({
      problem: { at: typeNode, ...p },
    });
    switch (typeNode.type) {
      case "primitive_type": {
        const name = typeNode.text;
        if (name === "usize" || name === "isize") {
          return problem({
            fatal: true,
            code: "nf-map-usize",
            message: `\`${name}\` is 8 bytes on bpf and the 64-bit targets but 4 on armv7, so the map's layout would differ between XDP and userland`,
            hint: `use a fixed-width integer (u64 or u32) instead of ${name}`,
          });
        }
        const primitive = PRIMITIVES[name];
        return primitive
          ? { layout: { ...primitive, padding: 0 } }
          : problem({ fatal: false, code: "nf-map-type-size", message: `\`${name}\` has no fixed size` });
      }
      case "unit_type":
        return { layout: { size: 0, align: 1, padding: 0 } };
      case "array_type": {
        const element = typeNode.childForFieldName("element");
        const lengthNode = typeNode.childForFieldName("length");
        if (!element || !lengthNode)
          return problem({ fatal: false, code: "nf-map-type-size", message: "array without a length" });
        const inner = this.layoutOf(element, env);
        if ("problem" in inner) return inner;
        const length = this.evalConst(lengthNode, env, new Set());
        if (length === undefined) {
          return problem({
            fatal: false,
            code: "nf-map-type-size",
            message: `cannot evaluate the array length \`${oneLine(lengthNode.text)}\``,
            hint: "use an integer literal or a `const` defined in src/lib.rs",
            at: lengthNode,
          });
        }
        return {
          layout: {
            size: inner.layout.size * length,
            align: inner.layout.align,
            padding: inner.layout.padding * length,
          },
        };
      }
      case "reference_type":
      case "pointer_type":
        return problem({
          fatal: true,
          code: "nf-map-pointer",
          message:
            "pointers and references cannot be stored in maps (their size differs between targets and their targets are not shared)",
          hint: "store plain data: integers, arrays, #[repr(C)] structs",
        });
      case "tuple_type":
        return problem({
          fatal: false,
          code: "nf-map-type-size",
          message: "Rust tuples have no fixed layout",
          hint: "use a #[repr(C)] struct",
        });
      case "type_identifier":
      case "scoped_type_identifier":
      case "generic_type": {
        const base = typeNode.type === "generic_type" ? typeNode.childForFieldName("type") : typeNode;
        const args =
          typeNode.type === "generic_type"
            ? namedChildren(typeNode.childForFieldName("type_arguments") ?? typeNode).filter(
                (n) => n.type !== "lifetime" && !isComment(n),
              )
            : [];
        if (!base)
          return problem({ fatal: false, code: "nf-map-type-size", message: "cannot read this type" });
        const bound = base.type === "type_identifier" ? env.types.get(base.text) : undefined;
        if (bound) return this.layoutOf(bound.node, bound.env);
        const found = this.lookupType(base, env.scope);
        if (found) return this.layoutOfItem(found.item, found.scope, args, typeNode, env);
        const known = this.nfScope === undefined ? NF_CRATE_TYPES[lastSegment(base)] : undefined;
        if (known && args.length === 0 && (localTypeName(base) !== undefined || pathRoot(base) === "nf"))
          return { layout: { ...known, padding: 0 } };
        return problem({
          fatal: false,
          code: "nf-map-type-size",
          message: `\`${oneLine(typeNode.text)}\` is not defined in src/lib.rs${this.nfScope ? " nor in the nf crate" : ""}`,
          hint: "define key/value types in src/lib.rs as #[repr(C)] structs",
        });
      }
      default:
        return problem({
          fatal: false,
          code: "nf-map-type-size",
          message: "the size of this kind of type cannot be computed",
          hint: "use integers, arrays, type aliases or #[repr(C)] structs defined in src/lib.rs",
        });
    }
  }

  /**
   * Finds the item a type path names: `Foo`/`crate::Foo`/`self::Foo` in the current scope,
   * else (from lib.rs) a name the nf crate defines: `nf::LpmKeyV4`, or `LpmKeyV4` imported with `use nf::…`.
   */
  private lookupType(base: Node, scope: Scope): { item: Item; scope: Scope } | undefined {
    const local = localTypeName(base);
    const here = local === undefined ? undefined : scope.items.get(local);
    if (here) return { item: here, scope };
    const nf = this.nfScope;
    if (!nf || scope !== this.scope) return undefined;
    if (local !== undefined || pathRoot(base) === "nf") {
      const there = nf.items.get(lastSegment(base));
      if (there) return { item: there, scope: nf };
    }
    return undefined;
  }

  private layoutOfItem(item: Item, scope: Scope, args: Node[], use: Node, useEnv: Env): LayoutResult {
    const name = nameOf(item.node);
    const problem = (p: Omit<LayoutProblem, "at">): LayoutResult => ({ problem: { at: use, ...p } });
    const key = `${scope.file}#${name}`;
    if (useEnv.visiting.has(key))
      return problem({ fatal: false, code: "nf-map-type-size", message: `\`${name}\` contains itself` });
    const env: Env = {
      scope,
      types: new Map(),
      consts: new Map(),
      visiting: new Set(useEnv.visiting).add(key),
    };

    // Generic parameters: bind const parameters to values and type parameters to the use site's types.
    const params = namedChildren(item.node.childForFieldName("type_parameters") ?? item.node).filter(
      (n) => n.type === "const_parameter" || n.type === "type_parameter",
    );
    if (params.length !== args.length) {
      return problem({
        fatal: false,
        code: "nf-map-type-size",
        message: `\`${name}\` takes ${params.length} generic argument(s), ${args.length} given`,
      });
    }
    for (const [i, param] of params.entries()) {
      const paramName = param.childForFieldName("name")?.text ?? "";
      const arg = args[i]!;
      if (param.type === "const_parameter") {
        const value = this.evalConst(arg, useEnv, new Set());
        if (value === undefined)
          return problem({
            fatal: false,
            code: "nf-map-type-size",
            message: `cannot evaluate the generic argument \`${oneLine(arg.text)}\` of \`${name}\``,
          });
        env.consts.set(paramName, value);
      } else {
        env.types.set(paramName, { node: arg, env: useEnv });
      }
    }

    const result = this.layoutOfItemBody(item, name, env, problem);
    // Problems found inside another crate's source are reported where lib.rs uses the type.
    if ("problem" in result && scope !== this.scope) return { problem: { ...result.problem, at: use } };
    return result;
  }

  private layoutOfItemBody(
    item: Item,
    name: string,
    env: Env,
    problem: (p: Omit<LayoutProblem, "at">) => LayoutResult,
  ): LayoutResult {
    const node = item.node;
    if (node.type === "type_item") {
      const target = node.childForFieldName("type");
      return target
        ? this.layoutOf(target, env)
        : problem({ fatal: false, code: "nf-map-type-size", message: `cannot read alias \`${name}\`` });
    }
    const repr = readRepr(item.attributes);
    if (node.type === "enum_item") {
      const int = repr.ints[0];
      if (int === undefined) {
        return problem({
          fatal: false,
          code: "nf-map-type-size",
          message: `enum \`${name}\` has no #[repr(u8/u16/u32/u64)], so its size is not fixed`,
          hint: `add #[repr(u8)] (or another integer) to enum ${name}`,
        });
      }
      return { layout: { ...PRIMITIVES[int]!, padding: 0 } };
    }
    if (node.type !== "struct_item")
      return problem({
        fatal: false,
        code: "nf-map-type-size",
        message: `\`${name}\` is a ${itemKind(node)}`,
      });
    if (!repr.c && !repr.transparent) {
      return problem({
        fatal: false,
        code: "nf-map-type-size",
        message: `struct \`${name}\` is not #[repr(C)], so Rust may reorder its fields and its layout is not fixed`,
        hint: `add #[repr(C)] to struct ${name}`,
      });
    }
    const body = node.childForFieldName("body");
    const fieldTypes =
      body?.type === "field_declaration_list"
        ? namedChildren(body)
            .filter((n) => n.type === "field_declaration")
            .map((n) => n.childForFieldName("type"))
        : body?.type === "ordered_field_declaration_list"
          ? body.childrenForFieldName("type")
          : [];
    let offset = 0;
    let align = 1;
    let padding = 0;
    for (const fieldType of fieldTypes) {
      if (!fieldType) continue;
      const field = this.layoutOf(fieldType, env);
      if ("problem" in field) return field;
      const fieldAlign =
        repr.packed === undefined ? field.layout.align : Math.min(field.layout.align, repr.packed);
      const aligned = roundUp(offset, fieldAlign);
      padding += aligned - offset + field.layout.padding;
      offset = aligned + field.layout.size;
      align = Math.max(align, fieldAlign);
    }
    if (repr.align !== undefined) align = Math.max(align, repr.align);
    const size = roundUp(offset, align);
    padding += size - offset;
    return { layout: { size, align, padding } };
  }

  /** Evaluates a length or const argument: integer literals, consts, + - * / << >>, ( ) and { }. */
  private evalConst(node: Node, env: Env, visiting: Set<string>): number | undefined {
    switch (node.type) {
      case "integer_literal":
        return parseIntegerLiteral(node.text);
      case "parenthesized_expression":
      case "block": {
        const inner = namedChildren(node).filter((n) => !isComment(n));
        return inner.length === 1 ? this.evalConst(inner[0]!, env, visiting) : undefined;
      }
      case "identifier":
      case "type_identifier": {
        const bound = env.consts.get(node.text);
        if (bound !== undefined) return bound;
        const value = env.scope.consts.get(node.text)?.childForFieldName("value");
        if (!value || visiting.has(node.text)) return undefined;
        return this.evalConst(value, { ...env, consts: new Map() }, new Set(visiting).add(node.text));
      }
      case "binary_expression": {
        const left = node.childForFieldName("left");
        const right = node.childForFieldName("right");
        const operator = node.childForFieldName("operator")?.text;
        const a = left ? this.evalConst(left, env, visiting) : undefined;
        const b = right ? this.evalConst(right, env, visiting) : undefined;
        if (a === undefined || b === undefined) return undefined;
        const results: Record<string, number | undefined> = {
          "+": a + b,
          "-": a - b,
          "*": a * b,
          "/": b === 0 ? undefined : Math.floor(a / b),
          "<<": a * 2 ** b,
          ">>": Math.floor(a / 2 ** b),
        };
        const result = operator === undefined ? undefined : results[operator];
        return result !== undefined && Number.isSafeInteger(result) && result >= 0 ? result : undefined;
      }
      default:
        return undefined;
    }
  }

  // --- diagnostics ---------------------------------------------------------------------------

  private loc(node: Node): SourceLocation {
    return { file: this.file, line: node.startPosition.row + 1, column: node.startPosition.column + 1 };
  }

  private error(node: Node, code: string, message: string, hint?: string): void {
    this.diagnostics.push({ severity: "error", ...this.loc(node), code, message, ...(hint ? { hint } : {}) });
  }

  private warning(node: Node, code: string, message: string, hint?: string): void {
    this.diagnostics.push({
      severity: "warning",
      ...this.loc(node),
      code,
      message,
      ...(hint ? { hint } : {}),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Syntax helpers

function namedChildren(node: Node): Node[] {
  return node.namedChildren.filter((n): n is Node => n !== null);
}

function childList(node: Node): Node[] {
  return node.children.filter((n): n is Node => n !== null);
}

function isComment(node: Node): boolean {
  return node.type === "line_comment" || node.type === "block_comment";
}

function nameOf(item: Node): string {
  return item.childForFieldName("name")?.text ?? "";
}

function itemKind(node: Node): string {
  return (
    {
      struct_item: "struct",
      enum_item: "enum",
      type_item: "type alias",
      union_item: "union",
      function_item: "function",
    }[node.type] ?? node.type
  );
}

function parseAttribute(item: Node): Attribute | undefined {
  const attribute = namedChildren(item).find((n) => n.type === "attribute");
  const pathNode = attribute ? namedChildren(attribute)[0] : undefined;
  if (!attribute || !pathNode) return undefined;
  const args = attribute.childForFieldName("arguments") ?? undefined;
  return { path: pathNode.text.replace(/\s+/g, ""), ...(args ? { args } : {}), node: item };
}

function isMapsAttribute(attributePath: string): boolean {
  return attributePath === "maps" || attributePath === "nf::maps";
}

/** `#![no_std]`, or `#![cfg_attr(<cond>, no_std)]` (no_std outside tests, the usual pattern). */
function declaresNoStd(inner: Node): boolean {
  const attribute = parseAttribute(inner);
  if (!attribute) return false;
  if (attribute.path === "no_std") return true;
  if (attribute.path === "cfg_attr" && attribute.args) {
    return namedChildren(attribute.args).some((n) => n.type === "identifier" && n.text === "no_std");
  }
  return false;
}

interface Repr {
  c: boolean;
  transparent: boolean;
  packed?: number;
  align?: number;
  ints: string[];
}

/** Reads #[repr(C)], #[repr(C, packed)], #[repr(packed(N))], #[repr(align(N))], #[repr(u8)] … */
function readRepr(attributes: Attribute[]): Repr {
  const repr: Repr = { c: false, transparent: false, ints: [] };
  for (const attribute of attributes) {
    if (attribute.path !== "repr" || !attribute.args) continue;
    const tokens = namedChildren(attribute.args);
    tokens.forEach((token, i) => {
      if (token.type !== "identifier" && token.type !== "primitive_type") return;
      const next = tokens[i + 1];
      const argument =
        next?.type === "token_tree" ? parseIntegerLiteral(namedChildren(next)[0]?.text ?? "") : undefined;
      const word = token.text;
      if (word === "C") repr.c = true;
      else if (word === "transparent") repr.transparent = true;
      else if (word === "packed") repr.packed = argument ?? 1;
      else if (word === "align" && argument !== undefined) repr.align = argument;
      else if (INTEGER_REPRS.has(word)) repr.ints.push(word);
    });
  }
  return repr;
}

/** The lib.rs-local name a type path refers to: `Foo`, `crate::Foo`, `self::Foo`; else undefined. */
function localTypeName(typeNode: Node): string | undefined {
  if (typeNode.type === "type_identifier") return typeNode.text;
  if (typeNode.type === "scoped_type_identifier") {
    const root = typeNode.childForFieldName("path");
    if (
      root &&
      (root.type === "crate" || root.type === "self" || root.text === "crate" || root.text === "self")
    ) {
      return typeNode.childForFieldName("name")?.text;
    }
  }
  return undefined;
}

function lastSegment(typeNode: Node): string {
  return typeNode.type === "scoped_type_identifier"
    ? (typeNode.childForFieldName("name")?.text ?? typeNode.text)
    : typeNode.text;
}

/** `nf` for `nf::LpmKeyV4` and `nf::lpm::LpmKeyV4`. */
function pathRoot(typeNode: Node): string | undefined {
  let node: Node | null = typeNode;
  while (node && (node.type === "scoped_type_identifier" || node.type === "scoped_identifier"))
    node = node.childForFieldName("path");
  return node?.text;
}

function stripReferences(typeNode: Node): Node {
  let node = typeNode;
  while (node.type === "reference_type" || node.type === "pointer_type") {
    const inner = node.childForFieldName("type");
    if (!inner) break;
    node = inner;
  }
  return node;
}

function firstErrorNode(node: Node): Node | undefined {
  if (node.isError || node.isMissing) return node;
  for (const child of childList(node)) {
    if (child.hasError || child.isMissing || child.isError) {
      const found = firstErrorNode(child);
      if (found) return found;
    }
  }
  return undefined;
}

/** Rust integer literal → number: `1_024`, `0x10`, `0o7`, `0b1`, with an optional type suffix. */
export function parseIntegerLiteral(text: string): number | undefined {
  const cleaned = text
    .replaceAll("_", "")
    .replace(/(u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize)$/, "");
  const value = /^0[xob]/i.test(cleaned)
    ? Number(cleaned.toLowerCase())
    : /^\d+$/.test(cleaned)
      ? Number(cleaned)
      : Number.NaN;
  return Number.isSafeInteger(value) ? value : undefined;
}

function stringValue(literal: Node): string {
  return namedChildren(literal)
    .filter((n) => n.type === "string_content")
    .map((n) => n.text)
    .join("");
}

function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

function truncate(text: string, max: number): string {
  const line = oneLine(text);
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
