/**
 * Footprint: memory and CPU of what devices and controllers run — the bundled executables
 * (apps/sbc-agent/dist/galette-agent.mjs, apps/controller/dist/galette.mjs) on this
 * machine's node, as the packages run them.
 *
 * Agent: RSS (the agent plus any worker processes it started) and CPU while idle, with no
 * chain, with an XDP-only chain (macswap) and with the security chain at 1 and 2 userland
 * workers; the time from its start to its first poll of the controller. Controller: RSS
 * idle and while N simulated devices (the agent's own DeviceClient: mTLS polls, status
 * reports and a notification socket each) talk to it.
 *
 * The agent runs with the V8 flags its launchers use (apps/sbc-agent/node-flags), on this
 * machine's node or on BENCH_AGENT_NODE (e.g. the packaged runtime: make packages caches it
 * under /var/cache/galette/packaging/node). Beside RSS, the rows give PSS: a page shared
 * with other processes counts by its share (the node binary's pages when several node
 * processes run; the UMEM the agent and its worker process both map).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { DataDir, OperatorClient, writeDeviceBundle } from "@galette/controller";
import { createLogger, type Logger } from "@galette/log";
import { hostTarget } from "@galette/nf-build";
import { DeviceClient, loadAgentConfig } from "@galette/sbc-agent";
import { attachXdpPass } from "@galette/testkit/frames";
import { createVethPair, type VethPair } from "@galette/testkit/netns";
import { repoRoot } from "./galette";
import { makePlan } from "./plan";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;
const TICKS_PER_S = 100; // USER_HZ on Linux

export const galetteBundle = join(repoRoot, "apps/controller/dist/galette.mjs");
export const agentBundle = join(repoRoot, "apps/sbc-agent/dist/galette-agent.mjs");

/** An operator token named "bench" with `scopes` (comma-separated), made by `cli` on the controller's data dir. */
export async function createBenchToken(cli: string, data: string, scopes: string): Promise<string> {
  const args = ["token", "create", "--data", data, "--name", "bench", "--scopes", scopes];
  return (await run(process.execPath, [cli, ...args], { cwd: repoRoot })).stdout.trim();
}

/** The V8 flags every launcher of the agent passes to node (dev, package, systemd). */
export function agentNodeFlags(): string[] {
  return readFileSync(join(repoRoot, "apps/sbc-agent/node-flags"), "utf8").split(/\s+/).filter(Boolean);
}

export interface FootprintRow {
  what: string;
  /** resident memory, MB (mean over the window) */
  rssMb?: number;
  /** proportional set size, MB (mean over the window): shared pages counted by share */
  pssMb?: number;
  /** of rssMb: the processes below the root (the agent's NF workers) */
  childRssMb?: number;
  /** CPU over the window, % of one core */
  cpuPct?: number;
  /** for timings */
  seconds?: number;
  /** e.g. "≤ 60 MB" */
  target?: string;
  met?: boolean;
}

export interface FootprintOptions {
  quick: boolean;
  log: Logger;
  /** simulated devices for the controller row (default: 1000, QUICK 50) */
  devices?: number;
  /** the node that runs the agent (default: this one) */
  agentNode?: string;
}

/** Every process below and including `pid`. */
async function processTree(pid: number): Promise<number[]> {
  const kids = await run("ps", ["-o", "pid=", "--ppid", String(pid)]).then(
    (r) =>
      r.stdout
        .split("\n")
        .map(Number)
        .filter((n) => n > 0),
    () => [] as number[], // ps exits 1 when there are none
  );
  const below = await Promise.all(kids.map(processTree));
  return [pid, ...below.flat()];
}

/** A /proc file of `pid`, or "" once the process is gone (a tree's processes come and go). */
function procFile(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return "";
    throw err;
  }
}

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(procFile(pid, "status"));
  return m ? Number(m[1]) * 1024 : 0;
}

function pssBytes(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(procFile(pid, "smaps_rollup"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** utime + stime of `pid`, undefined once it is gone */
function cpuTicks(pid: number): number | undefined {
  const stat = procFile(pid, "stat");
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Mean RSS and PSS of the process tree and its CPU share over `ms`, sampled every 250 ms. */
export async function measure(
  pid: number,
  ms: number,
): Promise<{ rssMb: number; pssMb: number; childRssMb: number; cpuPct: number }> {
  // CPU per process: from its ticks at the start (0 for one that came during the window) to
  // the last ones read (a process that left counts until its last sample)
  const firstTicks = new Map<number, number>();
  const lastTicks = new Map<number, number>();
  const readTicks = (tree: number[], initial: boolean) => {
    for (const p of tree) {
      const t = cpuTicks(p);
      if (t === undefined) continue;
      if (!firstTicks.has(p)) firstTicks.set(p, initial ? t : 0);
      lastTicks.set(p, t);
    }
  };
  readTicks(await processTree(pid), true);
  const start = Date.now();
  const samples: number[] = [];
  const pss: number[] = [];
  const children: number[] = [];
  while (Date.now() - start < ms) {
    const tree = await processTree(pid);
    readTicks(tree, false);
    samples.push(tree.reduce((s, p) => s + rssBytes(p), 0));
    pss.push(tree.reduce((s, p) => s + pssBytes(p), 0));
    children.push(tree.slice(1).reduce((s, p) => s + rssBytes(p), 0));
    await sleep(250);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length / MB;
  readTicks(await processTree(pid), false);
  let ticks = 0;
  for (const [p, last] of lastTicks) ticks += last - (firstTicks.get(p) ?? 0);
  const seconds = (Date.now() - start) / 1000;
  return {
    rssMb: mean(samples),
    pssMb: mean(pss),
    childRssMb: mean(children),
    cpuPct: ((ticks / TICKS_PER_S) * 100) / seconds,
  };
}

export interface Proc {
  child: ChildProcess;
  output(): string;
}

export function start(args: string[], env: NodeJS.ProcessEnv = {}, node = process.execPath): Proc {
  const child = spawn(node, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GALETTE_LOG_LEVEL: "info", ...env },
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { child, output: () => out };
}

export async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await Promise.race([exited, sleep(10_000)]);
  if (p.child.exitCode === null) p.child.kill("SIGKILL");
}

export async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms: number, p?: Proc) {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (p && p.child.exitCode !== null) throw new Error(`exited before ${what}:\n${p.output().slice(-2000)}`);
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${p ? `:\n${p.output().slice(-2000)}` : ""}`);
    await sleep(100);
  }
}

export async function runFootprint(opts: FootprintOptions): Promise<FootprintRow[]> {
  const log = opts.log;
  // QUICK is a smoke run: every row, in short windows after short pauses
  const windowMs = opts.quick ? 1000 : 15_000;
  const settle = (fullMs: number) => sleep(opts.quick ? 250 : fullMs);
  const agentNode = [opts.agentNode ?? process.execPath, ...agentNodeFlags()] as const;
  const simulated = opts.devices ?? (opts.quick ? 50 : 1000);
  const work = mkdtempSync(join(tmpdir(), "galette-footprint-"));
  // Own copies: a rebuild in the tree (tsup empties dist/ first) must not pull a bundle from
  // under the run; each bundle runs on its own, with its files beside it.
  const ownCopy = (bundle: string, name: string) => {
    const dir = join(work, "bundles", name);
    if (existsSync(bundle)) cpSync(dirname(bundle), dir, { recursive: true });
    const copy = join(dir, basename(bundle));
    if (existsSync(copy)) return copy;
    rmSync(work, { recursive: true, force: true });
    throw new Error(`footprint: ${bundle} is missing (make setup builds the bundles; a rebuild running?)`);
  };
  const galetteBin = ownCopy(galetteBundle, "controller");
  const agentBin = ownCopy(agentBundle, "agent");
  const data = join(work, "controller");
  const rows: FootprintRow[] = [];
  let controller: Proc | undefined;
  let agent: Proc | undefined;
  let veth: VethPair | undefined;
  const clients: DeviceClient[] = [];
  const sockets: Array<{ close(): void }> = [];
  const timers: NodeJS.Timeout[] = [];
  let operatorEnv: Record<string, string> = {};
  const galette = (...args: string[]) =>
    run(process.execPath, [galetteBin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...operatorEnv },
    });
  try {
    await galette("pki", "init", "--data", data);
    const keys = join(work, "release");
    const bundles = Array.from({ length: simulated }, (_, i) => join(work, "sim", String(i)));
    // Enrolled before the controller starts (in-process: a CLI process per device is slow),
    // a few at a time: the key pairs are generated off the event loop.
    const enrolSimulated = async () => {
      const dir = DataDir.open(data);
      try {
        let next = 0;
        const enrolNext = async (): Promise<void> => {
          for (let i = next++; i < simulated; i = next++) {
            const enrolled = await dir.enrolDeviceAsync(`sim-${i}`, { role: "sim" }, "https://127.0.0.1:1");
            writeDeviceBundle(bundles[i]!, enrolled);
          }
        };
        await Promise.all([enrolNext(), enrolNext(), enrolNext(), enrolNext()]);
      } finally {
        await dir.close();
      }
    };
    // Devices load only what a pinned release key signed (made meanwhile: it needs no controller).
    await Promise.all([enrolSimulated(), galette("release-key", "init", "--out", keys)]);
    log.info({ simulated }, "footprint: simulated devices enrolled");

    controller = start([galetteBin, "controller", "serve", "--data", data, "--listen", "127.0.0.1:0"], {
      GALETTE_NF_TARGETS: `bpf,${hostTarget()}`,
    });
    await waitFor("the controller", () => existsSync(join(data, "controller.json")), 60_000, controller);
    const url = (JSON.parse(readFileSync(join(data, "controller.json"), "utf8")) as { url: string }).url;
    const bundle = join(work, "device");
    // the operator token and the device's enrolment: independent, both on the data dir
    const [token] = await Promise.all([
      createBenchToken(galetteBin, data, "admin,publish,deploy,read"),
      galette(
        "device",
        "enroll",
        "fp-device",
        "--labels",
        "role=footprint",
        "--out",
        bundle,
        "--data",
        data,
        "--controller-url",
        url,
        "--release-key",
        join(keys, "release.pub"),
      ),
    ]);
    operatorEnv = { GALETTE_URL: url, GALETTE_TOKEN: token, GALETTE_CA: join(data, "ca.crt") };
    const operator = new OperatorClient({ url, token, caFile: join(data, "ca.crt") });
    await settle(1000);
    rows.push({ what: "controller, idle", ...(await measure(controller.child.pid!, windowMs)) });

    // Both chains published, released and pushed before the agent starts (no window runs
    // meanwhile): the NFs at once, then their releases at once, then both chains.
    const releaseKey = join(keys, "release.key");
    const nfs = ["macswap", "access-control", "weak-classifier", "dpi"];
    await galette("nf", "publish", ...nfs.map((n) => `nf-examples/${n}`));
    await Promise.all(
      nfs.map((n) => galette("nf", "release", n, "--key", releaseKey, "--trust-controller-build")),
    );
    await Promise.all(
      ["chains/macswap.toml", "chains/security.toml"].map((f) =>
        galette("chain", "push", f, "--key", releaseKey),
      ),
    );

    // The device: the agent on the B side of a veth pair (A answers XDP_TX with XDP_PASS).
    veth = await createVethPair("fp");
    await attachXdpPass(veth.nsA, veth.ifA);
    const configFile = join(bundle, "agent.json");
    const writeConfig = (workerThreads: number) => {
      const c = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
      Object.assign(c, {
        interface: veth!.ifB,
        netns: veth!.nsB,
        dataDir: "data",
        stateDir: "state",
        workerThreads,
      });
      writeFileSync(configFile, `${JSON.stringify(c, null, 2)}\n`);
    };
    const startAgent = async () => {
      const t0 = Date.now();
      const p = start([...agentNode.slice(1), agentBin, "--config", configFile], {}, agentNode[0]);
      await waitFor("the agent's first poll", () => p.output().includes("assignment received"), 60_000, p);
      return { p, firstPollS: (Date.now() - t0) / 1000 };
    };
    // asked over the operator API (a CLI process per check would add its start-up to each wait)
    const converged = async (chain: string, version?: number) => {
      const d = await operator.getDevice("fp-device");
      return (
        d.state === "converged" &&
        d.installed?.chain === chain &&
        (!version || d.installed.version >= version)
      );
    };

    writeConfig(1);
    const first = await startAgent();
    agent = first.p;
    rows.push({
      what: "agent: start → first poll",
      seconds: first.firstPollS,
      target: "≤ 2 s",
      met: first.firstPollS <= 2,
    });
    await settle(1000);
    const idle = await measure(agent.child.pid!, windowMs);
    rows.push({ what: "agent, idle, no chain", ...idle, target: "≤ 60 MB", met: idle.rssMb <= 60 });

    await galette("chain", "assign", "macswap", "--devices", "fp-device");
    await waitFor("macswap to converge", () => converged("macswap"), 120_000, agent);
    await settle(1000);
    const xdp = await measure(agent.child.pid!, windowMs);
    rows.push({ what: "agent, XDP-only chain (macswap)", ...xdp, target: "≤ 60 MB", met: xdp.rssMb <= 60 });

    await galette("chain", "assign", "security", "--devices", "fp-device");
    await waitFor("security to converge", () => converged("security"), 180_000, agent);
    await settle(1000);
    rows.push({ what: "agent, security chain, 1 worker", ...(await measure(agent.child.pid!, windowMs)) });

    await stop(agent);
    writeConfig(2);
    agent = (await startAgent()).p;
    await waitFor("security to converge with 2 workers", () => converged("security"), 180_000, agent);
    await settle(2000);
    const two = await measure(agent.child.pid!, windowMs);
    rows.push({
      what: "agent, security chain, 2 workers",
      ...two,
      target: "≤ 100 MB",
      met: two.rssMb <= 100,
    });

    // Simulated devices: poll every 10 s (spread), report status, hold a notification socket.
    // QUICK's 50 poll every second, so its short window sees polls and all have polled in 1 s.
    for (const b of bundles) {
      const c = loadAgentConfig(join(b, "agent.json"), { controllerUrl: url, interface: "lo" });
      const client = new DeviceClient(url, c);
      clients.push(client);
      sockets.push(
        client.openNotifications({
          onOpen: () => undefined,
          onNotification: () => undefined,
          onInvalid: () => undefined,
          onClose: () => undefined,
        }),
      );
    }
    let polls = 0;
    let failures = 0;
    const poll = (client: DeviceClient) =>
      client.getAssignment(undefined, "x86_64").then(
        () => {
          polls++;
        },
        () => {
          failures++;
        },
      );
    const pollMs = opts.quick ? 1000 : 10_000;
    clients.forEach((client, i) => {
      timers.push(
        setTimeout(
          () => {
            void poll(client);
            timers.push(setInterval(() => void poll(client), pollMs));
          },
          (i * pollMs) / clients.length,
        ),
      );
    });
    await waitFor(
      `${simulated} simulated devices to poll`,
      () => polls + failures >= simulated,
      120_000,
      controller,
    );
    const busy = await measure(controller.child.pid!, windowMs);
    rows.push({
      what: `controller, ${simulated} simulated devices (poll/${pollMs / 1000} s + ws each)`,
      ...busy,
    });
    if (failures > 0) log.warn({ failures }, "footprint: some simulated polls failed");
    return rows;
  } finally {
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.close();
    for (const c of clients) c.close();
    await stop(agent);
    if (veth) {
      // the agent leaves its chain pinned on exit; the bench removes it
      await run(agentNode[0], [
        ...agentNode.slice(1),
        agentBin,
        "--config",
        join(work, "device", "agent.json"),
        "--uninstall",
      ]).catch((err: unknown) => log.warn({ err }, "footprint: agent --uninstall failed"));
      await veth.cleanup();
    }
    await stop(controller);
    rmSync(work, { recursive: true, force: true });
  }
}

/** The report's footprint table. */
export function renderFootprint(
  rows: FootprintRow[],
  agent = { node: process.version, flags: agentNodeFlags() },
): string {
  const fmt = (n: number | undefined, digits: number) => (n === undefined ? "" : n.toFixed(digits));
  const lines = [
    `## Footprint (bundled executables, ${process.arch}; controller on node ${process.version}, agent on node ${agent.node} ${agent.flags.join(" ")})`,
    "",
    "| what | RSS (MB) | of it, workers (MB) | PSS (MB) | CPU (% of a core) | time (s) | target (RSS) | met |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...rows.map(
      (r) =>
        `| ${r.what} | ${fmt(r.rssMb, 1)} | ${r.childRssMb ? fmt(r.childRssMb, 1) : ""} | ${fmt(r.pssMb, 1)} | ${fmt(r.cpuPct, 2)} | ${fmt(r.seconds, 2)} | ${r.target ?? ""} | ${
          r.met === undefined ? "" : r.met ? "yes" : "**no**"
        } |`,
    ),
    "",
  ];
  return lines.join("\n");
}

/**
 * The footprint part of `make bench` (and QUICK): runs unless BENCH_ONLY excludes it,
 * prints the rows and appends them to the report. False when it could not be measured.
 */
export async function runFootprintSection(reportPath: string): Promise<boolean> {
  const only = process.env.BENCH_ONLY?.split(",").filter(Boolean);
  if (only && !only.some((o) => "footprint".includes(o))) return true;
  const log = createLogger("bench");
  try {
    const agentNode = process.env.BENCH_AGENT_NODE || process.execPath;
    const node = (await run(agentNode, ["--version"])).stdout.trim();
    const rows = await runFootprint({ quick: makePlan(process.env).quick, log, agentNode });
    const table = renderFootprint(rows, { node, flags: agentNodeFlags() });
    process.stdout.write(`${table}\n`);
    appendFileSync(reportPath, `\n${table}`);
    return true;
  } catch (err) {
    process.stderr.write(`bench: footprint failed: ${(err as Error).message}\n`);
    return false;
  }
}
