/**
 * The CPUs native NF libraries are built for: nf-build's target name, the Rust triple,
 * the `uname -m` spellings devices report and Node's `process.arch`. One table, so the
 * controller, the installer and scripts agree.
 */
export const CPU_TARGETS = [
  { target: "x86_64", triple: "x86_64-unknown-linux-gnu", machines: ["x86_64", "amd64"], nodeArch: "x64" },
  {
    target: "aarch64",
    triple: "aarch64-unknown-linux-gnu",
    machines: ["aarch64", "arm64"],
    nodeArch: "arm64",
  },
  {
    target: "armv7",
    triple: "armv7-unknown-linux-gnueabihf",
    machines: ["armv7l", "armv7", "armhf"],
    nodeArch: "arm",
  },
  { target: "riscv64", triple: "riscv64gc-unknown-linux-gnu", machines: ["riscv64"], nodeArch: "riscv64" },
] as const;

export type CpuTarget = (typeof CPU_TARGETS)[number];
export type CpuTargetName = CpuTarget["target"];
export type CpuTripleName = CpuTarget["triple"];

/** Rust target triples, in table order. */
export const CPU_TRIPLES = CPU_TARGETS.map((c) => c.triple) as unknown as readonly [
  CpuTripleName,
  ...CpuTripleName[],
];

/** `uname -m` → its CPU entry; undefined when no native build exists for it. */
export function cpuForMachine(machine: string): CpuTarget | undefined {
  return CPU_TARGETS.find((c) => (c.machines as readonly string[]).includes(machine));
}

/** Node's `process.arch` → its CPU entry; undefined when no native build exists for it. */
export function cpuForNodeArch(arch: string): CpuTarget | undefined {
  return CPU_TARGETS.find((c) => c.nodeArch === arch);
}
