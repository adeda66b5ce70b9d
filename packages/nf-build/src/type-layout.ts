/*
 * Size, alignment and padding of Rust types that must lay out the same on every target an NF
 * is built for (bpf, x86_64, aarch64, riscv64 — all 64-bit — and armv7, 32-bit). Fixed-width
 * integers, bool, char, f32/f64, arrays and #[repr(C)] structs of those lay out identically
 * on all of them (AAPCS aligns u64 to 8 like the 64-bit ABIs). usize/isize and pointers are
 * 8 bytes on bpf and the 64-bit natives but 4 on armv7, so they are refused.
 */
import type { Node } from "web-tree-sitter";
import { NF_CRATE_TYPES } from "./nf-crate-types";
import {
  type Item,
  isComment,
  itemKind,
  lastSegment,
  localTypeName,
  namedChildren,
  nameOf,
  oneLine,
  parseIntegerLiteral,
  pathRoot,
  readRepr,
  type Scope,
} from "./rust-syntax";

/** Size and alignment of a type that has one fixed layout on every target. */
export interface Layout {
  size: number;
  align: number;
  /** padding bytes anywhere inside (matters for hash keys: padding is not initialised) */
  padding: number;
}

/** Why a layout could not be computed; `fatal` ones are errors, the rest warnings. */
export interface LayoutProblem {
  fatal: boolean;
  code: string;
  message: string;
  hint?: string;
  at: Node;
}

export type LayoutResult = { layout: Layout } | { problem: LayoutProblem };

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

/** Where a type is being laid out: its scope and the generic arguments bound so far. */
interface Env {
  scope: Scope;
  types: Map<string, { node: Node; env: Env }>;
  consts: Map<string, number>;
  /** items being laid out (`file#name`), to stop on recursive types */
  visiting: Set<string>;
}

/** Lays out the types of one file's scope (and the nf crate's, when its source is at hand). */
export class TypeLayouts {
  /** `nfScope`: the nf crate's top-level types (sizes of nf::LpmKeyV4 …); else NF_CRATE_TYPES */
  constructor(
    private readonly scope: Scope,
    private readonly nfScope?: Scope,
  ) {}

  /** The layout of a type written in this scope, or why it has none. */
  of(typeNode: Node): LayoutResult {
    return this.layoutOf(typeNode, this.libEnv());
  }

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
}

function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}
