/**
 * Finds where in the author's source a call to an undefined symbol (a panic path) comes
 * from, using the debug locations in LLVM IR text (`call ... @sym(...), !dbg !N`).
 */
import path from "node:path";

export interface CallSite {
  symbol: string;
  file: string;
  line: number;
  column: number;
}

interface Node {
  kind: string;
  body: string;
}

function parseMetadata(ir: string): Map<string, Node> {
  const nodes = new Map<string, Node>();
  for (const line of ir.split("\n")) {
    const m = /^!(\d+) = (?:distinct )?!(\w+)\((.*)\)\s*$/.exec(line);
    if (m) nodes.set(m[1] as string, { kind: m[2] as string, body: m[3] as string });
  }
  return nodes;
}

const field = (body: string, name: string): string | undefined =>
  new RegExp(`(?:^|[ ,(])${name}: (!\\d+|\\d+|"(?:[^"\\\\]|\\\\.)*")`).exec(body)?.[1];

const ref = (v: string | undefined) => (v?.startsWith("!") ? v.slice(1) : undefined);

function fileOfScope(nodes: Map<string, Node>, scopeId: string | undefined): string | undefined {
  for (let id = scopeId, depth = 0; id && depth < 64; depth++) {
    const n = nodes.get(id);
    if (!n) return undefined;
    if (n.kind === "DIFile") {
      const filename = JSON.parse(field(n.body, "filename") ?? '""') as string;
      const directory = JSON.parse(field(n.body, "directory") ?? '""') as string;
      return path.resolve(directory, filename);
    }
    const file = ref(field(n.body, "file"));
    if (file) return fileOfScope(nodes, file);
    id = ref(field(n.body, "scope"));
  }
  return undefined;
}

/**
 * Call sites of `symbols` (mangled names) that lie in files under `crateDir`, innermost
 * author frame first; duplicates removed.
 */
export function locateCalls(ir: string, symbols: Map<string, string>, crateDir: string): CallSite[] {
  const nodes = parseMetadata(ir);
  const out: CallSite[] = [];
  const seen = new Set<string>();
  const root = path.resolve(crateDir) + path.sep;
  for (const line of ir.split("\n")) {
    if (!/\b(call|invoke)\b/.test(line)) continue;
    const callee = /@("?)([^\s("]+)\1\(/.exec(line)?.[2];
    const display = callee ? symbols.get(callee) : undefined;
    if (!callee || display === undefined) continue;
    let locId = /!dbg !(\d+)/.exec(line)?.[1];
    for (let depth = 0; locId && depth < 64; depth++) {
      const loc = nodes.get(locId);
      if (loc?.kind !== "DILocation") break;
      const file = fileOfScope(nodes, ref(field(loc.body, "scope")));
      if (file?.startsWith(root)) {
        const site = {
          symbol: display,
          file,
          line: Number(field(loc.body, "line") ?? 0),
          column: Number(field(loc.body, "column") ?? 0),
        };
        const key = `${site.symbol}@${site.file}:${site.line}:${site.column}`;
        if (!seen.has(key)) {
          seen.add(key);
          out.push(site);
        }
        break;
      }
      locId = ref(field(loc.body, "inlinedAt"));
    }
  }
  return out;
}

export interface SourceLoc {
  file: string;
  line: number;
  column: number;
}

/**
 * Finds the author's frames for locations a tool reported inside inlined library code (say
 * core's uint_macros.rs:3105:26): every DILocation at that file:line:column, followed through
 * its inlinedAt chain to the first frame under `crateDir`. The IR is indexed once; each
 * lookup costs only the locations at that line and column.
 */
export function authorFrameLocator(ir: string, crateDir: string): (loc: SourceLoc) => SourceLoc[] {
  const nodes = parseMetadata(ir);
  const root = path.resolve(crateDir) + path.sep;
  const byLineCol = new Map<string, Node[]>();
  for (const n of nodes.values()) {
    if (n.kind !== "DILocation") continue;
    const key = `${field(n.body, "line") ?? ""}:${field(n.body, "column") ?? ""}`;
    const list = byLineCol.get(key);
    if (list) list.push(n);
    else byLineCol.set(key, [n]);
  }
  return (loc) => {
    const wanted = path.resolve(loc.file);
    const out: SourceLoc[] = [];
    const seen = new Set<string>();
    for (const n of byLineCol.get(`${loc.line}:${loc.column}`) ?? []) {
      const file = fileOfScope(nodes, ref(field(n.body, "scope")));
      if (!file || (file !== wanted && !wanted.endsWith(file) && !file.endsWith(path.basename(wanted))))
        continue;
      let cur: Node | undefined = n;
      for (let depth = 0; cur?.kind === "DILocation" && depth < 64; depth++) {
        const f = fileOfScope(nodes, ref(field(cur.body, "scope")));
        if (f?.startsWith(root)) {
          const site = {
            file: f,
            line: Number(field(cur.body, "line") ?? 0),
            column: Number(field(cur.body, "column") ?? 0),
          };
          const key = `${site.file}:${site.line}:${site.column}`;
          if (!seen.has(key)) {
            seen.add(key);
            out.push(site);
          }
          break;
        }
        const next = ref(field(cur.body, "inlinedAt"));
        cur = next ? nodes.get(next) : undefined;
      }
    }
    return out;
  };
}
