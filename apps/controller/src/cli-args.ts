/**
 * Commander prints help and exits 0 when `--help` follows an unknown command or option
 * (`galette nosuch start --help`), so scripts cannot tell a typo from a working command.
 * This walks the arguments against the command tree first and fails the way commander
 * does for unknown commands and options (exit 1, the nearest command suggested), help
 * flag or not. Everything else is left to commander.
 */
import { closestMatch } from "@galette/chain";
import type { Command, Option } from "commander";

const HELP_FLAGS = new Set(["-h", "--help"]);

function findOption(cmd: Command, flag: string): Option | undefined {
  // Commander recognises an ancestor's options anywhere after it (no positional options here).
  for (let c: Command | null = cmd; c; c = c.parent) {
    const found = c.options.find((o) => o.long === flag || o.short === flag);
    if (found) return found;
  }
  return undefined;
}

const optionNames = (cmd: Command): string[] => {
  const names: string[] = ["--help"];
  for (let c: Command | null = cmd; c; c = c.parent)
    for (const o of c.options) if (o.long) names.push(o.long);
  return names;
};

const commandNames = (cmd: Command): string[] => cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]);

/**
 * Fails through `cmd.error` (exit 1) at the first unknown command or option in `args`
 * (process.argv without node and the script). Returns normally when there is none.
 */
export function rejectUnknownArguments(program: Command, args: readonly string[]): void {
  let cmd: Command = program;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return; // the rest are operands
    if (arg.startsWith("-") && arg !== "-") {
      if (HELP_FLAGS.has(arg)) continue;
      const flag = arg.startsWith("--") ? arg.split("=")[0]! : arg.slice(0, 2);
      const option = findOption(cmd, flag);
      if (!option) {
        const near = arg.startsWith("--") ? closestMatch(flag, optionNames(cmd)) : undefined;
        cmd.error(`error: unknown option '${arg}'${near ? `\n(Did you mean ${near}?)` : ""}`, {
          exitCode: 1,
          code: "commander.unknownOption",
        });
      }
      // a value given as the next argument is not a command or an option
      const inline = arg.startsWith("--") ? arg.includes("=") : arg.length > 2;
      if (!inline && (option.required || (option.optional && !args[i + 1]?.startsWith("-")))) i++;
      continue;
    }
    if (cmd.commands.length === 0) continue; // an operand of a leaf command
    const sub = cmd.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub) {
      cmd = sub;
      continue;
    }
    if (arg === "help") return; // commander's help command takes command names, not ours to check
    const near = closestMatch(arg, commandNames(cmd));
    cmd.error(`error: unknown command '${arg}'${near ? `\n(Did you mean ${near}?)` : ""}`, {
      exitCode: 1,
      code: "commander.unknownCommand",
    });
  }
}
