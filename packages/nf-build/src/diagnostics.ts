/**
 * Explains toolchain and verifier failures to the NF author: each one located at the author's
 * file:line (following the debug info's inlined-at chain out of core and the nf crate) with a
 * hint for the construct BPF cannot run.
 */
import path from "node:path";
import { authorFrameLocator, locateCalls, type SourceLoc } from "./debuglocs";

interface Hint {
  /** what the construct is, for the author */
  what: string;
  why: string;
  fix: string;
}

export const HINTS = {
  int128: {
    what: "128-bit arithmetic",
    why: "BPF has 64-bit registers only; a checked/saturating/overflowing 64-bit multiply (checked_mul, saturating_mul, overflowing_mul on u64/i64) and every u128/i128 operation compile to 128-bit arithmetic",
    fix: "bound the operands instead, e.g. `if b != 0 && a > u64::MAX / b { u64::MAX } else { a.wrapping_mul(b) }`, or multiply u32 values widened to u64; do not use u128/i128",
  },
  float: {
    what: "floating point",
    why: "BPF has no floating-point instructions (f32/f64 and `as f64` conversions)",
    fix: "use integer or fixed-point arithmetic (e.g. keep rates scaled by 1000 in a u64)",
  },
  stack: {
    what: "more than 512 bytes of stack",
    why: "an XDP program gets 512 bytes of stack for all its locals, inlined functions included",
    fix: "keep large buffers in a map (a one-entry `array` map as scratch space) or work on the packet in place with pkt.slice_from(off, n)",
  },
  builtin: {
    what: "a compiler built-in BPF does not provide",
    why: "the operation needs a runtime library function, and nothing but BPF helpers can be called in the kernel",
    fix: "avoid the operation (wide integers, floats, bulk memory operations on runtime lengths)",
  },
  recursion: {
    what: "recursion",
    why: "the BPF verifier refuses a function that calls itself (the call stack is at most 8 frames of 512 bytes in all)",
    fix: "rewrite it as a loop bounded by a constant",
  },
  loop: {
    what: "a program too complex for the verifier",
    why: "the verifier must prove the program ends by walking every path: a loop whose bound comes from packet or map data, or too many branches, exceeds what it can explore",
    fix: "bound every loop by a small constant (`for i in 0..N` with an early break), use nf::repeat(n, |i| ...) for long loops, or split the work across NFs",
  },
  helper: {
    what: "a kernel helper XDP programs may not call",
    why: "the kernel offers XDP programs only some helpers",
    fix: "call only the nf crate's API (maps, timestamp_ns, random_u32, repeat)",
  },
  packet: {
    what: "a packet or memory access the verifier cannot prove is in bounds",
    why: "every access must be checked against the packet's end on the path that makes it",
    fix: "take bytes with pkt.slice(n) / pkt.slice_from(off, n) and handle None",
  },
} satisfies Record<string, Hint>;
export type HintClass = keyof typeof HINTS;

const INT128_BUILTIN = /^__(multi3|u?divti3|u?modti3|udivmodti4|ashlti3|ashrti3|lshrti3|mul[os]ti4|mulodi4)$/;
const FLOAT_BUILTIN = /^__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord|float|fix|extend|trunc|pow)\w*$/;

function classifyBuiltin(name: string): HintClass {
  if (INT128_BUILTIN.test(name)) return "int128";
  if (FLOAT_BUILTIN.test(name) && /[sdtx]f/.test(name)) return "float";
  return "builtin";
}

export interface Diagnostic {
  class: HintClass;
  /** the tool's own words */
  detail: string;
  /** where in the author's code, innermost author frame (with what the tool said there, when it differs) */
  at: Array<SourceLoc & { detail?: string }>;
}

/** One `error: FILE:LINE:COL: in function F: MESSAGE` line of llc. */
const LLC_LINE = /^error: (.+?):(\d+):(\d+): in function [^:]*: (.*)$/;

export interface LocateContext {
  /** optimised LLVM IR text of the NF (with debug info) */
  ir: string;
  /** the crate directory as it appears in the debug info */
  crateDir: string;
}

/** Distinct llc error locations looked up (a flood of messages costs no more than this). */
const MAX_LOCATIONS = 64;

/** The diagnostics in llc's messages, located in the author's code; empty when llc said nothing we know. */
export function llcDiagnostics(stderr: string, ctx: LocateContext): Diagnostic[] {
  const byClass = new Map<HintClass, Diagnostic>();
  const root = path.resolve(ctx.crateDir) + path.sep;
  let locate: ((loc: SourceLoc) => SourceLoc[]) | undefined;
  const looked = new Set<string>();
  const placed = new Set<string>();
  let smallReturn = false;
  for (const raw of stderr.split("\n")) {
    const m = LLC_LINE.exec(raw.trim());
    if (!m) continue;
    const [, file, line, col, msg] = m as unknown as [string, string, string, string, string];
    let cls: HintClass | undefined;
    let detail = msg;
    const builtin = /built-in function '([^']+)'/.exec(msg)?.[1];
    if (builtin) {
      cls = classifyBuiltin(builtin);
      detail = `calls ${builtin}`;
    } else if (/stack limit is exceeded/.test(msg)) {
      cls = "stack";
      detail = "stack limit exceeded";
    } else if (/only small returns supported/.test(msg)) {
      smallReturn = true;
      continue;
    }
    if (!cls) continue;
    const d = byClass.get(cls) ?? { class: cls, detail, at: [] };
    byClass.set(cls, d);
    const loc = { file: path.resolve(file), line: Number(line), column: Number(col) };
    // each distinct location once, and only so many of them
    const key = `${cls}@${loc.file}:${loc.line}:${loc.column}`;
    if (looked.has(key) || looked.size >= MAX_LOCATIONS) continue;
    looked.add(key);
    let at: SourceLoc[] = [];
    if (loc.file.startsWith(root)) at = [loc];
    else if (loc.line > 0) {
      locate ??= authorFrameLocator(ctx.ir, ctx.crateDir);
      at = locate(loc);
    }
    for (const a of at) {
      const where = `${cls}@${a.file}:${a.line}:${a.column}`;
      if (a.line > 0 && !placed.has(where)) {
        placed.add(where);
        d.at.push(detail === d.detail ? a : { ...a, detail });
      }
    }
  }
  // "only small returns" follows a 128-bit value; alone it still means one
  if (smallReturn && byClass.size === 0)
    byClass.set("int128", { class: "int128", detail: "returns a 128-bit value", at: [] });
  return [...byClass.values()];
}

/** Functions in the IR that call themselves, directly or through others, with their author call sites. */
export function recursionDiagnostics(ctx: LocateContext): Diagnostic[] {
  const calls = new Map<string, Set<string>>();
  let current: string | undefined;
  for (const line of ctx.ir.split("\n")) {
    const def = /^define [^@]*@("?)([^\s("]+)\1\(/.exec(line);
    if (def) {
      current = def[2] as string;
      calls.set(current, new Set());
      continue;
    }
    if (line.startsWith("}")) current = undefined;
    if (!current || !/\b(call|invoke)\b/.test(line)) continue;
    const callee = /@("?)([^\s("]+)\1\(/.exec(line)?.[2];
    if (callee && !callee.startsWith("llvm.")) calls.get(current)?.add(callee);
  }
  const recursive = new Map<string, string>();
  for (const fn of recursiveFunctions(calls)) recursive.set(fn, demangle(fn));
  if (recursive.size === 0) return [];
  const sites = locateCalls(ctx.ir, recursive, ctx.crateDir);
  return [
    {
      class: "recursion",
      detail: [...new Set(recursive.values())].join(", "),
      at: sites.map(({ file, line, column }) => ({ file, line, column })),
    },
  ];
}

/**
 * Functions on a cycle of the call graph (Tarjan's strongly connected components, iterative:
 * linear in functions plus calls, whatever the IR holds).
 */
export function recursiveFunctions(calls: ReadonlyMap<string, ReadonlySet<string>>): Set<string> {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out = new Set<string>();
  let next = 0;
  for (const start of calls.keys()) {
    if (index.has(start)) continue;
    const work: Array<{ fn: string; callees: Iterator<string> }> = [];
    const enter = (fn: string) => {
      index.set(fn, next);
      low.set(fn, next);
      next++;
      stack.push(fn);
      onStack.add(fn);
      work.push({ fn, callees: (calls.get(fn) ?? new Set<string>()).values() });
    };
    enter(start);
    while (work.length) {
      const top = work[work.length - 1] as { fn: string; callees: Iterator<string> };
      const step = top.callees.next();
      if (!step.done) {
        const callee = step.value;
        if (!calls.has(callee)) continue; // declared, not defined: no cycle through it
        if (!index.has(callee)) enter(callee);
        else if (onStack.has(callee))
          low.set(top.fn, Math.min(low.get(top.fn) as number, index.get(callee) as number));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.fn, Math.min(low.get(parent.fn) as number, low.get(top.fn) as number));
      if (low.get(top.fn) !== index.get(top.fn)) continue;
      const component: string[] = [];
      for (;;) {
        const f = stack.pop() as string;
        onStack.delete(f);
        component.push(f);
        if (f === top.fn) break;
      }
      if (component.length > 1 || calls.get(top.fn)?.has(top.fn)) for (const f of component) out.add(f);
    }
  }
  return out;
}

/** `_ZN9recursion6weight17h0123456789abcdefE` → `recursion::weight` (Rust's legacy mangling). */
export function demangle(sym: string): string {
  if (!sym.startsWith("_ZN")) return sym;
  const parts: string[] = [];
  let i = 3;
  while (i < sym.length && sym[i] !== "E") {
    const n = /^\d+/.exec(sym.slice(i))?.[0];
    if (!n) return sym;
    i += n.length;
    parts.push(sym.slice(i, i + Number(n)));
    i += Number(n);
  }
  if (parts.length > 1 && /^h[0-9a-f]{16}$/.test(parts[parts.length - 1] as string)) parts.pop();
  return parts.join("::").replaceAll("$LT$", "<").replaceAll("$GT$", ">").replaceAll("$u20$", " ");
}

const VERIFIER_CLASSES: Array<[RegExp, HintClass]> = [
  [/call stack of \d+ frames is too deep|recursive call/, "recursion"],
  [/combined stack size|stack depth|invalid (?:indirect )?(?:read|write) from stack|stack limit/, "stack"],
  [
    /unknown func|cannot call GPL-restricted|program of this type cannot use helper|helper call is not allowed/,
    "helper",
  ],
  [/too complex|BPF program is too large|infinite loop detected|back-edge|loop is not bounded/, "loop"],
  [/invalid access to packet|outside of the packet|invalid mem access|out of bounds/, "packet"],
];

/**
 * A verifier log (libbpf's or bpftool's output around it) as a diagnostic: the class, the
 * author's line the verifier last annotated, and the verifier's last lines.
 */
export function verifierDiagnostic(log: string, libFile: string): Diagnostic & { lastLines: string[] } {
  const body = /-- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/.exec(log)?.[1] ?? log;
  const lines = body.split("\n").filter((l) => l.trim());
  const tail = lines.slice(-8);
  const tailText = tail.join("\n");
  const cls = VERIFIER_CLASSES.find(([re]) => re.test(tailText))?.[1] ?? "loop";
  // the last source line the verifier annotated, the author's file first (it also annotates
  // inlined core code); BTF line info names files by their base name only
  const annotated = lines
    .map((l) => /^; .* @ ([^:\s]+):(\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  const own = annotated.filter((m) => m[1] === path.basename(libFile));
  const last = own[own.length - 1] ?? annotated[annotated.length - 1];
  const at: SourceLoc[] = last
    ? [
        {
          file: last[1] === path.basename(libFile) ? libFile : (last[1] as string),
          line: Number(last[2]),
          column: 0,
        },
      ]
    : [];
  const detail =
    tail.find((l) => !/^processed \d+ insns|^\d+: \(|^;/.test(l))?.trim() ??
    "the verifier refused the program";
  return { class: cls, detail, at, lastLines: tail };
}

/** Renders diagnostics as `file:line:col: error: ...` lines with their hints. */
export function renderDiagnostics(
  nf: string,
  diags: Diagnostic[],
  showPath: (file: string) => string,
  extra: string[] = [],
): string {
  const out = [`NF ${nf} cannot run in XDP:`];
  for (const d of diags) {
    const h = HINTS[d.class];
    if (d.at.length === 0) out.push(`error: ${h.what} (${d.detail})`);
    for (const a of d.at)
      out.push(
        `${showPath(a.file)}:${a.line}${a.column ? `:${a.column}` : ""}: error: ${h.what} (${a.detail ?? d.detail})`,
      );
    out.push(`  why: ${h.why}`, `  hint: ${h.fix}`);
  }
  out.push(...extra);
  out.push(
    "The NF can still be built for the native targets; to run it only in userland, set `xdp = false` under [package.metadata.galette] in Cargo.toml.",
  );
  return out.join("\n");
}
