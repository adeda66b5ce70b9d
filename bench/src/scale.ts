/**
 * Controller scale: one controller (the bundled `galette` executable, as the package runs
 * it) and N simulated devices in separate processes (scale-sim.ts) speaking the agent's
 * protocol over mutual TLS — a poll every 5 s, a status report every 10 s, a notification
 * websocket each. Per fleet size: device-request p50/p99, controller CPU and RSS, the
 * simulators' CPU. At the first size also: a push to every device under that load (poll
 * p99 while it fans out) and `kill -9` recovery (controller killed and restarted: time
 * until every device was served again, and whether the controller kept their state).
 *
 * The database is a parameter (`ScaleBackend`). Device certificates are issued once, for
 * one shared key, and cached in bench/.cache/scale-fleet (a fresh run enrols the cached
 * certificates in a fresh data directory).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DataDir } from "@galette/controller";
import { createLogger, type Logger } from "@galette/log";
import { hostTarget } from "@galette/nf-build";
import { issueDeviceCertAsync, loadPkiDir, normaliseSerial, PKI_FILES } from "@galette/pki";
import { startPostgres } from "@galette/testkit/postgres";
import { galetteBundle as defaultBundle, measure, type Proc, start, stop, waitFor } from "./footprint";
import { repoRoot } from "./galette";
import { makePlan } from "./plan";
import type { LatencySummary, SimCommand, SimDevice, SimReply, SimStats, SimWindow } from "./scale-sim";
import { buildTools } from "./tools";
import { boostTasks } from "./topology";

const run = promisify(execFile);
/** the controller under test: the bundled executable (BENCH_GALETTE_BUNDLE: another build of it) */
const galetteBundle = process.env.BENCH_GALETTE_BUNDLE || defaultBundle;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** simulated devices' status report interval (and poll every 5 s), as the agent's defaults */
const STATUS_MS = 10_000;

/** p99 of device requests the scale rows must stay under */
export const SCALE_P99_TARGET_MS = 100;
/** kill -9 → every device served again */
export const RECOVERY_TARGET_S = 5;

/** SQLite in the data directory, or a PostgreSQL 15 the bench starts (a fresh database per size) */
export type ScaleBackend = "sqlite" | "postgres";

/** the last run's controller output */
export const controllerLog = join(tmpdir(), "galette-scale-controller.log");

export const fleetCacheDir = join(repoRoot, "bench", ".cache", "scale-fleet");

export interface ScaleOptions {
  log: Logger;
  quick: boolean;
  /** fleet sizes (default 1000, 5000, 10000; QUICK 1000) */
  counts?: number[];
  /** databases, each measured at every size (default SQLite only) */
  backends?: ScaleBackend[];
  /** steady-state measurement window per size */
  windowMs?: number;
  /** also measure push under load and kill -9 recovery (at the first size, SQLite) */
  events?: boolean;
  /** nice -20 in autogroups of their own for the controller and the simulator (see the suite's boost) */
  boost?: boolean;
  /** devices per simulator process (default SIM_DEVICES_PER_PROCESS) */
  simDevicesPerProcess?: number;
}

export interface ScaleRow {
  devices: number;
  backend: string;
  poll: SimStats["poll"];
  status: SimStats["status"];
  wsOpen: number;
  controllerCpuPct: number;
  controllerRssMb: number;
  /** the PostgreSQL server's CPU (all its processes); SQLite runs inside the controller */
  databaseCpuPct?: number;
  simulatorCpuPct: number;
  /** simulator processes (each simulates its share of the fleet) */
  simulatorProcesses: number;
  /** the simulators' event-loop delay p99 and max (ms, the slowest process): their own share of the latencies they measured */
  simulatorLoopP99Ms: number;
  simulatorLoopMaxMs: number;
  /** the controller's event-loop delay in the window (ms): how long requests waited behind other work */
  controllerLoopP99Ms: number;
  controllerLoopMaxMs: number;
  /** failed requests by reason (HTTP status or error code) */
  failureReasons: Record<string, number>;
  met: boolean;
}

export interface PushRow {
  devices: number;
  backend: string;
  /** assign → every device holds the chain (artifacts downloaded) */
  seconds: number;
  missing: number;
  poll: SimStats["poll"];
  artifact: SimStats["artifact"];
  met: boolean;
}

export interface RecoveryRow {
  devices: number;
  backend: string;
  /** kill → the controller accepts connections again */
  listeningS: number;
  /** kill → every device got an answer */
  servedS: number;
  /** CPU the restarted controller used by then (start-up and the reconnecting fleet) */
  controllerCpuS: number;
  missing: number;
  /** devices whose first answer after the restart was "unchanged" (304): their state survived */
  unchanged: number;
  met: boolean;
}

export interface ScaleResults {
  rows: ScaleRow[];
  push?: PushRow;
  recovery?: RecoveryRow;
  /** the largest size whose poll p99 met the target, SQLite and PostgreSQL */
  largestMet?: number;
  largestMetPostgres?: number;
  /** sizes this machine cannot run, and why */
  skipped: Array<{ devices: number; reason: string }>;
}

interface FleetDevice {
  name: string;
  serial: string;
  notAfter: string;
}

interface FleetIndex {
  devices: FleetDevice[];
}

/**
 * The cached fleet with at least `count` devices: a PKI directory (`galette pki init`), one
 * shared device key, a certificate per device. Grown on demand; issued once per machine.
 */
export async function ensureFleet(
  count: number,
  log: Logger,
): Promise<{ dir: string; devices: FleetDevice[] }> {
  const dir = fleetCacheDir;
  const pki = join(dir, "pki");
  const indexFile = join(dir, "fleet.json");
  if (!existsSync(join(pki, PKI_FILES.issuerKey))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, "certs"), { recursive: true, mode: 0o700 });
    await run(process.execPath, [galetteBundle, "pki", "init", "--data", pki]);
    const { generateKeyPairSync } = await import("node:crypto");
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    writeFileSync(join(dir, "device.key"), privateKey, { mode: 0o600 });
    writeFileSync(indexFile, JSON.stringify({ devices: [] }));
  }
  const index = JSON.parse(readFileSync(indexFile, "utf8")) as FleetIndex;
  if (index.devices.length >= count) return { dir, devices: index.devices.slice(0, count) };
  const keyPem = readFileSync(join(dir, "device.key"), "utf8");
  const { issuer } = loadPkiDir(pki);
  const t0 = Date.now();
  const issue = async (i: number): Promise<FleetDevice> => {
    const name = `sim-${i}`;
    const issued = await issueDeviceCertAsync(issuer, name, { keyPem });
    writeFileSync(join(dir, "certs", `${name}.crt`), issued.certPem);
    return { name, serial: normaliseSerial(issued.serial), notAfter: issued.notAfter.toISOString() };
  };
  for (let i = index.devices.length; i < count; i += 64) {
    const batch = await Promise.all(Array.from({ length: Math.min(64, count - i) }, (_, k) => issue(i + k)));
    index.devices.push(...batch);
    // saved as it grows: an interrupted run keeps what it issued
    writeFileSync(indexFile, JSON.stringify(index));
  }
  log.info(
    { count, seconds: (Date.now() - t0) / 1000 },
    "scale: simulated device certificates issued (cached)",
  );
  return { dir, devices: index.devices.slice(0, count) };
}

/** A fresh data directory with the fleet's PKI, and the first `devices` enrolled in `backend`. */
async function prepareDataDir(
  work: string,
  fleetDir: string,
  devices: FleetDevice[],
  backend: ScaleBackend,
  database: string | undefined,
): Promise<string> {
  const data = join(work, "controller");
  mkdirSync(data, { mode: 0o700 });
  // the serving controller never needs the root key
  for (const f of Object.values(PKI_FILES))
    if (f !== PKI_FILES.caKey && existsSync(join(fleetDir, "pki", f)))
      cpSync(join(fleetDir, "pki", f), join(data, f), { preserveTimestamps: true });
  const dir = backend === "postgres" ? await DataDir.connect(data, { database }) : DataDir.open(data);
  try {
    const enrolledAt = new Date().toISOString();
    for (const d of devices)
      await dir.repo.insertDevice({
        name: d.name,
        labels: { role: "sim" },
        serial: d.serial,
        certPem: readFileSync(join(fleetDir, "certs", `${d.name}.crt`), "utf8"),
        enrolledAt,
        notAfter: d.notAfter,
      });
  } finally {
    await dir.close();
  }
  return data;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

/** The fleet's numbers from its simulator processes' windows. */
export function mergeWindows(windows: SimWindow[]): SimStats {
  const all = (pick: (w: SimWindow) => number[]) => windows.flatMap(pick);
  const sum = (pick: (w: SimWindow) => number) => windows.reduce((n, w) => n + pick(w), 0);
  const failureReasons: Record<string, number> = {};
  for (const w of windows)
    for (const [reason, n] of Object.entries(w.failureReasons))
      failureReasons[reason] = (failureReasons[reason] ?? 0) + n;
  return {
    poll: summarise(
      all((w) => w.poll),
      sum((w) => w.pollFailures),
    ),
    status: summarise(
      all((w) => w.status),
      sum((w) => w.statusFailures),
    ),
    artifact: summarise(
      all((w) => w.artifact),
      sum((w) => w.artifactFailures),
    ),
    wsOpen: sum((w) => w.wsOpen),
    unchanged: sum((w) => w.unchanged),
    failureReasons,
    loopDelay: {
      p99Ms: Math.max(0, ...windows.map((w) => w.loopDelay.p99Ms)),
      maxMs: Math.max(0, ...windows.map((w) => w.loopDelay.maxMs)),
    },
  };
}

function summarise(samples: number[], failures: number): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
  return {
    count: sorted.length,
    failures,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : 0,
  };
}

/** One simulator process and a request/answer helper over its IPC channel. */
class SimulatorProcess {
  readonly child: ChildProcess;
  #next = 1;
  #waiting = new Map<number, (r: SimReply) => void>();
  #ready: Promise<void>;
  #output = "";

  constructor() {
    this.child = spawn(
      process.execPath,
      ["--import", "tsx", join(repoRoot, "bench", "src", "scale-sim.ts")],
      {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "pipe", "ipc"],
        env: { ...process.env, GALETTE_LOG_LEVEL: "warn" },
      },
    );
    for (const s of [this.child.stdout!, this.child.stderr!])
      s.on("data", (d: Buffer) => {
        this.#output = (this.#output + d.toString()).slice(-4000);
      });
    let resolveReady: () => void = () => undefined;
    this.#ready = new Promise((r) => {
      resolveReady = r;
    });
    this.child.on("message", (m) => {
      const reply = m as SimReply;
      if (reply.type === "ready") resolveReady();
      else if (reply.type === "error") this.#output += `\nsimulator: ${reply.message}`;
      else this.#waiting.get(reply.id)?.(reply);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  async start(cmd: Omit<Extract<SimCommand, { type: "start" }>, "type">): Promise<void> {
    this.child.send({ type: "start", ...cmd } satisfies SimCommand);
    await Promise.race([
      this.#ready,
      new Promise((_, reject) =>
        this.child.once("exit", () => reject(new Error(`the simulator exited:\n${this.#output}`))),
      ),
    ]);
  }

  window(): void {
    this.child.send({ type: "window", id: 0 } satisfies SimCommand);
  }

  ask<T extends SimReply["type"]>(
    cmd: WithoutId<Exclude<SimCommand, { type: "start" | "window" }>>,
    expect: T,
    timeoutMs: number,
  ): Promise<Extract<SimReply, { type: T }>> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(
          new Error(`the simulator did not answer ${cmd.type} within ${timeoutMs} ms:\n${this.#output}`),
        );
      }, timeoutMs);
      this.#waiting.set(id, (r) => {
        clearTimeout(timer);
        this.#waiting.delete(id);
        if (r.type !== expect) reject(new Error(`simulator: expected ${expect}, got ${r.type}`));
        else resolve(r as Extract<SimReply, { type: T }>);
      });
      this.child.send({ ...cmd, id } as SimCommand);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await this.ask({ type: "stop" }, "stopped", 30_000).catch(() => undefined);
    const exited = new Promise((r) => this.child.once("exit", r));
    await Promise.race([exited, sleep(5000)]);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

/**
 * Devices per simulator process. One process for a whole 5000-device fleet ran its event
 * loop up to ~85 ms late at p99 (its own TLS and timers), and every latency it measured
 * carried that wait; BENCH_SCALE_SIM_DEVICES overrides it.
 */
export const SIM_DEVICES_PER_PROCESS = 2500;

/** The fleet's simulator processes, each given every n-th device, driven as one. */
class Simulator {
  readonly processes: SimulatorProcess[];

  constructor(devices: number, perProcess: number) {
    this.processes = Array.from({ length: Math.ceil(devices / perProcess) }, () => new SimulatorProcess());
  }

  get pids(): number[] {
    return this.processes.map((p) => p.pid);
  }

  async start(cmd: Omit<Extract<SimCommand, { type: "start" }>, "type">): Promise<void> {
    const n = this.processes.length;
    await Promise.all(
      this.processes.map((p, k) => p.start({ ...cmd, devices: cmd.devices.filter((_, i) => i % n === k) })),
    );
  }

  window(): void {
    for (const p of this.processes) p.window();
  }

  async stats(): Promise<SimStats> {
    const replies = await Promise.all(
      this.processes.map((p) => p.ask({ type: "window-samples" }, "window-samples", 30_000)),
    );
    return mergeWindows(replies.map((r) => r.window));
  }

  /** every device answered after `since`: when the last one was, how many never were */
  async awaitServed(
    since: number,
    timeoutMs: number,
  ): Promise<Omit<Extract<SimReply, { type: "served" }>, "id">> {
    const replies = await Promise.all(
      this.processes.map((p) =>
        p.ask({ type: "await-served", since, timeoutMs }, "served", timeoutMs + 60_000),
      ),
    );
    return {
      type: "served",
      at: Math.max(...replies.map((r) => r.at)),
      missing: replies.reduce((n, r) => n + r.missing, 0),
      unchangedFirst: replies.reduce((n, r) => n + r.unchangedFirst, 0),
      stuck: replies.flatMap((r) => r.stuck).slice(0, 5),
    };
  }

  /** every device holds chain `chain`: when the last one took it, how many never did */
  async awaitChain(chain: string, timeoutMs: number): Promise<{ at: number; missing: number }> {
    const replies = await Promise.all(
      this.processes.map((p) =>
        p.ask({ type: "await-chain", chain, timeoutMs }, "chain", timeoutMs + 30_000),
      ),
    );
    return { at: Math.max(...replies.map((r) => r.at)), missing: replies.reduce((n, r) => n + r.missing, 0) };
  }

  async stop(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
  }
}

/**
 * Open files the most demanding process needs for a fleet of `devices`. The controller: a
 * websocket and a kept-alive request connection per device, and slack. A simulator process
 * (`perProcess` devices at most): one more per device for connections closing or opening
 * while the fleet reconnects; two ran out, its connects failing with EMFILE, devices
 * backing off for a limit no real agent has.
 */
export const filesFor = (devices: number, perProcess: number) =>
  Math.max(devices * 2, Math.min(devices, perProcess) * 3) + 1024;

/**
 * Raise this process's open-file limit (children inherit it) to at least `want` and never
 * below the hard limit: a process at its exact need refuses the connections of a fleet
 * reconnecting (EMFILE), devices waiting out TCP's retries. Returns the limit now in force.
 * Raising the hard limit needs CAP_SYS_RESOURCE.
 */
async function raiseFileLimit(need: number, log: Logger): Promise<number> {
  const limit = async () =>
    Number(
      (
        await run("prlimit", ["--pid", String(process.pid), "--nofile", "--output=SOFT,HARD", "--noheadings"])
      ).stdout
        .trim()
        .split(/\s+/)[1],
    );
  const want = Math.max(need, await limit());
  await run("prlimit", ["--pid", String(process.pid), `--nofile=${want}:${want}`]).catch(async () => {
    const hard = await limit();
    await run("prlimit", ["--pid", String(process.pid), `--nofile=${hard}:${hard}`]);
    log.warn({ hard, want }, "scale: the open-file hard limit cannot be raised (no CAP_SYS_RESOURCE)");
  });
  return limit();
}

function backendName(b: ScaleBackend): string {
  return b === "sqlite" ? "SQLite" : "PostgreSQL";
}

export async function runScale(opts: ScaleOptions): Promise<ScaleResults> {
  const { log } = opts;
  if (!existsSync(galetteBundle))
    throw new Error(`scale: ${galetteBundle} is missing (make setup builds it)`);
  const counts = opts.counts ?? (opts.quick ? [1000] : [1000, 5000, 10_000]);
  const backends = opts.backends ?? (opts.quick ? ["sqlite"] : ["sqlite", "postgres"]);
  const windowMs = opts.windowMs ?? (opts.quick ? 10_000 : 20_000);
  const events = opts.events ?? true;
  const simDevicesPerProcess = opts.simDevicesPerProcess ?? SIM_DEVICES_PER_PROCESS;
  const files = await raiseFileLimit(filesFor(Math.max(...counts), simDevicesPerProcess), log);
  const skipped = counts.filter((c) => filesFor(c, simDevicesPerProcess) > files);
  const measured = counts.filter((c) => filesFor(c, simDevicesPerProcess) <= files);
  const fleet = await ensureFleet(Math.max(0, ...measured), log);
  const schedBoost = opts.boost ? (await buildTools()).schedBoost : undefined;
  // every thread of the process, again after start-up made its thread pool
  const boost = async (pid: number) => {
    if (schedBoost) await boostTasks(schedBoost, [pid]);
  };
  const results: ScaleResults = {
    rows: [],
    skipped: skipped.map((devices) => ({
      devices,
      reason: `needs ${filesFor(devices, simDevicesPerProcess)} open files per process; the limit here is ${files}`,
    })),
  };
  const postgres = backends.includes("postgres") ? await startPostgres() : undefined;
  try {
    // part of the system under test: the same share of the machine as the controller (its
    // backends, forked later, are in the postmaster's autogroup)
    if (postgres) await boost(postgres.pid);
    let first = true;
    for (const backend of backends)
      for (const count of measured) {
        // the events at the first SQLite size (the embedded default)
        const atFirst = first && backend === "sqlite";
        if (atFirst) first = false;
        await measureSize(backend, count, atFirst);
      }
  } finally {
    postgres?.stop();
  }
  const met = results.rows.filter((r) => r.met && r.backend === "SQLite").map((r) => r.devices);
  if (met.length) results.largestMet = Math.max(...met);
  const metPg = results.rows.filter((r) => r.met && r.backend === "PostgreSQL").map((r) => r.devices);
  if (metPg.length) results.largestMetPostgres = Math.max(...metPg);
  return results;

  async function measureSize(backend: ScaleBackend, count: number, withEvents: boolean): Promise<void> {
    const work = mkdtempSync(join(tmpdir(), "galette-scale-"));
    const database = postgres?.createDatabase(`scale_${count}_${Date.now()}`);
    let controller: Proc | undefined;
    let sim: Simulator | undefined;
    try {
      const data = await prepareDataDir(work, fleet.dir, fleet.devices.slice(0, count), backend, database);
      const port = await freePort();
      const metricsPort = await freePort();
      // BENCH_SCALE_CPU_PROF=DIR: V8 CPU profiles of the controller, written when it exits
      // (the restarted one's covers the recovery; a kill -9'd one writes none)
      const profile = process.env.BENCH_SCALE_CPU_PROF;
      // BENCH_SCALE_NODE_ARGS: more node options for the controller (e.g. --trace-gc)
      const nodeArgs = process.env.BENCH_SCALE_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
      const serveArgs = [
        ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []),
        ...nodeArgs,
        galetteBundle,
        "controller",
        "serve",
        "--data",
        data,
        "--listen",
        `127.0.0.1:${port}`,
        // the controller's own event-loop delay per window, read from its metrics
        "--metrics-listen",
        `127.0.0.1:${metricsPort}`,
        ...(database && backend === "postgres" ? ["--database", database] : []),
      ];
      const serveEnv = { GALETTE_NF_TARGETS: `bpf,${hostTarget()}` };
      controller = start(serveArgs, serveEnv);
      await waitFor("the controller", () => accepts(port), 60_000, controller);
      const url = `https://127.0.0.1:${port}`;
      await boost(controller.child.pid!);
      sim = new Simulator(count, simDevicesPerProcess);
      for (const pid of sim.pids) await boost(pid);
      const started = Date.now();
      await sim.start({
        url,
        caFile: join(data, PKI_FILES.caCert),
        devices: fleet.devices.slice(0, count).map(
          (d): SimDevice => ({
            name: d.name,
            certFile: join(fleet.dir, "certs", `${d.name}.crt`),
            keyFile: join(fleet.dir, "device.key"),
          }),
        ),
        pollMs: 5000,
        statusMs: STATUS_MS,
        websocket: true,
        // connections opened at up to ~1000/s, as a fleet coming online would
        rampMs: Math.max(5000, count),
      });
      const all = await sim.awaitServed(started, 120_000 + count * 10);
      if (all.missing > 0)
        log.warn({ missing: all.missing, count, stuck: all.stuck }, "scale: some devices were never served");
      // steady state: the window opens once the fleet's coming online (a handshake, a first
      // poll and status report per device, at up to 1000 devices a second) has been worked
      // off, one status interval after the last device was served
      await sleep(STATUS_MS);
      await boost(controller.child.pid!);
      for (const pid of sim.pids) await boost(pid);
      sim.window();
      // a read starts the controller's loop-delay histogram afresh
      await controllerLoopDelay(metricsPort);
      const [controllerUse, databaseUse, simUse] = await Promise.all([
        measure(controller.child.pid!, windowMs),
        backend === "postgres" && postgres ? measure(postgres.pid, windowMs) : undefined,
        Promise.all(sim.pids.map((pid) => measure(pid, windowMs))),
      ]);
      const controllerLoop = await controllerLoopDelay(metricsPort);
      const stats = await sim.stats();
      const row: ScaleRow = {
        devices: count,
        backend: backendName(backend),
        poll: stats.poll,
        status: stats.status,
        wsOpen: stats.wsOpen,
        controllerCpuPct: controllerUse.cpuPct,
        controllerRssMb: controllerUse.rssMb,
        ...(databaseUse ? { databaseCpuPct: databaseUse.cpuPct } : {}),
        simulatorCpuPct: simUse.reduce((n, u) => n + u.cpuPct, 0),
        simulatorProcesses: sim.pids.length,
        simulatorLoopP99Ms: stats.loopDelay.p99Ms,
        simulatorLoopMaxMs: stats.loopDelay.maxMs,
        controllerLoopP99Ms: controllerLoop.p99Ms,
        controllerLoopMaxMs: controllerLoop.maxMs,
        failureReasons: stats.failureReasons,
        met: stats.poll.p99Ms < SCALE_P99_TARGET_MS && stats.poll.failures === 0 && stats.wsOpen === count,
      };
      log.info(row, "scale: steady state");
      results.rows.push(row);
      if (events && withEvents) {
        results.push = await pushUnderLoad(sim, data, url, count, backend, log);
        const recovered = await killRecovery(
          sim,
          serveArgs,
          serveEnv,
          port,
          count,
          backend,
          controller,
          boost,
          log,
        );
        controller = recovered.controller;
        results.recovery = recovered.row;
      }
    } finally {
      await sim?.stop();
      await stop(controller);
      // the controller's log, for when a number looks wrong
      if (controller) writeFileSync(controllerLog, controller.output());
      rmSync(work, { recursive: true, force: true });
    }
  }
}

/** Publish the XDP-only macswap chain, then assign it to every simulated device under load. */
async function pushUnderLoad(
  sim: Simulator,
  data: string,
  url: string,
  count: number,
  backend: ScaleBackend,
  log: Logger,
): Promise<PushRow> {
  const galette = (env: Record<string, string>, ...args: string[]) =>
    run(process.execPath, [galetteBundle, ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
  const token = (
    await galette(
      {},
      "token",
      "create",
      "--data",
      data,
      "--name",
      "bench",
      "--scopes",
      "admin,publish,deploy,read",
    )
  ).stdout.trim();
  const env = { GALETTE_URL: url, GALETTE_TOKEN: token, GALETTE_CA: join(data, PKI_FILES.caCert) };
  const keys = join(data, "..", "release");
  await galette(env, "release-key", "init", "--out", keys);
  const releaseKey = join(keys, "release.key");
  await galette(env, "nf", "publish", "nf-examples/macswap");
  await galette(env, "nf", "release", "macswap", "--key", releaseKey, "--trust-controller-build");
  await galette(env, "chain", "push", "chains/macswap.toml", "--key", releaseKey);
  await sleep(2000);
  sim.window();
  const t0 = Date.now();
  await galette(env, "chain", "assign", "macswap", "--selector", "role=sim");
  const done = await sim.awaitChain("macswap", 60_000);
  // polls that were queued behind the fan-out still count
  await sleep(1000);
  const stats = await sim.stats();
  const row: PushRow = {
    devices: count,
    backend: backendName(backend),
    seconds: (done.at - t0) / 1000,
    missing: done.missing,
    poll: stats.poll,
    artifact: stats.artifact,
    met: done.missing === 0 && stats.poll.p99Ms < SCALE_P99_TARGET_MS,
  };
  log.info(row, "scale: push under load");
  return row;
}

/** the loop-delay sampler's resolution (prom-client's default metrics), counted in every sample */
const CONTROLLER_LOOP_RESOLUTION_MS = 10;

/**
 * The controller's event-loop delay p99 and max (ms) since the last read, from its
 * metrics-only listener (`nodejs_eventloop_lag_*`: each read starts them afresh).
 */
export async function controllerLoopDelay(metricsPort: number): Promise<{ p99Ms: number; maxMs: number }> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  if (!res.ok) throw new Error(`controller metrics: HTTP ${res.status}`);
  return loopDelayFromMetrics(await res.text());
}

export function loopDelayFromMetrics(text: string): { p99Ms: number; maxMs: number } {
  const read = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "m").exec(text);
    if (!m) throw new Error(`controller metrics: no ${name}`);
    return Math.max(0, Number(m[1]) * 1000 - CONTROLLER_LOOP_RESOLUTION_MS);
  };
  return { p99Ms: read("nodejs_eventloop_lag_p99_seconds"), maxMs: read("nodejs_eventloop_lag_max_seconds") };
}

/** User and system CPU seconds a process used so far (all its threads). */
function cpuSeconds(pid: number): number {
  // the fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100/s)
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** kill -9 the controller, start it again at once, time until every device was served again. */
async function killRecovery(
  sim: Simulator,
  serveArgs: string[],
  serveEnv: Record<string, string>,
  port: number,
  count: number,
  backend: ScaleBackend,
  controller: Proc,
  boost: (pid: number) => Promise<void>,
  log: Logger,
): Promise<{ controller: Proc; row: RecoveryRow }> {
  await sleep(3000);
  const exited = new Promise((r) => controller.child.once("exit", r));
  const killedAt = Date.now();
  controller.child.kill("SIGKILL");
  await exited;
  const restarted = start(serveArgs, serveEnv);
  let listeningS: number;
  let served: Awaited<ReturnType<Simulator["awaitServed"]>>;
  let controllerCpuS: number;
  try {
    await boost(restarted.child.pid!);
    await waitFor("the restarted controller", () => accepts(port), 60_000, restarted);
    listeningS = (Date.now() - killedAt) / 1000;
    served = await sim.awaitServed(killedAt, 60_000);
    // read at once: the restarted process's CPU until every device was served, start-up included
    controllerCpuS = cpuSeconds(restarted.child.pid!);
  } catch (err) {
    // the caller only stops the controller it gets back
    await stop(restarted);
    throw err;
  }
  const servedS = (served.at - killedAt) / 1000;
  if (served.missing > 0)
    log.warn({ missing: served.missing, stuck: served.stuck }, "scale: devices not served again");
  return {
    controller: restarted,
    row: {
      devices: count,
      backend: backendName(backend),
      listeningS,
      servedS,
      controllerCpuS,
      missing: served.missing,
      unchanged: served.unchangedFirst,
      met: served.missing === 0 && servedS <= RECOVERY_TARGET_S,
    },
  };
}

const f1 = (n: number) => n.toFixed(1);
const yes = (b: boolean) => (b ? "yes" : "**no**");

/** The report's controller scale tables. */
export function renderScale(r: ScaleResults): string {
  const lines = [
    "## Controller scale (simulated devices over mTLS: poll/5 s, status/10 s, a websocket each)",
    "",
    `One controller (bundled \`galette\`, node ${process.version}) and simulator processes on the same machine. Target: device-poll p99 < ${SCALE_P99_TARGET_MS} ms.`,
    "",
    "| devices | database | poll p50 (ms) | poll p99 (ms) | status p99 (ms) | failed requests | ws open | controller CPU (% core) | controller RSS (MB) | controller loop delay p99 / max (ms) | PostgreSQL CPU (% core) | simulator processes, CPU (% core) | simulator loop delay p99 / max (ms) | met |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ...r.rows.map(
      (x) =>
        `| ${x.devices} | ${x.backend} | ${f1(x.poll.p50Ms)} | ${f1(x.poll.p99Ms)} | ${f1(x.status.p99Ms)} | ${
          x.poll.failures + x.status.failures
        } | ${x.wsOpen} | ${f1(x.controllerCpuPct)} | ${f1(x.controllerRssMb)} | ${f1(x.controllerLoopP99Ms)} / ${f1(
          x.controllerLoopMaxMs,
        )} | ${x.databaseCpuPct === undefined ? "–" : f1(x.databaseCpuPct)} | ${x.simulatorProcesses}, ${f1(x.simulatorCpuPct)} | ${f1(x.simulatorLoopP99Ms)} / ${f1(
          x.simulatorLoopMaxMs,
        )} | ${yes(x.met)} |`,
    ),
    ...r.skipped.map((x) => `| ${x.devices} | | not measured: ${x.reason} | | | | | | | | | | | |`),
    "",
    ...r.rows
      .filter((x) => Object.keys(x.failureReasons).length > 0)
      .map(
        (x) =>
          `Failed requests at ${x.devices} devices (${x.backend}): ${Object.entries(x.failureReasons)
            .sort((a, b) => b[1] - a[1])
            .map(([reason, n]) => `${reason} ×${n}`)
            .join(", ")}.`,
      ),
    `Largest fleet meeting the target: ${(["SQLite", "PostgreSQL"] as const)
      .filter((b) => r.rows.some((x) => x.backend === b))
      .map(
        (b) => `${(b === "SQLite" ? r.largestMet : r.largestMetPostgres) ?? "none of those measured"} (${b})`,
      )
      .join(", ")}.`,
    "",
  ];
  if (r.push)
    lines.push(
      "| event | devices | database | time (s) | devices missed | poll p99 during it (ms) | target | met |",
      "| --- | ---: | --- | ---: | ---: | ---: | --- | --- |",
      `| push (assign to every device; artifacts fetched) | ${r.push.devices} | ${r.push.backend} | ${f1(
        r.push.seconds,
      )} | ${r.push.missing} | ${f1(r.push.poll.p99Ms)} | poll p99 < ${SCALE_P99_TARGET_MS} ms | ${yes(r.push.met)} |`,
    );
  if (r.recovery)
    lines.push(
      `| kill -9 + restart → every device served (listening after ${f1(r.recovery.listeningS)} s; controller CPU by then ${f1(
        r.recovery.controllerCpuS,
      )} s; ${r.recovery.unchanged} first answers "unchanged") | ${r.recovery.devices} | ${r.recovery.backend} | ${f1(r.recovery.servedS)} | ${
        r.recovery.missing
      } | | ≤ ${RECOVERY_TARGET_S} s | ${yes(r.recovery.met)} |`,
    );
  if (r.push || r.recovery) lines.push("");
  return lines.join("\n");
}

/**
 * Parses BENCH_SCALE_DEVICES=1000,5000, BENCH_SCALE_DATABASES=sqlite,postgres,
 * BENCH_SCALE_EVENTS=0 and BENCH_SCALE_SIM_DEVICES=2500 (devices per simulator process).
 */
export function scaleOptionsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<ScaleOptions, "counts" | "backends" | "events" | "simDevicesPerProcess"> {
  const out: Pick<ScaleOptions, "counts" | "backends" | "events" | "simDevicesPerProcess"> = {};
  if (env.BENCH_SCALE_SIM_DEVICES) {
    const n = Number(env.BENCH_SCALE_SIM_DEVICES);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(
        `BENCH_SCALE_SIM_DEVICES: devices per simulator process, got ${env.BENCH_SCALE_SIM_DEVICES}`,
      );
    out.simDevicesPerProcess = n;
  }
  // BENCH_SCALE_EVENTS=0: steady state only (e.g. for a profile of it)
  if (env.BENCH_SCALE_EVENTS === "0") out.events = false;
  if (env.BENCH_SCALE_DEVICES) {
    const counts = env.BENCH_SCALE_DEVICES.split(",").map((s) => Number(s.trim()));
    if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 50_000))
      throw new Error(`BENCH_SCALE_DEVICES: comma-separated counts 1..50000, got ${env.BENCH_SCALE_DEVICES}`);
    out.counts = counts;
  }
  if (env.BENCH_SCALE_DATABASES) {
    const backends = env.BENCH_SCALE_DATABASES.split(",").map((s) => s.trim());
    const bad = backends.filter((b) => b !== "sqlite" && b !== "postgres");
    if (bad.length > 0 || backends.length === 0)
      throw new Error(`BENCH_SCALE_DATABASES: sqlite and/or postgres, got ${env.BENCH_SCALE_DATABASES}`);
    out.backends = backends as ScaleBackend[];
  }
  return out;
}

/**
 * The scale part of `make bench` (and QUICK): runs unless BENCH_ONLY excludes it, prints
 * the tables and appends them to the report. False when it could not be measured.
 */
export async function runScaleSection(reportPath: string | undefined): Promise<boolean> {
  const only = process.env.BENCH_ONLY?.split(",").filter(Boolean);
  if (only && !only.some((o) => "controller-scale".includes(o))) return true;
  const log = createLogger("bench");
  const plan = makePlan(process.env);
  try {
    const results = await runScale({
      quick: plan.quick,
      boost: plan.boost,
      log,
      ...scaleOptionsFromEnv(process.env),
    });
    const table = renderScale(results);
    process.stdout.write(`${table}\n`);
    if (reportPath) writeFileSync(reportPath, `\n${table}`, { flag: "a" });
    return true;
  } catch (err) {
    process.stderr.write(
      `bench: controller scale failed: ${(err as Error).message} (controller log: ${controllerLog})\n`,
    );
    return false;
  }
}
