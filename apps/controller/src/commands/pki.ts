import type { Command } from "commander";

export function registerPkiCommands(_program: Command): void {
  // filled in by the issue that owns the `pki` commands
}
