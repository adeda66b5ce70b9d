/**
 * Re-render a report and its plots from a run's raw results (after a change to the report
 * or the plots, without measuring again):
 *   pnpm exec tsx bench/src/rerender.ts bench/results/<date>.json
 * Writes <date>.md and <date>/*.png next to the JSON.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writePlots } from "./plots";
import { renderReport } from "./report";
import type { BenchResults } from "./runner";

const jsonPath = process.argv[2];
if (!jsonPath?.endsWith(".json")) {
  process.stderr.write("usage: tsx bench/src/rerender.ts bench/results/<date>.json\n");
  process.exit(2);
}
const results = JSON.parse(readFileSync(jsonPath, "utf8")) as BenchResults;
const base = basename(jsonPath, ".json");
const refs = await writePlots(results, join(dirname(jsonPath), base));
const linked = Object.fromEntries(Object.entries(refs).map(([title, file]) => [title, `${base}/${file}`]));
writeFileSync(join(dirname(jsonPath), `${base}.md`), renderReport(results, linked));
process.stdout.write(`wrote ${join(dirname(jsonPath), `${base}.md`)}\n`);
