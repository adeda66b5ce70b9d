/**
 * A real fleet for e2e tests: a controller child process (real TLS, SQLite, NF builds)
 * on 127.0.0.1, and galette-agent child processes, each driving the device side of its
 * own veth pair (its own namespaces from @galette/testkit).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import {
  DataDir,
  initReleaseKey,
  loadReleaseKey,
  OperatorClient,
  type ReleaseKey,
  signAndPushChain,
  signAndSetMapEntries,
  writeDeviceBundle,
} from "@galette/controller";
import { Dataplane } from "@galette/installer";
import { hostTarget } from "@galette/nf-build";
import { initPkiDir } from "@galette/pki";
import {
  BUNDLE_FILES,
  type DeviceSummary,
  type MapEntry,
  releaseDigest,
  SIGNATURE_DOMAINS,
  signDocument,
} from "@galette/protocol";
import {
  attachXdpPass,
  createVethPair,
  exchangeFrames,
  ipv4Bytes,
  sleep,
  udpFrame,
  type VethPair,
} from "@galette/testkit";

export const repoRoot = path.resolve(import.meta.dirname, "..", "..", "..");
const agentBin = path.join(repoRoot, "apps/sbc-agent/bin/galette-agent");
// node with tsx's loader (not the tsx CLI, which forks): a SIGKILL reaches the real process.
const tsxLoader = path.join(repoRoot, "apps/sbc-agent/node_modules/tsx/dist/loader.mjs");
const cli = path.join(repoRoot, "apps/controller/src/cli.ts");

/** Polls `probe` every 100 ms until it returns a value; throws `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`,
  );
}

export class ControllerProcess {
  child: ChildProcess | undefined;
  url = "";
  port = 0;
  constructor(
    readonly dataDir: string,
    readonly logFile: string,
  ) {}

  /** `env`: extra environment for this run (e.g. GALETTE_FAULT_PAUSE). */
  async start(env: NodeJS.ProcessEnv = {}): Promise<void> {
    // `galette controller serve` writes controller.json (its URL) once it listens.
    const info = path.join(this.dataDir, "controller.json");
    rmSync(info, { force: true });
    const child = spawn(
      process.execPath,
      [
        "--import",
        tsxLoader,
        cli,
        "controller",
        "serve",
        "--data",
        this.dataDir,
        "--listen",
        `127.0.0.1:${this.port}`,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        // eBPF and this CPU only: other triples would only slow the tests down
        env: { ...process.env, GALETTE_LOG_LEVEL: "info", GALETTE_NF_TARGETS: `bpf,${hostTarget()}`, ...env },
      },
    );
    this.child = child;
    child.stdout!.on("data", (d: Buffer) => appendFileSync(this.logFile, d));
    child.stderr!.on("data", (d: Buffer) => appendFileSync(this.logFile, d));
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    const state = await waitFor("the controller to listen", 60_000, () =>
      exited ? "exited" : existsSync(info) ? "listening" : undefined,
    );
    if (state === "exited") throw new Error(`controller exited before listening; see ${this.logFile}`);
    this.url = (JSON.parse(readFileSync(info, "utf8")) as { url: string }).url;
    this.port = Number(new URL(this.url).port);
  }

  /** SIGKILL: no graceful shutdown, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    this.child = undefined;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await Promise.race([exited, sleep(5000)]);
    if (child.exitCode === null) child.kill("SIGKILL");
    this.child = undefined;
  }
}

/** nf::LpmKeyV4 { prefix_len: u32 LE, addr } as hex: a key of the security chain's allow-list. */
export const lpmKeyHex = (ip: string, prefix = 32): string => {
  const k = Buffer.alloc(8);
  k.writeUInt32LE(prefix, 0);
  ipv4Bytes(ip).copy(k, 4);
  return k.toString("hex");
};

/** Sends `n` UDP frames through the device of `veth`; returns the ones that came back. */
export async function bounce(veth: VethPair, tag: string, n = 10, srcIp = veth.ipA, expectN?: number) {
  const frame = udpFrame({
    dstMac: veth.macB,
    srcMac: veth.macA,
    dstIp: veth.ipB,
    srcIp,
    payload: Buffer.from(tag),
  });
  frame[23] = 1; // not TCP/UDP: the security chain's weak-classifier calls it Normal (XDP_TX)
  const { received } = await exchangeFrames(veth.nsA, veth.ifA, {
    send: [frame],
    repeat: n,
    pps: 1000,
    listenMs: 500,
    match: Buffer.from(tag),
    ...(expectN !== undefined ? { expect: expectN } : {}),
  });
  return received;
}

export type LogLine = Record<string, unknown> & { msg?: string; time?: number };

export class AgentProcess {
  child: ChildProcess | undefined;
  /** run the agent process inside this network namespace (the device's own), not the test's */
  netns: string | undefined;
  /** the interface its chain goes on (in veth.nsB) */
  iface = "";
  /** the second port of a two-port device */
  peer: string | undefined;
  readonly logs: LogLine[] = [];
  readonly configFile: string;
  constructor(
    readonly name: string,
    readonly bundleDir: string,
    readonly veth: VethPair,
    readonly logFile: string,
  ) {
    this.configFile = path.join(bundleDir, BUNDLE_FILES.config);
  }

  get config(): { dataDir: string; stateDir: string } {
    return JSON.parse(readFileSync(this.configFile, "utf8")) as { dataDir: string; stateDir: string };
  }

  start(): void {
    const [cmd, ...args] = this.netns
      ? ["nsenter", `--net=/run/netns/${this.netns}`, "--", agentBin, "--config", this.configFile]
      : [agentBin, "--config", this.configFile];
    const child = spawn(cmd!, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, GALETTE_LOG_LEVEL: "debug" },
    });
    this.child = child;
    // The agent logs JSON lines on stderr (@galette/log; not a terminal here).
    child.stdout!.on("data", (d: Buffer) => appendFileSync(this.logFile, d));
    createInterface({ input: child.stderr! }).on("line", (line) => {
      appendFileSync(this.logFile, `${line}\n`);
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ msg: line });
      }
    });
  }

  /** Log lines with this message since index `from`. */
  logged(msg: string, from = 0): LogLine[] {
    return this.logs.slice(from).filter((l) => l.msg === msg);
  }

  async signal(sig: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill(sig);
    const code = await Promise.race([exited, sleep(10_000).then(() => "timeout" as const)]);
    if (code === "timeout") {
      child.kill("SIGKILL");
      throw new Error(`agent ${this.name} did not exit within 10 s of ${sig}`);
    }
    this.child = undefined;
    return code;
  }
}

export interface FleetOptions {
  devices: Array<{
    name: string;
    labels?: Record<string, string>;
    websocket: boolean;
    pollIntervalSeconds: number;
    xdpMode?: "auto" | "native" | "generic";
    /**
     * The agent runs inside the device namespace (nsB) and reaches the controller at
     * `controllerUrl` (e.g. a relay across the data port) instead of 127.0.0.1.
     */
    inNamespace?: { veth: VethPair; controllerUrl: string };
    /** another interface in the device namespace (nsB) to install on, made by `setup` (default: the veth's) */
    iface?: { name: string; setup: (nsB: string) => Promise<void> };
    /** a second port in the device namespace, made by `setup`: the agent gets ports: [iface, peer] */
    peer?: { name: string; setup: (nsB: string) => Promise<void> };
    /** release keys (base64 SPKI) its bundle pins; default: the fleet's release key */
    releaseKeys?: string[];
    /** more agent.json keys (e.g. metricsListen) */
    agentConfig?: Record<string, unknown>;
  }>;
  /** names and addresses the controller's server certificate holds (default: localhost, 127.0.0.1) */
  serverHosts?: string[];
}

export class Fleet {
  readonly dir: string;
  readonly controller: ControllerProcess;
  operator!: OperatorClient;
  /** the operator token, for `galette` CLI runs (cli()) */
  token = "";
  /** the fleet's release key (as `galette release-key init` writes it), pinned by every device by default */
  releaseKeyFile = "";
  releaseKey!: ReleaseKey;
  readonly agents = new Map<string, AgentProcess>();
  readonly #veths: VethPair[] = [];

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), "galette-fleet-"));
    mkdirSync(path.join(this.dir, "controller"));
    this.controller = new ControllerProcess(
      path.join(this.dir, "controller"),
      path.join(this.dir, "controller.log"),
    );
  }

  agent(name: string): AgentProcess {
    const a = this.agents.get(name);
    if (!a) throw new Error(`no agent ${name}`);
    return a;
  }

  async start(options: FleetOptions): Promise<void> {
    const data = this.controller.dataDir;
    initPkiDir(data, options.serverHosts ? { serverHosts: options.serverHosts } : {});
    const direct = DataDir.open(data);
    const { token } = await direct.createToken("fleet-test", ["admin", "publish", "deploy", "read"]);
    await direct.close();
    this.token = token;
    this.releaseKeyFile = initReleaseKey(path.join(this.dir, "release")).keyFile;
    this.releaseKey = loadReleaseKey(this.releaseKeyFile);
    await this.controller.start();
    this.operator = new OperatorClient({
      url: this.controller.url,
      token,
      caFile: path.join(data, "ca.crt"),
    });
    for (const d of options.devices) {
      const enrolled = await this.operator.enrolDevice({ name: d.name, labels: d.labels ?? {} });
      const bundle = path.join(this.dir, d.name);
      writeDeviceBundle(bundle, enrolled, d.releaseKeys ?? [this.releaseKey.publicKey]);
      const veth = d.inNamespace?.veth ?? (await createVethPair("agt"));
      this.#veths.push(veth);
      // XDP_TX from the device side needs an XDP program on the receiving peer.
      await attachXdpPass(veth.nsA, veth.ifA);
      await d.iface?.setup(veth.nsB);
      await d.peer?.setup(veth.nsB);
      const configFile = path.join(bundle, BUNDLE_FILES.config);
      const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
      writeFileSync(
        configFile,
        JSON.stringify({
          ...config,
          ...(d.peer
            ? { ports: [d.iface?.name ?? veth.ifB, d.peer.name] }
            : { interface: d.iface?.name ?? veth.ifB }),
          // also when the agent runs in nsB: the installer's records then name the same target
          netns: veth.nsB,
          ...(d.inNamespace ? { controllerUrl: d.inNamespace.controllerUrl } : {}),
          dataDir: "data",
          stateDir: "run",
          pollIntervalSeconds: d.pollIntervalSeconds,
          statusIntervalSeconds: 1,
          workerThreads: 1,
          websocket: d.websocket,
          ...(d.xdpMode ? { xdpMode: d.xdpMode } : {}),
          ...d.agentConfig,
        }),
      );
      const agent = new AgentProcess(d.name, bundle, veth, path.join(this.dir, `${d.name}.log`));
      agent.iface = d.iface?.name ?? veth.ifB;
      agent.peer = d.peer?.name;
      agent.netns = d.inNamespace ? veth.nsB : undefined;
      this.agents.set(d.name, agent);
      agent.start();
    }
  }

  /**
   * Publishes an example NF crate (a tar of nf-examples/NAME; the controller builds it)
   * and, unless `release` is false, signs the build with the fleet's release key.
   */
  async publish(
    name: string,
    crateDir = path.join(repoRoot, "nf-examples", name),
    { release = true }: { release?: boolean } = {},
  ) {
    const archive = execFileSync(
      "tar",
      ["-c", "--exclude=target", "-C", path.dirname(crateDir), path.basename(crateDir)],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const published = await this.operator.publishNf(archive, name);
    if (release && published.build === "built") await this.release(name);
    return published;
  }

  /**
   * Signs the latest build of `name` as `galette nf release --trust-controller-build`
   * would (the CLI's rebuild is exercised by the trust e2e test); `keyFile` defaults to
   * the fleet's key. Returns the release digest.
   */
  async release(name: string, keyFile = this.releaseKeyFile): Promise<string> {
    const key = loadReleaseKey(keyFile);
    const release = await this.operator.getNfRelease(name);
    const digest = releaseDigest(release.manifest);
    const signature = signDocument(SIGNATURE_DOMAINS.nfRelease, release.manifest, key.pem);
    await this.operator.signNfRelease(name, { digest, signature, publicKey: key.publicKey });
    return digest;
  }

  /** Pushes a chain file, signed with `keyFile` (the fleet's key by default; null: unsigned). */
  async push(
    file: string,
    toml = readFileSync(path.join(repoRoot, file), "utf8"),
    keyFile: string | null = this.releaseKeyFile,
  ) {
    return keyFile
      ? signAndPushChain(this.operator, { file, toml }, keyFile)
      : this.operator.pushChain({ file, toml });
  }

  /** Sets map entries, signed with the fleet's key (devices refuse unsigned entries). */
  async setMapEntries(chain: string, map: string, set: MapEntry[], remove: string[] = []) {
    return signAndSetMapEntries(this.operator, chain, map, set, remove, this.releaseKeyFile);
  }

  /** Runs `galette ARGS` as the operator (a real CLI process); returns stdout, throws with stderr. */
  cli(args: string[], env: NodeJS.ProcessEnv = {}): string {
    try {
      return execFileSync(process.execPath, ["--import", tsxLoader, cli, ...args], {
        cwd: repoRoot,
        encoding: "utf8",
        maxBuffer: 16 * 1024 * 1024,
        env: {
          ...process.env,
          GALETTE_URL: this.controller.url,
          GALETTE_TOKEN: this.token,
          GALETTE_CA: path.join(this.controller.dataDir, "ca.crt"),
          GALETTE_NF_TARGETS: `bpf,${hostTarget()}`,
          ...env,
        },
      });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`galette ${args.join(" ")} failed: ${e.stderr || e.message}\n${e.stdout ?? ""}`);
    }
  }

  async device(name: string): Promise<DeviceSummary> {
    const { devices } = await this.operator.listDevices();
    const d = devices.find((x) => x.name === name);
    if (!d) throw new Error(`controller does not list device ${name}`);
    return d;
  }

  /** Waits until the device reports `chain` `version` installed and converged. */
  async converged(name: string, chain: string, version: number, timeoutMs = 30_000): Promise<DeviceSummary> {
    return waitFor(`${name} to report ${chain} v${version} converged`, timeoutMs, async () => {
      const d = await this.device(name);
      return d.installed?.chain === chain && d.installed.version === version && d.state === "converged"
        ? d
        : undefined;
    });
  }

  async cleanup(): Promise<void> {
    for (const a of this.agents.values()) await a.signal("SIGTERM").catch(() => a.child?.kill("SIGKILL"));
    await this.controller.stop();
    for (const a of this.agents.values()) {
      const { stateDir } = a.config;
      try {
        Dataplane.remove(
          { iface: a.iface || a.veth.ifB, ...(a.peer ? { peer: a.peer } : {}), netns: a.veth.nsB },
          { stateDir: path.resolve(a.bundleDir, stateDir) },
        );
      } catch (err) {
        process.stderr.write(`fleet cleanup: ${(err as Error).message}\n`);
      }
    }
    for (const v of this.#veths) await v.cleanup();
    if (!process.env.GALETTE_KEEP_FLEET) rmSync(this.dir, { recursive: true, force: true });
    else process.stderr.write(`fleet kept in ${this.dir}\n`);
  }
}
