/**
 * The `galette trace --filter` language: a conjunction of tcpdump-like terms, compiled to
 * the fixed record the root program evaluates (struct galette_trace_cfg). A term is one of
 *
 *   ip | ip6 | arp                        ethertype
 *   udp | tcp | icmp | icmp6 | proto N    IPv4 protocol / IPv6 next header
 *   [src|dst] host A.B.C.D                IPv4 address (host: either side)
 *   [src|dst] net A.B.C.D/LEN             IPv4 prefix
 *   [src|dst] port N                      TCP/UDP port (port: either side)
 *
 * optionally preceded by `not` (or `!`), joined by `and` (or `&&`). Each kind of term may
 * appear once. No `or` or parentheses: the root program checks a fixed set of fields, so
 * the cost of a traced interface stays one pass over the headers.
 */
import { type TraceConfig, TraceTerm, type TraceTermName } from "@galette/xdp-native";

export class TraceFilterError extends Error {
  constructor(
    message: string,
    readonly column: number,
  ) {
    super(`trace filter, column ${column}: ${message}`);
    this.name = "TraceFilterError";
  }
}

/** The filter part of the root program's config (the tracer adds on/owner/sample). */
export type CompiledFilter = Omit<TraceConfig, "on" | "owner" | "sample" | "seq" | "lost">;

interface Token {
  text: string;
  column: number;
}

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  const re = /\s*(&&|!|[^\s!]+)/gy;
  let m: RegExpExecArray | null = re.exec(expr);
  while (m !== null) {
    out.push({ text: m[1]!, column: m.index + m[0].length - m[1]!.length + 1 });
    m = re.exec(expr);
  }
  return out;
}

const zero4 = () => Buffer.alloc(4);

export function emptyFilter(): CompiledFilter {
  return {
    terms: 0,
    negate: 0,
    ethertype: 0,
    proto: 0,
    src: zero4(),
    srcMask: zero4(),
    dst: zero4(),
    dstMask: zero4(),
    host: zero4(),
    hostMask: zero4(),
    sport: 0,
    dport: 0,
    port: 0,
  };
}

const ETHERTYPES: Record<string, number> = { ip: 0x0800, ip6: 0x86dd, arp: 0x0806 };
const PROTOS: Record<string, number> = { udp: 17, tcp: 6, icmp: 1, icmp6: 58 };

function ipv4(text: string, column: number): Buffer {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
    throw new TraceFilterError(`"${text}" is not an IPv4 address (IPv6 addresses are not supported)`, column);
  return Buffer.from(parts.map(Number));
}

function prefixMask(len: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0, 0);
  return b;
}

function port(text: string, column: number): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new TraceFilterError(`"${text}" is not a port (0-65535)`, column);
  return Number(text);
}

/** Compiles a filter expression; an empty expression traces every frame. */
export function compileTraceFilter(expr: string): CompiledFilter {
  const f = emptyFilter();
  const tokens = tokenize(expr);
  let i = 0;
  const end = expr.length + 1;
  const peek = () => tokens[i];
  const next = (what: string): Token => {
    const t = tokens[i++];
    if (!t) throw new TraceFilterError(`expected ${what} at the end`, end);
    return t;
  };
  const set = (term: TraceTermName, negate: boolean, at: Token) => {
    const bit = TraceTerm[term];
    if (f.terms & bit)
      throw new TraceFilterError(
        `a second ${term} term ("${at.text}"): each kind of term may appear once (no "or")`,
        at.column,
      );
    f.terms |= bit;
    if (negate) f.negate |= bit;
  };
  if (tokens.length === 0) return f;
  for (;;) {
    let t = next("a term");
    let negate = false;
    if (t.text === "not" || t.text === "!") {
      negate = true;
      t = next("a term after not");
    }
    const word = t.text.toLowerCase();
    if (word in ETHERTYPES) {
      set("ethertype", negate, t);
      f.ethertype = ETHERTYPES[word]!;
    } else if (word in PROTOS || word === "proto") {
      set("proto", negate, t);
      if (word === "proto") {
        const n = next("a protocol number after proto");
        if (!/^\d{1,3}$/.test(n.text) || Number(n.text) > 255)
          throw new TraceFilterError(`"${n.text}" is not a protocol number (0-255)`, n.column);
        f.proto = Number(n.text);
      } else f.proto = PROTOS[word]!;
    } else if (["src", "dst", "host", "net", "port"].includes(word)) {
      let dir: "src" | "dst" | undefined;
      let kindTok = t;
      if (word === "src" || word === "dst") {
        dir = word;
        kindTok = next(`host, net or port after ${word}`);
      }
      const kind = kindTok.text.toLowerCase();
      if (kind === "port") {
        const v = next("a port number");
        const term = dir === "src" ? "sport" : dir === "dst" ? "dport" : "port";
        set(term, negate, t);
        f[term] = port(v.text, v.column);
      } else if (kind === "host" || kind === "net") {
        const v = next(kind === "host" ? "an IPv4 address" : "an IPv4 prefix A.B.C.D/LEN");
        let addr: Buffer;
        let mask: Buffer;
        if (kind === "net") {
          const m = /^([^/]+)\/(\d{1,2})$/.exec(v.text);
          if (!m || Number(m[2]) > 32)
            throw new TraceFilterError(`"${v.text}" is not an IPv4 prefix A.B.C.D/LEN`, v.column);
          mask = prefixMask(Number(m[2]));
          addr = ipv4(m[1]!, v.column);
          for (let k = 0; k < 4; k++) addr[k]! &= mask[k]!;
        } else {
          addr = ipv4(v.text, v.column);
          mask = prefixMask(32);
        }
        const term = dir ?? "host";
        set(term, negate, t);
        f[term] = addr;
        f[`${term}Mask`] = mask;
      } else
        throw new TraceFilterError(
          `expected host, net or port after ${word}, got "${kindTok.text}"`,
          kindTok.column,
        );
    } else if (word === "or" || word === "||" || word.startsWith("(") || word.endsWith(")")) {
      throw new TraceFilterError(
        `"${t.text}" is not supported: the trace filter is terms joined by "and" (each optionally "not")`,
        t.column,
      );
    } else {
      throw new TraceFilterError(
        `unknown term "${t.text}" (terms: ip, ip6, arp, udp, tcp, icmp, icmp6, proto N, [src|dst] host A, [src|dst] net A/LEN, [src|dst] port N)`,
        t.column,
      );
    }
    const sep = peek();
    if (!sep) return f;
    i++;
    if (sep.text.toLowerCase() !== "and" && sep.text !== "&&")
      throw new TraceFilterError(
        sep.text.toLowerCase() === "or" || sep.text === "||"
          ? `"${sep.text}" is not supported: the trace filter is terms joined by "and" (each optionally "not")`
          : `expected "and" between terms, got "${sep.text}"`,
        sep.column,
      );
    if (!peek()) throw new TraceFilterError(`expected a term after "${sep.text}"`, end);
  }
}
