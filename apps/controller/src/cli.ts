#!/usr/bin/env node
import { Command } from "commander";
import pkg from "../package.json" with { type: "json" };
import { rejectUnknownArguments } from "./cli-args";
import { registerChainCommands } from "./commands/chain";
import { registerControllerCommands } from "./commands/controller";
import { registerDataplaneCommands } from "./commands/dataplane";
import { registerNfCommands } from "./commands/nf";
import { registerPkiCommands } from "./commands/pki";
import { registerReleaseKeyCommands } from "./commands/release";
import { registerRolloutCommands } from "./commands/rollout";
import { registerTraceCommand } from "./commands/trace";
import { crateInterfaceResolver } from "./nf-interfaces";

// Each command group lives in its own module under commands/ and registers itself here.
const program = new Command("galette")
  .description("Galette: chains of XDP/AF_XDP network functions on small Linux devices")
  .version(pkg.version)
  // `galette --version` only before a subcommand: `chain assign --version N` is the subcommand's.
  .enablePositionalOptions()
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: true });

registerChainCommands(program, { resolveInterfaces: crateInterfaceResolver() });
registerNfCommands(program);
registerReleaseKeyCommands(program);
registerDataplaneCommands(program);
registerPkiCommands(program);
registerControllerCommands(program);
registerRolloutCommands(program);
registerTraceCommand(program);

rejectUnknownArguments(program, process.argv.slice(2));
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`galette: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
