/**
 * `galette nf inspect <crate-dir>... [--json]`: what the NF analyser sees in each crate —
 * its maps with key/value types and sizes, its actions in order, whether it needs std.
 */
import { runNfInspect } from "@galette/nf-build";
import type { Command } from "commander";

export function registerNfInspect(nf: Command): void {
  nf.command("inspect")
    .description("show an NF crate's maps (key/value types and sizes) and actions as the compiler sees them")
    .argument("<crate-dir...>", "NF crate directories (with Cargo.toml and src/lib.rs)")
    .option("--json", "print the analyses as JSON")
    .action(async (crateDirs: string[], options: { json?: boolean }) => {
      const io = {
        stdout: (text: string) => process.stdout.write(text),
        stderr: (text: string) => process.stderr.write(text),
        cwd: process.cwd(),
      };
      const code = await runNfInspect(crateDirs, { json: options.json === true }, io);
      if (code !== 0) process.exitCode = code;
    });
}
