/**
 * `galette nf test`: runs an NF over captured frames through both of its builds — the XDP
 * object under BPF_PROG_TEST_RUN and the native library of this CPU, each with its own copy
 * of the maps filled the same way — and compares each frame's verdict (Action variant) and
 * output bytes between the builds and, optionally, with an expected capture.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import * as pcapParser from "pcap-parser";
import { parse as parseToml } from "smol-toml";
import { buildNfs, type NfBuildResult } from "./build";
import { hostTarget } from "./chain-build";
import { renderDiagnostics, verifierDiagnostic } from "./diagnostics";
import { NfBuildError } from "./errors";
import { ABI_INCLUDE_DIR, CLANG, cacheDir, PACKAGE_DIR, runTool } from "./toolchain";

/** Frames the harness runs (its buffer); BPF_PROG_TEST_RUN needs at least an Ethernet header. */
export const NF_TEST_MAX_FRAME = 2048;
export const NF_TEST_MIN_FRAME = 14;
/** Variants the XDP run can tell apart (one tail-call target each; the ABI's action table size). */
const MAX_VARIANTS = 16;

export const HARNESS_DIR = path.join(PACKAGE_DIR, "harness");

// ---------------------------------------------------------------------------------------------
// Captures

/**
 * The frames of a capture, in order: classic pcap (read with pcap-parser), Ethernet link
 * type only.
 */
export async function readCapture(file: string): Promise<Buffer[]> {
  let head: Buffer;
  try {
    head = (await readFile(file)).subarray(0, 4);
  } catch (err) {
    throw new NfBuildError(`${file}: cannot read the capture: ${(err as Error).message}`, { cause: err });
  }
  const magic = head.length === 4 ? head.readUInt32BE(0) : 0;
  // no maintained npm package reads pcapng reliably: refuse it rather than misread it
  if (magic === 0x0a0d0d0a)
    throw new NfBuildError(
      `${file}: pcapng is not supported; convert it with \`editcap -F pcap ${file} OUT.pcap\``,
    );
  if ([0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1].includes(magic)) return readPcap(file);
  throw new NfBuildError(`${file}: not a pcap or pcapng capture (magic ${head.toString("hex") || "none"})`);
}

function readPcap(file: string): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const frames: Buffer[] = [];
    const parser = pcapParser.parse(createReadStream(file));
    parser.on("globalHeader", (h: { linkLayerType: number }) => {
      if (h.linkLayerType !== 1)
        reject(new NfBuildError(`${file}: link type ${h.linkLayerType}; nf test needs Ethernet (1)`));
    });
    parser.on("packet", (p: { data: Buffer }) => frames.push(Buffer.from(p.data)));
    parser.on("error", (err: Error) => reject(new NfBuildError(`${file}: ${err.message}`, { cause: err })));
    parser.on("end", () => resolve(frames));
  });
}

/**
 * Writes frames as a classic pcap file (Ethernet, microsecond timestamps, all at t=0). No
 * maintained npm package writes pcap; the format is a 24-byte file header and a 16-byte
 * header per record.
 */
export async function writePcap(file: string, frames: Buffer[]): Promise<void> {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20);
  const parts: Buffer[] = [header];
  for (const f of frames) {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(f.length, 8);
    rec.writeUInt32LE(f.length, 12);
    parts.push(rec, f);
  }
  await writeFile(file, Buffer.concat(parts));
}

// ---------------------------------------------------------------------------------------------
// Initial map contents

export interface MapEntries {
  [map: string]: Array<{ key: Buffer; value: Buffer }>;
}

/**
 * Reads initial map entries: TOML (or JSON for a `.json` file) with one array per map of
 * "KEYHEX:VALUEHEX" strings — the `--map-set NF.MAP=KEYHEX:VALUEHEX` syntax without the NF:
 *
 *     allow_list = ["080000000a000000:01000000"]
 *
 * Every map must be one of the NF's, every key and value exactly its size.
 */
export async function readMapsFile(
  file: string,
  build: Pick<NfBuildResult, "name" | "manifest">,
): Promise<MapEntries> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new NfBuildError(`${file}: cannot read the maps file: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = file.endsWith(".json") ? JSON.parse(text) : parseToml(text);
  } catch (err) {
    throw new NfBuildError(`${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new NfBuildError(`${file}: expected a table of map names`);
  const specs = new Map(build.manifest.maps.map((m) => [m.name, m]));
  const out: MapEntries = {};
  for (const [name, entries] of Object.entries(doc)) {
    const spec = specs.get(name);
    if (!spec)
      throw new NfBuildError(
        `${file}: NF ${build.name} has no map "${name}" (its maps: ${[...specs.keys()].join(", ") || "none"})`,
      );
    if (!Array.isArray(entries))
      throw new NfBuildError(`${file}: ${name} must be an array of "KEYHEX:VALUEHEX" strings`);
    out[name] = entries.map((e, i) => {
      const m = typeof e === "string" ? /^((?:[0-9a-fA-F]{2})+):((?:[0-9a-fA-F]{2})+)$/.exec(e) : null;
      if (!m)
        throw new NfBuildError(
          `${file}: ${name}[${i}]: expected "KEYHEX:VALUEHEX" (whole bytes of hex), got ${JSON.stringify(e)}`,
        );
      const key = Buffer.from(m[1] as string, "hex");
      const value = Buffer.from(m[2] as string, "hex");
      if (key.length !== spec.keySize || value.length !== spec.valueSize)
        throw new NfBuildError(
          `${file}: ${name}[${i}]: key ${key.length} B and value ${value.length} B; the map's are ${spec.keySize} B (${spec.keyType}) and ${spec.valueSize} B (${spec.valueType})`,
        );
      return { key, value };
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The harness (C, built on first use) and the variant programs

async function compiled(
  what: string,
  sources: string[],
  build: (out: string) => [string, string[]],
): Promise<string> {
  const digest = createHash("sha256");
  for (const s of sources) digest.update(readFileSync(s));
  const dir = path.join(cacheDir(), "nf-test", digest.digest("hex").slice(0, 16));
  const out = path.join(dir, what);
  if (existsSync(out)) return out;
  await mkdir(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const [cmd, args] = build(tmp);
  await runTool(cmd, args, { what: `building the nf test ${what}` });
  await rename(tmp, out);
  return out;
}

/** The harness: `so LIB CORPUS [pin:MAP...]` and `xdp PROG_PIN CORPUS` (see harness.c). */
export function testHarness(): Promise<string> {
  const src = path.join(HARNESS_DIR, "harness.c");
  return compiled("harness", [src, path.join(ABI_INCLUDE_DIR, "galette_abi.h")], (out) => [
    "gcc",
    ["-O1", "-Wall", "-Werror", `-I${ABI_INCLUDE_DIR}`, src, "-o", out, "-lbpf", "-ldl"],
  ]);
}

function variantsObject(): Promise<string> {
  const src = path.join(HARNESS_DIR, "variants.c");
  return compiled("variants.bpf.o", [src], (out) => [
    CLANG,
    ["-target", "bpf", "-O2", "-I/usr/include/x86_64-linux-gnu", "-c", src, "-o", out],
  ]);
}

const bpftool = (args: string[], what: string) => runTool("bpftool", args, { what });
const hexArgs = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, "0"));

/** Loads an NF's XDP object into its own bpffs directory; a verifier refusal becomes a diagnostic. */
async function loadNf(obj: string, build: NfBuildResult, dir: string): Promise<void> {
  try {
    await bpftool(
      ["prog", "loadall", obj, dir, "type", "xdp", "pinmaps", `${dir}/maps`],
      "loading the XDP build",
    );
  } catch (err) {
    if (
      !(err instanceof NfBuildError) ||
      !/BEGIN PROG LOAD LOG|verifier|processed \d+ insns/.test(err.message)
    )
      throw err;
    const libFile = path.relative(process.cwd(), path.join(build.crateDir, "src", "lib.rs"));
    const d = verifierDiagnostic(err.message, libFile);
    throw new NfBuildError(
      renderDiagnostics(build.name, [d], (f) => f, [
        "The verifier's last lines:",
        ...d.lastLines.map((l) => `  ${l}`),
      ]),
      { cause: err },
    );
  }
}

/**
 * Loads an NF's XDP object into the kernel and unloads it: the verifier's verdict, a refusal
 * as a diagnostic at the author's line with the verifier's last lines. Needs CAP_BPF.
 */
export async function verifyXdpObject(obj: string, build: NfBuildResult): Promise<void> {
  const dir = `/sys/fs/bpf/galette-nf-verify-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;
  try {
    await loadNf(obj, build, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The XDP object of `build` loaded with the NF's verdict as the test run's return value, its maps filled. */
async function loadForTestRun(
  obj: string,
  build: NfBuildResult,
  maps: MapEntries,
  dir: string,
): Promise<void> {
  await loadNf(obj, build, dir);
  const variants = `${dir}/variants`;
  await bpftool(
    ["prog", "loadall", await variantsObject(), variants, "type", "xdp"],
    "loading the variant programs",
  );
  for (let i = 0; i < build.manifest.variants.length; i++) {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    const action = Buffer.alloc(8);
    action.writeUInt32LE(100, 0); // GALETTE_ACT_TAILCALL
    action.writeUInt32LE(i, 4);
    await bpftool(
      [
        "map",
        "update",
        "pinned",
        `${dir}/maps/galette_actions`,
        "key",
        "hex",
        ...hexArgs(key),
        "value",
        "hex",
        ...hexArgs(action),
      ],
      "setting the action table",
    );
    await bpftool(
      [
        "map",
        "update",
        "pinned",
        `${dir}/maps/galette_progs`,
        "key",
        "hex",
        ...hexArgs(key),
        "value",
        "pinned",
        `${variants}/galette_variant_${i}`,
      ],
      "setting the variant programs",
    );
  }
  await fillMaps(dir, maps);
}

async function fillMaps(dir: string, maps: MapEntries): Promise<void> {
  for (const [name, entries] of Object.entries(maps))
    for (const e of entries)
      await bpftool(
        [
          "map",
          "update",
          "pinned",
          `${dir}/maps/nf_map_${name}`,
          "key",
          "hex",
          ...hexArgs(e.key),
          "value",
          "hex",
          ...hexArgs(e.value),
        ],
        `setting an entry of map ${name}`,
      );
}

// ---------------------------------------------------------------------------------------------
// The test

export interface NfTestOptions {
  crateDir: string;
  pcap: string;
  maps?: string;
  expect?: string;
  /** write each frame's output bytes (from the XDP build) as a pcap */
  out?: string;
}

export interface NfTestRun {
  verdict: string;
  /** output frame, hex */
  bytes: string;
}

export interface NfTestFrame {
  /** 1-based, as Wireshark numbers frames */
  frame: number;
  xdp: NfTestRun;
  native: NfTestRun;
  /** the frame of the expected capture, hex */
  expected?: string;
  ok: boolean;
}

export interface NfTestDifference {
  frame: number;
  what: "verdict" | "bytes" | "expected";
  detail: string;
}

export interface NfTestResult {
  nf: string;
  hash: string;
  native: string;
  frames: NfTestFrame[];
  differences: NfTestDifference[];
  passed: boolean;
}

const verdictName = (variants: string[], v: number) => variants[v] ?? `invalid variant ${v}`;

function parseRuns(stdout: string, variants: string[], expected: number, what: string): NfTestRun[] {
  const runs = stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [v, bytes] = l.split(" ");
      return { verdict: verdictName(variants, Number(v)), bytes: bytes ?? "" };
    });
  if (runs.length !== expected)
    throw new NfBuildError(`the ${what} run gave ${runs.length} results for ${expected} frames`);
  return runs;
}

/** Builds the NF for XDP and this CPU, runs both over the capture and compares. */
export async function testNf(opts: NfTestOptions): Promise<NfTestResult> {
  const native = hostTarget();
  const [build] = await buildNfs([opts.crateDir], { targets: ["bpf", native] });
  if (!build) throw new NfBuildError(`${opts.crateDir}: nothing was built`);
  const skipped = build.skipped.find((s) => s.target === "bpf");
  if (skipped) throw new NfBuildError(`NF ${build.name} has no XDP build to compare (${skipped.reason})`);
  const obj = build.artifacts.find((a) => a.target === "bpf")?.file;
  const lib = build.artifacts.find((a) => a.target === native)?.file;
  if (!obj || !lib)
    throw new NfBuildError(`NF ${build.name}: the build produced no XDP object or ${native} library`);
  if (build.manifest.variants.length > MAX_VARIANTS)
    throw new NfBuildError(
      `NF ${build.name} has ${build.manifest.variants.length} variants; nf test tells ${MAX_VARIANTS} apart`,
    );

  const frames = await readCapture(opts.pcap);
  if (frames.length === 0) throw new NfBuildError(`${opts.pcap}: the capture has no frames`);
  frames.forEach((f, i) => {
    if (f.length < NF_TEST_MIN_FRAME || f.length > NF_TEST_MAX_FRAME)
      throw new NfBuildError(
        `${opts.pcap}: frame ${i + 1} is ${f.length} bytes; nf test runs frames of ${NF_TEST_MIN_FRAME} to ${NF_TEST_MAX_FRAME} bytes`,
      );
  });
  const expected = opts.expect ? await readCapture(opts.expect) : undefined;
  if (expected && expected.length !== frames.length)
    throw new NfBuildError(
      `${opts.expect}: ${expected.length} frames, ${opts.pcap} has ${frames.length}; the expectation holds each input frame's output, in order`,
    );
  const maps = opts.maps ? await readMapsFile(opts.maps, build) : {};

  const harness = await testHarness();
  const scratch = path.join(
    cacheDir(),
    "tmp",
    `nf-test-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
  );
  const pins = `/sys/fs/bpf/galette-nf-test-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;
  await mkdir(scratch, { recursive: true });
  try {
    await mkdir(pins);
    const corpus = path.join(scratch, "corpus.hex");
    await writeFile(corpus, `${frames.map((f) => f.toString("hex")).join("\n")}\n`);
    // each build gets its own maps, filled the same way, so one run's writes cannot feed the other
    await loadForTestRun(obj, build, maps, `${pins}/xdp`);
    await loadNf(obj, build, `${pins}/native`);
    await fillMaps(`${pins}/native`, maps);
    const variants = build.manifest.variants;
    const xdp = parseRuns(
      (await runTool(harness, ["xdp", `${pins}/xdp/galette_nf`, corpus], { what: "running the XDP build" }))
        .stdout,
      variants,
      frames.length,
      "XDP",
    );
    const mapArgs = build.manifest.maps.map((m) => `pin:${pins}/native/maps/nf_map_${m.name}`);
    const nat = parseRuns(
      (await runTool(harness, ["so", lib, corpus, ...mapArgs], { what: `running the ${native} build` }))
        .stdout,
      variants,
      frames.length,
      native,
    );
    const differences: NfTestDifference[] = [];
    const results = frames.map((_, i): NfTestFrame => {
      const x = xdp[i] as NfTestRun;
      const n = nat[i] as NfTestRun;
      const frame = i + 1;
      const before = differences.length;
      if (x.verdict !== n.verdict)
        differences.push({ frame, what: "verdict", detail: `XDP ${x.verdict}, ${native} ${n.verdict}` });
      else if (x.bytes !== n.bytes)
        differences.push({
          frame,
          what: "bytes",
          detail: `output differs at byte ${firstDifference(x.bytes, n.bytes)}`,
        });
      const want = expected?.[i]?.toString("hex");
      if (want !== undefined && (x.bytes !== want || n.bytes !== want))
        differences.push({
          frame,
          what: "expected",
          detail: `output differs from the expected frame at byte ${firstDifference(x.bytes === want ? n.bytes : x.bytes, want)}`,
        });
      return {
        frame,
        xdp: x,
        native: n,
        ...(want !== undefined ? { expected: want } : {}),
        ok: differences.length === before,
      };
    });
    if (opts.out)
      await writePcap(
        opts.out,
        xdp.map((r) => Buffer.from(r.bytes, "hex")),
      );
    return {
      nf: build.name,
      hash: build.hash,
      native,
      frames: results,
      differences,
      passed: differences.length === 0,
    };
  } finally {
    await rm(pins, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Index of the first differing byte of two hex strings. */
function firstDifference(a: string, b: string): number {
  const n = Math.max(a.length, b.length) / 2;
  for (let i = 0; i < n; i++) if (a.slice(2 * i, 2 * i + 2) !== b.slice(2 * i, 2 * i + 2)) return i;
  return n;
}
