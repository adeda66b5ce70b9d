import { attachXdpPass } from "./frames";
import { nsRun, run, uniqueSuffix } from "./netns";
import { removeLeftoverPins } from "./pins";

/** One end host of a two-port topology: its namespace, interface and address. */
export interface TopologyHost {
  ns: string;
  iface: string;
  ip: string;
  mac: string;
}

/**
 * host A | device (ports p1, p2) | host B: three fresh namespaces, host A's veth peer is the
 * device's p1 and host B's is p2, both hosts in one /24. The host ends run XDP_PASS (veth
 * delivers XDP_TX/redirected frames only to a peer with an XDP program) and have TX
 * checksum offload off (frames an XDP program forwards keep no partial checksums).
 */
export interface TwoPortTopology {
  device: string;
  p1: string;
  p2: string;
  a: TopologyHost;
  b: TopologyHost;
  cleanup(): Promise<void>;
}

let subnetCounter = 0;

export async function createTwoPortTopology(
  tag = "t",
  opts: { queues?: number; portNames?: [string, string] } = {},
): Promise<TwoPortTopology> {
  const sfx = uniqueSuffix();
  const names = { a: `gal-${tag}-${sfx}-a`, d: `gal-${tag}-${sfx}-d`, b: `gal-${tag}-${sfx}-b` };
  const [p1, p2] = opts.portNames ?? [`p1${sfx}`.slice(0, 15), `p2${sfx}`.slice(0, 15)];
  const octet = ((process.pid + subnetCounter++) % 200) + 20;
  const a: TopologyHost = {
    ns: names.a,
    iface: `ha${sfx}`.slice(0, 15),
    ip: `10.${octet}.1.1`,
    mac: "02:00:00:00:01:0a",
  };
  const b: TopologyHost = {
    ns: names.b,
    iface: `hb${sfx}`.slice(0, 15),
    ip: `10.${octet}.1.2`,
    mac: "02:00:00:00:01:0b",
  };
  const cleanup = async () => {
    for (const ns of Object.values(names)) await run("ip", ["netns", "del", ns]).catch(() => undefined);
    // ports named by the caller may share names with others': then only the namespace tells
    const ports = opts.portNames ? [] : [p1, p2];
    removeLeftoverPins({ ifaces: [...ports, a.iface, b.iface], namespaces: Object.values(names) });
  };
  const queues = opts.queues ? ["numtxqueues", String(opts.queues), "numrxqueues", String(opts.queues)] : [];
  try {
    for (const ns of Object.values(names)) {
      await run("ip", ["netns", "add", ns]);
      // No IPv6 autoconf chatter: every frame the device sees is one a test sent (or ARP).
      await nsRun(ns, "sysctl", [
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
      ]);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
    }
    for (const [host, port] of [
      [a, p1],
      [b, p2],
    ] as const) {
      await run("ip", [
        "link",
        "add",
        host.iface,
        "netns",
        host.ns,
        ...queues,
        "type",
        "veth",
        "peer",
        "name",
        port,
        "netns",
        names.d,
        ...queues,
      ]);
      await run("ip", ["-n", host.ns, "link", "set", host.iface, "address", host.mac]);
      await run("ip", ["-n", host.ns, "addr", "add", `${host.ip}/24`, "dev", host.iface]);
      await run("ip", ["-n", host.ns, "link", "set", host.iface, "up"]);
      await run("ip", ["-n", names.d, "link", "set", port, "up"]);
      await nsRun(host.ns, "ethtool", ["-K", host.iface, "tx", "off"]);
      await attachXdpPass(host.ns, host.iface);
    }
    return { device: names.d, p1, p2, a, b, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
