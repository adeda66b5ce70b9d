import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { removeLeftoverPins } from "./pins";

const execFileP = promisify(execFile);

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** written to the command's stdin */
  input?: string;
  /** default 30 s */
  timeoutMs?: number;
  cwd?: string;
  /** added to this process's environment */
  env?: NodeJS.ProcessEnv;
}

/** Run a command, rejecting with its stderr (else stdout) in the message when it fails. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const options = {
    timeout: opts.timeoutMs ?? 30_000,
    maxBuffer: 64 << 20,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  };
  try {
    if (opts.input !== undefined) return await runWithInput(cmd, args, opts.input, options);
    const r = await execFileP(cmd, args, options);
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`, {
      cause: err,
    });
  }
}

function runWithInput(
  cmd: string,
  args: string[],
  input: string,
  options: Parameters<typeof execFile>[2],
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { ...options, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

/** argv prefix that runs a command inside a named namespace, keeping bpffs visible (unlike `ip netns exec`). */
export const inNs = (ns: string): string[] => ["nsenter", `--net=/run/netns/${ns}`, "--"];

export async function nsRun(
  ns: string,
  cmd: string,
  args: string[],
  opts: { input?: string; timeoutMs?: number } = {},
) {
  const [nsenter, ...prefix] = inNs(ns);
  return run(nsenter!, [...prefix, cmd, ...args], opts);
}

export interface VethPair {
  /** namespace of the traffic generator/sink side */
  nsA: string;
  /** namespace of the device under test */
  nsB: string;
  ifA: string;
  ifB: string;
  macA: string;
  macB: string;
  ipA: string;
  ipB: string;
  ifindexB: number;
  cleanup(): Promise<void>;
}

/** A short unique suffix so parallel tests never collide on namespace or interface names. */
export function uniqueSuffix(): string {
  return `${(process.pid % 0xfff).toString(16)}${randomBytes(2).toString("hex")}`;
}

let subnetCounter = 0;

/**
 * Two fresh namespaces joined by a veth pair: A (generator) <-> B (device under test).
 * Interface names are ≤15 chars. Call cleanup() in finally/afterAll; deleting the
 * namespaces removes the veth and anything attached to it.
 */
export async function createVethPair(tag = "t", opts: { queues?: number } = {}): Promise<VethPair> {
  const sfx = uniqueSuffix();
  const nsA = `gal-${tag}-${sfx}-a`;
  const nsB = `gal-${tag}-${sfx}-b`;
  const ifA = `ga${sfx}`.slice(0, 15);
  const ifB = `gb${sfx}`.slice(0, 15);
  const macA = "02:00:00:00:00:0a";
  const macB = "02:00:00:00:00:0b";
  // Addresses only ever live inside the test's own namespaces.
  const octet = ((process.pid + subnetCounter++) % 200) + 20;
  const ipA = `10.${octet}.0.1`;
  const ipB = `10.${octet}.0.2`;
  const cleanup = async () => {
    await run("ip", ["netns", "del", nsA]).catch(() => undefined);
    await run("ip", ["netns", "del", nsB]).catch(() => undefined);
    removeLeftoverPins({ ifaces: [ifA, ifB], namespaces: [nsA, nsB] });
  };
  try {
    await run("ip", ["netns", "add", nsA]);
    await run("ip", ["netns", "add", nsB]);
    // No IPv6 autoconf chatter (RS, DAD, MLD) on test links: every frame seen is one a test sent.
    for (const ns of [nsA, nsB]) {
      await nsRun(ns, "sysctl", [
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
      ]);
    }
    // queues: RX/TX queues on both ends (veth delivers on the RX queue numbered like the
    // sender's TX queue, which the flow hash picks)
    const q = opts.queues ? ["numtxqueues", String(opts.queues), "numrxqueues", String(opts.queues)] : [];
    await run("ip", [
      "link",
      "add",
      ifA,
      "netns",
      nsA,
      ...q,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      nsB,
      ...q,
    ]);
    for (const [ns, ifn, mac, ip, peerIp, peerMac] of [
      [nsA, ifA, macA, ipA, ipB, macB],
      [nsB, ifB, macB, ipB, ipA, macA],
    ] as const) {
      await run("ip", ["-n", ns, "link", "set", ifn, "address", mac]);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
      await run("ip", ["-n", ns, "link", "set", ifn, "up"]);
      await run("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", ifn]);
      await run("ip", ["-n", ns, "neigh", "add", peerIp, "lladdr", peerMac, "dev", ifn]);
    }
    const { stdout } = await run("ip", ["-n", nsB, "-j", "link", "show", ifB]);
    const ifindexB = (JSON.parse(stdout) as Array<{ ifindex: number }>)[0]!.ifindex;
    return { nsA, nsB, ifA, ifB, macA, macB, ipA, ipB, ifindexB, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
