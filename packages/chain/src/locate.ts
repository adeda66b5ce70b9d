/**
 * Maps TOML key paths to source positions.
 *
 * smol-toml returns plain objects without positions, so this scans the (already
 * syntactically valid) source once and records where each key and each value starts.
 * Paths use the parsed keys (quoted keys decoded) and array indices, e.g.
 * ["functions", "dpi", "maps", "flow-state"] or ["links", 3, "to", 1]; arrays of tables
 * ([[links]]) get their index inserted like the parsed object has it.
 *
 * The scanner never throws and always advances, so odd input yields a partial index and
 * lookups fall back to the nearest located ancestor (or 1:1). Its work is linear in the
 * input: keys deeper than MAX_PATH are not recorded (a chain file has no use for them, and
 * recording every prefix of a 100 000-segment dotted key would be quadratic), and the
 * recursion through nested arrays and inline tables is bounded by the TOML parser's
 * maxDepth, which has accepted the document before it is scanned.
 */

export type KeyPath = ReadonlyArray<string | number>;

export interface Position {
  line: number;
  column: number;
}

const START: Position = { line: 1, column: 1 };

export class PositionIndex {
  private readonly keys = new Map<string, Position>();
  private readonly values = new Map<string, Position>();

  /** Records the first position seen for a key (later redefinitions keep the first). */
  setKey(path: KeyPath, position: Position): void {
    const id = pathId(path);
    if (!this.keys.has(id)) this.keys.set(id, position);
  }

  setValue(path: KeyPath, position: Position): void {
    const id = pathId(path);
    if (!this.values.has(id)) this.values.set(id, position);
  }

  hasKey(path: KeyPath): boolean {
    return this.keys.has(pathId(path));
  }

  /** Where the key of `path` is written; falls back to the nearest located ancestor. */
  key(path: KeyPath): Position {
    for (let n = path.length; n > 0; n--) {
      const prefix = path.slice(0, n);
      const found = this.keys.get(pathId(prefix)) ?? this.values.get(pathId(prefix));
      if (found) return found;
    }
    return START;
  }

  /** Where the value of `path` starts; falls back to its key, then to ancestors. */
  value(path: KeyPath): Position {
    return this.values.get(pathId(path)) ?? this.key(path);
  }
}

function pathId(path: KeyPath): string {
  return JSON.stringify(path);
}

const BARE_KEY = /[A-Za-z0-9_-]/;

/** Key paths longer than this are not recorded (their positions fall back to an ancestor). */
export const MAX_PATH = 32;

/** A path being recorded, or null under a key too deep to record. */
type Path = Array<string | number> | null;

/** Builds the position index of a TOML document. */
export function indexToml(source: string): PositionIndex {
  return new TomlScanner(source).scan();
}

class TomlScanner {
  private i = 0;
  private readonly lineStarts: number[] = [0];
  private readonly index = new PositionIndex();
  /** current [[array]] element count, by resolved path */
  private readonly arrayTableCounts = new Map<string, number>();

  constructor(private readonly src: string) {
    for (let k = 0; k < src.length; k++) if (src[k] === "\n") this.lineStarts.push(k + 1);
  }

  scan(): PositionIndex {
    let table: Path = [];
    while (this.i < this.src.length) {
      const before = this.i;
      this.skipBlank(true);
      if (this.i >= this.src.length) break;
      const c = this.src[this.i];
      if (c === "[") {
        const header = this.header();
        if (header !== undefined) table = header;
      } else if (c !== undefined && (BARE_KEY.test(c) || c === '"' || c === "'")) {
        this.keyValue(table);
      }
      this.skipToLineEnd();
      if (this.i === before) this.i++; // defensive: always advance
    }
    return this.index;
  }

  private pos(offset: number): Position {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - this.lineStarts[lo]! + 1 };
  }

  /** Skips spaces/tabs, comments, and (if allowed) newlines. */
  private skipBlank(newlines: boolean): void {
    while (this.i < this.src.length) {
      const c = this.src[this.i];
      if (c === " " || c === "\t" || (newlines && (c === "\n" || c === "\r"))) this.i++;
      else if (c === "#") while (this.i < this.src.length && this.src[this.i] !== "\n") this.i++;
      else break;
    }
  }

  private skipToLineEnd(): void {
    while (this.i < this.src.length && this.src[this.i] !== "\n") this.i++;
  }

  /** Parses `[a.b]` or `[[a.b]]`; returns the resolved table path (null: too deep to record). */
  private header(): Path | undefined {
    const isArray = this.src[this.i + 1] === "[";
    this.i += isArray ? 2 : 1;
    this.skipBlank(false);
    const segments = this.keySegments();
    if (segments.length === 0) return undefined;
    if (segments.length > MAX_PATH) return null;
    const raw = segments.map((s) => s.key);
    const resolved = this.resolve(raw.slice(0, -1));
    this.recordPrefixes(resolved, raw.slice(0, -1), segments);
    const last = segments[segments.length - 1]!;
    resolved.push(last.key);
    this.index.setKey(resolved, last.position);
    if (isArray) {
      const id = JSON.stringify(resolved);
      const next = (this.arrayTableCounts.get(id) ?? -1) + 1;
      this.arrayTableCounts.set(id, next);
      resolved.push(next);
      this.index.setKey(resolved, last.position);
    }
    return resolved;
  }

  /** Inserts the current [[array]] index after every prefix that is an array of tables. */
  private resolve(raw: string[]): Array<string | number> {
    const out: Array<string | number> = [];
    for (const key of raw) {
      out.push(key);
      const count = this.arrayTableCounts.get(JSON.stringify(out));
      if (count !== undefined) out.push(count);
    }
    return out;
  }

  private recordPrefixes(
    resolved: Array<string | number>,
    raw: string[],
    segments: Array<{ key: string; position: Position }>,
  ): void {
    // walk resolved and raw together so each raw segment's position lands on its resolved prefix
    let r = 0;
    for (let k = 0; k < resolved.length; k++) {
      if (typeof resolved[k] === "number") continue;
      if (r < raw.length) this.index.setKey(resolved.slice(0, k + 1), segments[r]!.position);
      r++;
    }
  }

  private keyValue(table: Path): void {
    const segments = this.keySegments();
    if (segments.length === 0) return;
    const path = this.extend(table, segments);
    this.skipBlank(false);
    if (this.src[this.i] !== "=") return;
    this.i++;
    this.skipBlank(false);
    this.value(path);
  }

  /** `base` + the key's segments, recording each prefix; null when it gets too deep to record. */
  private extend(base: Path, segments: Array<{ key: string; position: Position }>): Path {
    if (base === null || base.length + segments.length > MAX_PATH) return null;
    const path = [...base];
    for (const s of segments) {
      path.push(s.key);
      this.index.setKey(path, s.position);
    }
    return path;
  }

  /** Reads a dotted key (bare, "basic" or 'literal' segments). */
  private keySegments(): Array<{ key: string; position: Position }> {
    const out: Array<{ key: string; position: Position }> = [];
    for (;;) {
      this.skipBlank(false);
      const start = this.i;
      const c = this.src[this.i];
      let key: string | undefined;
      if (c === '"') key = this.basicString();
      else if (c === "'") key = this.literalString();
      else {
        while (this.i < this.src.length && BARE_KEY.test(this.src[this.i]!)) this.i++;
        if (this.i > start) key = this.src.slice(start, this.i);
      }
      if (key === undefined) return out;
      out.push({ key, position: this.pos(start) });
      this.skipBlank(false);
      if (this.src[this.i] !== ".") return out;
      this.i++;
    }
  }

  private value(path: Path): void {
    if (path) this.index.setValue(path, this.pos(this.i));
    const c = this.src[this.i];
    if (c === '"') {
      if (this.src.startsWith('"""', this.i)) this.multilineString('"');
      else this.basicString();
    } else if (c === "'") {
      if (this.src.startsWith("'''", this.i)) this.multilineString("'");
      else this.literalString();
    } else if (c === "[") {
      this.array(path);
    } else if (c === "{") {
      this.inlineTable(path);
    } else {
      while (this.i < this.src.length && !",]}\n\r#".includes(this.src[this.i]!)) this.i++;
    }
  }

  private array(path: Path): void {
    this.i++; // [
    for (let element = 0; this.i < this.src.length; element++) {
      this.skipBlank(true);
      if (this.src[this.i] === "]") {
        this.i++;
        return;
      }
      const before = this.i;
      this.value(path && path.length < MAX_PATH ? [...path, element] : null);
      this.skipBlank(true);
      if (this.src[this.i] === ",") this.i++;
      else if (this.src[this.i] !== "]" || this.i === before) return;
    }
  }

  private inlineTable(path: Path): void {
    this.i++; // {
    while (this.i < this.src.length) {
      this.skipBlank(true);
      if (this.src[this.i] === "}") {
        this.i++;
        return;
      }
      const before = this.i;
      const segments = this.keySegments();
      if (segments.length === 0) return;
      const keyPath = this.extend(path, segments);
      this.skipBlank(false);
      if (this.src[this.i] !== "=") return;
      this.i++;
      this.skipBlank(false);
      this.value(keyPath);
      this.skipBlank(true);
      if (this.src[this.i] === ",") this.i++;
      if (this.i === before) return;
    }
  }

  /** Reads a "basic" string starting at the quote and returns its decoded text. */
  private basicString(): string {
    this.i++;
    let out = "";
    while (this.i < this.src.length) {
      const c = this.src[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === "\n") return out;
      if (c === "\\") {
        const e = this.src[this.i + 1] ?? "";
        const simple: Record<string, string> = {
          b: "\b",
          t: "\t",
          n: "\n",
          f: "\f",
          r: "\r",
          e: "\x1b",
          '"': '"',
          "\\": "\\",
        };
        if (e in simple) {
          out += simple[e];
          this.i += 2;
          continue;
        }
        const digits = e === "u" ? 4 : e === "U" ? 8 : e === "x" ? 2 : 0;
        if (digits > 0) {
          const hex = this.src.slice(this.i + 2, this.i + 2 + digits);
          const code = Number.parseInt(hex, 16);
          if (/^[0-9A-Fa-f]+$/.test(hex) && code <= 0x10ffff) out += String.fromCodePoint(code);
          this.i += 2 + digits;
          continue;
        }
        this.i += 2;
        continue;
      }
      out += c;
      this.i++;
    }
    return out;
  }

  private literalString(): string {
    const start = ++this.i;
    while (this.i < this.src.length && this.src[this.i] !== "'" && this.src[this.i] !== "\n") this.i++;
    const text = this.src.slice(start, this.i);
    if (this.src[this.i] === "'") this.i++;
    return text;
  }

  private multilineString(quote: '"' | "'"): void {
    const fence = quote.repeat(3);
    this.i += 3;
    while (this.i < this.src.length) {
      if (quote === '"' && this.src[this.i] === "\\") {
        this.i += 2;
        continue;
      }
      if (this.src.startsWith(fence, this.i)) {
        this.i += 3;
        // up to two more quotes may belong to the content ("""a"""" is `a"`)
        for (let extra = 0; extra < 2 && this.src[this.i] === quote; extra++) this.i++;
        return;
      }
      this.i++;
    }
  }
}
