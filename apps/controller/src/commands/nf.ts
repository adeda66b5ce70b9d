/**
 * `galette nf ...`: build NF crates into XDP objects and native libraries (`nf build`) and
 * show what the analyser sees in them (`nf inspect`, in nf-inspect.ts).
 */
import path from "node:path";
import {
  buildNfs,
  NfBuildError,
  type NfBuildResult,
  type ProgressEvent,
  parseTargets,
  TARGETS,
  type Target,
  testNf,
  verifyXdpObject,
} from "@galette/nf-build";
import type { Command } from "commander";
import { packCrateDir } from "../crate-archive";
import { buildVerdicts, formatVerdicts, type KernelVerdict } from "../kernel-fit";
import { client as operatorClient } from "./controller";
import { registerNfInspect } from "./nf-inspect";
import { registerNfRelease } from "./release";

interface BuildFlags {
  target?: string;
  allTargets?: boolean;
  out?: string;
  json?: boolean;
  jobs?: string;
  sandbox?: boolean;
  verify?: boolean;
}

/** The `--json` output of `galette nf build`. */
export interface NfBuildJson {
  nfs: Array<{
    name: string;
    hash: string;
    crateDir: string;
    manifest: string;
    variants: string[];
    artifacts: Array<{
      target: Target;
      triple: string;
      file: string;
      sha256: string;
      size: number;
      cached: boolean;
    }>;
    skipped: Array<{ target: Target; reason: string }>;
    warnings: string[];
    /** per kernel Galette knows: whether the NF is expected to load there, and why not */
    kernels: KernelVerdict[];
  }>;
}

export function buildJson(results: NfBuildResult[], verdicts: KernelVerdict[][]): NfBuildJson {
  return {
    nfs: results.map((r, i) => ({
      name: r.name,
      hash: r.hash,
      crateDir: r.crateDir,
      manifest: r.manifestFile,
      variants: r.manifest.variants,
      artifacts: r.artifacts.map((a) => ({
        target: a.target,
        triple: a.triple,
        file: a.file,
        sha256: a.sha256,
        size: a.size,
        cached: a.cached,
      })),
      skipped: r.skipped,
      warnings: r.warnings,
      kernels: verdicts[i] ?? [],
    })),
  };
}

const rel = (p: string) => {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith("..") ? r : p;
};

export function registerNfCommands(program: Command): void {
  const nf = program.command("nf").description("Build and inspect network function crates");

  nf.command("build")
    .description(
      "Compile NF crates to an XDP object (<hash>.bpf.o) and native libraries (<hash>.<triple>.so)",
    )
    .argument("<crate-dirs...>", "NF crate directories (each with Cargo.toml and src/lib.rs)")
    .option("--target <list>", `comma-separated targets: ${TARGETS.join(",")}`, "bpf,x86_64")
    .option("--all-targets", "build every target")
    .option("--out <dir>", "also copy artifacts and manifests into this directory")
    .option("--json", "print the result as JSON on stdout")
    .option("-j, --jobs <n>", "parallel compilations (default: number of CPUs)")
    .option(
      "--verify",
      "also load each XDP object into the kernel (needs root): the verifier's verdict, explained",
    )
    .option(
      "--sandbox",
      "compile as the controller compiles an uploaded crate: under bubblewrap, as nobody, seeing only the crate, with limits",
    )
    .action(async (crateDirs: string[], flags: BuildFlags) => {
      try {
        const targets = flags.allTargets ? [...TARGETS] : parseTargets(flags.target ?? "bpf,x86_64");
        let jobs: number | undefined;
        if (flags.jobs !== undefined) {
          jobs = Number(flags.jobs);
          if (!Number.isInteger(jobs) || jobs < 1)
            throw new NfBuildError(`--jobs must be a positive integer, got "${flags.jobs}"`);
        }
        const tty = process.stderr.isTTY === true;
        const onProgress = tty
          ? (e: ProgressEvent) => {
              if (e.state === "start") return;
              process.stderr.write(`\r\x1b[K[${e.done}/${e.total}] ${e.nf} ${e.target}: ${e.state}`);
              if (e.done === e.total) process.stderr.write("\n");
            }
          : undefined;
        const results = await buildNfs(crateDirs, {
          targets,
          ...(flags.out ? { outDir: path.resolve(flags.out) } : {}),
          ...(jobs ? { jobs } : {}),
          ...(onProgress ? { onProgress } : {}),
          ...(flags.sandbox ? { sandbox: true } : {}),
          // every target: one this machine lacks a part for is listed as skipped, with why
          ...(flags.allTargets ? { skipUnavailable: true } : {}),
        });
        for (const r of results) for (const w of r.warnings) process.stderr.write(`${w}\n`);
        if (flags.verify)
          for (const r of results) {
            const obj = r.artifacts.find((a) => a.target === "bpf");
            if (obj) await verifyXdpObject(obj.file, r);
          }
        const verdicts = await buildVerdicts(results);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(buildJson(results, verdicts), null, 2)}\n`);
          return;
        }
        for (const [i, r] of results.entries()) {
          process.stdout.write(`${r.name} ${r.hash} (${r.manifest.variants.join(", ")})\n`);
          for (const a of r.artifacts)
            process.stdout.write(
              `  ${a.target.padEnd(8)} ${rel(a.file)} ${a.size} B${a.cached ? " (cached)" : ""}\n`,
            );
          for (const s of r.skipped) process.stdout.write(`  ${s.target.padEnd(8)} skipped: ${s.reason}\n`);
          process.stdout.write(`  ${"kernels".padEnd(8)} loads on ${formatVerdicts(verdicts[i] ?? [])}\n`);
        }
      } catch (err) {
        // Build errors are for the NF author: the message, never a stack trace.
        if (err instanceof Error && (err instanceof NfBuildError || err.name === "NfAnalysisError")) {
          process.stderr.write(`galette nf build: ${err.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
    });

  registerNfInspect(nf);
  registerNfRelease(nf);
  registerNfTest(nf);

  nf.command("publish")
    .description("Upload NF crates to the controller, which builds them for XDP and every device CPU")
    .argument("<crate-dirs...>", "NF crate directories (each with a Cargo.toml)")
    .option("--name <name>", "publish under this name (one crate only; default: the crate's name)")
    .option("--json", "print the controller's answers as JSON")
    .action(async (dirs: string[], flags: { name?: string; json?: boolean }) => {
      if (flags.name && dirs.length > 1) throw new Error("--name applies to a single crate");
      const client = operatorClient();
      const results = [];
      for (const dir of dirs) {
        const published = await client.publishNf(await packCrateDir(dir), flags.name);
        results.push(published);
        if (flags.json) continue;
        const why = published.buildMessage ? `: ${published.buildMessage}` : "";
        process.stdout.write(
          `${rel(dir)}: published ${published.name} (${published.build}, ${published.artifacts.length} artifacts)${why}\n`,
        );
        if (published.build === "failed") process.exitCode = 1;
      }
      if (flags.json) process.stdout.write(`${JSON.stringify({ nfs: results }, null, 2)}\n`);
    });
}

interface TestFlags {
  pcap: string;
  maps?: string;
  expect?: string;
  out?: string;
  json?: boolean;
}

function registerNfTest(nf: Command): void {
  nf.command("test")
    .description(
      "Run an NF over a capture through its XDP build (BPF_PROG_TEST_RUN) and its native library; fail on any difference",
    )
    .argument("<crate-dir>", "NF crate directory")
    .requiredOption("--pcap <file>", "input frames (pcap, Ethernet)")
    .option("--maps <file>", 'initial map entries: TOML (or .json), MAP = ["KEYHEX:VALUEHEX", ...]')
    .option("--expect <file>", "expected output frames (pcap, one per input frame, in order)")
    .option("--out <file>", "write each frame's output as a pcap (usable as --expect later)")
    .option("--json", "print the result as JSON on stdout")
    .action(async (crateDir: string, flags: TestFlags) => {
      try {
        const result = await testNf({
          crateDir,
          pcap: flags.pcap,
          ...(flags.maps ? { maps: flags.maps } : {}),
          ...(flags.expect ? { expect: flags.expect } : {}),
          ...(flags.out ? { out: flags.out } : {}),
        });
        if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else {
          for (const f of result.frames) {
            const same = f.xdp.verdict === f.native.verdict && f.xdp.bytes === f.native.bytes;
            const verdict = same
              ? f.xdp.verdict
              : `XDP ${f.xdp.verdict} / ${result.native} ${f.native.verdict}`;
            process.stdout.write(
              `frame ${f.frame}: ${verdict} ${f.xdp.bytes}${f.ok ? "" : "  <- differs"}\n`,
            );
          }
        }
        for (const d of result.differences)
          process.stderr.write(`galette nf test: frame ${d.frame}: ${d.what}: ${d.detail}\n`);
        if (!result.passed) {
          process.exitCode = 1;
          return;
        }
        if (!flags.json)
          process.stdout.write(
            `${result.nf}: ${result.frames.length} frames, XDP and ${result.native} builds agree${flags.expect ? " and match the expectation" : ""}\n`,
          );
      } catch (err) {
        if (err instanceof Error && (err instanceof NfBuildError || err.name === "NfAnalysisError")) {
          process.stderr.write(`galette nf test: ${err.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
    });
}
