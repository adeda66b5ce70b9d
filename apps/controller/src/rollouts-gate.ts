/**
 * Rollout health gates: a small expression language over what a device reports, e.g.
 * `installed && aborts == 0 && drop_ratio <= 1.2`. Pure: no I/O, no clock.
 *
 *   gate    := or
 *   or      := and ( "||" and )*
 *   and     := unary ( "&&" unary )*
 *   unary   := "!" unary | compare
 *   compare := primary ( ("==" | "!=" | "<" | "<=" | ">" | ">=") primary )?
 *   primary := NUMBER | "true" | "false" | IDENT | "(" gate ")"
 *
 * Types are checked when the gate is parsed (a rollout with a bad gate never starts):
 * `&&`, `||`, `!` take booleans, `<`…`>=` take numbers, `==`/`!=` take two of the same type,
 * and the whole gate is a boolean.
 */

export type GateType = "boolean" | "number";

/** The identifiers a gate may use, with their type and meaning (docs/operator-guide.md repeats this). */
export const GATE_VARIABLES = {
  installed: { type: "boolean", doc: "the device runs the rollout's chain version" },
  online: { type: "boolean", doc: "the device holds a notification connection or reported recently" },
  heartbeat: { type: "number", doc: "seconds since the device last reported its status" },
  aborts: {
    type: "number",
    doc: "frames its NFs sent to `abort` since the phase reached it (0 until it runs the version)",
  },
  errors: {
    type: "number",
    doc: "errors the device reported since the phase started, plus NF worker crashes",
  },
  drops: {
    type: "number",
    doc: "frames its NFs sent to `drop` since the phase reached it (0 until it runs the version)",
  },
  drop_ratio: {
    type: "number",
    doc: "its drop rate on the version ÷ its drop rate before the rollout (1 = unchanged)",
  },
} as const satisfies Record<string, { type: GateType; doc: string }>;

export type GateVariable = keyof typeof GATE_VARIABLES;
export type GateValues = {
  [K in GateVariable]: (typeof GATE_VARIABLES)[K]["type"] extends "boolean" ? boolean : number;
};

/** Longest gate accepted (characters) and deepest nesting of parentheses and `!`. */
export const MAX_GATE_LENGTH = 1024;
export const MAX_GATE_DEPTH = 32;

/** A gate that does not parse or type-check; `column` is 1-based. */
export class GateError extends Error {
  override name = "GateError";
  constructor(
    readonly reason: string,
    readonly column: number,
    readonly source: string,
  ) {
    super(`gate column ${column}: ${reason}`);
  }

  /** The gate with a caret under the column, for a terminal. */
  get pointer(): string {
    const shown = this.source.length > 200 ? `${this.source.slice(0, 200)}…` : this.source;
    return `${shown}\n${" ".repeat(Math.min(this.column - 1, 200))}^`;
  }
}

type CompareOp = "==" | "!=" | "<" | "<=" | ">" | ">=";
type Token =
  | { kind: "number"; value: number; start: number; end: number }
  | { kind: "ident"; name: string; start: number; end: number }
  | { kind: "op"; op: CompareOp | "&&" | "||" | "!" | "(" | ")"; start: number; end: number }
  | { kind: "end"; start: number; end: number };

export type GateNode =
  | { kind: "literal"; value: boolean | number; start: number; end: number }
  | { kind: "var"; name: GateVariable; start: number; end: number }
  | { kind: "not"; operand: GateNode; start: number; end: number }
  | { kind: "and" | "or"; operands: GateNode[]; start: number; end: number }
  | { kind: "compare"; op: CompareOp; left: GateNode; right: GateNode; start: number; end: number };

export interface Gate {
  source: string;
  ast: GateNode;
  /** the variables it reads, in first-use order */
  variables: GateVariable[];
}

const OPERATORS = ["&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")"] as const;

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fail = (reason: string, at: number): never => {
    throw new GateError(reason, at + 1, source);
  };
  while (i < source.length) {
    const c = source[i]!;
    if (c === " " || c === "\t") {
      i++;
      continue;
    }
    if (/[0-9.]/.test(c)) {
      const m = /^(?:\d+(?:\.\d+)?|\.\d+)/.exec(source.slice(i));
      if (!m) fail(`"${c}" does not start a number`, i);
      const text = m![0];
      if (/[A-Za-z_0-9.]/.test(source[i + text.length] ?? ""))
        fail(`a number ends with "${source[i + text.length]}"`, i + text.length);
      tokens.push({ kind: "number", value: Number(text), start: i, end: i + text.length });
      i += text.length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const text = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i))![0];
      tokens.push({ kind: "ident", name: text, start: i, end: i + text.length });
      i += text.length;
      continue;
    }
    const op = OPERATORS.find((o) => source.startsWith(o, i));
    if (op) {
      tokens.push({ kind: "op", op, start: i, end: i + op.length });
      i += op.length;
      continue;
    }
    if (c === "=") fail(`"=" is not an operator: compare with "=="`, i);
    if (c === "&" || c === "|") fail(`"${c}" is not an operator: use "${c}${c}"`, i);
    fail(`unexpected character ${JSON.stringify(c)}`, i);
  }
  tokens.push({ kind: "end", start: source.length, end: source.length });
  return tokens;
}

const describe = (t: Token): string =>
  t.kind === "end"
    ? "the end of the gate"
    : t.kind === "number"
      ? `the number ${t.value}`
      : t.kind === "ident"
        ? `"${t.name}"`
        : `"${t.op}"`;

/** Parses and type-checks `source`. Throws GateError (and nothing else) on any bad input. */
export function parseGate(source: string): Gate {
  if (typeof source !== "string") throw new GateError("the gate must be a string", 1, String(source));
  if (source.trim() === "") throw new GateError("the gate is empty", 1, source);
  if (source.length > MAX_GATE_LENGTH)
    throw new GateError(`the gate is longer than ${MAX_GATE_LENGTH} characters`, MAX_GATE_LENGTH + 1, source);
  if (/[\r\n]/.test(source))
    throw new GateError("the gate must be one line", source.search(/[\r\n]/) + 1, source);
  const tokens = tokenize(source);
  let pos = 0;
  const variables: GateVariable[] = [];
  const peek = () => tokens[pos]!;
  const fail = (reason: string, at: number): never => {
    throw new GateError(reason, at + 1, source);
  };
  const isOp = (t: Token, op: string) => t.kind === "op" && t.op === op;

  const or = (depth: number): GateNode => {
    const first = and(depth);
    const operands = [first];
    while (isOp(peek(), "||")) {
      pos++;
      operands.push(and(depth));
    }
    return operands.length === 1
      ? first
      : { kind: "or", operands, start: first.start, end: operands.at(-1)!.end };
  };
  const and = (depth: number): GateNode => {
    const first = unary(depth);
    const operands = [first];
    while (isOp(peek(), "&&")) {
      pos++;
      operands.push(unary(depth));
    }
    return operands.length === 1
      ? first
      : { kind: "and", operands, start: first.start, end: operands.at(-1)!.end };
  };
  const unary = (depth: number): GateNode => {
    const t = peek();
    if (isOp(t, "!")) {
      if (depth >= MAX_GATE_DEPTH) fail(`nested deeper than ${MAX_GATE_DEPTH} levels`, t.start);
      pos++;
      const operand = unary(depth + 1);
      return { kind: "not", operand, start: t.start, end: operand.end };
    }
    return compare(depth);
  };
  const compare = (depth: number): GateNode => {
    const left = primary(depth);
    const t = peek();
    if (t.kind === "op" && ["==", "!=", "<", "<=", ">", ">="].includes(t.op)) {
      pos++;
      const right = primary(depth);
      const next = peek();
      if (next.kind === "op" && ["==", "!=", "<", "<=", ">", ">="].includes(next.op))
        fail(`comparisons do not chain: join them with "&&" or use parentheses`, next.start);
      return { kind: "compare", op: t.op as CompareOp, left, right, start: left.start, end: right.end };
    }
    return left;
  };
  const primary = (depth: number): GateNode => {
    const t = peek();
    if (t.kind === "number") {
      pos++;
      return { kind: "literal", value: t.value, start: t.start, end: t.end };
    }
    if (t.kind === "ident") {
      pos++;
      if (t.name === "true" || t.name === "false")
        return { kind: "literal", value: t.name === "true", start: t.start, end: t.end };
      if (!Object.hasOwn(GATE_VARIABLES, t.name)) {
        const known = Object.keys(GATE_VARIABLES).join(", ");
        fail(`unknown identifier "${t.name}" (a gate may use: ${known})`, t.start);
      }
      const name = t.name as GateVariable;
      if (!variables.includes(name)) variables.push(name);
      return { kind: "var", name, start: t.start, end: t.end };
    }
    if (isOp(t, "(")) {
      if (depth >= MAX_GATE_DEPTH) fail(`nested deeper than ${MAX_GATE_DEPTH} levels`, t.start);
      pos++;
      const inner = or(depth + 1);
      const close = peek();
      if (!isOp(close, ")"))
        fail(`expected ")" to close the "(" at column ${t.start + 1}, found ${describe(close)}`, close.start);
      pos++;
      return { ...inner, start: t.start, end: close.end };
    }
    return fail(`expected a value (a number, true, false or an identifier), found ${describe(t)}`, t.start);
  };

  const ast = or(0);
  const rest = peek();
  if (rest.kind !== "end")
    fail(`expected "&&", "||" or the end of the gate, found ${describe(rest)}`, rest.start);

  const typeOf = (node: GateNode): GateType => {
    const want = (n: GateNode, type: GateType, context: string) => {
      const got = typeOf(n);
      if (got !== type) {
        const hint =
          n.kind === "var" && got === "number"
            ? ` (compare it, e.g. ${n.name} ${n.name === "heartbeat" ? "<= 30" : "== 0"})`
            : "";
        fail(`${context} needs a ${type}, but "${source.slice(n.start, n.end)}" is a ${got}${hint}`, n.start);
      }
    };
    switch (node.kind) {
      case "literal":
        return typeof node.value === "boolean" ? "boolean" : "number";
      case "var":
        return GATE_VARIABLES[node.name].type;
      case "not":
        want(node.operand, "boolean", `"!"`);
        return "boolean";
      case "and":
      case "or":
        for (const o of node.operands) want(o, "boolean", `"${node.kind === "and" ? "&&" : "||"}"`);
        return "boolean";
      case "compare": {
        if (node.op === "==" || node.op === "!=") {
          const left = typeOf(node.left);
          want(node.right, left, `"${node.op}" with a ${left} on its left`);
        } else {
          want(node.left, "number", `"${node.op}"`);
          want(node.right, "number", `"${node.op}"`);
        }
        return "boolean";
      }
    }
  };
  const type = typeOf(ast);
  if (type !== "boolean")
    fail(
      `the gate must be true or false, but it is a ${type} (compare it, e.g. "${source.trim()} == 0")`,
      ast.start,
    );
  return { source, ast, variables };
}

/** A term of the gate that held the wrong value, with the values it read. */
export interface GateTerm {
  /** the term as written, e.g. `aborts == 0` */
  term: string;
  values: Partial<Record<GateVariable, boolean | number>>;
}

export interface GateResult {
  pass: boolean;
  /** when it failed: the terms that made it fail */
  failed: GateTerm[];
}

function value(node: GateNode, values: GateValues): boolean | number {
  switch (node.kind) {
    case "literal":
      return node.value;
    case "var":
      return values[node.name];
    case "not":
      return !value(node.operand, values);
    case "and":
      return node.operands.every((o) => value(o, values) === true);
    case "or":
      return node.operands.some((o) => value(o, values) === true);
    case "compare": {
      const l = value(node.left, values);
      const r = value(node.right, values);
      switch (node.op) {
        case "==":
          return l === r;
        case "!=":
          return l !== r;
        case "<":
          return l < r;
        case "<=":
          return l <= r;
        case ">":
          return l > r;
        case ">=":
          return l >= r;
      }
    }
  }
}

const varsOf = (node: GateNode, out: Set<GateVariable> = new Set()): Set<GateVariable> => {
  if (node.kind === "var") out.add(node.name);
  else if (node.kind === "not") varsOf(node.operand, out);
  else if (node.kind === "and" || node.kind === "or") for (const o of node.operands) varsOf(o, out);
  else if (node.kind === "compare") {
    varsOf(node.left, out);
    varsOf(node.right, out);
  }
  return out;
};

/** Evaluates a parsed gate; when it fails, names the terms responsible and the values they saw. */
export function evaluateGate(gate: Gate, values: GateValues): GateResult {
  const blame = (node: GateNode, want: boolean): GateTerm[] => {
    if (value(node, values) === want) return [];
    if (node.kind === "not") return blame(node.operand, !want);
    // a failed conjunction: its false operands; a failed disjunction: all of them
    if ((node.kind === "and" && want) || (node.kind === "or" && !want))
      return node.operands.flatMap((o) => blame(o, want));
    if (node.kind === "and" || node.kind === "or") return node.operands.flatMap((o) => blame(o, want));
    const read = Object.fromEntries([...varsOf(node)].map((v) => [v, values[v]]));
    return [{ term: gate.source.slice(node.start, node.end).trim(), values: read }];
  };
  const pass = value(gate.ast, values) === true;
  return { pass, failed: pass ? [] : blame(gate.ast, true) };
}

/** `aborts == 0 (aborts=1234)`, for logs and the CLI. */
export function formatGateTerm(term: GateTerm): string {
  const values = Object.entries(term.values)
    .map(([k, v]) => `${k}=${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : v}`)
    .join(", ");
  return values ? `${term.term} (${values})` : term.term;
}
