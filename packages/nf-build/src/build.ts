/**
 * The NF compiler: turns NF crates into `<hash>.bpf.o` (XDP) and `<hash>.<triple>.so`
 * (native, for AF_XDP workers) through rustc-web, clang-22 and LLVM 22 (docs/toolchain.md), with a
 * content-addressed artifact cache: a warm rebuild runs no compiler.
 */
import { randomBytes } from "node:crypto";
import { existsSync, constants as fsConstants } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { availableParallelism } from "node:os";
import path from "node:path";
import { writeAtomic } from "@galette/files";
import { analyzeNf } from "./analyze";
import { locateCalls } from "./debuglocs";
import { llcDiagnostics, recursionDiagnostics, renderDiagnostics } from "./diagnostics";
import { NfBuildError } from "./errors";
import {
  ABI_VERSION,
  GLUE_VERSION,
  generateBpfGlue,
  generateNativeGlue,
  generateShim,
  type MapOverride,
  type MapSpec,
  resolveMaps,
} from "./glue";
import {
  checkSandbox,
  NfBuildLimitError,
  resolveLimits,
  type SandboxOptions,
  type SandboxRun,
  truncateMessage,
} from "./sandbox";
import {
  ABI_INCLUDE_DIR,
  CLANG,
  cacheDir,
  ensureSysroot,
  LLC,
  LLVM_DIS,
  LLVM_LINK,
  LLVM_NM,
  NF_CRATE_ROOT,
  OPT,
  RUSTC,
  runTool,
  SYSROOT_SCRIPT,
  sha256,
  stdStatus,
  TARGET_INFO,
  type Target,
  toolchainVersions,
} from "./toolchain";
import type { NfAnalysis } from "./types";
import { explainUndefinedSymbols } from "./undefined";
import { analyzeUntrustedNf } from "./untrusted";

/** Bump when compiler flags change: part of every cache key. */
const FLAGS_VERSION = "3";

export interface BuildOptions {
  targets: Target[];
  /** copy artifacts and manifests here too (default: only the cache) */
  outDir?: string;
  /** map type/size per NF crate dir (resolved path) and #[maps] field, e.g. from a chain */
  mapOverrides?: Record<string, MapOverride>;
  /** parallel jobs (default: os.availableParallelism()) */
  jobs?: number;
  onProgress?: (event: ProgressEvent) => void;
  /**
   * Compile in the build sandbox (sandbox.ts): for crates written by someone else. Also
   * enforces what an uploaded crate must be (untrusted.ts). `true` uses the default limits.
   */
  sandbox?: boolean | SandboxOptions;
  /**
   * A target a std NF cannot be built for (no std for that CPU here, or none at all) is
   * listed in `skipped` with the reason instead of failing the build (`nf build
   * --all-targets`, the controller's builds for every CPU of the fleet).
   */
  skipUnavailable?: boolean;
}

export interface ProgressEvent {
  nf: string;
  target: Target;
  state: "start" | "done" | "cached" | "skipped" | "failed";
  done: number;
  total: number;
}

export interface ArtifactInfo {
  target: Target;
  triple: string;
  /** absolute path of the artifact (in outDir when given, else in the cache) */
  file: string;
  sha256: string;
  size: number;
  /** true when it came from the cache without compiling */
  cached: boolean;
  /** compile time (ms) when it was built */
  buildMs: number;
}

export interface ManifestArtifact {
  target: Target;
  triple: string;
  file: string;
  sha256: string;
  size: number;
  buildMs: number;
}

/** `<hash>.json` next to the artifacts. */
export interface NfManifest {
  name: string;
  hash: string;
  abiVersion: number;
  glueVersion: string;
  /** Action variants in order (index = the value the NF returns) */
  variants: string[];
  maps: MapSpec[];
  /** true for NFs that never run in XDP (std, or [package.metadata.galette] xdp = false) */
  userlandOnly: boolean;
  targets: Target[];
  artifacts: ManifestArtifact[];
  builtAt: string;
}

export interface NfBuildResult {
  name: string;
  hash: string;
  crateDir: string;
  manifestFile: string;
  manifest: NfManifest;
  artifacts: ArtifactInfo[];
  skipped: { target: Target; reason: string }[];
  /** rustc's warnings about the NF's code, when it was compiled (not when cached) */
  warnings: string[];
}

const artifactsDir = () => path.join(cacheDir(), "artifacts");

export const artifactFileName = (hash: string, target: Target): string =>
  target === "bpf" ? `${hash}.bpf.o` : `${hash}.${TARGET_INFO[target].artifactTriple}.so`;

// ---------------------------------------------------------------------------------------------
// Content hashing

const SKIP_ENTRIES = new Set(["target", "Cargo.lock", "node_modules"]);

/** sha256 over every file of a directory tree (relative path + bytes), build outputs excluded. */
export async function hashTree(root: string): Promise<string> {
  const files: string[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith(".") || SKIP_ENTRIES.has(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  await walk(root);
  files.sort();
  const parts: Buffer[] = [];
  for (const f of files) {
    parts.push(Buffer.from(`${path.relative(root, f)}\0`), await readFile(f), Buffer.from("\0"));
  }
  return sha256(Buffer.concat(parts));
}

let nfCrateHash: Promise<string> | undefined;
const nfSourcesHash = () => {
  nfCrateHash ??= hashTree(NF_CRATE_ROOT);
  return nfCrateHash;
};

interface CrateInfo {
  analysis: NfAnalysis;
  /** rustc warnings about the author's code (one entry per distinct text, any target) */
  warnings: Set<string>;
  edition: string;
  userlandOnly: boolean;
  crateHash: string;
}

async function readCrate(crateDir: string, untrusted: boolean): Promise<CrateInfo> {
  const analysis = untrusted ? await analyzeUntrustedNf(crateDir) : await analyzeNf(crateDir);
  const settings = analysis.settings ?? { edition: "2021" };
  return {
    analysis,
    warnings: new Set(),
    edition: settings.edition,
    userlandOnly: analysis.usesStd || settings.xdp === false,
    crateHash: await hashTree(analysis.crateDir),
  };
}

let pipelineDigest: Promise<string> | undefined;
const pipelineHash = () => {
  const here = path.dirname(new URL(import.meta.url).pathname);
  pipelineDigest ??= Promise.all(["build.ts", "glue.ts"].map((f) => readFile(path.join(here, f)))).then((b) =>
    sha256(Buffer.concat(b)),
  );
  return pipelineDigest;
};

async function nfHash(crate: CrateInfo, maps: MapSpec[], sandboxed: boolean): Promise<string> {
  const key = {
    // a sandboxed build sees only the crate (and names its files crate-relatively)
    sandboxed,
    glue: GLUE_VERSION,
    flags: FLAGS_VERSION,
    // the pipeline itself: a change to how NFs are compiled must not reuse old artifacts
    pipeline: await pipelineHash(),
    abi: await readFile(path.join(ABI_INCLUDE_DIR, "galette_abi.h"), "utf8"),
    nfMaps: await readFile(path.join(ABI_INCLUDE_DIR, "galette_nf_maps.h"), "utf8"),
    trace: await readFile(path.join(ABI_INCLUDE_DIR, "galette_trace.h"), "utf8"),
    cost: await readFile(path.join(ABI_INCLUDE_DIR, "galette_cost.h"), "utf8"),
    sysrootScript: await readFile(SYSROOT_SCRIPT, "utf8"),
    tools: await toolchainVersions(),
    nf: await nfSourcesHash(),
    crate: crate.crateHash,
    edition: crate.edition,
    maps,
  };
  return sha256(JSON.stringify(key)).slice(0, 24);
}

// ---------------------------------------------------------------------------------------------
// The nf crate, compiled once per target and cached

interface NfLib {
  dir: string;
  rlib: string;
  /** bitcode of the nf crate (BPF only) */
  bc?: string;
}

/** The nf crate (ours) may use what the toolchain offers; the author's crate and glue get stable Rust only. */
const rustEnv = { RUSTC_BOOTSTRAP: "1" };
const authorEnv: NodeJS.ProcessEnv = { RUSTC_BOOTSTRAP: undefined };

/** Whether this NF/target build links std (then from the installed std, STD_SOURCE). */
const usesStdFor = (crate: CrateInfo, target: Target) => target !== "bpf" && crate.analysis.usesStd;

/** rustc's flags for a target; `std` builds take the installed std instead of the private core-only sysroot. */
async function targetFlags(target: Target, std = false): Promise<string[]> {
  const info = TARGET_INFO[target];
  const sysroot = std ? undefined : await ensureSysroot(target);
  const flags = ["--target", info.triple, "-C", "opt-level=3", "-C", "panic=abort", "-C", "codegen-units=1"];
  if (sysroot) flags.push("--sysroot", sysroot);
  // BPF: v3 ISA (32-bit jumps/ALU); debuginfo gives non-inlined functions the BTF the verifier wants
  if (target === "bpf") flags.push("-C", "target-cpu=v3", "-C", "debuginfo=2");
  flags.push("--color", "never");
  return flags;
}

/** Publishes a finished directory atomically; if another build won the race, keeps theirs. */
async function publishDir(tmp: string, dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  try {
    await rename(tmp, dest);
  } catch (err) {
    if (!existsSync(dest)) throw err;
    await rm(tmp, { recursive: true, force: true });
  }
}

const scratch = (what: string) =>
  path.join(cacheDir(), "tmp", `${what}-${process.pid}-${randomBytes(4).toString("hex")}`);

let macrosBuild: Promise<string> | undefined;

function ensureMacros(): Promise<string> {
  macrosBuild ??= (async () => {
    const key = sha256(
      JSON.stringify([await nfSourcesHash(), (await toolchainVersions()).rustc, FLAGS_VERSION]),
    );
    const dir = path.join(cacheDir(), "nflib", key.slice(0, 16), "host");
    const so = path.join(dir, "libnf_macros.so");
    if (existsSync(so)) return so;
    const tmp = scratch("macros");
    await mkdir(tmp, { recursive: true });
    await runTool(
      RUSTC,
      [
        "--edition",
        "2024",
        "--crate-type",
        "proc-macro",
        "--crate-name",
        "nf_macros",
        "-C",
        "opt-level=1",
        "--color",
        "never",
        path.join(NF_CRATE_ROOT, "macros", "src", "lib.rs"),
        "-o",
        path.join(tmp, "libnf_macros.so"),
      ],
      { what: "compiling the nf-macros crate" },
    );
    await publishDir(tmp, dir);
    return so;
  })();
  macrosBuild.catch(() => {
    macrosBuild = undefined;
  });
  return macrosBuild;
}

const nfLibBuilds = new Map<string, Promise<NfLib>>();

/** The nf crate for a target, compiled once per sysroot (core-only, or the installed std). */
function ensureNfLib(target: Target, std = false): Promise<NfLib> {
  const buildKey = `${target}${std ? "+std" : ""}`;
  let p = nfLibBuilds.get(buildKey);
  if (!p) {
    p = (async () => {
      const macros = await ensureMacros();
      const key = sha256(
        JSON.stringify([
          await nfSourcesHash(),
          (await toolchainVersions()).rustc,
          FLAGS_VERSION,
          target,
          await targetFlags(target, std),
        ]),
      );
      const dir = path.join(cacheDir(), "nflib", key.slice(0, 16), target);
      const lib: NfLib = {
        dir,
        rlib: path.join(dir, "libnf.rlib"),
        ...(target === "bpf" ? { bc: path.join(dir, "nf.bc") } : {}),
      };
      if (existsSync(lib.rlib)) return lib;
      const tmp = scratch(`nflib-${target}`);
      await mkdir(tmp, { recursive: true });
      await copyFile(macros, path.join(tmp, "libnf_macros.so"));
      const emit =
        target === "bpf"
          ? `--emit=link=${path.join(tmp, "libnf.rlib")},llvm-bc=${path.join(tmp, "nf.bc")}`
          : `--emit=link=${path.join(tmp, "libnf.rlib")}`;
      await runTool(
        RUSTC,
        [
          "--edition",
          "2024",
          "--crate-type",
          "rlib",
          "--crate-name",
          "nf",
          ...(await targetFlags(target, std)),
          "--cfg",
          target === "bpf" ? "nf_bpf" : "nf_native",
          "--extern",
          `nf_macros=${path.join(tmp, "libnf_macros.so")}`,
          path.join(NF_CRATE_ROOT, "nf", "src", "lib.rs"),
          "--remap-path-prefix",
          `${NF_CRATE_ROOT}=galette`,
          "--remap-path-prefix",
          `${tmp}=build`,
          emit,
          // rustc's intermediate objects go to the out dir (else the cwd, where concurrent
          // builds of the same crate for different targets would trample each other's)
          "--out-dir",
          tmp,
        ],
        { cwd: tmp, env: rustEnv, what: `compiling the nf crate for ${target}` },
      );
      await publishDir(tmp, dir);
      return lib;
    })();
    nfLibBuilds.set(buildKey, p);
    p.catch(() => nfLibBuilds.delete(buildKey));
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Per-NF, per-target compilation

/** How the author's lib.rs is named to rustc: relative to the cwd when inside it, so diagnostics match what the author typed. */
function authorPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file;
}

/**
 * Where one NF/target build reads and writes. Unsandboxed, all three directories are one
 * scratch dir. Sandboxed: `src` is a copy of the crate and `gen` the generated glue (both
 * root-owned, read-only in the sandbox), `out` the only directory the tools may write.
 */
interface JobCtx {
  out: string;
  gen: string;
  /** lib.rs as named to rustc */
  libFile: string;
  sandbox?: SandboxRun;
  /** rustc flags that make paths in messages and debug info crate-relative */
  remap: string[];
  /** how a debug-info file path of the author's code is shown (sandboxed: already crate-relative) */
  showPath: (file: string) => string;
  /** directory the author's files are under in debug info */
  debugCrateDir: string;
}

const tool = (ctx: JobCtx, cmd: string, args: string[], what: string, env?: NodeJS.ProcessEnv) =>
  runTool(cmd, args, { what, ...(env ? { env } : {}), ...(ctx.sandbox ? { sandbox: ctx.sandbox } : {}) });

async function compileAuthorCrate(
  crate: CrateInfo,
  target: Target,
  lib: NfLib,
  ctx: JobCtx,
  emitBitcode: boolean,
): Promise<{ rlib: string; bc?: string }> {
  const ident = crate.analysis.name.replaceAll("-", "_");
  const rlib = path.join(ctx.out, `lib${ident}.rlib`);
  const bc = path.join(ctx.out, `${ident}.bc`);
  try {
    const { stderr } = await tool(
      ctx,
      RUSTC,
      [
        "--edition",
        crate.edition,
        "--crate-type",
        "rlib",
        "--crate-name",
        ident,
        ...(await targetFlags(target, usesStdFor(crate, target))),
        ...ctx.remap,
        "--extern",
        `nf=${lib.rlib}`,
        "-L",
        `dependency=${lib.dir}`,
        ctx.libFile,
        emitBitcode ? `--emit=link=${rlib},llvm-bc=${bc}` : `--emit=link=${rlib}`,
        "--out-dir",
        ctx.out,
      ],
      `rustc (${target})`,
      authorEnv,
    );
    if (stderr.trim()) crate.warnings.add(truncateMessage(stderr.trim()));
  } catch (err) {
    if (err instanceof NfBuildError && !(err instanceof NfBuildLimitError))
      throw new NfBuildError(
        `NF ${crate.analysis.name} does not compile for ${target}:\n${truncateMessage(stripToolPrefix(err.message))}`,
      );
    throw err;
  }
  return emitBitcode ? { rlib, bc } : { rlib };
}

const stripToolPrefix = (msg: string) => msg.replace(/^[^\n]*failed \([^)]*\):\n/, "");

async function compileGlue(
  crate: CrateInfo,
  target: Target,
  ctx: JobCtx,
  args: string[],
  what: string,
): Promise<void> {
  try {
    await tool(ctx, RUSTC, [...args, ...ctx.remap], what, authorEnv);
  } catch (err) {
    if (err instanceof NfBuildError && !(err instanceof NfBuildLimitError))
      throw new NfBuildError(
        `NF ${crate.analysis.name}: the generated ${target} glue does not compile against the NF. ` +
          "Check that lib.rs has `pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action` " +
          `(or \`packet(pkt: &mut Packet)\` without #[maps]) and a fieldless Action enum:\n${truncateMessage(stripToolPrefix(err.message))}`,
      );
    throw err;
  }
}

async function buildBpf(crate: CrateInfo, maps: MapSpec[], ctx: JobCtx, out: string): Promise<void> {
  const lib = await ensureNfLib("bpf");
  const dir = ctx.out;
  const gluePath = path.join(ctx.gen, "glue_bpf.rs");
  const shimPath = path.join(ctx.gen, "shim.c");
  await writeFile(gluePath, generateBpfGlue(crate.analysis, maps));
  await writeFile(shimPath, generateShim(crate.analysis, maps));
  const user = await compileAuthorCrate(crate, "bpf", lib, ctx, true);
  const ident = crate.analysis.name.replaceAll("-", "_");
  const glueBc = path.join(dir, "glue.bc");
  await compileGlue(
    crate,
    "bpf",
    ctx,
    [
      "--edition",
      "2024",
      "--crate-type",
      "rlib",
      "--crate-name",
      "galette_glue",
      ...(await targetFlags("bpf")),
      "--extern",
      `nf=${lib.rlib}`,
      "--extern",
      `${ident}=${user.rlib}`,
      "-L",
      `dependency=${lib.dir}`,
      gluePath,
      `--emit=llvm-bc=${glueBc}`,
      "--out-dir",
      dir,
    ],
    "compiling the BPF glue",
  );
  const shimBc = path.join(dir, "shim.bc");
  await tool(
    ctx,
    CLANG,
    [
      "-target",
      "bpfel",
      "-mcpu=v3",
      "-O2",
      "-g",
      "-I/usr/include/x86_64-linux-gnu",
      `-I${ABI_INCLUDE_DIR}`,
      // the object's debug info names no directory of this machine
      `-ffile-prefix-map=${ctx.gen}=build`,
      `-ffile-prefix-map=${ABI_INCLUDE_DIR}=galette/include`,
      "-fdebug-compilation-dir=build",
      "-emit-llvm",
      "-c",
      shimPath,
      "-o",
      shimBc,
    ],
    "compiling the XDP shim",
  );
  const linked = path.join(dir, "linked.bc");
  const optimised = path.join(dir, "opt.bc");
  await tool(
    ctx,
    LLVM_LINK,
    ["--internalize", shimBc, glueBc, user.bc as string, lib.bc as string, "-o", linked],
    "linking bitcode",
  );
  // Rust's debug names (`step<nf::Map<u32, u64>>`, `&mut [u8]`) are not C identifiers, so
  // the kernel would reject the object's BTF and with it the func info that subprograms
  // (bpf_loop callbacks) need: rewrite them in the IR before codegen.
  const { stdout: ir } = await tool(ctx, LLVM_DIS, [linked, "-o", "-"], "disassembling bitcode");
  // written where the sandbox cannot plant a link for us to write through
  const sanitised = path.join(ctx.gen, "linked.ll");
  await writeFile(sanitised, sanitiseDebugNames(ir));
  await tool(ctx, OPT, ["-O2", sanitised, "-o", optimised], "optimising bitcode");
  const undefinedSymbols = await listUndefined(ctx, optimised);
  const { stdout: optIr } = await tool(ctx, LLVM_DIS, [optimised, "-o", "-"], "disassembling bitcode");
  const where = { ir: optIr, crateDir: ctx.debugCrateDir };
  if (undefinedSymbols.size) {
    const sites = locateCalls(optIr, undefinedSymbols, ctx.debugCrateDir).map((s) => ({
      ...s,
      file: ctx.showPath(s.file),
    }));
    throw new NfBuildError(explainUndefinedSymbols(crate.analysis, [...undefinedSymbols.values()], sites));
  }
  const recursion = recursionDiagnostics(where);
  if (recursion.length)
    throw new NfBuildError(renderDiagnostics(crate.analysis.name, recursion, ctx.showPath));
  try {
    await tool(
      ctx,
      LLC,
      ["-march=bpfel", "-mcpu=v3", "-O2", "-filetype=obj", optimised, "-o", out],
      "generating the BPF object",
    );
  } catch (err) {
    if (!(err instanceof NfBuildError) || err instanceof NfBuildLimitError) throw err;
    const diags = llcDiagnostics(err.message, where);
    if (diags.length === 0) throw err;
    throw new NfBuildError(renderDiagnostics(crate.analysis.name, diags, ctx.showPath), { cause: err });
  }
}

async function buildNative(
  crate: CrateInfo,
  maps: MapSpec[],
  target: Target,
  ctx: JobCtx,
  out: string,
): Promise<void> {
  const std = usesStdFor(crate, target);
  const lib = await ensureNfLib(target, std);
  const gluePath = path.join(ctx.gen, "glue_native.rs");
  await writeFile(gluePath, generateNativeGlue(crate.analysis, maps));
  const user = await compileAuthorCrate(crate, target, lib, ctx, false);
  const ident = crate.analysis.name.replaceAll("-", "_");
  // rustc's default `cc` is an /etc/alternatives link, which the sandbox does not show
  const linker = TARGET_INFO[target].linker ?? (ctx.sandbox ? "gcc" : undefined);
  await compileGlue(
    crate,
    target,
    ctx,
    [
      "--edition",
      "2024",
      "--crate-type",
      "cdylib",
      "--crate-name",
      `galette_nf_${ident}`,
      ...(await targetFlags(target, std)),
      // fat LTO makes no_std NFs small and fast; over all of std it costs ~25 s for little gain
      "-C",
      crate.analysis.usesStd ? "lto=off" : "lto",
      "-C",
      "strip=debuginfo",
      ...(linker ? ["-C", `linker=${linker}`] : []),
      "--extern",
      `nf=${lib.rlib}`,
      "--extern",
      `${ident}=${user.rlib}`,
      "-L",
      `dependency=${lib.dir}`,
      gluePath,
      "-o",
      out,
    ],
    `linking the ${target} library`,
  );
}

const DEBUG_TYPE_LINE =
  /= (?:distinct )?!(?:DISubprogram|DICompositeType|DIDerivedType|DIBasicType|DITemplateTypeParameter|DITemplateValueParameter)\(/;

/** Makes every debug-info type/function name in LLVM IR text a C identifier (BTF requires it). */
export function sanitiseDebugNames(ir: string): string {
  return ir
    .split("\n")
    .map((line) =>
      DEBUG_TYPE_LINE.test(line)
        ? line.replace(/([(,] ?name: )"((?:[^"\\]|\\.)*)"/, (_m, pre: string, name: string) => {
            let id = name.replace(/[^A-Za-z0-9_]/g, "_");
            if (/^[0-9]/.test(id)) id = `_${id}`;
            return `${pre}"${id}"`;
          })
        : line,
    )
    .join("\n");
}

/** Undefined symbols of a bitcode file: mangled name → demangled name. */
async function listUndefined(ctx: JobCtx, bc: string): Promise<Map<string, string>> {
  const names = async (demangle: boolean) =>
    (
      await tool(
        ctx,
        LLVM_NM,
        ["-u", demangle ? "--demangle" : "--no-demangle", bc],
        "listing undefined symbols",
      )
    ).stdout
      .split("\n")
      .map((l) => l.trim().replace(/^U\s+/, ""))
      .filter(Boolean);
  const mangled = await names(false);
  if (mangled.length === 0) return new Map();
  const demangled = await names(true);
  return new Map(mangled.map((m, i) => [m, demangled[i] ?? m]));
}

// ---------------------------------------------------------------------------------------------
// Orchestration

async function fileDigest(file: string): Promise<{ sha256: string; size: number }> {
  const data = await readFile(file);
  return { sha256: sha256(data), size: data.length };
}

async function readManifest(file: string): Promise<NfManifest | undefined> {
  if (!existsSync(file)) return undefined;
  return JSON.parse(await readFile(file, "utf8")) as NfManifest;
}

/** Serialises manifest updates per hash within this process (targets finish concurrently). */
const manifestLocks = new Map<string, Promise<unknown>>();
function withManifestLock<T>(hash: string, fn: () => Promise<T>): Promise<T> {
  const prev = manifestLocks.get(hash) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  manifestLocks.set(
    hash,
    next.catch(() => undefined),
  );
  return next;
}

interface Job {
  nf: PreparedNf;
  target: Target;
}

interface PreparedNf {
  crate: CrateInfo;
  maps: MapSpec[];
  hash: string;
  targets: Target[];
  skipped: { target: Target; reason: string }[];
  artifacts: ArtifactInfo[];
}

function skipReason(crate: CrateInfo, target: Target): string | undefined {
  if (target === "bpf" && crate.userlandOnly)
    return crate.analysis.usesStd
      ? "userland-only NF (uses std): no XDP build"
      : "userland-only NF ([package.metadata.galette] xdp = false): no XDP build";
  return undefined;
}

/** Copies exactly the files hashTree hashes (what the cache key covers) into `dest`, readable by all. */
async function copyCrate(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true, mode: 0o755 });
  for (const e of await readdir(src, { withFileTypes: true })) {
    if (e.name.startsWith(".") || SKIP_ENTRIES.has(e.name)) continue;
    const from = path.join(src, e.name);
    const to = path.join(dest, e.name);
    if (e.isDirectory()) await copyCrate(from, to);
    else if (e.isFile()) {
      await copyFile(from, to);
      await chmod(to, 0o644);
    }
  }
}

/**
 * Lays out a sandboxed build in `dir`: src/ (the crate's copy) and gen/ (generated sources)
 * are root's and read-only in the sandbox; out/ belongs to the sandbox uid and is the only
 * place it can write.
 */
async function sandboxedJob(
  crate: CrateInfo,
  target: Target,
  dir: string,
  opts: SandboxOptions,
): Promise<JobCtx> {
  const limits = resolveLimits(opts.limits);
  const std = usesStdFor(crate, target);
  const lib = await ensureNfLib(target, std);
  const sysroot = std ? undefined : await ensureSysroot(target);
  const root = process.getuid?.() === 0;
  const uid = opts.uid ?? (root ? 65534 : (process.getuid?.() ?? 65534));
  const gid = opts.gid ?? (root ? 65534 : (process.getgid?.() ?? 65534));
  const src = path.join(dir, "src");
  const gen = path.join(dir, "gen");
  const out = path.join(dir, "out");
  await chmod(dir, 0o755);
  await copyCrate(crate.analysis.crateDir, src);
  await mkdir(gen, { mode: 0o755 });
  await mkdir(out, { mode: 0o700 });
  if (root) await chown(out, uid, gid);
  const name = crate.analysis.name;
  const readOnly = [src, gen, lib.dir, ...(sysroot ? [sysroot] : []), ABI_INCLUDE_DIR];
  // a rustc outside /usr ($GALETTE_RUSTC) brings its own tree
  if (!RUSTC.startsWith("/usr/")) readOnly.push(path.dirname(path.dirname(RUSTC)));
  const remaps: [string, string][] = [
    [out, "build"],
    [gen, "build"],
    [lib.dir, "nf"],
    ...(sysroot ? ([[sysroot, "sysroot"]] as [string, string][]) : []),
    [src, name],
  ];
  return {
    out,
    gen,
    libFile: path.join(src, path.relative(crate.analysis.crateDir, crate.analysis.libFile)),
    sandbox: { readOnly, writable: [out], cwd: out, limits, uid, gid, deadline: Date.now() + limits.wallMs },
    remap: remaps.flatMap(([from, to]) => ["--remap-path-prefix", `${from}=${to}`]),
    // debug info names the author's files `<name>/src/…` with no directory; locateCalls
    // resolves them against our working directory
    showPath: (file) => path.relative(process.cwd(), file),
    debugCrateDir: path.resolve(name),
  };
}

/** A build output the sandbox wrote: a regular file (never followed through a link), within the size limit. */
async function readOutput(file: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((err: Error) => {
    // the code, not the message: it would name the controller's scratch path
    throw new NfBuildError(
      `the build produced no usable ${path.basename(file)} (${(err as NodeJS.ErrnoException).code ?? err.name})`,
    );
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new NfBuildError(`the build's ${path.basename(file)} is not a regular file`);
    if (st.size > maxBytes) throw new NfBuildLimitError("fileBytes", `${maxBytes} bytes per file`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

async function runJob(
  job: Job,
  sandbox: SandboxOptions | undefined,
): Promise<{ artifact: ArtifactInfo; cached: boolean }> {
  const { nf, target } = job;
  const name = artifactFileName(nf.hash, target);
  const cachePath = path.join(artifactsDir(), name);
  if (existsSync(cachePath)) {
    const d = await fileDigest(cachePath);
    const manifest = await readManifest(path.join(artifactsDir(), `${nf.hash}.json`));
    const buildMs = manifest?.artifacts.find((a) => a.target === target)?.buildMs ?? 0;
    return {
      artifact: { target, triple: TARGET_INFO[target].triple, file: cachePath, ...d, cached: true, buildMs },
      cached: true,
    };
  }
  const dir = scratch(`${nf.crate.analysis.name}-${target}`);
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  try {
    if (!sandbox) {
      const tmpOut = path.join(dir, name);
      const ctx: JobCtx = {
        out: dir,
        gen: dir,
        libFile: authorPath(nf.crate.analysis.libFile),
        remap: [],
        showPath: authorPath,
        debugCrateDir: nf.crate.analysis.crateDir,
      };
      if (target === "bpf") await buildBpf(nf.crate, nf.maps, ctx, tmpOut);
      else await buildNative(nf.crate, nf.maps, target, ctx, tmpOut);
      await mkdir(artifactsDir(), { recursive: true });
      await rename(tmpOut, cachePath);
    } else {
      const ctx = await sandboxedJob(nf.crate, target, dir, sandbox);
      const tmpOut = path.join(ctx.out, name);
      if (target === "bpf") await buildBpf(nf.crate, nf.maps, ctx, tmpOut);
      else await buildNative(nf.crate, nf.maps, target, ctx, tmpOut);
      // the output dir was the sandbox's: take only a regular file, never through a link
      const bytes = await readOutput(tmpOut, ctx.sandbox?.limits.fileBytes ?? 0);
      await mkdir(artifactsDir(), { recursive: true });
      writeAtomic(cachePath, bytes);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const buildMs = Math.round(performance.now() - started);
  const d = await fileDigest(cachePath);
  return {
    artifact: { target, triple: TARGET_INFO[target].triple, file: cachePath, ...d, cached: false, buildMs },
    cached: false,
  };
}

async function updateManifest(
  nf: PreparedNf,
  built: ArtifactInfo[],
): Promise<{ file: string; manifest: NfManifest }> {
  const file = path.join(artifactsDir(), `${nf.hash}.json`);
  return withManifestLock(nf.hash, async () => {
    const old = await readManifest(file);
    const byTarget = new Map<Target, ManifestArtifact>();
    for (const a of old?.artifacts ?? [])
      if (existsSync(path.join(artifactsDir(), a.file))) byTarget.set(a.target, a);
    let changed = !old;
    // Another process may have built other targets of this NF meanwhile (its manifest write
    // raced ours): list every artifact of this hash that is in the cache.
    for (const target of TARGET_ORDER) {
      const name = artifactFileName(nf.hash, target);
      const cached = path.join(artifactsDir(), name);
      if (byTarget.has(target) || built.some((a) => a.target === target) || !existsSync(cached)) continue;
      byTarget.set(target, {
        target,
        triple: TARGET_INFO[target].triple,
        file: name,
        ...(await fileDigest(cached)),
        buildMs: 0,
      });
      changed = true;
    }
    for (const a of built) {
      if (a.cached && byTarget.has(a.target)) continue;
      changed = true;
      byTarget.set(a.target, {
        target: a.target,
        triple: a.triple,
        file: path.basename(a.file),
        sha256: a.sha256,
        size: a.size,
        buildMs: a.buildMs,
      });
    }
    const artifacts = [...byTarget.values()].sort(
      (a, b) => TARGET_ORDER.indexOf(a.target) - TARGET_ORDER.indexOf(b.target),
    );
    const manifest: NfManifest = {
      name: nf.crate.analysis.name,
      hash: nf.hash,
      abiVersion: ABI_VERSION,
      glueVersion: GLUE_VERSION,
      variants: nf.crate.analysis.actions.map((a) => a.name),
      maps: nf.maps,
      userlandOnly: nf.crate.userlandOnly,
      targets: artifacts.map((a) => a.target),
      artifacts,
      builtAt: changed || !old ? new Date().toISOString() : old.builtAt,
    };
    if (changed) {
      await mkdir(artifactsDir(), { recursive: true });
      writeAtomic(file, `${JSON.stringify(manifest, null, 2)}\n`);
    }
    return { file, manifest };
  });
}

const TARGET_ORDER: Target[] = ["bpf", "x86_64", "aarch64", "armv7", "riscv64"];

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error after all settle. */
async function pool<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(items[i] as T) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/**
 * Builds every crate for every target (in parallel up to the core count). Fails with an
 * NfBuildError naming every NF/target that failed, after the others finished.
 */
export async function buildNfs(crateDirs: string[], opts: BuildOptions): Promise<NfBuildResult[]> {
  if (crateDirs.length === 0) throw new NfBuildError("no NF crate directories given");
  const sandbox = opts.sandbox === true ? {} : opts.sandbox || undefined;
  if (sandbox) {
    resolveLimits(sandbox.limits);
    await checkSandbox();
  }
  const prepared: PreparedNf[] = [];
  const unavailable: string[] = [];
  for (const dir of crateDirs) {
    const crate = await readCrate(dir, sandbox !== undefined);
    const maps = resolveMaps(crate.analysis, opts.mapOverrides ?? {});
    const hash = await nfHash(crate, maps, sandbox !== undefined);
    const targets: Target[] = [];
    const skipped: PreparedNf["skipped"] = [];
    for (const t of opts.targets) {
      const reason = skipReason(crate, t);
      if (reason) {
        skipped.push({ target: t, reason });
        continue;
      }
      const std = usesStdFor(crate, t) ? stdStatus(t) : undefined;
      if (std && !std.ok) {
        if (opts.skipUnavailable) skipped.push({ target: t, reason: `NF uses std: ${std.reason}` });
        else
          unavailable.push(
            `NF ${crate.analysis.name} uses std, which cannot be built for ${t} here: ${std.reason}`,
          );
        continue;
      }
      targets.push(t);
    }
    prepared.push({ crate, maps, hash, targets, skipped, artifacts: [] });
  }
  if (unavailable.length) throw new NfBuildError(unavailable.join("\n"));
  const jobs: Job[] = prepared.flatMap((nf) => nf.targets.map((target) => ({ nf, target })));
  let done = 0;
  const total = jobs.length;
  const progress = (job: Job, state: ProgressEvent["state"]) =>
    opts.onProgress?.({ nf: job.nf.crate.analysis.name, target: job.target, state, done, total });
  const settled = await pool(jobs, opts.jobs ?? availableParallelism(), async (job) => {
    progress(job, "start");
    try {
      const r = await runJob(job, sandbox);
      done++;
      progress(job, r.cached ? "cached" : "done");
      return r;
    } catch (err) {
      done++;
      progress(job, "failed");
      throw err;
    }
  });
  // The same rustc error for several targets is reported once, naming the targets.
  const failures = new Map<string, Target[]>();
  settled.forEach((s, i) => {
    const job = jobs[i] as Job;
    if (s.status === "fulfilled") job.nf.artifacts.push(s.value.artifact);
    else {
      const e = s.reason;
      if (!(e instanceof NfBuildError || (e instanceof Error && e.name === "NfAnalysisError"))) throw e;
      const key = e.message.replace(` for ${job.target}:`, " for {targets}:");
      failures.set(key, [...(failures.get(key) ?? []), job.target]);
    }
  });
  if (failures.size)
    throw new NfBuildError(
      [...failures].map(([msg, targets]) => msg.replace("{targets}", targets.join(", "))).join("\n\n"),
    );

  const results: NfBuildResult[] = [];
  for (const nf of prepared) {
    nf.artifacts.sort((a, b) => TARGET_ORDER.indexOf(a.target) - TARGET_ORDER.indexOf(b.target));
    const { file, manifest } = await updateManifest(nf, nf.artifacts);
    let manifestFile = file;
    let artifacts = nf.artifacts;
    if (opts.outDir) {
      await mkdir(opts.outDir, { recursive: true });
      artifacts = [];
      for (const a of nf.artifacts) {
        const dest = path.resolve(opts.outDir, path.basename(a.file));
        await copyFile(a.file, dest);
        artifacts.push({ ...a, file: dest });
      }
      manifestFile = path.resolve(opts.outDir, path.basename(file));
      await copyFile(file, manifestFile);
    }
    results.push({
      name: nf.crate.analysis.name,
      hash: nf.hash,
      crateDir: nf.crate.analysis.crateDir,
      manifestFile,
      manifest,
      artifacts,
      skipped: nf.skipped,
      warnings: [...nf.crate.warnings],
    });
  }
  return results;
}

export async function buildNf(crateDir: string, opts: BuildOptions): Promise<NfBuildResult> {
  const [r] = await buildNfs([crateDir], opts);
  return r as NfBuildResult;
}
