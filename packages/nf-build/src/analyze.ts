/**
 * The NF analyser: reads an NF crate's Cargo.toml (crate-manifest.ts) and src/lib.rs with a
 * real Rust parser (tree-sitter-rust, via web-tree-sitter's wasm runtime; rust-syntax.ts
 * reads its trees) and extracts what the chain checker and the compiler need — the NF's
 * shape: the #[maps] struct's (K, V) fields with their sizes (type-layout.ts: one layout on
 * every target, or refused), and the enum `packet` returns with its variants in order.
 */
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { canonicalMapType, GALETTE_MAX_ACTIONS, GALETTE_MAX_MAPS, MAP_TYPES } from "@galette/vocabulary";
import { Language, type Node, Parser, type Tree } from "web-tree-sitter";
import { errorText, NfAnalysisError } from "./analysis-error";
import { type CrateManifest, readCrateManifest, unreadableLibError } from "./crate-manifest";
import {
  type Attribute,
  childList,
  collectTopLevel,
  firstErrorNode,
  type Item,
  isComment,
  itemKind,
  localTypeName,
  namedChildren,
  nameOf,
  oneLine,
  parseAttribute,
  parseIntegerLiteral,
  type Scope,
  stringValue,
  stripReferences,
  truncate,
} from "./rust-syntax";
import { TypeLayouts } from "./type-layout";
import type {
  CrateSettings,
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

export { formatNfDiagnostic, NfAnalysisError } from "./analysis-error";
export { NF_CRATE_TYPES } from "./nf-crate-types";
export { parseIntegerLiteral } from "./rust-syntax";

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
  return analyzeCrate(dir, await readCrateManifest(dir), (file) => readFile(file, "utf8"));
}

/** Analyses the library file a read manifest names, with `read` (how far to trust the crate). */
export async function analyzeCrate(
  dir: string,
  manifest: CrateManifest,
  read: (file: string) => Promise<string>,
): Promise<NfAnalysis> {
  let source: string;
  try {
    source = await read(manifest.libFile);
  } catch (err) {
    throw unreadableLibError(manifest.libFile, err);
  }
  return analyzeNfSource(source, {
    file: manifest.libFile,
    crateName: manifest.name,
    crateDir: dir,
    settings: { edition: manifest.edition, ...(manifest.xdp !== undefined ? { xdp: manifest.xdp } : {}) },
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
  options: {
    file: string;
    crateName: string;
    crateDir?: string;
    nfCrateDir?: string;
    /** what the crate's Cargo.toml says (carried into the analysis) */
    settings?: CrateSettings;
  },
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
    const analysis = new LibAnalyser(tree.rootNode, options.file, nfScope, extraDiagnostics).run(
      options.crateName,
      crateDir,
    );
    return options.settings ? { ...analysis, settings: options.settings } : analysis;
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

class LibAnalyser {
  private readonly diagnostics: NfDiagnostic[] = [];
  private readonly scope: Scope;
  private readonly functions: Map<string, Item>;
  private readonly mapsStructs: Item[];
  private readonly usesStd: boolean;
  private readonly layouts: TypeLayouts;

  /** `nfScope`: the nf crate's top-level types, when its source is at hand (sizes of nf::LpmKeyV4 …). */
  constructor(
    private readonly root: Node,
    private readonly file: string,
    nfScope?: Scope,
    extraDiagnostics: NfDiagnostic[] = [],
  ) {
    this.diagnostics.push(...extraDiagnostics);
    const top = collectTopLevel(root, file);
    this.scope = top.scope;
    this.functions = top.functions;
    this.mapsStructs = top.mapsStructs;
    this.usesStd = !top.noStd;
    this.layouts = new TypeLayouts(this.scope, nfScope);
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
    const result = this.layouts.of(typeNode);
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
