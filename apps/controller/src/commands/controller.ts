import type { Command } from "commander";

export function registerControllerCommands(_program: Command): void {
  // filled in by the issue that owns the `controller` commands
}
