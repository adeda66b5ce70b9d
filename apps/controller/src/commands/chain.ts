import type { Command } from "commander";

export function registerChainCommands(_program: Command): void {
  // filled in by the issue that owns the `chain` commands
}
