/**
 * `galette dataplane up|down`: install a chain on an interface of this machine (builds the
 * NFs, installs XDP + AF_XDP workers, prints live per-NF counters until Ctrl-C/SIGTERM,
 * then uninstalls), and remove an installation (also after a crash).
 */
import {
  Dataplane,
  DEFAULT_STATE_DIR,
  type InterfaceTarget,
  type NfCounters,
  parseMapSet,
  planInstallation,
  probeCapabilities,
  probeRefusals,
  readRecord,
  targetPorts,
  xdpModeFor,
} from "@galette/installer";
import { createLogger } from "@galette/log";
import { buildChain, loadChainOrThrow } from "@galette/nf-build";
import type { Command } from "commander";
import { onShutdown, type Shutdown } from "../signals";

interface TargetFlags {
  iface?: string;
  ports?: string;
  netns?: string;
}

interface UpFlags extends TargetFlags {
  workers: string;
  mode: string;
  skb?: boolean;
  xdpMode: string;
  stateDir: string;
  mapSet?: string[];
  interval: string;
  duration?: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

const logger = () => createLogger("galette-dataplane");

/**
 * `--iface X` (one port: `tx` reflects) or `--ports A,B` (two ports: `tx` leaves through the
 * other one); exactly one of them.
 */
export function targetFromFlags(flags: TargetFlags): InterfaceTarget {
  const netns = flags.netns ? { netns: flags.netns } : {};
  if (flags.iface !== undefined && flags.ports !== undefined)
    throw new Error("give either --iface NAME (one port) or --ports A,B (two ports), not both");
  if (flags.iface !== undefined) return { iface: flags.iface, ...netns };
  if (flags.ports === undefined)
    throw new Error("which interface? give --iface NAME (one port) or --ports A,B (two ports)");
  const ports = flags.ports.split(",").map((p) => p.trim());
  if (ports.length !== 2 || ports.some((p) => p === ""))
    throw new Error(`--ports takes two interface names separated by a comma, got "${flags.ports}"`);
  if (ports[0] === ports[1]) throw new Error(`--ports needs two different interfaces, got "${flags.ports}"`);
  return { iface: ports[0]!, peer: ports[1]!, ...netns };
}

const label = (t: InterfaceTarget): string => (t.peer ? `${t.iface},${t.peer}` : t.iface);

function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

export function formatCounters(
  chain: string,
  iface: string,
  counters: NfCounters[],
  workers?: string,
): string {
  const width = Math.max(...counters.map((c) => c.name.length), 4);
  const lines = [
    `[${new Date().toISOString().slice(11, 19)}] chain "${chain}" on ${iface}${workers ? `  ${workers}` : ""}`,
  ];
  for (const c of counters) {
    const variants = Object.entries(c.variants)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    lines.push(`  ${c.name.padEnd(width)}  #${String(c.id).padEnd(3)} ${c.placement.padEnd(12)} ${variants}`);
  }
  return lines.join("\n");
}

async function up(chainFile: string, flags: UpFlags): Promise<void> {
  const log = logger();
  const target = targetFromFlags(flags);
  const workers = {
    count: positiveInt("--workers", flags.workers),
    mode: flags.mode as "busy-poll" | "blocking",
  };
  if (workers.mode !== "busy-poll" && workers.mode !== "blocking")
    throw new Error(`--mode must be busy-poll or blocking, got "${flags.mode}"`);
  const intervalMs = positiveInt("--interval", flags.interval) * 1000;
  const durationMs = flags.duration ? positiveInt("--duration", flags.duration) * 1000 : undefined;
  const mapSets = (flags.mapSet ?? []).map(parseMapSet);
  if (!["auto", "native", "generic"].includes(flags.xdpMode))
    throw new Error(`--xdp-mode must be auto, native or generic, got "${flags.xdpMode}"`);
  if (flags.skb && flags.xdpMode === "native")
    throw new Error("--skb means --xdp-mode generic; it contradicts --xdp-mode native");
  const requestedMode = flags.skb ? "generic" : flags.xdpMode;

  // From here on a signal stops the command cleanly: before anything is installed it just
  // exits; during the installation it uninstalls once the installation is complete.
  let wake: (() => void) | undefined;
  let installing = false;
  const shutdown = onShutdown((why) => {
    if (!installing) {
      log.info({ why }, "stopped before installing anything");
      process.exit(why === "SIGINT" ? 130 : 143);
    }
    wake?.();
  });
  try {
    const chain = await loadChainOrThrow(chainFile);
    log.info({ chain: chain.name, nfs: chain.functions.length }, "building NFs");
    const built = await buildChain(chain);
    // What this kernel and these ports can run, as the agent checks it on a device.
    const ports = targetPorts(target);
    const probe = probeCapabilities({ interfaces: ports, ...(target.netns ? { netns: target.netns } : {}) });
    const refusals = probeRefusals(probe, built.plan, ports);
    if (refusals.length > 0)
      throw new Error(
        `chain "${built.plan.chain}" cannot run on ${label(target)} here:\n${refusals.map((r) => `  - ${r}`).join("\n")}`,
      );
    const mode = requestedMode === "auto" ? xdpModeFor(probe, ports) : requestedMode;
    log.info(
      { ports, xdpMode: mode, requested: requestedMode, kernel: probe.kernelRelease },
      "capabilities probed",
    );
    const options = { stateDir: flags.stateDir, workers, skb: mode === "generic", logger: log };
    installing = true;
    let dp: Dataplane;
    if (readRecord(target, flags.stateDir)) {
      // A crashed `up` left its chain forwarding: take it over, then move it to this chain.
      dp = await Dataplane.adopt(target, options);
      await dp.reconfigure(dp.replan(built.plan, built.artifacts));
    } else {
      dp = await Dataplane.install(planInstallation(built.plan, built.artifacts, target), options);
    }
    try {
      for (const s of mapSets) dp.nfMap(s.nf, s.map).update(s.key, s.value);
      await runUntilStopped(dp, label(target), intervalMs, durationMs, shutdown, (w) => {
        wake = w;
      });
    } finally {
      dp.uninstall();
      log.info({ ports: label(target) }, "chain uninstalled");
    }
  } finally {
    shutdown.dispose();
  }
}

/** Prints counters every interval until a signal (or the duration) says stop. */
async function runUntilStopped(
  dp: Dataplane,
  iface: string,
  intervalMs: number,
  durationMs: number | undefined,
  shutdown: Shutdown,
  setWake: (wake: () => void) => void,
): Promise<void> {
  const print = () => {
    const ws = dp.workerStats();
    const h = dp.workerHealth();
    const restarts = h?.crashes ? ` worker-crashes=${h.crashes} restarts=${h.restarts}` : "";
    const w = ws
      ? `workers rx=${ws.totals.rx} tx=${ws.totals.tx} dropped=${ws.totals.dropped}${restarts}`
      : undefined;
    process.stdout.write(`${formatCounters(dp.spec.chain, iface, dp.counters(), w)}\n`);
  };
  await new Promise<void>((resolve) => {
    const timer = setInterval(print, intervalMs);
    const duration = durationMs ? setTimeout(() => done("duration elapsed"), durationMs) : undefined;
    const done = (why: string) => {
      clearInterval(timer);
      if (duration) clearTimeout(duration);
      print();
      logger().info({ why }, "stopping");
      resolve();
    };
    if (shutdown.requested) done(shutdown.requested);
    else setWake(() => done(shutdown.requested ?? "signal"));
  });
}

export function registerDataplaneCommands(program: Command): void {
  const dataplane = program
    .command("dataplane")
    .description("Install chains on this machine's interfaces (XDP + AF_XDP workers)");

  dataplane
    .command("up")
    .description(
      "Build a chain's NFs, install it on an interface or a pair of ports, print per-NF counters until Ctrl-C, then uninstall",
    )
    .argument("<chain>", "chain TOML file")
    .option("--iface <name>", "one interface to install on (tx reflects)")
    .option("--ports <a,b>", "two interfaces to install on: tx leaves through the other port")
    .option("--netns <name>", "network namespace of the interface (under /run/netns)")
    .option("--workers <n>", "AF_XDP worker threads", "2")
    .option("--mode <mode>", "worker mode: blocking (poll) or busy-poll", "blocking")
    .option(
      "--xdp-mode <mode>",
      "auto (driver mode where every port takes it, else generic: probed), native or generic",
      "auto",
    )
    .option("--skb", "generic (skb) XDP, the same as --xdp-mode generic")
    .option("--state-dir <dir>", "where installation records are kept", DEFAULT_STATE_DIR)
    .option("--map-set <NF.MAP=KEYHEX:VALUEHEX>", "set a map entry after installing (repeatable)", collect)
    .option("--interval <s>", "seconds between counter prints", "1")
    .option("--duration <s>", "uninstall and exit after this many seconds (default: run until a signal)")
    .action(async (chainFile: string, flags: UpFlags) => {
      await up(chainFile, flags);
    });

  dataplane
    .command("down")
    .description(
      "Remove the chain installed on an interface or pair of ports: detach, unpin, forget (also after a crash)",
    )
    .option("--iface <name>", "interface")
    .option("--ports <a,b>", "the two ports of a two-port installation")
    .option("--netns <name>", "network namespace of the interface (under /run/netns)")
    .option("--state-dir <dir>", "where installation records are kept", DEFAULT_STATE_DIR)
    .action((flags: TargetFlags & { stateDir: string }) => {
      const target = targetFromFlags(flags);
      const removed = Dataplane.remove(target, { stateDir: flags.stateDir, logger: logger() });
      process.stdout.write(
        removed
          ? `removed the installation on ${label(target)}\n`
          : `nothing installed on ${label(target)}\n`,
      );
    });
}
