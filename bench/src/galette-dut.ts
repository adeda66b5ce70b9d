/**
 * A Galette dataplane as a bench DUT process: builds a chain's NFs (nf-build cache), installs
 * the chain on an interface with the installer, sets map entries, prints `ready`, and
 * uninstalls on SIGTERM (or when the bench runner dies). It runs as a process of its own so
 * that the AF_XDP workers, which are threads of the installing process, are counted as the
 * DUT's CPU (utime+stime of this pid) and not the runner's.
 *
 *   node --import tsx bench/src/galette-dut.ts --chain FILE --iface IF [--netns NS]
 *        [--workers N] [--mode busy-poll|blocking] [--state-dir DIR] [--map-set NF.MAP=KEYHEX:VALUEHEX]…
 *
 * Chain `path`s are resolved against the repository root. On exit it prints one JSON line
 * with the per-NF counters and worker stats (the runner logs it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Dataplane, type InterfaceTarget, parseMapSet, planInstallation } from "@galette/installer";
import { createLogger } from "@galette/log";
import { buildChain, loadChainOrThrow } from "@galette/nf-build";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

async function main(): Promise<void> {
  // the task name perf profiles filter on (profile.ts): "node" would also match the runner
  // and other node processes on the DUT CPU; worker threads inherit it when they start
  process.title = "galette-dut";
  const { values } = parseArgs({
    options: {
      chain: { type: "string" },
      iface: { type: "string" },
      netns: { type: "string" },
      workers: { type: "string", default: "1" },
      mode: { type: "string", default: "blocking" },
      "state-dir": { type: "string" },
      "map-set": { type: "string", multiple: true, default: [] },
      // workers as threads of this process: only the bench's isolation-cost baseline
      "in-process": { type: "boolean", default: false },
    },
  });
  if (!values.chain || !values.iface) throw new Error("galette-dut: --chain and --iface are required");
  const mode = values.mode;
  if (mode !== "busy-poll" && mode !== "blocking")
    throw new Error(`galette-dut: --mode must be busy-poll or blocking, got "${mode}"`);
  const count = Number(values.workers);
  if (!Number.isInteger(count) || count < 1)
    throw new Error(`galette-dut: --workers must be a positive integer, got "${values.workers}"`);
  const mapSets = values["map-set"].map(parseMapSet);
  const log = createLogger("galette-dut", { level: process.env.GALETTE_LOG_LEVEL ?? "warn" });

  const target: InterfaceTarget = { iface: values.iface, ...(values.netns ? { netns: values.netns } : {}) };
  const ownStateDir = values["state-dir"] ? undefined : mkdtempSync(join(tmpdir(), "galette-bench-state-"));
  const stateDir = values["state-dir"] ?? ownStateDir!;
  const chain = await loadChainOrThrow(resolve(repoRoot, values.chain));
  const built = await buildChain(chain, { baseDir: repoRoot });
  const dp = await Dataplane.install(planInstallation(built.plan, built.artifacts, target), {
    stateDir,
    workers: { count, mode, ...(values["in-process"] ? { inProcess: true } : {}) },
    logger: log,
  });
  let stopped = false;
  const stop = (why: string) => {
    if (stopped) return;
    stopped = true;
    const summary = {
      why,
      chain: dp.spec.chain,
      counters: dp.counters(),
      workers: dp.workerStats()?.totals,
      // per-worker wake-up/batch/kernel ring counters: how the worker loop spent its syscalls
      workerDetail: dp.workerStats()?.workers,
    };
    dp.uninstall();
    if (ownStateDir) rmSync(ownStateDir, { recursive: true, force: true });
    process.stdout.write(`${JSON.stringify(summary, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}\n`);
    process.exit(0);
  };
  try {
    for (const s of mapSets) dp.nfMap(s.nf, s.map).update(s.key, s.value);
  } catch (err) {
    dp.uninstall();
    throw err;
  }
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // The C tools use PR_SET_PDEATHSIG; node cannot, so watch for being re-parented instead.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop("bench runner exited");
  }, 500);
  process.stdout.write("ready\n");
}

main().catch((err: Error) => {
  process.stderr.write(`galette-dut: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
