/**
 * What this kernel and these interfaces can run, found by trying rather than by reading
 * version numbers: tiny maps of each type are created, the root program (an XDP_PASS when
 * its program array is empty) is attached in driver mode and then in generic mode. The
 * agent reports the result to the controller, which refuses chains the device cannot run;
 * `galette dataplane` can use it to pick the XDP mode.
 *
 * Attaching to a real NIC may reset its rings for a moment, so an interface that already
 * has an XDP program is not touched: its current attach mode is what it reports.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { BPF_MAP_TYPE_NAMES, MAP_TYPES, type MapType } from "@galette/vocabulary";
import {
  attachXdp,
  BpfMap,
  BpfObject,
  detachXdp,
  type MapTypeName,
  netnsPath,
  queryXdp,
  rootProgramObjectPath,
} from "@galette/xdp-native";

export type XdpSupport = "native" | "generic" | "none";

export interface InterfaceProbe {
  name: string;
  /** the best XDP mode an attach succeeded in ("none": neither) */
  xdp: XdpSupport;
  /** RX queues the interface has (AF_XDP needs a socket per queue) */
  rxQueues: number;
  /**
   * AF_XDP zero-copy: false where it cannot be (no native XDP, or a driver without it such
   * as veth); null when only binding a socket would tell (not tried: it disturbs traffic)
   */
  zeroCopy: boolean | null;
  /** why a check could not run, when one could not */
  problems: string[];
}

export interface CapabilityProbe {
  probedAt: string;
  kernelRelease: string;
  kernel: { major: number; minor: number };
  cpus: number;
  memoryBytes: number;
  availableMemoryBytes: number;
  /** /sys/kernel/btf/vmlinux exists */
  btf: boolean;
  /** the kernel knows the bpf_loop helper (what nf::repeat compiles to) */
  bpfLoop: boolean;
  /** a PROG_ARRAY map could be created (chains tail-call between NFs) */
  tailCalls: boolean;
  /** an XSKMAP could be created (AF_XDP sockets; userland NFs need it) */
  afXdp: boolean;
  /** the NF map types this kernel creates */
  mapTypes: MapType[];
  interfaces: InterfaceProbe[];
  /** checks that could not run, with the reason */
  problems: string[];
}

/** Drivers whose AF_XDP support is copy mode only. */
const NO_ZERO_COPY_DRIVERS = new Set(["veth", "dummy", "ifb", "bridge", "tun"]);
const BPF_LOOP_KERNEL: [number, number] = [5, 17];

export function parseKernelRelease(release: string): { major: number; minor: number } {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : { major: 0, minor: 0 };
}

const atLeast = (k: { major: number; minor: number }, [major, minor]: [number, number]): boolean =>
  k.major > major || (k.major === major && k.minor >= minor);

function tryCreate(type: MapTypeName, keySize: number, valueSize: number): string | undefined {
  try {
    BpfMap.create({ type, name: "galette_probe", keySize, valueSize, maxEntries: 1 }).close();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Canonical NF map type → the addon's name and a key/value size the kernel accepts for it. */
const PROBE_MAPS: Record<MapType, [MapTypeName, number, number]> = {
  hash_map: ["hash", 4, 4],
  array: ["array", 4, 4],
  lpm_trie: ["lpm_trie", 8, 4],
  percpu_array: ["percpu_array", 4, 4],
  percpu_hash: ["percpu_hash", 4, 4],
  lru_hash: ["lru_hash", 4, 4],
};

function availableMemory(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // no /proc/meminfo (not Linux): free memory is the closest figure
  }
  return os.freemem();
}

/**
 * Whether the running kernel has the bpf_loop helper: its vmlinux BTF names
 * BPF_FUNC_loop in enum bpf_func_id. Without BTF, the kernel version (5.17 added it).
 */
function probeBpfLoop(btf: boolean, kernel: { major: number; minor: number }): boolean {
  if (btf) {
    try {
      return readFileSync("/sys/kernel/btf/vmlinux").includes(Buffer.from("\0BPF_FUNC_loop\0"));
    } catch {
      // unreadable: fall back to the version
    }
  }
  return atLeast(kernel, BPF_LOOP_KERNEL);
}

interface LinkInfo {
  rxQueues: number;
  driver: string | undefined;
}

function linkInfo(iface: string, netns: string | undefined): LinkInfo {
  const args = [...(netns ? ["-n", netns] : []), "-j", "-d", "link", "show", "dev", iface];
  const out = execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const [link] = JSON.parse(out) as Array<{
    num_rx_queues?: number;
    linkinfo?: { info_kind?: string };
  }>;
  if (!link) throw new Error(`ip link show dev ${iface}: no such interface`);
  let driver = link.linkinfo?.info_kind;
  if (!driver && !netns) {
    try {
      driver = execFileSync("readlink", ["-f", `/sys/class/net/${iface}/device/driver`], {
        encoding: "utf8",
      })
        .trim()
        .split("/")
        .pop();
    } catch {
      // no device link (virtual interface without a kind): unknown driver
    }
  }
  return { rxQueues: link.num_rx_queues ?? 1, driver };
}

/**
 * Which XDP modes `iface` takes, by attaching the root program (no NF in its program
 * array: every frame passes) in driver mode, then in generic mode, detaching each time.
 */
function probeXdp(iface: string, netns: string | undefined, problems: string[]): XdpSupport {
  const target = { ifname: iface, ...(netns ? { netns: netnsPath(netns) } : {}) };
  const state = queryXdp(target);
  if (state.progId !== 0 || state.drvProgId !== 0 || state.skbProgId !== 0) {
    // In use (a chain runs): report the mode it runs in, never disturb it.
    if (state.drvProgId !== 0 || state.hwProgId !== 0) return "native";
    problems.push("an XDP program is attached in generic mode: driver mode not tried");
    return "generic";
  }
  const obj = BpfObject.open(rootProgramObjectPath());
  try {
    obj.load();
    const fd = obj.programFd("galette_root");
    for (const mode of ["drv", "skb"] as const) {
      try {
        attachXdp(target, fd, { mode, noReplace: true });
      } catch {
        continue;
      }
      detachXdp(target, { mode, expectedFd: fd });
      return mode === "drv" ? "native" : "generic";
    }
    return "none";
  } finally {
    obj.close();
  }
}

export interface ProbeOptions {
  /** interfaces to probe XDP and queues on */
  interfaces?: string[];
  /** network namespace name (under /run/netns) holding them */
  netns?: string;
}

/** Probes the kernel (and the interfaces given). Never throws for an unsupported feature. */
export function probeCapabilities(options: ProbeOptions = {}): CapabilityProbe {
  const problems: string[] = [];
  const kernelRelease = os.release();
  const kernel = parseKernelRelease(kernelRelease);
  let btf = false;
  try {
    readFileSync("/sys/kernel/btf/vmlinux", { flag: "r" }).subarray(0, 4);
    btf = true;
  } catch {
    // no vmlinux BTF
  }
  const mapTypes: MapType[] = [];
  for (const type of MAP_TYPES) {
    const [name, keySize, valueSize] = PROBE_MAPS[type];
    const err = tryCreate(name, keySize, valueSize);
    if (err === undefined) mapTypes.push(type);
    else problems.push(`${BPF_MAP_TYPE_NAMES[type]}: ${err}`);
  }
  const progArrayErr = tryCreate("prog_array", 4, 4);
  if (progArrayErr) problems.push(`BPF_MAP_TYPE_PROG_ARRAY: ${progArrayErr}`);
  const xskErr = tryCreate("xskmap", 4, 4);
  if (xskErr) problems.push(`BPF_MAP_TYPE_XSKMAP: ${xskErr}`);

  const interfaces: InterfaceProbe[] = (options.interfaces ?? []).map((name) => {
    const ifProblems: string[] = [];
    let info: LinkInfo = { rxQueues: 1, driver: undefined };
    try {
      info = linkInfo(name, options.netns);
    } catch (err) {
      ifProblems.push(`reading the link: ${(err as Error).message.split("\n")[0]}`);
    }
    let xdp: XdpSupport = "none";
    try {
      xdp = probeXdp(name, options.netns, ifProblems);
    } catch (err) {
      ifProblems.push(`XDP attach probe: ${(err as Error).message}`);
    }
    const zeroCopy =
      xdp !== "native" || xskErr !== undefined || (info.driver && NO_ZERO_COPY_DRIVERS.has(info.driver))
        ? false
        : null;
    return { name, xdp, rxQueues: info.rxQueues, zeroCopy, problems: ifProblems };
  });

  return {
    probedAt: new Date().toISOString(),
    kernelRelease,
    kernel,
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
    availableMemoryBytes: availableMemory(),
    btf,
    bpfLoop: probeBpfLoop(btf, kernel),
    tailCalls: progArrayErr === undefined,
    afXdp: xskErr === undefined,
    mapTypes,
    interfaces,
    problems,
  };
}

/**
 * The XDP mode an installation on `ports` uses with xdpMode "auto": driver (native) mode
 * when every port took it, generic when one only took generic. A port the probe did not
 * cover counts as native (the attach then says what is wrong).
 */
export function xdpModeFor(
  probe: { interfaces: ReadonlyArray<{ name: string; xdp: string }> },
  ports: readonly string[],
): "native" | "generic" {
  const generic = ports.some((p) => probe.interfaces.find((i) => i.name === p)?.xdp === "generic");
  return generic ? "generic" : "native";
}

/** What probeRefusals needs of a plan: where each NF runs and the types of its maps. */
export interface ProbedPlan {
  nfs: Array<{ name: string; xdp: boolean; userland: boolean; maps: Array<{ map: string; type: string }> }>;
}

/**
 * Why this machine cannot run `plan` on `ports`, by its probe (empty: it can). The same
 * checks the controller makes before sending a chain to a device: userland NFs need
 * AF_XDP, XDP NFs tail calls, each map type must be creatable, each port must take XDP.
 */
export function probeRefusals(probe: CapabilityProbe, plan: ProbedPlan, ports: readonly string[]): string[] {
  const reasons: string[] = [];
  const kernel = `kernel ${probe.kernelRelease}`;
  const userland = plan.nfs.filter((nf) => nf.userland).map((nf) => `"${nf.name}"`);
  if (userland.length > 0 && !probe.afXdp)
    reasons.push(
      `NF ${userland.join(", ")} run${userland.length === 1 ? "s" : ""} in userland, which needs AF_XDP; ${kernel} has no AF_XDP (XSKMAP)`,
    );
  if (plan.nfs.some((nf) => nf.xdp) && !probe.tailCalls)
    reasons.push(`the chain's XDP NFs are entered by tail calls; ${kernel} cannot create a PROG_ARRAY`);
  const missing = new Map<string, string[]>();
  for (const nf of plan.nfs)
    for (const m of nf.maps) {
      const type = m.type.replaceAll("-", "_");
      if (!(probe.mapTypes as string[]).includes(type))
        missing.set(type, [...new Set([...(missing.get(type) ?? []), `"${m.map}"`])]);
    }
  for (const [type, maps] of missing)
    reasons.push(`map ${maps.join(", ")} is a ${type}; ${kernel} does not create ${type} maps`);
  for (const port of ports) {
    const probed = probe.interfaces.find((i) => i.name === port);
    if (probed?.xdp === "none")
      reasons.push(
        `interface ${port} takes no XDP program (neither driver nor generic mode)${probed.problems.length ? `: ${probed.problems.join("; ")}` : ""}`,
      );
  }
  return reasons;
}
