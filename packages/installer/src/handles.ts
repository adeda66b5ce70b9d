/**
 * The kernel handles (map, program and object fds) a live installation holds in this
 * process, each closed here and nowhere else: one instance's when it is retired, all of
 * them when the process lets go of the installation. Closing a handle leaves its pin: what
 * is pinned stays in the kernel until the pin is removed.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { type BpfMap, type BpfObject, closeFd, pinFd } from "@galette/xdp-native";
import type { DeviceMaps } from "./device-maps";
import type { InstanceSpec } from "./spec";

/** A loaded program: the object it came from when this process loaded it, else an fd from its pin. */
export interface LiveProgram {
  progFd: number;
  object?: BpfObject;
}

export interface LiveInstance {
  spec: InstanceSpec;
  counts?: BpfMap;
  progFd?: number;
  object?: BpfObject;
}

export class LiveHandles {
  /** the NFs' own maps by spec key */
  readonly maps = new Map<string, BpfMap>();
  readonly instances = new Map<number, LiveInstance>();
  /** the rx upcall program, when the chain's entry runs only in userland */
  rx: LiveProgram | undefined;
  #rootFd: number;

  constructor(
    readonly dev: DeviceMaps,
    rootFd: number,
  ) {
    this.#rootFd = rootFd;
  }

  /** the attached root program (-1 once closed) */
  get rootFd(): number {
    return this.#rootFd;
  }

  /** Closes one instance's handles and forgets it. */
  closeInstance(id: number): void {
    const inst = this.instances.get(id);
    if (!inst) return;
    inst.counts?.close();
    closeProgram(inst);
    this.instances.delete(id);
  }

  closeRx(): void {
    if (this.rx) closeProgram(this.rx);
    this.rx = undefined;
  }

  closeAll(): void {
    for (const id of [...this.instances.keys()]) this.closeInstance(id);
    this.closeRx();
    for (const m of this.maps.values()) m.close();
    this.maps.clear();
    const { tables, ...single } = this.dev;
    for (const m of [...tables, ...Object.values(single)]) m?.close();
    if (this.#rootFd >= 0) closeFd(this.#rootFd);
    this.#rootFd = -1;
  }
}

function closeProgram(p: { progFd?: number; object?: BpfObject }): void {
  if (p.object) p.object.close();
  else if (p.progFd !== undefined) closeFd(p.progFd);
}

export function pinOrReplace(fd: number, pin: string): void {
  mkdirSync(path.dirname(pin), { recursive: true });
  if (existsSync(pin)) rmSync(pin);
  pinFd(fd, pin);
}

export const unpin = (pin: string) => rmSync(pin, { force: true });
