import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createLogger, type Logger } from "@galette/log";
import { makePlan } from "./plan";
import { writePlots } from "./plots";
import { renderReport } from "./report";
import { type BenchResults, runBench } from "./runner";
import { scenarios as registeredScenarios, type Scenario } from "./scenarios";
import { buildTools } from "./tools";

export const resultsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "results");

export interface SuiteOptions {
  env?: NodeJS.ProcessEnv;
  /** where the report goes; default bench/results (QUICK: bench/results/tmp, git-ignored) */
  outDir?: string;
  scenarios?: Scenario[];
  log?: Logger;
}

export interface SuiteOutput {
  results: BenchResults;
  reportPath: string;
  jsonPath: string;
  plotPaths: string[];
}

/** Build the tools, run every scenario, write <date>.md, <date>.json and <date>/*.png. */
export async function runSuite(opts: SuiteOptions = {}): Promise<SuiteOutput> {
  const plan = makePlan(opts.env ?? process.env);
  const log = opts.log ?? createLogger("bench");
  const outDir = opts.outDir ?? (plan.quick ? join(resultsDir, "tmp") : resultsDir);
  const tools = await buildTools();
  log.info({ tools: tools.dir, quick: plan.quick }, "bench tools ready");
  const results = await runBench({ plan, tools, scenarios: opts.scenarios ?? registeredScenarios(), log });
  const base = `${results.startedAt.slice(0, 10)}${plan.quick ? "-quick" : ""}`;
  mkdirSync(outDir, { recursive: true });
  const plotDir = join(outDir, base);
  const refs = await writePlots(results, plotDir);
  const linked = Object.fromEntries(Object.entries(refs).map(([title, file]) => [title, `${base}/${file}`]));
  const reportPath = join(outDir, `${base}.md`);
  const jsonPath = join(outDir, `${base}.json`);
  writeFileSync(reportPath, renderReport(results, linked));
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 1)}\n`);
  return { results, reportPath, jsonPath, plotPaths: Object.values(refs).map((f) => join(plotDir, f)) };
}
