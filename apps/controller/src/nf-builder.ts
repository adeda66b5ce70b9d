import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { buildNf, parseTargets, type SandboxLimits, TARGETS, type Target } from "@galette/nf-build";
import { CpuTriple } from "@galette/protocol";
import type { NfBuilder, NfBuildOutput } from "./nf-publish";

export interface NfBuilderOptions {
  /** builds running at once; the rest wait their turn (default: half the CPUs, at least 1) */
  concurrency?: number;
  /** sandbox limits per NF and target (default: nf-build's) */
  limits?: Partial<SandboxLimits>;
}

/**
 * The NF builder `galette controller serve` hands the server: @galette/nf-build compiles
 * a published crate to its BPF object and a native library per CPU triple, in the build
 * sandbox (the crate is the uploader's code), one queue for the whole controller so builds
 * never take every CPU from the device API. Artifacts are cached by nf-build, so an
 * unchanged crate compiles nothing. $GALETTE_NF_TARGETS (e.g. "bpf,x86_64,aarch64")
 * narrows the targets; default all. $GALETTE_NF_BUILD_JOBS and $GALETTE_NF_BUILD_TIMEOUT
 * (seconds of wall-clock time per NF and target) override the queue's and sandbox's defaults.
 */
export function nfBuilderForServe(
  targets: readonly Target[] = targetsFromEnv(),
  options: NfBuilderOptions = optionsFromEnv(),
): NfBuilder {
  const queue = new BuildQueue(options.concurrency ?? Math.max(1, Math.floor(availableParallelism() / 2)));
  return ({ crateDir }) =>
    queue.run(async () => {
      const result = await buildNf(crateDir, {
        targets: [...targets],
        // a std NF for a CPU without std here: skipped with the reason (no artifact for that CPU)
        skipUnavailable: true,
        // targets of one NF one after the other: the queue's limit is the CPU budget
        jobs: 1,
        sandbox: options.limits ? { limits: options.limits } : true,
      });
      const artifacts: NfBuildOutput["artifacts"] = [];
      for (const artifact of result.artifacts) {
        const bytes = await readFile(artifact.file);
        if (artifact.target === "bpf") {
          artifacts.push({ kind: "bpf-object", bytes });
        } else {
          const triple = CpuTriple.safeParse(artifact.triple);
          if (!triple.success)
            throw new Error(`nf-build produced a library for unknown triple ${artifact.triple}`);
          artifacts.push({ kind: "native-lib", triple: triple.data, bytes });
        }
      }
      return { buildHash: result.hash, artifacts };
    });
}

/** At most `limit` tasks at once, the rest in arrival order. */
export class BuildQueue {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(readonly limit: number) {}

  get depth(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((start) => this.waiting.push(start));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      // the slot passes straight to the next task
      if (next) next();
      else this.running--;
    }
  }
}

function positiveIntFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

function optionsFromEnv(): NfBuilderOptions {
  const jobs = positiveIntFromEnv("GALETTE_NF_BUILD_JOBS");
  const timeout = positiveIntFromEnv("GALETTE_NF_BUILD_TIMEOUT");
  return {
    ...(jobs ? { concurrency: jobs } : {}),
    // the CPU limit follows: a build may use the whole wall-clock time on one core
    ...(timeout ? { limits: { wallMs: timeout * 1000, cpuSeconds: timeout } } : {}),
  };
}

function targetsFromEnv(): Target[] {
  const spec = process.env.GALETTE_NF_TARGETS;
  return spec ? parseTargets(spec) : [...TARGETS];
}
