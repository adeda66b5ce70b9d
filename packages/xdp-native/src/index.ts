import { join } from "node:path";
import { buildDir } from "./native";

export * from "./abi";
export * from "./codec";
export { InProcessWorkerPool } from "./inprocess-pool";
export * from "./maps";
export { addonPath, type BpfError, isBpfError, workerExecutablePath } from "./native";
export * from "./object";
export * from "./pool";
export * from "./stats";
export * from "./trace";
export * from "./xdp";

/** The compiled fixed root program (galette_root + galette_root_progs[1]), built with the addon. */
export function rootProgramObjectPath(): string {
  return join(buildDir, "root.bpf.o");
}

/**
 * The fixed entry for chains whose first NF runs only in userland (galette_rx_upcall):
 * upcalls every frame as the rx pseudo-instance, built with the addon.
 */
export function rxUpcallObjectPath(): string {
  return join(buildDir, "rx_upcall.bpf.o");
}

/** The ABI header shims and native NF libraries are compiled against. */
export function abiHeaderDir(): string {
  return join(buildDir, "..", "..", "include");
}
