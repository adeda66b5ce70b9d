/** Test artifacts built once per content: BPF objects and other compiler outputs. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { run } from "./netns";

const cacheDir = join(tmpdir(), "galette-test-build");

/**
 * Builds `out` once per content key: the inputs' bytes and `flags`. The result is renamed
 * into place, so parallel test files share one build and never see half a file.
 */
export async function cachedBuild(
  name: string,
  inputs: string[],
  flags: string[],
  build: (out: string) => Promise<unknown>,
): Promise<string> {
  const hash = createHash("sha256");
  for (const f of inputs) hash.update(f).update(readFileSync(f));
  hash.update(flags.join("\0"));
  mkdirSync(cacheDir, { recursive: true });
  const out = join(cacheDir, `${hash.digest("hex").slice(0, 16)}-${name}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  await build(tmp);
  renameSync(tmp, out);
  return out;
}

let multiarch: Promise<string> | undefined;
/** `/usr/include/<multiarch>` (asm/types.h for BPF C), asked of gcc once. */
function multiarchInclude(): Promise<string> {
  multiarch ??= run("gcc", ["-print-multiarch"]).then((r) => `/usr/include/${r.stdout.trim()}`);
  return multiarch;
}

/**
 * Compiles a BPF C source to an object with clang-22 (`-target bpf -mcpu=v3 -O2 -g`),
 * cached by the source, every header directly in `includeDirs` and `defines`.
 */
export async function compileBpfObject(
  src: string,
  opts: { includeDirs?: string[]; defines?: string[] } = {},
): Promise<string> {
  const includeDirs = opts.includeDirs ?? [];
  const headers = includeDirs.flatMap((d) =>
    readdirSync(d)
      .filter((f) => f.endsWith(".h"))
      .sort()
      .map((f) => join(d, f)),
  );
  const flags = [
    "-target",
    "bpf",
    "-mcpu=v3",
    "-O2",
    "-g",
    `-I${await multiarchInclude()}`,
    ...includeDirs.map((d) => `-I${d}`),
    ...(opts.defines ?? []).map((d) => `-D${d}`),
  ];
  return cachedBuild(`${basename(src, ".c")}.o`, [src, ...headers], flags, (out) =>
    run("clang-22", [...flags, "-c", src, "-o", out]),
  );
}
