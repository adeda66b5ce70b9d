import type { Command } from "commander";

export function registerDataplaneCommands(_program: Command): void {
  // filled in by the issue that owns the `dataplane` commands
}
