/**
 * The reconcile loop: keep the interface running the chain the controller assigns.
 *
 * - poll GET /v1/device/assignment (If-None-Match) every pollIntervalSeconds (±10 %), and at once
 *   when the ws channel says it changed or (re)opens; polling alone converges;
 * - verify the assignment against the release keys pinned on this device (verify.ts)
 *   before fetching or loading anything; a refused one leaves the running chain alone;
 * - fetch only artifacts missing from the cache, verify every digest before loading;
 * - install or reconfigure through @galette/installer (atomic: a failure keeps the old
 *   chain and is reported);
 * - apply map entries, report status and counters;
 * - offline: start from the pinned live chain (adopt) or the cached assignment (verified
 *   again), retry the controller with exponential backoff;
 * - at start, probe what the kernel and the interface can run (reported with the status;
 *   the controller refuses chains the device cannot run; xdpMode "auto" follows it);
 * - dead-man's switch: after installing a new chain from the controller, reach the
 *   controller again within the assignment's grace, or roll back to the chain that ran
 *   before (from the cache) and hold the new version until the operator confirms it.
 */
import type { Server } from "node:http";
import os from "node:os";
import {
  Dataplane,
  type DataplaneOptions,
  DEFAULT_STATE_DIR,
  type InterfaceTarget,
  measureCost,
  planInstallation,
  probeCapabilities,
  targetPorts,
  trimHeap,
  xdpModeFor,
} from "@galette/installer";
import type { Logger } from "@galette/log";
import type {
  AssignedChain,
  DeviceCapabilities,
  DeviceCost,
  DeviceError,
  DeviceState,
  DeviceStatusReport,
  SignedDeviceAssignment,
  TraceRequest,
  TraceUpload,
} from "@galette/protocol";
import { DEFAULT_GRACE_SECONDS, PROTOCOL_VERSION, tripleForMachine } from "@galette/protocol";
import type WebSocket from "ws";
import { mapBinding, neededArtifacts, toInstallerInput } from "./assignment";
import { AgentCache, type CachedAssignment, type HeldVersion } from "./cache";
import { DeviceClient } from "./client";
import type { ResolvedAgentConfig } from "./config";
import { runDeviceTrace } from "./trace";
import { TrustError, TrustStore, verifyAssignment } from "./verify";

export const AGENT_VERSION = "0.1.0";
/** First retry delay after a failed controller request, ws drop or install; doubles up to a cap. */
const BACKOFF_START_MS = 500;
/** Polls never wait longer than the poll interval, and at most this long. */
export const POLL_BACKOFF_CAP_MS = 30_000;
/** ws reconnects: cheap, and an open channel triggers a poll, so a restarted controller is seen soon. */
export const WS_BACKOFF_CAP_MS = 10_000;
/** Retries of a failed install (e.g. a corrupted download) between polls. */
const INSTALL_RETRY_CAP_MS = 8_000;
/** Dead-man's switch: one attempt to reach the controller waits at most this long… */
const REACH_TIMEOUT_MS = 5_000;
/** …and attempts are this far apart. */
const REACH_INTERVAL_MS = 1_000;

/** Exponential backoff with ±20 % jitter, so a fleet does not reconnect in lockstep. */
export function backoffMs(failures: number, capMs: number): number {
  const base = Math.min(capMs, BACKOFF_START_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + 0.4 * Math.random()));
}

/**
 * The wait before the next regular poll or status report: the interval ±10 %. A poll is
 * timed from the end of the one before, so devices whose answers a busy controller delayed
 * together would otherwise poll together from then on, their bursts growing with every
 * stall; devices that started together (a site's power coming back) would report status
 * together for as long as they run.
 */
export function jitteredDelayMs(intervalMs: number): number {
  return Math.round(intervalMs * (0.9 + 0.2 * Math.random()));
}
const MAX_ERRORS = 20;

interface Installed {
  chain: AssignedChain;
  etag: string | undefined;
}

export class GaletteAgent {
  readonly config: ResolvedAgentConfig;
  readonly log: Logger;
  readonly target: InterfaceTarget;
  readonly arch = os.machine();
  readonly triple = tripleForMachine(os.machine());
  readonly #cache: AgentCache;
  readonly #client: DeviceClient;
  readonly #trust: TrustStore;
  /** the ETag of an assignment refused for its signatures: not retried until it changes */
  #refusedEtag: string | undefined;
  #dp: Dataplane | undefined;
  #installed: Installed | undefined;
  /** the latest assignment the controller sent, and its ETag (sent as If-None-Match) */
  #desired: { assignment: SignedDeviceAssignment; etag: string | undefined } | undefined;
  #appliedKeys: Record<string, string[]> = {};
  #state: DeviceState = "idle";
  #errors: DeviceError[] = [];
  #pollFailures = 0;
  #startupTrimmed = false;
  #applyFailures = 0;
  #wsFailures = 0;
  #ws: WebSocket | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #wsTimer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #syncAgain = false;
  #stopped = false;
  #capabilities: DeviceCapabilities | undefined;
  /** a version the dead-man's switch rolled back: not installed again until confirmed */
  #held: HeldVersion | undefined;
  #heldLogged: string | undefined;
  /** the last per-NF cost window, and the timer of the next one */
  #cost: { cost: DeviceCost; installed: Installed | undefined } | undefined;
  #costTimer: NodeJS.Timeout | undefined;
  #metrics: Server | undefined;

  constructor(config: ResolvedAgentConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.target = {
      iface: config.interface,
      ...(config.ports ? { peer: config.ports[1] } : {}),
      ...(config.netns ? { netns: config.netns } : {}),
    };
    this.#cache = new AgentCache(config.dataDir);
    this.#client = new DeviceClient([config.controllerUrl, ...(config.controllerUrls ?? [])], config);
    this.#trust = new TrustStore(config.dataDir, config.releaseKeys);
    try {
      this.#held = this.#cache.loadHeld();
    } catch (err) {
      this.#error(`ignoring the held-back version: ${(err as Error).message}`);
    }
  }

  get capabilities(): DeviceCapabilities | undefined {
    return this.#capabilities;
  }

  /**
   * The XDP mode installs use: the configured one, or with "auto" what the probe found
   * (generic when one of the ports only takes generic mode).
   */
  get xdpMode(): "native" | "generic" {
    if (this.config.xdpMode !== "auto") return this.config.xdpMode;
    return this.#capabilities ? xdpModeFor(this.#capabilities, targetPorts(this.target)) : "native";
  }

  /** Probes the kernel and every port (before anything is installed on them). */
  #probe(): void {
    try {
      const p = probeCapabilities({
        interfaces: targetPorts(this.target),
        ...(this.config.netns ? { netns: this.config.netns } : {}),
      });
      const clip = (list: string[], n: number) => list.slice(0, n).map((m) => m.slice(0, 500));
      this.#capabilities = {
        ...p,
        problems: clip(p.problems, 50),
        interfaces: p.interfaces.map((i) => ({ ...i, problems: clip(i.problems, 20) })),
      };
      this.log.info(
        {
          kernel: p.kernelRelease,
          btf: p.btf,
          bpfLoop: p.bpfLoop,
          afXdp: p.afXdp,
          tailCalls: p.tailCalls,
          mapTypes: p.mapTypes,
          interfaces: p.interfaces,
          xdpMode: this.xdpMode,
        },
        "capabilities probed",
      );
    } catch (err) {
      this.#error(`capability probe failed: ${(err as Error).message}`);
      this.log.error({ err: (err as Error).message }, "capability probe failed");
    }
  }

  get dataplane(): Dataplane | undefined {
    return this.#dp;
  }

  get state(): DeviceState {
    return this.#state;
  }

  /** the chain installed now (undefined: none) */
  get installed(): { chain: string; version: number } | undefined {
    return this.#installed
      ? { chain: this.#installed.chain.name, version: this.#installed.chain.version }
      : undefined;
  }

  /** the last per-NF cost measurement (undefined: none yet) */
  get cost(): DeviceCost | undefined {
    // measured on another chain than the one installed now: its NFs are not this chain's
    return this.#cost && this.#cost.installed === this.#installed && this.#dp ? this.#cost.cost : undefined;
  }

  /**
   * Measures per-NF cost now: kernel bpf_stats on for costWindowMs, then off. Undefined when
   * nothing is installed.
   */
  async measureCost(): Promise<DeviceCost | undefined> {
    const dp = this.#dp;
    const installed = this.#installed;
    if (!dp) return undefined;
    const cost = await measureCost(dp, this.config.costWindowMs);
    // a chain swapped during the window: its numbers belong to neither chain
    if (this.#dp !== dp || this.#installed !== installed) return undefined;
    this.#cost = { cost, installed };
    this.log.debug({ nsPerFrame: cost.xdp.nsPerRun, windowMs: cost.windowMs }, "per-NF cost measured");
    return cost;
  }

  #scheduleCost(): void {
    if (this.#stopped || !(this.config.costIntervalSeconds > 0)) return;
    this.#costTimer = setTimeout(() => {
      this.measureCost()
        .catch((err: Error) => this.#error(`measuring per-NF cost: ${err.message}`))
        .finally(() => this.#scheduleCost());
    }, this.config.costIntervalSeconds * 1000);
  }

  #dataplaneOptions(): DataplaneOptions {
    return {
      stateDir: this.config.stateDir,
      workers: { count: this.config.workerThreads, mode: this.config.busyPoll ? "busy-poll" : "blocking" },
      skb: this.xdpMode === "generic",
      logger: this.log.child({ component: "installer" }),
      // A crashed or seccomp-killed NF worker is that NF's error in the status report.
      onNfError: (e) => this.#error(e.message, e.nf),
    };
  }

  /** Brings back what ran before (adopt, else the cache), then starts the loops. */
  async start(): Promise<void> {
    this.log.info(
      {
        device: this.config.device,
        controller: this.config.controllerUrl,
        iface: this.config.interface,
        netns: this.config.netns,
        arch: this.arch,
        triple: this.triple,
        kernel: os.release(),
      },
      "agent starting",
    );
    if (this.config.allowUnsigned)
      this.log.warn(
        { config: this.config.file },
        "allowUnsigned is set: this agent installs chains no release key signed (development only; never on a device in service)",
      );
    else if (this.#trust.keys.length === 0)
      this.log.warn(
        { config: this.config.file },
        "no release key is pinned (releaseKeys): every chain will be refused",
      );
    // first: a bad metricsListen stops the agent before it touches the interface
    // loaded only when wanted: prom-client is most of the endpoint's memory
    if (this.config.metricsListen)
      this.#metrics = await (await import("./metrics")).startMetricsServer(
        this,
        this.config.metricsListen,
        this.config.metricsAllowRemote,
        this.log.child({ component: "metrics" }),
      );
    this.#probe();
    await this.#restore();
    this.#scheduleSync(0);
    if (this.config.websocket) this.#connectWs();
    this.#scheduleStatus();
    this.#scheduleCost();
  }

  /** Stops the loops and lets go of the dataplane; the chain stays installed (pinned). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#syncTimer);
    clearTimeout(this.#wsTimer);
    clearTimeout(this.#statusTimer);
    clearTimeout(this.#costTimer);
    this.#metrics?.close();
    this.#ws?.terminate();
    await this.#syncing?.catch(() => undefined);
    this.#dp?.detachProcess();
    this.#dp = undefined;
    this.#client.close();
    this.log.info("agent stopped; the chain stays installed (XDP keeps forwarding)");
  }

  // --- startup -------------------------------------------------------------------------

  async #restore(): Promise<void> {
    let cached: CachedAssignment | undefined;
    try {
      cached = this.#cache.loadAssignment();
    } catch (err) {
      this.#error(`ignoring the cached assignment: ${(err as Error).message}`);
    }
    const cachedChain = cached?.assignment.chain ?? undefined;
    try {
      this.#dp = await Dataplane.adopt(this.target, this.#dataplaneOptions());
      const live = new Set(this.#dp.spec.instances.map((i) => i.uuid));
      // The cached assignment describes the live chain only if it is that chain and still
      // passes the release checks (the cache is on the device's disk: it is checked again).
      const matches =
        cachedChain !== undefined &&
        cached !== undefined &&
        cachedChain.name === this.#dp.spec.chain &&
        cachedChain.nfs.every((nf) => live.has(nf.uuid)) &&
        this.#trusted(cached.assignment, "cache");
      if (matches) {
        this.#installed = { chain: cachedChain, etag: cached?.etag };
        this.#appliedKeys = cached?.appliedKeys ?? {};
      }
      this.#state = "offline-cache";
      this.log.info(
        { chain: this.#dp.spec.chain, version: matches ? cachedChain.version : undefined },
        "adopted the live chain",
      );
      return;
    } catch (err) {
      if (!/nothing to adopt/.test((err as Error).message)) {
        // Pins gone (reboot) or a broken leftover: clear it, then reinstall from the cache.
        // Dataplane.remove refuses while another live process runs the chain.
        this.log.warn(
          { err: (err as Error).message },
          "cannot adopt the installation; removing its leftovers",
        );
        Dataplane.remove(this.target, this.#dataplaneOptions());
      }
    }
    if (cachedChain && cached) {
      this.log.info({ chain: cachedChain.name, version: cachedChain.version }, "reinstalling from the cache");
      this.#appliedKeys = cached.appliedKeys;
      await this.#apply({ assignment: cached.assignment, etag: cached.etag }, "cache");
      if (this.#installed) this.#state = "offline-cache";
    }
  }

  // --- reconcile -----------------------------------------------------------------------

  /** Poll now (ws said so, or it reconnected); coalesces with a sync in flight. */
  syncNow(): void {
    if (this.#syncing) this.#syncAgain = true;
    else this.#scheduleSync(0);
  }

  #scheduleSync(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#syncTimer);
    this.#syncTimer = setTimeout(() => {
      this.#syncing = this.#sync().finally(() => {
        this.#syncing = undefined;
        if (this.#syncAgain) {
          this.#syncAgain = false;
          this.#scheduleSync(0);
        }
      });
    }, ms);
  }

  async #sync(): Promise<void> {
    let next = jitteredDelayMs(this.config.pollIntervalSeconds * 1000);
    try {
      const result = await this.#client.getAssignment(this.#desired?.etag, this.arch);
      if (this.#pollFailures > 0)
        this.log.info({ failures: this.#pollFailures }, "controller reachable again");
      this.#pollFailures = 0;
      if (result.changed) {
        this.#desired = { assignment: result.assignment, etag: result.etag };
        this.log.info(
          {
            chain: result.assignment.chain?.name ?? null,
            version: result.assignment.chain?.version,
            etag: result.etag,
          },
          "assignment received",
        );
      }
      if (this.#state === "offline-cache") this.#state = this.#installed ? "converged" : "idle";
    } catch (err) {
      this.#pollFailures++;
      next = backoffMs(this.#pollFailures, Math.min(POLL_BACKOFF_CAP_MS, next));
      this.log.warn(
        { err: (err as Error).message, failures: this.#pollFailures, retryMs: next },
        "cannot reach the controller; keeping the installed chain",
      );
      if (this.#installed) this.#state = "offline-cache";
      this.#scheduleSync(next);
      return;
    }
    if (this.#desired && this.#refusedEtag !== undefined && this.#isInstalled(this.#desired)) {
      // The controller offers what runs again: the refusal is over.
      this.log.info({ etag: this.#desired.etag }, "the controller offers the installed assignment again");
      this.#refusedEtag = undefined;
      this.#errors = [];
      this.#state = "converged";
      void this.#reportStatus();
    }
    if (
      this.#desired &&
      !this.#isInstalled(this.#desired) &&
      (this.#desired.etag === undefined || this.#desired.etag !== this.#refusedEtag) &&
      !this.#isHeld(this.#desired.assignment)
    ) {
      const desired = this.#desired;
      const confirmed = this.#confirmsHeld(desired.assignment);
      if (confirmed) {
        this.log.info(
          { chain: this.#held?.chain, version: this.#held?.version },
          "the operator confirmed the held-back version: installing it without the dead-man's switch",
        );
        this.#setHeld(undefined);
      }
      // The controller just answered: the control path works before the change.
      const before = this.#installed?.chain;
      if (await this.#apply(desired, "controller")) {
        this.#applyFailures = 0;
        const chain = desired.assignment.chain;
        const grace = desired.assignment.deadMan?.graceSeconds ?? DEFAULT_GRACE_SECONDS;
        const changed = chain && !(before && before.name === chain.name && before.version === chain.version);
        if (chain && changed && !confirmed && grace > 0 && this.#installed?.chain === chain)
          await this.#watchControlPath(chain, grace);
      } else {
        // A failed install (e.g. a corrupted download) is retried sooner than the next poll.
        this.#applyFailures++;
        next = Math.min(next, backoffMs(this.#applyFailures + 1, INSTALL_RETRY_CAP_MS));
      }
    }
    if (!this.#startupTrimmed) {
      // Start-up is over (probe, restore, first poll): what it freed in the C heap (V8's
      // compile zones, TLS set-up) goes back to the kernel instead of staying resident.
      this.#startupTrimmed = true;
      trimHeap();
    }
    this.#scheduleSync(next);
  }

  // --- dead-man's switch ---------------------------------------------------------------

  #isHeld(assignment: SignedDeviceAssignment): boolean {
    const held = this.#held;
    const chain = assignment.chain;
    if (!held || !chain || chain.name !== held.chain || chain.version !== held.version) return false;
    if (this.#confirmsHeld(assignment)) return false;
    const key = `${held.chain}@${held.version}`;
    if (this.#heldLogged !== key) {
      this.#heldLogged = key;
      this.log.warn(
        { chain: held.chain, version: held.version, reason: held.reason },
        "not installing the version the dead-man's switch rolled back until the operator confirms it (galette device confirm)",
      );
    }
    return true;
  }

  #confirmsHeld(assignment: SignedDeviceAssignment): boolean {
    const held = this.#held;
    const confirmed = assignment.deadMan?.confirmed;
    return (
      held !== undefined &&
      confirmed !== undefined &&
      confirmed.chain === held.chain &&
      confirmed.version === held.version &&
      assignment.chain?.name === held.chain &&
      assignment.chain.version === held.version
    );
  }

  #setHeld(held: HeldVersion | undefined): void {
    this.#held = held;
    this.#heldLogged = undefined;
    try {
      this.#cache.saveHeld(held);
    } catch (err) {
      this.#error(`cannot record the held-back version: ${(err as Error).message}`);
    }
  }

  /**
   * After `chain` went in: the controller must answer within `graceSeconds` (each attempt
   * on a new connection), else the change cut the control path and is rolled back.
   */
  async #watchControlPath(chain: AssignedChain, graceSeconds: number): Promise<void> {
    const started = Date.now();
    const deadline = started + graceSeconds * 1000;
    let lastError = "no attempt finished";
    this.log.info({ chain: chain.name, version: chain.version, graceSeconds }, "dead-man's switch armed");
    while (!this.#stopped && Date.now() < deadline) {
      try {
        await this.#client.reach(Math.max(500, Math.min(REACH_TIMEOUT_MS, deadline - Date.now())));
        this.log.info(
          { chain: chain.name, version: chain.version, ms: Date.now() - started },
          "dead-man's switch disarmed: the controller answers after the change",
        );
        return;
      } catch (err) {
        lastError = (err as Error).message;
      }
      await new Promise((r) =>
        setTimeout(r, Math.max(0, Math.min(REACH_INTERVAL_MS, deadline - Date.now()))),
      );
    }
    if (this.#stopped) return;
    await this.rollBack(
      `chain "${chain.name}" v${chain.version} cut this device off the controller: no answer within ${graceSeconds} s of installing it (last error: ${lastError})`,
      { hold: true },
    );
  }

  /**
   * Puts back the chain that ran before the current one, from the cache (nothing is
   * downloaded; the release checks accept the version that ran immediately before), or
   * uninstalls when nothing ran before. With `hold`, the current version is not installed
   * again until the operator confirms it. Returns whether the previous chain runs again.
   */
  async rollBack(reason: string, options: { hold: boolean }): Promise<boolean> {
    const current = this.#installed?.chain;
    let previous: CachedAssignment | undefined;
    try {
      previous = this.#cache.loadPrevious();
    } catch (err) {
      this.#error(`the previous assignment in the cache is unusable: ${(err as Error).message}`);
    }
    const restored = previous?.assignment.chain ?? null;
    this.log.error(
      {
        chain: current?.name,
        version: current?.version,
        restore: restored ? { chain: restored.name, version: restored.version } : null,
        reason,
      },
      "rolling back",
    );
    if (current && options.hold)
      this.#setHeld({
        chain: current.name,
        version: current.version,
        reason,
        at: new Date().toISOString(),
        restored: restored ? { chain: restored.name, version: restored.version } : null,
      });
    const ok = previous
      ? await this.#apply({ assignment: previous.assignment, etag: previous.etag }, "cache")
      : await this.#apply(
          {
            assignment: { protocolVersion: PROTOCOL_VERSION, device: this.config.device, chain: null },
            etag: undefined,
          },
          "cache",
        );
    this.#state = "error";
    this.#error(ok ? `rolled back: ${reason}` : `rollback failed (the new chain may still run): ${reason}`);
    void this.#reportStatus();
    return ok;
  }

  #isInstalled(desired: { assignment: SignedDeviceAssignment; etag: string | undefined }): boolean {
    const chain = desired.assignment.chain;
    if (!chain) return !this.#dp;
    return (
      this.#installed !== undefined && desired.etag !== undefined && this.#installed.etag === desired.etag
    );
  }

  async #apply(
    desired: { assignment: SignedDeviceAssignment; etag: string | undefined },
    from: "controller" | "cache",
  ): Promise<boolean> {
    const chain = desired.assignment.chain;
    if (!chain) {
      if (this.#dp) {
        this.log.info({ chain: this.#dp.spec.chain }, "no chain assigned any more: uninstalling");
        this.#dp.uninstall();
        this.#dp = undefined;
      }
      this.#installed = undefined;
      this.#appliedKeys = {};
      this.#errors = [];
      this.#state = "idle";
      this.#cache.saveAssignment({ ...desired, savedAt: new Date().toISOString(), appliedKeys: {} });
      void this.#reportStatus();
      return true;
    }
    const started = Date.now();
    const label = { chain: chain.name, version: chain.version, from };
    // Phase durations (ms) of this apply, logged with its outcome: where a slow
    // reconfiguration on a small device spends its time.
    const phases: Record<string, number> = {};
    let mark = started;
    const phase = (name: string) => {
      const now = Date.now();
      phases[name] = (phases[name] ?? 0) + (now - mark);
      mark = now;
    };
    const trusted = this.#trusted(desired.assignment, from);
    phase("verifyMs");
    if (!trusted) {
      // The cache's copy may be what was tampered with: the controller's is still worth a look.
      if (from === "controller") this.#refusedEtag = desired.etag;
      void this.#reportStatus();
      // Not retried: a refusal holds until the controller offers something else.
      return from === "controller";
    }
    this.#refusedEtag = undefined;
    // What runs now becomes the previous assignment (a rollback's target) once this succeeds.
    let prior: CachedAssignment | undefined;
    if (this.#installed) {
      try {
        prior = this.#cache.loadAssignment();
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message },
          "the cached assignment is unusable: no rollback target",
        );
      }
    }
    this.#state = "installing";
    let applied: { message: string; fields: Record<string, number> };
    try {
      const needed = neededArtifacts(chain, this.triple);
      let downloaded = 0;
      for (const { nf, kind, ref } of needed) {
        const what = `NF "${nf.instance}" (${nf.nf}) ${kind}`;
        if (this.#cache.has(ref.digest)) {
          try {
            this.#cache.verify(ref.digest, what);
            continue;
          } catch (err) {
            if (from === "cache") throw err;
            this.log.warn({ err: (err as Error).message }, "cached artifact corrupted; downloading it again");
          }
        }
        if (from === "cache")
          throw new Error(
            `${what}: artifact ${ref.digest} is not in the cache and the controller is not asked`,
          );
        const fetchStarted = Date.now();
        const bytes = await this.#client.fetchArtifact(ref.digest);
        this.#cache.put(ref.digest, bytes, what);
        downloaded++;
        this.log.info(
          { digest: ref.digest, nf: nf.instance, kind, bytes: bytes.length, ms: Date.now() - fetchStarted },
          "artifact downloaded",
        );
      }
      phase("artifactsMs");
      const input = toInstallerInput(chain, (digest) => this.#cache.artifactPath(digest));
      if (this.#dp) {
        const reconf = this.#dp.replan(input.plan, input.artifacts);
        phase("planMs");
        this.log.debug(
          { ...label, created: reconf.created, reused: reconf.reused, retired: reconf.retired },
          "reconfiguring the dataplane",
        );
        await this.#dp.reconfigure(reconf);
        phase("dataplaneMs");
        applied = {
          message: "assignment applied (reconfigured)",
          fields: {
            created: reconf.created.length,
            reused: reconf.reused.length,
            retired: reconf.retired.length,
          },
        };
      } else {
        const reconf = planInstallation(input.plan, input.artifacts, this.target, {});
        phase("planMs");
        this.#dp = await Dataplane.install(reconf, this.#dataplaneOptions());
        phase("dataplaneMs");
        applied = { message: "assignment applied (installed)", fields: { nfs: reconf.created.length } };
      }
      applied.fields.downloaded = downloaded;
    } catch (err) {
      this.#state = "error";
      this.#error(`installing chain "${chain.name}" v${chain.version} failed: ${(err as Error).message}`);
      this.log.error(
        {
          ...label,
          err: (err as Error).message,
          live: this.#installed ? this.#installed.chain.version : null,
        },
        "install failed; the previous chain keeps running",
      );
      void this.#reportStatus();
      return false;
    }
    this.#installed = { chain, etag: desired.etag };
    if (!this.config.allowUnsigned) this.#trust.recordInstalled(chain, desired.assignment.trust);
    this.#errors = [];
    this.#state = from === "cache" ? "offline-cache" : "converged";
    try {
      this.#applyMapEntries(chain);
    } catch (err) {
      this.#state = "error";
      this.#error(`chain "${chain.name}" v${chain.version}: map entries: ${(err as Error).message}`);
    }
    phase("mapEntriesMs");
    if (prior?.assignment.chain && prior.etag !== desired.etag) this.#cache.savePrevious(prior);
    this.#cache.saveAssignment({
      ...desired,
      savedAt: new Date().toISOString(),
      appliedKeys: this.#appliedKeys,
    });
    // The previous chain's artifacts stay too: a rollback loads them without the controller.
    const previous = this.#loadPreviousQuietly()?.assignment.chain;
    const keep = new Set(
      [
        ...neededArtifacts(chain, this.triple),
        ...(previous ? neededArtifacts(previous, this.triple) : []),
      ].map((n) => n.ref.digest),
    );
    const pruned = this.#cache.prune(keep);
    if (pruned.length > 0) this.log.debug({ pruned }, "pruned unused cached artifacts");
    phase("cacheMs");
    this.log.info({ ...label, ...applied.fields, ms: Date.now() - started, phases }, applied.message);
    void this.#reportStatus();
    return true;
  }

  #loadPreviousQuietly(): CachedAssignment | undefined {
    try {
      return this.#cache.loadPrevious();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "the previous assignment in the cache is unusable");
      return undefined;
    }
  }

  /**
   * The release checks (verify.ts): adopts a newer signed key set, then verifies the chain
   * against the keys in force and the version history. False (with the reason reported)
   * when the assignment must not be loaded; the running chain is left as it is.
   */
  #trusted(assignment: SignedDeviceAssignment, from: "controller" | "cache"): boolean {
    const chain = assignment.chain;
    if (this.config.allowUnsigned || !chain) return true;
    try {
      const adopted = this.#trust.adoptKeySet(assignment.trust?.keySet);
      if (adopted) this.log.info(adopted, "adopted a new release key set");
    } catch (err) {
      if (!(err instanceof TrustError)) throw err;
      this.#error(err.message);
      this.log.error({ err: err.message }, "release key set refused");
    }
    try {
      const { signedBy } = verifyAssignment(chain, assignment.trust, this.#trust.keys);
      this.#trust.checkVersion(chain.name, chain.version);
      this.#trust.checkMapSeq(assignment.trust, chain);
      this.log.info(
        { chain: chain.name, version: chain.version, from, signedBy: signedBy.slice(0, 16) },
        "assignment verified",
      );
      return true;
    } catch (err) {
      if (!(err instanceof TrustError)) throw err;
      this.#state = "error";
      // verify.ts names the chain version first in most reasons: say it once.
      const what = `chain "${chain.name}" v${chain.version}`;
      const reason = err.message.startsWith(what) ? err.message : `${what}: ${err.message}`;
      const message = `refused ${reason}${from === "cache" ? " (in the offline cache)" : ""}`;
      this.#error(message);
      this.log.error(
        {
          chain: chain.name,
          version: chain.version,
          from,
          reason: err.message,
          live: this.#installed?.chain.version ?? null,
        },
        "assignment refused; nothing loaded, the running chain stays",
      );
      return false;
    }
  }

  /** Entries the operator set become the maps' content; keys the operator removed are deleted. */
  #applyMapEntries(chain: AssignedChain): void {
    const dp = this.#dp!;
    const next: Record<string, string[]> = {};
    const wanted = new Map(chain.mapEntries.map((m) => [m.map, m.entries]));
    const mapIds = new Set([...wanted.keys(), ...Object.keys(this.#appliedKeys)]);
    for (const id of mapIds) {
      const entries = wanted.get(id) ?? [];
      const spec = chain.maps.find((m) => m.id === id);
      if (!spec) continue; // the map left the chain with its NF; its entries went with it
      const { instance, field } = mapBinding(chain, id);
      const map = dp.nfMap(instance, field);
      const keys = new Set(entries.map((e) => e.key));
      for (const old of this.#appliedKeys[id] ?? []) if (!keys.has(old)) map.delete(Buffer.from(old, "hex"));
      for (const [i, e] of entries.entries()) {
        const key = Buffer.from(e.key, "hex");
        const value = Buffer.from(e.value, "hex");
        if (key.length !== spec.keySize || value.length !== spec.valueSize)
          throw new Error(
            `map "${id}" entry ${i}: key ${key.length} B / value ${value.length} B, the map wants ${spec.keySize} B / ${spec.valueSize} B`,
          );
        map.update(key, value);
      }
      next[id] = [...keys];
      if (entries.length > 0 || (this.#appliedKeys[id]?.length ?? 0) > 0)
        this.log.info({ map: id, entries: entries.length }, "map entries applied");
    }
    this.#appliedKeys = next;
  }

  // --- status --------------------------------------------------------------------------

  #error(message: string, nf?: string): void {
    if (this.#errors.some((e) => e.message === message)) return;
    this.#errors.push({ message, at: new Date().toISOString(), ...(nf ? { nf } : {}) });
    if (this.#errors.length > MAX_ERRORS) this.#errors.shift();
  }

  statusReport(): DeviceStatusReport {
    let counters: DeviceStatusReport["counters"] = [];
    if (this.#dp) {
      try {
        counters = this.#dp.counters().map((c) => ({
          uuid: c.uuid,
          instance: c.name,
          counters: {
            ...c.variants,
            packets: c.total,
            // times its userland worker died while running it (crash, seccomp kill)
            ...(c.workerCrashes ? { workerCrashes: c.workerCrashes } : {}),
          },
        }));
      } catch (err) {
        this.#error(`reading counters: ${(err as Error).message}`);
      }
    }
    return {
      protocolVersion: PROTOCOL_VERSION,
      agentVersion: AGENT_VERSION,
      arch: this.arch,
      kernelVersion: os.release(),
      installed: this.#installed
        ? {
            chain: this.#installed.chain.name,
            version: this.#installed.chain.version,
            ...(this.#installed.etag ? { etag: this.#installed.etag } : {}),
          }
        : null,
      state: this.#state,
      errors: [...this.#errors],
      counters,
      ...(this.#capabilities ? { capabilities: this.#capabilities } : {}),
      rollback: this.#held ?? null,
      ...(this.cost ? { cost: this.cost } : {}),
    };
  }

  #statusInFlight = false;
  #statusAgain = false;

  #scheduleStatus(): void {
    if (this.#stopped) return;
    this.#statusTimer = setTimeout(
      () => {
        void this.#reportStatus();
        this.#scheduleStatus();
      },
      jitteredDelayMs(this.config.statusIntervalSeconds * 1000),
    );
  }

  /**
   * One report in flight at a time, each built when it is sent: a report queued behind a cut
   * control path (say, "installed v2") must not reach the controller after a newer one (the
   * rollback), which concurrent requests on a path coming back could do.
   */
  async #reportStatus(): Promise<void> {
    if (this.#stopped) return;
    if (this.#statusInFlight) {
      this.#statusAgain = true;
      return;
    }
    this.#statusInFlight = true;
    try {
      do {
        this.#statusAgain = false;
        const report = this.statusReport();
        try {
          await this.#client.postStatus(report);
          this.log.debug({ state: report.state, installed: report.installed }, "status reported");
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, "status not reported (controller unreachable)");
        }
      } while (this.#statusAgain && !this.#stopped);
    } finally {
      this.#statusInFlight = false;
    }
  }

  // --- packet trace (galette trace --device) -------------------------------------------

  #tracing = false;

  #trace(id: string, request: TraceRequest): void {
    const upload = (body: TraceUpload) => this.#client.postTrace(id, body);
    if (this.#tracing) {
      void upload({ frames: [], done: true, error: "a trace is already running on this device" }).catch(
        (err) => this.log.warn({ err }, "trace refusal not delivered"),
      );
      return;
    }
    this.#tracing = true;
    void runDeviceTrace({
      id,
      request,
      target: this.target,
      stateDir: this.#dataplaneOptions().stateDir ?? DEFAULT_STATE_DIR,
      upload,
      log: this.log,
    }).finally(() => {
      this.#tracing = false;
    });
  }

  // --- notifications -------------------------------------------------------------------

  #connectWs(): void {
    if (this.#stopped) return;
    this.#ws = this.#client.openNotifications({
      onOpen: () => {
        this.#wsFailures = 0;
        this.log.info("notification channel open");
        // Anything announced while we were disconnected: poll now.
        this.syncNow();
      },
      onNotification: (n) => {
        if (n.type === "assignment-changed") {
          this.log.info({ etag: n.etag }, "controller says the assignment changed");
          this.syncNow();
        }
        if (n.type === "trace") this.#trace(n.id, n.request);
      },
      onInvalid: (text) => this.log.warn({ message: text }, "ignoring an unexpected notification"),
      onClose: (reason) => {
        this.#ws = undefined;
        if (this.#stopped) return;
        this.#wsFailures++;
        const delay = backoffMs(this.#wsFailures, WS_BACKOFF_CAP_MS);
        this.log.warn({ reason, retryMs: delay }, "notification channel closed; reconnecting");
        this.#wsTimer = setTimeout(() => this.#connectWs(), delay);
      },
    });
  }
}
