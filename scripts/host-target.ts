/**
 * Prints the NF build target (`x86_64`, `aarch64`, `armv7`, `riscv64`) of a CPU given as
 * `uname -m`, or with --triple its Rust triple, from the one CPU table in
 * @galette/vocabulary. Exits 1 for a CPU no native NF is built for.
 * Usage: node --import tsx scripts/host-target.ts "$(uname -m)" [--triple]
 */
import { cpuForMachine } from "../packages/vocabulary/src/index";

const [machine = "", flag] = process.argv.slice(2);
const cpu = cpuForMachine(machine);
if (!cpu) {
  process.stderr.write(`no native NF target for CPU "${machine}"\n`);
  process.exit(1);
}
process.stdout.write(`${flag === "--triple" ? cpu.triple : cpu.target}\n`);
