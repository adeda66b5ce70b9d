/**
 * The agent's Prometheus endpoint (`metricsListen`: GET /metrics, plain HTTP). Every value is
 * read at scrape time from what the agent already holds (the installed chain's counters, the
 * workers' shared stats, the last cost window), so an idle endpoint costs nothing. Loopback
 * only unless `metricsAllowRemote`: the metrics name every NF and its traffic, and there is
 * no authentication.
 */
import { createServer, type Server } from "node:http";
import { isIP } from "node:net";
import { nfXdpTotals } from "@galette/installer";
import type { Logger } from "@galette/log";
import { Counter, Gauge, Registry } from "prom-client";
import type { GaletteAgent as Agent } from "./agent";

/** Parses "host:port" / "[v6]:port"; refuses a non-loopback host unless allowRemote. */
export function parseMetricsListen(listen: string, allowRemote: boolean): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !(port > 0 && port < 65536))
    throw new Error(`metricsListen ${JSON.stringify(listen)}: expected host:port (e.g. 127.0.0.1:9469)`);
  if (!allowRemote && !isLoopback(host))
    throw new Error(
      `metricsListen ${listen}: ${host} is not a loopback address; the metrics endpoint has no authentication (set metricsAllowRemote to serve it beyond this host)`,
    );
  return { host, port };
}

function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.split(".")[0] === "127";
  if (isIP(host) === 6) return host === "::1" || /^::ffff:127\./i.test(host);
  return false;
}

/** A counter whose value is read from elsewhere at scrape time. */
function readCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Array<[Record<string, string>, number]>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) if (v > 0) this.inc(labels, v);
    },
  });
}

function readGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Array<[Record<string, string>, number]>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

/** The registry of an agent's metrics (exported for tests). */
export function agentRegistry(agent: Agent, log: Logger): Registry {
  const registry = new Registry();
  const safe = <T>(what: string, fn: () => T[]): T[] => {
    try {
      return fn();
    } catch (err) {
      log.warn({ err: (err as Error).message, metric: what }, "metric not read");
      return [];
    }
  };
  const counters = () => safe("counters", () => agent.dataplane?.counters() ?? []);
  const nf = (c: { name: string; uuid: string }) => ({ nf: c.name, uuid: c.uuid });

  readGauge(
    registry,
    "galette_agent_info",
    "The agent's version and platform (always 1)",
    ["version", "arch", "kernel"],
    () => {
      const r = agent.statusReport();
      return [[{ version: r.agentVersion, arch: r.arch, kernel: r.kernelVersion }, 1]];
    },
  );
  readGauge(registry, "galette_agent_state", "1 for the agent's current state", ["state"], () => [
    [{ state: agent.state }, 1],
  ]);
  readGauge(
    registry,
    "galette_chain_installed",
    "The installed chain and version (1; absent when none)",
    ["chain", "version"],
    () => {
      const i = agent.installed;
      return i ? [[{ chain: i.chain, version: String(i.version) }, 1]] : [];
    },
  );
  readGauge(registry, "galette_agent_errors", "Errors the agent holds for its status report", [], () => [
    [{}, agent.statusReport().errors.length],
  ]);
  readCounter(
    registry,
    "galette_nf_actions_total",
    "Frames per NF and Action variant (XDP and userland)",
    ["nf", "uuid", "action"],
    () =>
      counters().flatMap((c) =>
        Object.entries(c.variants).map(
          ([action, v]) => [{ ...nf(c), action }, v] as [Record<string, string>, number],
        ),
      ),
  );
  readCounter(registry, "galette_nf_packets_total", "Frames each NF handled", ["nf", "uuid"], () =>
    counters().map((c) => [nf(c), c.total]),
  );
  readCounter(
    registry,
    "galette_nf_worker_crashes_total",
    "Times the NF worker process died running this NF",
    ["nf", "uuid"],
    () => counters().map((c) => [nf(c), c.workerCrashes]),
  );
  const instances = () => {
    const dp = agent.dataplane;
    const pool = safe("worker stats", () => (dp?.workerStats() ? [dp.workerStats()!] : []))[0];
    return (dp?.spec.instances ?? []).flatMap((i) => {
      const s = pool?.instances.find((p) => p.id === i.id);
      return s ? [{ labels: { nf: i.name, uuid: i.uuid }, s }] : [];
    });
  };
  readCounter(
    registry,
    "galette_nf_userland_calls_total",
    "Calls of each NF's native (userland) build",
    ["nf", "uuid"],
    () => instances().map(({ labels, s }) => [labels, s.calls]),
  );
  readCounter(
    registry,
    "galette_nf_userland_seconds_total",
    "Time inside each NF's native build",
    ["nf", "uuid"],
    () => instances().map(({ labels, s }) => [labels, s.nanoseconds / 1e9]),
  );
  readCounter(
    registry,
    "galette_chain_xdp_runs_total",
    "Runs of the chain's root XDP program counted by kernel bpf_stats (only during cost windows)",
    [],
    () => {
      const dp = agent.dataplane;
      return dp
        ? safe("root stats", () => [[{}, dp.rootRunStats().runCount] as [Record<string, string>, number]])
        : [];
    },
  );
  readCounter(
    registry,
    "galette_chain_xdp_seconds_total",
    "Time in the chain's XDP path (root program and every NF it tail-called) counted by kernel bpf_stats (only during cost windows)",
    [],
    () => {
      const dp = agent.dataplane;
      return dp
        ? safe("root stats", () => [
            [{}, dp.rootRunStats().runTimeNs / 1e9] as [Record<string, string>, number],
          ])
        : [];
    },
  );
  readGauge(
    registry,
    "galette_chain_xdp_ns_per_frame",
    "The chain's XDP ns per frame in the last cost window",
    [],
    () => {
      const n = agent.cost?.xdp.nsPerRun;
      return n === undefined ? [] : [[{}, n]];
    },
  );
  readGauge(
    registry,
    "galette_nf_xdp_window_frames",
    "Frames each NF ran on in XDP during the last cost window",
    ["nf", "uuid"],
    () => (agent.cost?.nfs ?? []).map((c) => [{ nf: c.instance ?? "", uuid: c.uuid }, c.xdpRuns]),
  );
  const xdpTotals = () => {
    const dp = agent.dataplane;
    return dp ? safe("per-NF XDP cost", () => nfXdpTotals(dp)) : [];
  };
  readCounter(
    registry,
    "galette_nf_xdp_runs_total",
    "Runs of each NF's XDP program timed by its shim (only during cost windows)",
    ["nf", "uuid"],
    () => xdpTotals().map((t) => [{ nf: t.instance, uuid: t.uuid }, t.runs]),
  );
  readCounter(
    registry,
    "galette_nf_xdp_seconds_total",
    "Time in each NF's XDP program, from its entry to its tail call or verdict (only during cost windows)",
    ["nf", "uuid"],
    () => xdpTotals().map((t) => [{ nf: t.instance, uuid: t.uuid }, t.ns / 1e9]),
  );
  readGauge(
    registry,
    "galette_nf_xdp_ns_per_frame",
    "Each NF's own XDP ns per frame in the last cost window",
    ["nf", "uuid"],
    () =>
      (agent.cost?.nfs ?? []).flatMap((c) =>
        c.xdp?.nsPerRun === undefined
          ? []
          : [[{ nf: c.instance ?? "", uuid: c.uuid }, c.xdp.nsPerRun] as [Record<string, string>, number]],
      ),
  );
  readCounter(registry, "galette_worker_frames_total", "AF_XDP worker frames by outcome", ["outcome"], () => {
    const t = safe("worker stats", () => [agent.dataplane?.workerStats()?.totals]).at(0);
    return t
      ? Object.entries(t).map(([outcome, v]) => [{ outcome }, v] as [Record<string, string>, number])
      : [];
  });
  const health = () => safe("worker health", () => [agent.dataplane?.workerHealth()]).at(0);
  readCounter(
    registry,
    "galette_worker_restarts_total",
    "NF worker processes started after the first",
    [],
    () => {
      const h = health();
      return h ? [[{}, h.restarts]] : [];
    },
  );
  readGauge(registry, "galette_worker_up", "1 when the NF worker process runs the instance table", [], () => {
    const h = health();
    return h ? [[{}, h.state === "running" ? 1 : 0]] : [];
  });
  readCounter(
    registry,
    "galette_worker_socket_rebuilds_total",
    "Times the AF_XDP sockets were replaced after a worker death",
    [],
    () => {
      const h = health();
      return h ? [[{}, h.socketRebuilds]] : [];
    },
  );
  readGauge(
    registry,
    "galette_worker_socket_takeover",
    "1 for how a new worker takes over the sockets after a death (remap or rebuild)",
    ["mode"],
    () => {
      const h = health();
      return h ? [[{ mode: h.socketTakeover }, 1]] : [];
    },
  );
  readCounter(
    registry,
    "galette_worker_frames_lost_total",
    "Frames lost to worker deaths: held by the dead worker (crash) or in replaced sockets (rebuild)",
    ["cause"],
    () => {
      const h = health();
      return h
        ? [
            [{ cause: "crash" }, h.framesLostInCrashes],
            [{ cause: "rebuild" }, h.framesLostInRebuilds],
          ]
        : [];
    },
  );
  return registry;
}

/** Serves GET /metrics on `listen`; resolves once listening. */
export async function startMetricsServer(
  agent: Agent,
  listen: string,
  allowRemote: boolean,
  log: Logger,
): Promise<Server> {
  const { host, port } = parseMetricsListen(listen, allowRemote);
  const registry = agentRegistry(agent, log);
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: Error) => {
        log.error({ err: err.message }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("metrics failed\n");
      },
    );
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new Error(`metricsListen ${listen}: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  log.info({ listen }, "metrics endpoint listening");
  return server;
}
