import type { Command } from "commander";

export function registerNfCommands(_program: Command): void {
  // filled in by the issue that owns the `nf` commands
}
