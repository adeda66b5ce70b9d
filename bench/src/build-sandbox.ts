/**
 * Device polls while hostile NF builds run: the controller (the bundled `galette controller
 * serve`, as operators run it) answers one device's assignment polls, first idle, then while
 * an uploader keeps it busy with crates that spin in const evaluation, flood the compiler's
 * output, or are gzip bombs, plus ordinary builds — same run, same device. The p99 poll
 * latency under attack against idle is the number: builds are sandboxed and queued, uploads
 * are inflated off the event loop, so the device API must not stall.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { DataDir, OperatorClient, packCrateDir, writeDeviceBundle } from "@galette/controller";
import { createLogger, type Logger } from "@galette/log";
import { DeviceClient, loadAgentConfig } from "@galette/sbc-agent";
import { createBenchToken, galetteBundle } from "./footprint";
import { repoRoot } from "./galette";
import { makePlan } from "./plan";
import { sleep } from "./testkit";

const run = promisify(execFile);

export interface PollStats {
  polls: number;
  failures: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface BuildSandboxResult {
  idle: PollStats;
  hostile: PollStats;
  /** uploads answered during the hostile window, by outcome */
  uploads: Record<string, number>;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** Polls the device's assignment back to back (20 ms apart) for `ms`. */
async function pollFor(client: DeviceClient, ms: number): Promise<PollStats> {
  const latencies: number[] = [];
  let failures = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const t0 = performance.now();
    try {
      await client.getAssignment(undefined, "x86_64");
      latencies.push(performance.now() - t0);
    } catch {
      failures++;
    }
    await sleep(20);
  }
  latencies.sort((a, b) => a - b);
  return {
    polls: latencies.length,
    failures,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies.at(-1) ?? Number.NaN,
  };
}

const NF_TAIL =
  "\nuse nf::Packet;\npub enum Action { Pass }\npub fn packet(_pkt: &mut Packet) -> Action { Action::Pass }\n";

/** The hostile uploads, as archives (each crate name unique so nothing is served from the cache). */
async function hostileUploads(work: string, round: number): Promise<Array<[string, Buffer]>> {
  const crate = async (kind: string, body: string) => {
    const name = `${kind}-${round}`;
    const dir = join(work, "crates", name);
    mkdirSync(join(dir, "src"), { recursive: true });
    writeFileSync(
      join(dir, "Cargo.toml"),
      `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n`,
    );
    writeFileSync(join(dir, "src", "lib.rs"), `#![no_std]\n${body}\n${NF_TAIL}`);
    return [kind, await packCrateDir(dir)] as [string, Buffer];
  };
  const ten = (inner: string) => Array.from({ length: 10 }, () => `${inner};`).join(" ");
  const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  return [
    ["gzip-bomb", Buffer.concat(Array.from({ length: 3 * 1024 }, () => member))],
    await crate(
      "spin",
      "#![allow(long_running_const_eval)]\nconst fn spin() -> u32 { let mut i = 0u32; loop { i = i.wrapping_add(1); if i == 0 { i = 1 } } }\npub const X: u32 = spin();",
    ),
    await crate(
      "loud",
      [
        `#[deprecated(note = "${"x".repeat(100)}")] pub fn d() {}`,
        `macro_rules! c1 { () => { ${ten("d()")} } }`,
        `macro_rules! c2 { () => { ${ten("c1!()")} } }`,
        `macro_rules! c3 { () => { ${ten("c2!()")} } }`,
        `macro_rules! c4 { () => { ${ten("c3!()")} } }`,
        "pub fn loud() { c4!(); }",
      ].join("\n"),
    ),
    await crate("plain", `pub const N: u32 = ${round};`),
  ];
}

export async function runBuildSandbox(opts: { quick: boolean; log: Logger }): Promise<BuildSandboxResult> {
  if (!existsSync(galetteBundle)) throw new Error(`${galetteBundle} is missing (make setup builds it)`);
  const windowMs = opts.quick ? 5000 : 20_000;
  const work = mkdtempSync(join(tmpdir(), "galette-build-sandbox-"));
  const data = join(work, "controller");
  let controller: ChildProcess | undefined;
  let client: DeviceClient | undefined;
  let attacking = false;
  const attackers: Promise<void>[] = [];
  try {
    await run(process.execPath, [galetteBundle, "pki", "init", "--data", data], { cwd: repoRoot });
    const dir = DataDir.open(data);
    try {
      writeDeviceBundle(join(work, "device"), await dir.enrolDevice("poller", {}, "https://127.0.0.1:1"));
    } finally {
      await dir.close();
    }
    // only polled, never runs a chain: any interface name will do
    const agentJson = join(work, "device", "agent.json");
    writeFileSync(
      agentJson,
      JSON.stringify({ ...JSON.parse(readFileSync(agentJson, "utf8")), interface: "lo" }),
    );
    let output = "";
    controller = spawn(
      process.execPath,
      [galetteBundle, "controller", "serve", "--data", data, "--listen", "127.0.0.1:0"],
      {
        cwd: repoRoot,
        env: { ...process.env, GALETTE_NF_TARGETS: "bpf" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-4096);
    };
    controller.stdout?.on("data", keep);
    controller.stderr?.on("data", keep);
    const info = join(data, "controller.json");
    for (let waited = 0; !existsSync(info); waited += 100) {
      if (waited > 60_000 || controller.exitCode !== null)
        throw new Error(`the controller did not start:\n${output.slice(-2000)}`);
      await sleep(100);
    }
    const url = (JSON.parse(readFileSync(info, "utf8")) as { url: string }).url;
    const token = await createBenchToken(galetteBundle, data, "publish");
    const operator = new OperatorClient({ url, token, caFile: join(data, "ca.crt") });
    client = new DeviceClient(url, loadAgentConfig(agentJson, { controllerUrl: url }));
    await client.getAssignment(undefined, "x86_64");

    const idle = await pollFor(client, windowMs);
    opts.log.info({ idle }, "build-sandbox: idle polls");

    // Three uploaders, each sending the hostile set over and over (a new round, new names).
    attacking = true;
    const uploads: Record<string, number> = {};
    let round = 0;
    for (let u = 0; u < 3; u++) {
      attackers.push(
        (async () => {
          while (attacking) {
            for (const [kind, archive] of await hostileUploads(work, round++)) {
              if (!attacking) break;
              const outcome = await operator.publishNf(archive).then(
                (r) => `${kind}: ${r.build}`,
                (err: Error) => `${kind}: ${/\b(4\d\d)\b/.exec(err.message)?.[1] ?? "error"}`,
              );
              uploads[outcome] = (uploads[outcome] ?? 0) + 1;
            }
          }
        })(),
      );
    }
    await sleep(1000);
    const hostile = await pollFor(client, windowMs);
    opts.log.info({ hostile, uploads }, "build-sandbox: polls under hostile builds");
    return { idle, hostile, uploads };
  } finally {
    attacking = false;
    client?.close();
    // stopping the controller kills its sandboxes (they die with it); the uploaders then fail fast
    controller?.kill("SIGTERM");
    await Promise.race([Promise.allSettled(attackers), sleep(15_000)]);
    controller?.kill("SIGKILL");
    rmSync(work, { recursive: true, force: true });
  }
}

export function renderBuildSandbox(r: BuildSandboxResult): string {
  const row = (what: string, s: PollStats) =>
    `| ${what} | ${s.polls} | ${s.failures} | ${s.p50Ms.toFixed(1)} | ${s.p99Ms.toFixed(1)} | ${s.maxMs.toFixed(1)} |`;
  const ratio = r.hostile.p99Ms / r.idle.p99Ms;
  return [
    "## Device polls while hostile NF builds run",
    "",
    "One device polls its assignment (mTLS, 20 ms apart) from the bundled controller, idle and then while three uploaders keep publishing gzip bombs, crates that spin in const evaluation (killed at the wall-clock limit) or flood the compiler's output, and ordinary crates (builds: bpf, sandboxed, queued).",
    "",
    "| window | polls | failed | p50 (ms) | p99 (ms) | max (ms) |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    row("idle", r.idle),
    row("hostile builds", r.hostile),
    "",
    `p99 under hostile builds / idle: **${ratio.toFixed(2)}×**. Uploads answered in the window: ${Object.entries(
      r.uploads,
    )
      .map(([k, n]) => `${k} ×${n}`)
      .join(", ")}.`,
    "",
  ].join("\n");
}

/**
 * The build-sandbox part of `make bench` (and QUICK): runs unless BENCH_ONLY excludes it,
 * prints the table and appends it to the report. False when it could not be measured.
 */
export async function runBuildSandboxSection(reportPath: string): Promise<boolean> {
  const only = process.env.BENCH_ONLY?.split(",").filter(Boolean);
  if (only && !only.some((o) => "build-sandbox".includes(o))) return true;
  // QUICK is a smoke run with a time limit: this phase runs there only when asked for by name
  if (makePlan(process.env).quick && !only) {
    process.stdout.write("bench: build-sandbox skipped in QUICK (BENCH_ONLY=build-sandbox runs it)\n");
    return true;
  }
  const log = createLogger("bench");
  try {
    const table = renderBuildSandbox(await runBuildSandbox({ quick: makePlan(process.env).quick, log }));
    process.stdout.write(`${table}\n`);
    await appendFile(reportPath, `\n${table}`);
    return true;
  } catch (err) {
    process.stderr.write(`bench: build-sandbox failed: ${(err as Error).message}\n`);
    return false;
  }
}
