import { native } from "./native";

/** linux/if_link.h XDP_FLAGS_* */
export const XdpFlags = {
  updateIfNoExist: 1,
  skbMode: 2,
  drvMode: 4,
  hwMode: 8,
  replace: 16,
} as const;

export type XdpMode = "drv" | "skb";

/** An interface, optionally inside a network namespace (a path such as /run/netns/NAME). */
export interface XdpTarget {
  ifname?: string;
  ifindex?: number;
  netns?: string;
}

export interface AttachOptions {
  /** native driver mode (default) or generic skb mode */
  mode?: XdpMode;
  /** fail with EBUSY instead of replacing an attached program */
  noReplace?: boolean;
  /** atomic replace: succeed only if this program fd is the one attached now */
  expectedFd?: number;
}

export const netnsPath = (name: string): string => `/run/netns/${name}`;

function iface(t: XdpTarget): string | number {
  if (t.ifindex !== undefined) return t.ifindex;
  if (t.ifname !== undefined) return t.ifname;
  throw new TypeError("XDP target needs ifname or ifindex");
}

const modeFlag = (mode: XdpMode = "drv"): number => (mode === "skb" ? XdpFlags.skbMode : XdpFlags.drvMode);

/** Attaches an XDP program (libbpf netlink attach; no dispatcher). Returns the ifindex. */
export function attachXdp(target: XdpTarget, progFd: number, opts: AttachOptions = {}): number {
  let flags = modeFlag(opts.mode);
  if (opts.noReplace) flags |= XdpFlags.updateIfNoExist;
  return native().xdpAttach(target.netns ?? "", iface(target), progFd, flags, opts.expectedFd ?? -1);
}

/** Detaches; with expectedFd only if that program is still the attached one. */
export function detachXdp(target: XdpTarget, opts: { mode?: XdpMode; expectedFd?: number } = {}): void {
  native().xdpDetach(target.netns ?? "", iface(target), modeFlag(opts.mode), opts.expectedFd ?? -1);
}

export interface XdpState {
  ifindex: number;
  /** id of the single attached program, 0 when none */
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
  /** XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi */
  attachMode: number;
}

export function queryXdp(target: XdpTarget): XdpState {
  return native().xdpQuery(target.netns ?? "", iface(target));
}

export function ifIndex(ifname: string, netns?: string): number {
  return native().ifIndex(netns ?? "", ifname);
}

/**
 * Sets a DEVMAP/DEVMAP_HASH entry to an interface of `netns`: the kernel resolves the
 * ifindex in the writer's namespace, so a plain map update from another namespace would
 * point the entry at an unrelated interface (or none).
 */
export function setDevmapEntry(mapFd: number, key: number, ifindex: number, netns?: string): void {
  native().devmapSet(netns ?? "", mapFd, key, ifindex);
}

/**
 * One program attached to one interface, remembering what it attached so replace and
 * detach are atomic against concurrent changes (the kernel checks the expected fd).
 */
export class XdpAttachment {
  #progFd: number;
  #attached = true;

  private constructor(
    readonly target: XdpTarget & { ifindex: number },
    progFd: number,
    readonly mode: XdpMode,
  ) {
    this.#progFd = progFd;
  }

  static attach(target: XdpTarget, progFd: number, opts: AttachOptions = {}): XdpAttachment {
    const ifindex = attachXdp(target, progFd, opts);
    return new XdpAttachment({ ...target, ifindex }, progFd, opts.mode ?? "drv");
  }

  get progFd(): number {
    return this.#progFd;
  }
  get attached(): boolean {
    return this.#attached;
  }

  /** Swaps in another program; fails (EEXIST/EBUSY) if someone else changed the attachment. */
  replace(progFd: number): void {
    attachXdp(this.target, progFd, { mode: this.mode, expectedFd: this.#progFd });
    this.#progFd = progFd;
  }

  detach(): void {
    if (!this.#attached) return;
    detachXdp(this.target, { mode: this.mode, expectedFd: this.#progFd });
    this.#attached = false;
  }
}
