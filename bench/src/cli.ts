/**
 * `make bench` entry: runs the whole suite and writes bench/results/<date>.md (+ .json and
 * plots). Environment: QUICK=1 for the smoke run (a few minutes); BENCH_ONLY=a,b to run only
 * scenarios whose name contains a or b; BENCH_GENERATOR=live for the BPF_PROG_RUN generator;
 * BENCH_OUT=dir to write elsewhere.
 */
import "./galette";
import { runBuildSandboxSection } from "./build-sandbox";
import { runCostSection } from "./cost";
import { runFootprintSection } from "./footprint";
import { labelledTargetLines } from "./report";
import { runScaleSection } from "./scale";
import { runSuite } from "./suite";

const out = await runSuite({ outDir: process.env.BENCH_OUT || undefined });
const cost = await runCostSection(out.reportPath);
const buildSandbox = await runBuildSandboxSection(out.reportPath);
const footprint = await runFootprintSection(out.reportPath);
const scale = await runScaleSection(out.reportPath);
const failed = out.results.outcomes.filter((o) => o.status === "failed");
const ran = out.results.outcomes.filter((o) => o.status === "ok").length;
process.stdout.write(
  `bench: ${ran} scenario(s) measured, ${failed.length} failed\n` +
    `report: ${out.reportPath}\nraw:    ${out.jsonPath}\nplots:  ${out.plotPaths.join("\n        ")}\n`,
);
for (const line of labelledTargetLines(out.results)) process.stdout.write(`bench: ${line}\n`);
for (const f of failed) process.stderr.write(`bench: ${f.scenario.name} failed: ${f.reason}\n`);
process.exit(failed.length || !footprint || !scale || !buildSandbox || !cost ? 1 : 0);
