import { readFile } from "node:fs/promises";
import { buildNf, parseTargets, TARGETS, type Target } from "@galette/nf-build";
import { CpuTriple } from "@galette/protocol";
import type { NfBuilder, NfBuildOutput } from "./nf-publish";

/**
 * The NF builder `galette controller serve` hands the server: @galette/nf-build compiles
 * a published crate to its BPF object and a native library per CPU triple (artifacts are
 * cached by nf-build, so an unchanged crate compiles nothing). $GALETTE_NF_TARGETS
 * (e.g. "bpf,x86_64,aarch64") narrows the targets; default all.
 */
export function nfBuilderForServe(targets: readonly Target[] = targetsFromEnv()): NfBuilder {
  return async ({ crateDir }) => {
    const result = await buildNf(crateDir, { targets: [...targets] });
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
  };
}

function targetsFromEnv(): Target[] {
  const spec = process.env.GALETTE_NF_TARGETS;
  return spec ? parseTargets(spec) : [...TARGETS];
}
