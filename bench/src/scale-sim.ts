/**
 * The controller scale scenario's device simulator: processes of their own (forked by
 * scale.ts, commands over IPC, each simulating a share of the fleet) so their CPU is
 * measured apart from the controller's and one process's event loop does not hold a whole
 * fleet's requests.
 *
 * Each simulated device speaks as the agent does (the agent's own DeviceClient: mutual TLS,
 * a kept-alive connection per device): GET the assignment every `pollMs` with the ETag it
 * holds and at once when its notification socket opens or says the assignment changed;
 * on a changed assignment, the artifacts the agent would download; POST a status report
 * every `statusMs` (±10 %, as the agent); a ws notification channel reconnected with the
 * agent's backoff.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { type DeviceStatusReport, PROTOCOL_VERSION } from "@galette/protocol";
import {
  AGENT_VERSION,
  backoffMs,
  DeviceClient,
  jitteredDelayMs,
  neededArtifacts,
  POLL_BACKOFF_CAP_MS,
  WS_BACKOFF_CAP_MS,
} from "@galette/sbc-agent";
import { failureReason } from "./scale-failure";

export interface SimDevice {
  name: string;
  certFile: string;
  keyFile: string;
}

export type SimCommand =
  | {
      type: "start";
      url: string;
      caFile: string;
      devices: SimDevice[];
      pollMs: number;
      statusMs: number;
      websocket: boolean;
      /** devices start spread over this long */
      rampMs: number;
    }
  /** start a new measurement window (latencies from now on) */
  | { type: "window"; id: number }
  /** the window's samples so far */
  | { type: "window-samples"; id: number }
  /** answer when every device got an answer (ok) that arrived after `since` (epoch ms) */
  | { type: "await-served"; id: number; since: number; timeoutMs: number }
  /** answer when every device holds an assignment of chain `chain` (downloaded, reported) */
  | { type: "await-chain"; id: number; chain: string; timeoutMs: number }
  | { type: "stop"; id: number };

export interface LatencySummary {
  count: number;
  failures: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One simulator process's window, raw: the bench merges its processes' windows (mergeWindows). */
export interface SimWindow {
  poll: number[];
  status: number[];
  artifact: number[];
  pollFailures: number;
  statusFailures: number;
  artifactFailures: number;
  unchanged: number;
  wsOpen: number;
  loopDelay: { p99Ms: number; maxMs: number };
  failureReasons: Record<string, number>;
}

export interface SimStats {
  poll: LatencySummary;
  status: LatencySummary;
  artifact: LatencySummary;
  /** notification sockets open now */
  wsOpen: number;
  /** polls answered 304 (unchanged) in the window */
  unchanged: number;
  /**
   * How late the simulator's own event loop ran in the window (ms; its slowest process): a
   * latency it measured includes this much of its own waiting, not the controller's.
   */
  loopDelay: { p99Ms: number; maxMs: number };
  /** failed requests of the window by what failed them ("HTTP 503", "ECONNRESET", …) */
  failureReasons: Record<string, number>;
}

export type SimReply =
  | { type: "ready" }
  | { type: "window-samples"; id: number; window: SimWindow }
  /** `at`: epoch ms the last device was served; `missing`: devices never served before the timeout */
  | {
      type: "served";
      id: number;
      at: number;
      missing: number;
      unchangedFirst: number;
      /** a few of the missing devices' states */
      stuck: Array<Record<string, unknown>>;
    }
  | { type: "chain"; id: number; at: number; missing: number }
  | { type: "stopped"; id: number }
  | { type: "error"; message: string };

/** the loop-delay histogram's resolution (ms), which every sample also counts */
const LOOP_RESOLUTION_MS = 10;

class Window {
  readonly loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  constructor() {
    this.loop.enable();
  }
  poll: number[] = [];
  status: number[] = [];
  artifact: number[] = [];
  pollFailures = 0;
  statusFailures = 0;
  artifactFailures = 0;
  unchanged = 0;
  reasons = new Map<string, number>();
  fail(err: unknown): void {
    const reason = failureReason(err);
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }
}

class SimulatedDevice {
  readonly client: DeviceClient;
  etag: string | undefined;
  installed: { chain: string; version: number; etag?: string } | null = null;
  /** epoch ms the current `installed` was taken */
  installedAt = 0;
  lastServedAt = 0;
  /** whether that answer was a 304 */
  lastUnchanged = false;
  /** the first answer after a given instant: when, and whether it was a 304 (the controller kept its state) */
  firstAfter: { since: number; at: number; unchanged: boolean | undefined } | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #wsTimer: NodeJS.Timeout | undefined;
  #ws: { close(): void; terminate(): void } | undefined;
  #syncing = false;
  #again = false;
  #pollFailures = 0;
  #wsFailures = 0;
  #stopped = false;

  constructor(
    readonly sim: Simulator,
    readonly device: SimDevice,
    url: string,
    caFile: string,
  ) {
    this.client = new DeviceClient(url, { certFile: device.certFile, keyFile: device.keyFile, caFile });
  }

  start(): void {
    this.#schedule(0);
    if (this.sim.websocket) this.#connectWs();
    this.#scheduleReport();
  }

  #scheduleReport(): void {
    if (this.#stopped) return;
    this.#statusTimer = setTimeout(() => {
      void this.#report();
      this.#scheduleReport();
    }, jitteredDelayMs(this.sim.statusMs));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#pollTimer);
    clearTimeout(this.#wsTimer);
    clearTimeout(this.#statusTimer);
    this.#ws?.terminate();
    this.client.close();
  }

  /** what a device that is not served is doing (for the bench's warning) */
  describe(): Record<string, unknown> {
    return {
      name: this.device.name,
      syncing: this.#syncing,
      again: this.#again,
      pollFailures: this.#pollFailures,
      wsFailures: this.#wsFailures,
      ws: this.#ws ? "connecting or open" : "none",
      lastServedAgoMs: Date.now() - this.lastServedAt,
    };
  }

  syncNow(): void {
    if (this.#syncing) this.#again = true;
    else this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#pollTimer);
    this.#pollTimer = setTimeout(() => void this.#sync(), ms);
  }

  async #sync(): Promise<void> {
    this.#syncing = true;
    let next = jitteredDelayMs(this.sim.pollMs);
    const t0 = performance.now();
    try {
      const result = await this.client.getAssignment(this.etag, "x86_64");
      this.sim.window.poll.push(performance.now() - t0);
      this.#pollFailures = 0;
      this.lastServedAt = Date.now();
      this.lastUnchanged = !result.changed;
      if (this.firstAfter && this.firstAfter.at === 0) {
        this.firstAfter.unchanged = !result.changed;
        this.firstAfter.at = this.lastServedAt;
      }
      if (!result.changed) this.sim.window.unchanged++;
      else {
        const chain = result.assignment.chain;
        if (chain) {
          for (const { ref } of neededArtifacts(chain, result.assignment.triple)) {
            const a0 = performance.now();
            try {
              await this.client.fetchArtifact(ref.digest);
              this.sim.window.artifact.push(performance.now() - a0);
            } catch (err) {
              this.sim.window.artifactFailures++;
              this.sim.window.fail(err);
              throw err;
            }
          }
        }
        this.etag = result.etag;
        this.installed = chain ? { chain: chain.name, version: chain.version, etag: result.etag } : null;
        this.installedAt = Date.now();
        // the agent reports at once after an install
        void this.#report();
      }
    } catch (err) {
      this.sim.window.pollFailures++;
      this.sim.window.fail(err);
      this.#pollFailures++;
      next = backoffMs(this.#pollFailures, Math.min(POLL_BACKOFF_CAP_MS, next));
    } finally {
      this.#syncing = false;
    }
    if (this.#again) {
      this.#again = false;
      next = 0;
    }
    this.#schedule(next);
  }

  async #report(): Promise<void> {
    if (this.#stopped) return;
    const report: DeviceStatusReport = {
      protocolVersion: PROTOCOL_VERSION,
      agentVersion: AGENT_VERSION,
      arch: "x86_64",
      kernelVersion: "6.1.0-sim",
      installed: this.installed,
      state: this.installed ? "converged" : "idle",
      errors: [],
      counters: [],
      rollback: null,
    };
    const t0 = performance.now();
    try {
      await this.client.postStatus(report);
      this.sim.window.status.push(performance.now() - t0);
    } catch (err) {
      this.sim.window.statusFailures++;
      this.sim.window.fail(err);
    }
  }

  #connectWs(): void {
    if (this.#stopped) return;
    const ws = this.client.openNotifications({
      onOpen: () => {
        this.#wsFailures = 0;
        this.sim.wsOpen++;
        this.syncNow();
      },
      onNotification: (n) => {
        if (n.type === "assignment-changed") this.syncNow();
      },
      onInvalid: () => undefined,
      onClose: () => {
        this.#ws = undefined;
        if (this.#stopped) return;
        this.#wsFailures++;
        this.#wsTimer = setTimeout(() => this.#connectWs(), backoffMs(this.#wsFailures, WS_BACKOFF_CAP_MS));
      },
    });
    let open = false;
    ws.once("open", () => {
      open = true;
    });
    // counted from onOpen; uncounted only if it was open
    ws.once("close", () => {
      if (open) this.sim.wsOpen--;
    });
    this.#ws = ws;
  }
}

class Simulator {
  window = new Window();
  wsOpen = 0;
  devices: SimulatedDevice[] = [];
  pollMs = 5000;
  statusMs = 10_000;
  websocket = true;

  start(cmd: Extract<SimCommand, { type: "start" }>): void {
    this.pollMs = cmd.pollMs;
    this.statusMs = cmd.statusMs;
    this.websocket = cmd.websocket;
    this.devices = cmd.devices.map((d) => new SimulatedDevice(this, d, cmd.url, cmd.caFile));
    this.devices.forEach((d, i) => {
      setTimeout(() => d.start(), (i * cmd.rampMs) / this.devices.length);
    });
  }

  samples(): SimWindow {
    const w = this.window;
    return {
      poll: w.poll,
      status: w.status,
      artifact: w.artifact,
      pollFailures: w.pollFailures,
      statusFailures: w.statusFailures,
      artifactFailures: w.artifactFailures,
      wsOpen: this.wsOpen,
      unchanged: w.unchanged,
      failureReasons: Object.fromEntries(w.reasons),
      loopDelay: {
        p99Ms: Math.max(0, w.loop.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
        maxMs: Math.max(0, w.loop.max / 1e6 - LOOP_RESOLUTION_MS),
      },
    };
  }

  async awaitAll(
    done: (d: SimulatedDevice) => boolean,
    at: (d: SimulatedDevice) => number,
    timeoutMs: number,
  ): Promise<{ at: number; missing: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = this.devices.filter((d) => !done(d)).length;
      if (missing === 0 || Date.now() > deadline)
        return { at: Math.max(0, ...this.devices.filter(done).map(at)), missing };
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const sim = new Simulator();
const send = (reply: SimReply) => process.send?.(reply);

process.on("message", (raw) => {
  const cmd = raw as SimCommand;
  void (async () => {
    switch (cmd.type) {
      case "start":
        sim.start(cmd);
        send({ type: "ready" });
        return;
      case "window":
        sim.window.loop.disable();
        sim.window = new Window();
        return;
      case "window-samples":
        send({ type: "window-samples", id: cmd.id, window: sim.samples() });
        return;
      case "await-served": {
        // an answer already in (the command arrives late) counts as at `lastServedAt`
        for (const d of sim.devices)
          d.firstAfter =
            d.lastServedAt > cmd.since
              ? { since: cmd.since, at: d.lastServedAt, unchanged: d.lastUnchanged }
              : { since: cmd.since, at: 0, unchanged: undefined };
        const r = await sim.awaitAll(
          (d) => (d.firstAfter?.at ?? 0) > cmd.since,
          (d) => d.firstAfter?.at ?? 0,
          cmd.timeoutMs,
        );
        const unchangedFirst = sim.devices.filter((d) => d.firstAfter?.unchanged === true).length;
        const stuck = sim.devices
          .filter((d) => (d.firstAfter?.at ?? 0) <= cmd.since)
          .slice(0, 5)
          .map((d) => d.describe());
        send({ type: "served", id: cmd.id, ...r, unchangedFirst, stuck });
        return;
      }
      case "await-chain": {
        const r = await sim.awaitAll(
          (d) => d.installed?.chain === cmd.chain,
          (d) => d.installedAt,
          cmd.timeoutMs,
        );
        send({ type: "chain", id: cmd.id, ...r });
        return;
      }
      case "stop":
        for (const d of sim.devices) d.stop();
        send({ type: "stopped", id: cmd.id });
        setTimeout(() => process.exit(0), 100).unref();
        return;
    }
  })().catch((err: unknown) => send({ type: "error", message: (err as Error).message }));
});
process.on("disconnect", () => process.exit(0));
