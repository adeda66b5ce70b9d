/**
 * Compile-time benchmark of the NF compiler: every example, per target, cold (empty artifact
 * cache; the prebuilt sysroots are reused, the nf crate is compiled once per target and
 * included) and warm (everything cached). Run: pnpm exec tsx bench/compile-time/compile-time.ts
 * Prints a table and, with --json, the raw numbers.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
process.env.GALETTE_SYSROOT_DIR ??= path.join(
  process.env.GALETTE_CACHE_DIR ?? path.join(process.env.HOME ?? "/root", ".cache", "galette"),
  "sysroots",
);
const scratch = mkdtempSync(path.join(tmpdir(), "galette-compile-time-"));
process.env.GALETTE_CACHE_DIR = scratch;
// imported after the environment is set: the compiler reads it on use
const { buildNfs, TARGETS } = await import("@galette/nf-build");

const examplesDir = path.join(root, "nf-examples");
const examples = readdirSync(examplesDir)
  .sort()
  .map((n) => path.join(examplesDir, n));

interface Row {
  target: string;
  coldMs: number;
  warmMs: number;
  perNfMs: Record<string, number>;
}

const rows: Row[] = [];
try {
  for (const target of TARGETS) {
    const t0 = performance.now();
    const cold = await buildNfs(examples, { targets: [target] });
    const coldMs = performance.now() - t0;
    const t1 = performance.now();
    await buildNfs(examples, { targets: [target] });
    const warmMs = performance.now() - t1;
    const perNfMs = Object.fromEntries(cold.flatMap((r) => r.artifacts.map((a) => [r.name, a.buildMs])));
    rows.push({ target, coldMs: Math.round(coldMs), warmMs: Math.round(warmMs), perNfMs });
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (process.argv.includes("--json")) console.log(JSON.stringify(rows, null, 2));
else {
  console.log(`| target | cold, ${examples.length} NFs (ms) | warm (ms) | slowest NF (ms) |`);
  console.log("|---|---|---|---|");
  for (const r of rows) {
    const [nf, ms] = Object.entries(r.perNfMs).sort((a, b) => b[1] - a[1])[0] ?? ["-", 0];
    console.log(`| ${r.target} | ${r.coldMs} | ${r.warmMs} | ${nf} ${ms} |`);
  }
}
