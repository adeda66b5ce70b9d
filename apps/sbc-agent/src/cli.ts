#!/usr/bin/env node
/**
 * galette-agent --config FILE [--uninstall]
 * Runs until SIGINT/SIGTERM; the chain stays installed on exit (pins keep XDP forwarding,
 * the next start adopts it). `--uninstall` removes the chain from the interface and exits.
 */
import { Dataplane } from "@galette/installer";
import { createLogger } from "@galette/log";
import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };
import { GaletteAgent } from "./agent";
import { loadAgentConfig } from "./config";

const program = new Command("galette-agent")
  .description("Keeps this device's assigned Galette chain installed")
  .version(pkg.version)
  .requiredOption("-c, --config <file>", "agent config (agent.json of the device bundle)")
  .option("--uninstall", "remove the installed chain from the interface, then exit (stop the agent first)")
  .showHelpAfterError();

async function main(): Promise<void> {
  program.parse();
  const opts = program.opts<{ config: string; uninstall?: boolean }>();
  // JSON lines on stderr (journald), one-liners when a person watches a terminal.
  const log = createLogger("galette-agent");
  const config = loadAgentConfig(opts.config);
  if (opts.uninstall) {
    const target = {
      iface: config.interface,
      ...(config.ports ? { peer: config.ports[1] } : {}),
      ...(config.netns ? { netns: config.netns } : {}),
    };
    const removed = Dataplane.remove(target, { stateDir: config.stateDir, logger: log });
    log.info(
      { iface: config.interface, netns: config.netns, removed },
      removed ? "chain uninstalled" : "nothing installed",
    );
    return;
  }
  const agent = new GaletteAgent(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    agent
      .stop()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        log.error({ err }, "stopping failed");
        process.exit(1);
      });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  await agent.start();
}

main().catch((err: unknown) => {
  process.stderr.write(`galette-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
