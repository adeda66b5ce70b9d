/*
 * Reading tree-sitter-rust syntax trees: a file's top-level items with their attributes,
 * attribute and #[repr] parsing, type paths, literals. No knowledge of NFs.
 */
import type { Node } from "web-tree-sitter";

/** A top-level item of lib.rs with the outer attributes written before it. */
export interface Item {
  node: Node;
  attributes: Attribute[];
}

export interface Attribute {
  /** `maps`, `nf::maps`, `repr`, … */
  path: string;
  /** the `(...)` token tree, if any */
  args?: Node;
  node: Node;
}

/** Top-level items of one source file (lib.rs, or the nf crate's files merged). */
export interface Scope {
  file: string;
  items: Map<string, Item>;
  consts: Map<string, Node>;
}

export interface TopLevel {
  scope: Scope;
  functions: Map<string, Item>;
  mapsStructs: Item[];
  noStd: boolean;
}

/** Collects a file's top-level items with the outer attributes written before each. */
export function collectTopLevel(root: Node, file: string, into?: Scope): TopLevel {
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

export function namedChildren(node: Node): Node[] {
  return node.namedChildren.filter((n): n is Node => n !== null);
}

export function childList(node: Node): Node[] {
  return node.children.filter((n): n is Node => n !== null);
}

export function isComment(node: Node): boolean {
  return node.type === "line_comment" || node.type === "block_comment";
}

export function nameOf(item: Node): string {
  return item.childForFieldName("name")?.text ?? "";
}

export function itemKind(node: Node): string {
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

export function parseAttribute(item: Node): Attribute | undefined {
  const attribute = namedChildren(item).find((n) => n.type === "attribute");
  const pathNode = attribute ? namedChildren(attribute)[0] : undefined;
  if (!attribute || !pathNode) return undefined;
  const args = attribute.childForFieldName("arguments") ?? undefined;
  return { path: pathNode.text.replace(/\s+/g, ""), ...(args ? { args } : {}), node: item };
}

export function isMapsAttribute(attributePath: string): boolean {
  return attributePath === "maps" || attributePath === "nf::maps";
}

/** `#![no_std]`, or `#![cfg_attr(<cond>, no_std)]` (no_std outside tests, the usual pattern). */
export function declaresNoStd(inner: Node): boolean {
  const attribute = parseAttribute(inner);
  if (!attribute) return false;
  if (attribute.path === "no_std") return true;
  if (attribute.path === "cfg_attr" && attribute.args) {
    return namedChildren(attribute.args).some((n) => n.type === "identifier" && n.text === "no_std");
  }
  return false;
}

/** Integer types an enum may take as its #[repr]. */
const INTEGER_REPRS = new Set(["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]);

export interface Repr {
  c: boolean;
  transparent: boolean;
  packed?: number;
  align?: number;
  ints: string[];
}

/** Reads #[repr(C)], #[repr(C, packed)], #[repr(packed(N))], #[repr(align(N))], #[repr(u8)] … */
export function readRepr(attributes: Attribute[]): Repr {
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
export function localTypeName(typeNode: Node): string | undefined {
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

export function lastSegment(typeNode: Node): string {
  return typeNode.type === "scoped_type_identifier"
    ? (typeNode.childForFieldName("name")?.text ?? typeNode.text)
    : typeNode.text;
}

/** `nf` for `nf::LpmKeyV4` and `nf::lpm::LpmKeyV4`. */
export function pathRoot(typeNode: Node): string | undefined {
  let node: Node | null = typeNode;
  while (node && (node.type === "scoped_type_identifier" || node.type === "scoped_identifier"))
    node = node.childForFieldName("path");
  return node?.text;
}

export function stripReferences(typeNode: Node): Node {
  let node = typeNode;
  while (node.type === "reference_type" || node.type === "pointer_type") {
    const inner = node.childForFieldName("type");
    if (!inner) break;
    node = inner;
  }
  return node;
}

export function firstErrorNode(node: Node): Node | undefined {
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

export function stringValue(literal: Node): string {
  return namedChildren(literal)
    .filter((n) => n.type === "string_content")
    .map((n) => n.text)
    .join("");
}

/** Source text on one line, for messages. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

export function truncate(text: string, max: number): string {
  const line = oneLine(text);
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
