/**
 * The controller scale scenario alone: `pnpm exec tsx bench/src/scale-cli.ts` (QUICK=1:
 * 1000 devices; BENCH_SCALE_DEVICES=1000,5000; BENCH_SCALE_DATABASE=postgres://…). Prints
 * the tables; BENCH_OUT=file.md appends them there too.
 */
import { runScaleSection } from "./scale";

process.exit((await runScaleSection(process.env.BENCH_OUT || undefined)) ? 0 : 1);
