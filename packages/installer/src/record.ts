/**
 * The installation record: what survives the process that installed a chain, enough for
 * another process to adopt or remove the installation from its pins. One JSON file per
 * interface scope in the state directory, replaced whole on every change.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { writeAtomic } from "@galette/files";
import { InstallError } from "./errors";
import { type InstallSpec, type InterfaceTarget, interfaceScope } from "./spec";

export const DEFAULT_STATE_DIR = "/run/galette";

export interface WorkerSettings {
  /** AF_XDP worker threads (sockets); default 2 */
  count: number;
  mode: "busy-poll" | "blocking";
  /**
   * Run the worker threads and NF code inside this process (with its privileges) instead of
   * the unprivileged worker process. Only for the bench baseline that measures the cost of
   * isolation; never for a device.
   */
  inProcess?: boolean;
  /**
   * Frames a userland NF passes go to the host stack through a TAP device per port
   * (`galh<ifindex>`, created with the workers); default true. false: they are dropped
   * (`passUnsupported`). The in-process pool has no TAP.
   */
  hostDelivery?: boolean;
}

/** What survives the process: enough to adopt or remove the installation from its pins. */
export interface InstallationRecord {
  version: 1;
  spec: InstallSpec;
  mode: "drv" | "skb";
  /** ifindex of the first port */
  ifindex: number;
  /** ifindex of the second port of a two-port installation */
  peerIfindex?: number;
  /** kernel id of the attached root program */
  rootProgId: number;
  workers: WorkerSettings;
  /** the process that runs the workers */
  pid: number;
  updatedAt: string;
}

export function recordPath(target: InterfaceTarget, stateDir = DEFAULT_STATE_DIR): string {
  return path.join(stateDir, `${interfaceScope(target)}.json`);
}

export function readRecord(
  target: InterfaceTarget,
  stateDir = DEFAULT_STATE_DIR,
): InstallationRecord | undefined {
  const file = recordPath(target, stateDir);
  if (!existsSync(file)) return undefined;
  const rec = JSON.parse(readFileSync(file, "utf8")) as InstallationRecord;
  if (rec.version !== 1)
    throw new InstallError(`${file}: unknown installation record version ${String(rec.version)}`);
  return rec;
}

export function writeRecord(rec: InstallationRecord, stateDir: string): void {
  const file = recordPath(rec.spec.target, stateDir);
  mkdirSync(path.dirname(file), { recursive: true });
  writeAtomic(file, `${JSON.stringify(rec, null, 2)}\n`);
}

/** Whether the process a record names still runs (EPERM: it does, as another user). */
export const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};
