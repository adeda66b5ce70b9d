/**
 * Staged rollouts: a chain version reaches the devices a selector matches phase by phase.
 * Each phase's devices get an explicit assignment to the version, soak for `soakSeconds`,
 * and are checked against the rollout's gate (rollouts-gate.ts) on every tick once they
 * run the version and once more when the soak ends. A failed gate pauses the rollout and
 * puts that phase's devices back on what they ran before (devices accept the version
 * that ran immediately before without a new signature, and still hold its artifacts).
 *
 * All state lives in the rollouts table and every step is one synchronous read-modify-
 * write of it, so a restarted controller carries on where the last one stopped.
 */

import type {
  ChainGraph,
  DeviceStatusReport,
  Labels,
  Rollout,
  RolloutDevice,
  RolloutGateTerm,
  StartRolloutRequest,
} from "@galette/protocol";
import type { FastifyBaseLogger } from "fastify";
import { RequestError } from "./control";
import { evaluateGate, formatGateTerm, GateError, type GateValues, parseGate } from "./rollouts-gate";
import type { DeviceRecord, Repository } from "./storage/repository";
import { selectorMatches } from "./storage/rows";

/** A device that neither holds a notification connection nor reported within this is offline. */
export const OFFLINE_AFTER_SECONDS = 30;
const MAX_EVENTS = 200;
/** heartbeat of a device that never reported */
const NEVER = 1e9;

export interface RolloutEnvironment {
  repo: Repository;
  log: FastifyBaseLogger;
  isOnline(device: string): boolean;
  /** tell these devices their assignment changed */
  notify(devices: string[], reason: string): Promise<void>;
  now?: () => number;
}

/** Per-device measurements kept between ticks (not on the wire; inside the stored document). */
interface Baseline {
  /** drops and frames entering the chain, from the report before the rollout reached it */
  drops: number;
  packets: number;
  /**
   * per NF uuid, per variant: the counters when the phase reached it; a counter seen lower
   * than this later was reset (a new NF instance) and counts from 0 from then on
   */
  snapshot: Record<string, Record<string, number>> | null;
}
type StoredDevice = RolloutDevice & { previous: PreviousAssignment; baseline: Baseline | null };
type StoredRollout = Omit<Rollout, "devices"> & { devices: StoredDevice[] };

/** The device's explicit assignment before the rollout (explicit false: it followed a selector rule, or nothing). */
interface PreviousAssignment {
  explicit: boolean;
  chain: string | null;
  version: number | null;
}

/** Cumulative device counts per phase spec, for `total` devices; throws RequestError on a bad list. */
export function phaseSizes(specs: readonly string[], total: number): number[] {
  const sizes: number[] = [];
  specs.forEach((spec, i) => {
    let n: number;
    if (spec.endsWith("%")) {
      const pct = Number(spec.slice(0, -1));
      if (!(pct > 0 && pct <= 100))
        throw new RequestError(
          400,
          `phase ${i + 1} (${spec}): a percentage must be above 0% and at most 100%`,
        );
      n = Math.ceil((pct * total) / 100 - 1e-9);
    } else {
      n = Number(spec);
      if (!(Number.isInteger(n) && n > 0))
        throw new RequestError(400, `phase ${i + 1} (${spec}): a device count must be a positive integer`);
    }
    n = Math.min(n, total);
    const before = sizes.at(-1) ?? 0;
    if (n < before)
      throw new RequestError(
        400,
        `phase ${i + 1} (${spec}) reaches ${n} devices, fewer than phase ${i} (${before}): phases are cumulative`,
      );
    sizes.push(n);
  });
  if (sizes.at(-1) !== total)
    throw new RequestError(
      400,
      `the last phase (${specs.at(-1)}) reaches ${sizes.at(-1)} of the ${total} selected devices: end with 100%`,
    );
  return sizes;
}

const installedIs = (status: DeviceStatusReport | null, chain: string, version: number) =>
  status?.installed?.chain === chain && status.installed.version === version;

/** Per NF uuid, per variant, the counters of a status report (workerCrashes included). */
function countersOf(status: DeviceStatusReport | null): Record<string, Record<string, number>> {
  return Object.fromEntries((status?.counters ?? []).map((c) => [c.uuid, { ...c.counters }]));
}

/** Frames the chain's NFs sent to `kind` and frames that entered it, by the graph's action tables. */
function framesOf(
  graph: ChainGraph,
  counters: Record<string, Record<string, number>>,
  kind: "drop" | "abort",
) {
  let sent = 0;
  for (const nf of graph.nfs) {
    const c = counters[nf.uuid];
    if (!c) continue;
    nf.actions.forEach((a, i) => {
      if (a.kind === kind) sent += c[a.variant ?? ""] ?? c[`action${i}`] ?? 0;
    });
  }
  const entry =
    graph.entry.kind === "tailcall" || graph.entry.kind === "upcall" ? graph.entry.target : undefined;
  const packets = entry ? (counters[entry]?.packets ?? 0) : 0;
  return { sent, packets };
}

/** Marks counters seen below their snapshot as reset (a new NF instance): they count from 0. */
function noteResets(
  snapshot: Record<string, Record<string, number>>,
  now: Record<string, Record<string, number>>,
): void {
  for (const [uuid, c] of Object.entries(snapshot))
    for (const [k, v] of Object.entries(c)) if ((now[uuid]?.[k] ?? v) < v) c[k] = 0;
}

/** counters now minus counters then, per key; a counter that went down was reset (new instance): count from 0. */
function delta(
  now: Record<string, Record<string, number>>,
  then: Record<string, Record<string, number>>,
): Record<string, Record<string, number>> {
  return Object.fromEntries(
    Object.entries(now).map(([uuid, c]) => [
      uuid,
      Object.fromEntries(
        Object.entries(c).map(([k, v]) => {
          const before = then[uuid]?.[k] ?? 0;
          return [k, v >= before ? v - before : v];
        }),
      ),
    ]),
  );
}

export class RolloutEngine {
  readonly #env: RolloutEnvironment;
  readonly #now: () => number;
  readonly #graphs = new Map<string, ChainGraph | null>();

  constructor(env: RolloutEnvironment) {
    this.#env = env;
    this.#now = env.now ?? Date.now;
  }

  get #repo(): Repository {
    return this.#env.repo;
  }

  #iso(): string {
    return new Date(this.#now()).toISOString();
  }

  async #graph(repo: Repository, chain: string, version: number): Promise<ChainGraph | null> {
    const key = `${chain}@${version}`;
    if (!this.#graphs.has(key))
      this.#graphs.set(key, (await repo.getChainVersion(chain, version))?.graph ?? null);
    return this.#graphs.get(key)!;
  }

  async list(active = false): Promise<Rollout[]> {
    return (await this.#repo.listRollouts({ active })).map(publicView);
  }

  async get(id: number): Promise<Rollout> {
    const r = await this.#repo.getRollout(id);
    if (!r) throw new RequestError(404, `rollout ${id} does not exist`);
    return publicView(r);
  }

  /** Validates and stores a rollout; the first phase starts on the next tick. */
  async start(request: StartRolloutRequest, actor: string): Promise<Rollout> {
    let gate: ReturnType<typeof parseGate>;
    try {
      gate = parseGate(request.gate);
    } catch (err) {
      if (err instanceof GateError) throw new RequestError(400, `--gate: ${err.message}`, [err.pointer]);
      throw err;
    }
    const chain = await this.#repo.getChainVersion(request.chain, request.version);
    if (!chain)
      throw new RequestError(
        404,
        `chain ${request.chain}${request.version ? ` version ${request.version}` : ""} does not exist (push it first)`,
      );
    const devices = (await this.#repo.listDevices()).filter(
      (d) => !d.revokedAt && selectorMatches(request.selector, d.labels),
    );
    const shown = Object.entries(request.selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    if (devices.length === 0) throw new RequestError(400, `no enrolled device is labelled ${shown}`);
    const sizes = phaseSizes(request.phases, devices.length);
    // checked and stored in one transaction: two controllers cannot both start one
    const id = await this.#repo.transaction(async (tx) => {
      const active = await tx.listRollouts({ active: true });
      const sameChain = active.find((r) => r.chain === chain.name);
      if (sameChain)
        throw new RequestError(
          409,
          `rollout ${sameChain.id} of ${sameChain.chain} is ${sameChain.state}: finish or abort it first`,
        );
      for (const r of active) {
        const taken = r.devices.find((d) => devices.some((x) => x.name === d.name));
        if (taken)
          throw new RequestError(
            409,
            `device ${taken.name} is in rollout ${r.id} (${r.chain}, ${r.state}): abort it first`,
          );
      }
      const at = this.#iso();
      const ordered = [...devices].sort((a, b) => (a.name < b.name ? -1 : 1));
      const rollout: Omit<StoredRollout, "id"> = {
        chain: chain.name,
        version: chain.version,
        selector: request.selector as Labels,
        phases: request.phases.map((spec, i) => ({ spec, devices: sizes[i]! })),
        soakSeconds: request.soakSeconds,
        gate: gate.source,
        offline: request.offline ?? "wait",
        state: "running",
        phase: 0,
        stop: null,
        createdAt: at,
        createdBy: actor,
        updatedAt: at,
        devices: ordered.map((d, i) => ({
          name: d.name,
          phase: sizes.findIndex((n) => i < n),
          state: "pending",
          ran: null,
          assignedAt: null,
          installedAt: null,
          soakEndsAt: null,
          failed: [],
          note: null,
          previous: { explicit: false, chain: null, version: null },
          baseline: null,
        })),
        events: [
          {
            at,
            message: `started by ${actor}: ${chain.name} v${chain.version} to ${ordered.length} device(s) labelled ${shown}, phases ${request.phases.join(",")}, soak ${request.soakSeconds}s, gate ${gate.source}`,
          },
        ],
      };
      return tx.insertRollout(rollout as Omit<Rollout, "id">);
    });
    this.#env.log.info(
      { rollout: id, chain: chain.name, version: chain.version, devices: devices.length },
      "rollout started",
    );
    await this.tick();
    return this.get(id);
  }

  pause(id: number, actor: string): Promise<Rollout> {
    return this.#change(id, (r) => {
      if (r.state !== "running") throw new RequestError(409, `rollout ${id} is ${r.state}, not running`);
      r.state = "paused";
      r.stop = { kind: "operator", at: this.#iso(), message: `paused by ${actor}`, by: actor };
      this.#event(r, `paused by ${actor}`);
    });
  }

  /** Continues a paused rollout; a phase stopped by its gate starts again (its devices get the version again). */
  async resume(id: number, actor: string): Promise<Rollout> {
    const r = await this.#change(id, (r) => {
      if (r.state !== "paused") throw new RequestError(409, `rollout ${id} is ${r.state}, not paused`);
      const soakEndsAt = new Date(this.#now() + r.soakSeconds * 1000).toISOString();
      for (const d of r.devices) {
        if (d.phase !== r.phase) continue;
        if (d.state === "rolled-back") Object.assign(d, { state: "pending", failed: [], note: null });
        if (d.state === "updating" || d.state === "waiting") d.soakEndsAt = soakEndsAt;
      }
      r.state = "running";
      r.stop = null;
      this.#event(r, `resumed by ${actor}: phase ${r.phase + 1} soaks again`);
    });
    await this.tick();
    return this.get(r.id);
  }

  /** Stops the rollout and puts every device it moved back on what it ran before. */
  async abort(id: number, actor: string): Promise<Rollout> {
    const moved: string[] = [];
    const r = await this.#change(id, async (r, tx) => {
      if (r.state !== "running" && r.state !== "paused")
        throw new RequestError(409, `rollout ${id} is ${r.state} already`);
      for (const d of r.devices) {
        if (d.state === "updating" || d.state === "waiting" || d.state === "passed") {
          await this.#restore(tx, d, `aborted by ${actor}`);
          moved.push(d.name);
        }
      }
      r.state = "aborted";
      r.stop = { kind: "aborted", at: this.#iso(), message: `aborted by ${actor}`, by: actor };
      this.#event(r, `aborted by ${actor}; rolled back: ${moved.join(", ") || "none"}`);
    });
    await this.#audit(r, "aborted", moved);
    await this.#env.notify(moved, "rollout-abort");
    return r;
  }

  /**
   * One step of every running rollout: start phases, read reports, judge gates, advance.
   * Each step is one serialised transaction that reads the stored state afresh, so
   * controllers sharing a database may all tick: the first to step a rollout moves it on,
   * the others find nothing left to do. Ticks of one controller never overlap.
   */
  tick(): Promise<void> {
    if (this.#ticking) {
      // one running: one more after it (a rollout stored meanwhile is stepped by that one)
      this.#again ??= this.#ticking.then(() => {
        this.#again = undefined;
        return this.tick();
      });
      return this.#again;
    }
    this.#ticking = this.#tickOnce().finally(() => {
      this.#ticking = undefined;
    });
    return this.#ticking;
  }

  #ticking: Promise<void> | undefined;
  #again: Promise<void> | undefined;

  async #tickOnce(): Promise<void> {
    let active: Rollout[];
    try {
      active = await this.#repo.listRollouts({ active: true });
    } catch (err) {
      this.#env.log.error({ err }, "rollouts not read; retrying on the next tick");
      return;
    }
    for (const r of active) {
      if (r.state !== "running") continue;
      try {
        await this.#step(r.id);
      } catch (err) {
        this.#env.log.error({ err, rollout: r.id }, "rollout step failed; retrying on the next tick");
      }
    }
  }

  async #change(
    id: number,
    fn: (r: StoredRollout, tx: Repository) => void | Promise<void>,
  ): Promise<Rollout> {
    return publicView(
      await this.#repo.transaction(async (tx) => {
        const r = (await tx.getRollout(id)) as StoredRollout | undefined;
        if (!r) throw new RequestError(404, `rollout ${id} does not exist`);
        const before = JSON.stringify(r);
        await fn(r, tx);
        // most ticks change nothing: no write then
        if (JSON.stringify(r) === before) return r as Rollout;
        r.updatedAt = this.#iso();
        await tx.updateRollout(r as Rollout);
        return r as Rollout;
      }),
    );
  }

  #event(r: StoredRollout, message: string): void {
    r.events.push({ at: this.#iso(), message });
    if (r.events.length > MAX_EVENTS) r.events.splice(0, r.events.length - MAX_EVENTS);
    this.#env.log.info({ rollout: r.id, chain: r.chain, version: r.version }, `rollout: ${message}`);
  }

  /** The controller's own steps go to the audit log beside the operators' calls. */
  async #audit(r: Rollout, step: string, devices: string[]): Promise<void> {
    try {
      await this.#repo.insertAudit({
        at: this.#iso(),
        actor: `rollout ${r.id}`,
        method: "ROLLOUT",
        route: step,
        target: `${r.chain} v${r.version}${devices.length ? `: ${devices.join(",")}`.slice(0, 200) : ""}`,
        status: 200,
        remote: "controller",
      });
    } catch (err) {
      this.#env.log.error({ err, rollout: r.id, step }, "rollout audit row not written");
    }
  }

  async #step(id: number): Promise<void> {
    const notify: Array<[string[], string]> = [];
    const audits: Array<[string, string[]]> = [];
    const r = await this.#change(id, async (r, tx) => {
      if (r.state !== "running") return;
      for (let guard = 0; guard < r.phases.length + 1; guard++) {
        const inPhase = r.devices.filter((d) => d.phase === r.phase);
        const pending = inPhase.filter((d) => d.state === "pending");
        if (pending.length > 0) {
          await this.#assign(tx, r, pending);
          notify.push([pending.map((d) => d.name), "rollout"]);
          audits.push([`phase ${r.phase + 1} started`, pending.map((d) => d.name)]);
        }
        const failure = await this.#judge(tx, r, inPhase);
        if (failure) {
          const back = inPhase.filter(
            (d) => d.state === "updating" || d.state === "waiting" || d.state === "passed",
          );
          for (const d of back)
            await this.#restore(tx, d, d === failure.device ? "gate failed" : `phase ${r.phase + 1} failed`);
          failure.device.failed = failure.failed;
          const why = failure.failed.map(formatGateTerm).join(", ");
          const message = `phase ${r.phase + 1}: ${failure.device.name} failed the gate: ${why}`;
          r.state = "paused";
          r.stop = {
            kind: "gate-failed",
            at: this.#iso(),
            message,
            device: failure.device.name,
            phase: r.phase,
            failed: failure.failed,
          };
          this.#event(r, `${message}; rolled back ${back.map((d) => d.name).join(", ")}`);
          notify.push([back.map((d) => d.name), "rollout-rollback"]);
          audits.push([`phase ${r.phase + 1} gate failed, rolled back`, back.map((d) => d.name)]);
          return;
        }
        if (!inPhase.every((d) => d.state === "passed" || d.state === "skipped")) return;
        const reached = r.devices.filter((d) => d.state === "passed").length;
        if (r.phase === r.phases.length - 1) {
          r.state = "completed";
          this.#event(r, `completed: ${reached} device(s) run ${r.chain} v${r.version}`);
          audits.push(["completed", []]);
          return;
        }
        this.#event(
          r,
          `phase ${r.phase + 1} passed (${inPhase.map((d) => d.name).join(", ") || "no new device"})`,
        );
        r.phase++;
      }
    });
    for (const [step, devices] of audits) await this.#audit(r, step, devices);
    for (const [devices, reason] of notify) if (devices.length) await this.#env.notify(devices, reason);
  }

  async #assign(tx: Repository, r: StoredRollout, devices: StoredDevice[]): Promise<void> {
    const at = this.#iso();
    const soakEndsAt = new Date(this.#now() + r.soakSeconds * 1000).toISOString();
    for (const d of devices) {
      const record = await tx.getDevice(d.name);
      if (!record || record.revokedAt) {
        Object.assign(d, { state: "skipped", note: record ? "revoked" : "no longer enrolled" });
        continue;
      }
      const status = record.status;
      if (d.assignedAt !== null && d.baseline) {
        // a phase run again (resume): what it had before the rollout is still what it had
        d.baseline.snapshot = countersOf(status);
        Object.assign(d, { state: "updating", assignedAt: at, soakEndsAt, installedAt: null, failed: [] });
        continue;
      }
      d.ran = status?.installed ? { chain: status.installed.chain, version: status.installed.version } : null;
      d.previous =
        record.assignedBy?.kind === "explicit"
          ? { explicit: true, chain: record.assignedChain, version: record.assignedVersion }
          : { explicit: false, chain: record.assignedChain, version: record.assignedVersion };
      const ranGraph = d.ran ? await this.#graph(tx, d.ran.chain, d.ran.version) : null;
      const before = ranGraph ? framesOf(ranGraph, countersOf(status), "drop") : { sent: 0, packets: 0 };
      // Counting starts now, not at the first report of the version: frames it aborts
      // before that report count too.
      d.baseline = { drops: before.sent, packets: before.packets, snapshot: countersOf(status) };
      Object.assign(d, { state: "updating", assignedAt: at, soakEndsAt, installedAt: null, failed: [] });
    }
    const names = devices.filter((d) => d.state === "updating").map((d) => d.name);
    if (names.length) await tx.assignChain(names, r.chain, r.version);
    this.#event(
      r,
      `phase ${r.phase + 1} started: ${names.join(", ") || "no device"} get ${r.chain} v${r.version}`,
    );
  }

  /** Puts a device back on what it had before the rollout. */
  async #restore(tx: Repository, d: StoredDevice, note: string): Promise<void> {
    const record = await tx.getDevice(d.name);
    if (record && !record.revokedAt) {
      const p = d.previous;
      if (p.explicit && p.chain && p.version !== null) await tx.assignChain([d.name], p.chain, p.version);
      else if (d.ran && !(p.chain === d.ran.chain && p.version === d.ran.version)) {
        // it followed a rule or "latest", which may now name this very version: pin what it ran
        await tx.assignChain([d.name], d.ran.chain, d.ran.version);
      } else if (p.explicit && p.chain) await tx.assignChain([d.name], p.chain, p.version);
      else await tx.clearExplicitAssignment([d.name]);
    }
    d.state = d.state === "pending" ? "pending" : "rolled-back";
    d.note = d.ran
      ? `${note}: back on ${d.ran.chain} v${d.ran.version}`
      : `${note}: previous assignment restored`;
  }

  /** Reads the phase's reports: the first gate failure, or undefined (and device states moved on). */
  async #judge(
    tx: Repository,
    r: StoredRollout,
    devices: StoredDevice[],
  ): Promise<{ device: StoredDevice; failed: RolloutGateTerm[] } | undefined> {
    const gate = parseGate(r.gate);
    const now = this.#now();
    for (const d of devices) {
      if (d.state !== "updating" && d.state !== "waiting") continue;
      const record = await tx.getDevice(d.name);
      if (!record || record.revokedAt) {
        Object.assign(d, {
          state: "skipped",
          note: record ? "revoked during the rollout" : "no longer enrolled",
        });
        continue;
      }
      const installed = installedIs(record.status, r.chain, r.version);
      if (d.baseline?.snapshot) noteResets(d.baseline.snapshot, countersOf(record.status));
      if (installed && !d.installedAt) {
        d.installedAt = this.#iso();
        if (d.state === "waiting") {
          // back from offline: its own soak starts now
          d.state = "updating";
          d.soakEndsAt = new Date(now + r.soakSeconds * 1000).toISOString();
        }
      }
      const values = await this.#values(tx, r, d, record, installed);
      const verdict = evaluateGate(gate, values);
      d.failed = verdict.failed;
      if (installed && !verdict.pass) return { device: d, failed: verdict.failed };
      if (d.state === "waiting" || now < Date.parse(d.soakEndsAt ?? "")) continue;
      if (!installed && !values.online) {
        if (r.offline === "fail")
          return { device: d, failed: [{ term: "online (offline policy fail)", values: { online: false } }] };
        if (r.offline === "skip") {
          await this.#restore(tx, d, "offline when its soak ended (policy skip)");
          d.state = "skipped";
          this.#event(r, `${d.name} skipped: offline when its soak ended`);
          continue;
        }
        d.state = "waiting";
        d.note = "offline: waiting for it to come back (policy wait)";
        this.#event(r, `${d.name} is offline: waiting for it`);
        continue;
      }
      if (!verdict.pass) return { device: d, failed: verdict.failed };
      d.state = "passed";
      d.note = null;
    }
    return undefined;
  }

  async #values(
    tx: Repository,
    r: StoredRollout,
    d: StoredDevice,
    record: DeviceRecord,
    installed: boolean,
  ): Promise<GateValues> {
    const now = this.#now();
    const seen = record.statusAt ? Date.parse(record.statusAt) : Number.NaN;
    const lastSeen = Math.max(seen, record.lastSeenAt ? Date.parse(record.lastSeenAt) : Number.NaN);
    const heartbeat = Number.isFinite(seen) ? Math.max(0, (now - seen) / 1000) : NEVER;
    const online =
      this.#env.isOnline(d.name) ||
      (Number.isFinite(lastSeen) && now - lastSeen <= OFFLINE_AFTER_SECONDS * 1000);
    const since = d.assignedAt ?? "";
    const reportedErrors = (record.status?.errors ?? []).filter((e) => e.at >= since).length;
    let aborts = 0;
    let drops = 0;
    let crashes = 0;
    let dropRatio = 1;
    const graph = await this.#graph(tx, r.chain, r.version);
    if (installed && graph && d.baseline?.snapshot) {
      const counted = delta(countersOf(record.status), d.baseline.snapshot);
      aborts = framesOf(graph, counted, "abort").sent;
      const dropped = framesOf(graph, counted, "drop");
      drops = dropped.sent;
      crashes = Object.values(counted).reduce((n, c) => n + (c.workerCrashes ?? 0), 0);
      // A device that dropped nothing before counts as having dropped one frame: the ratio stays finite.
      const before = Math.max(d.baseline.drops, 1) / Math.max(d.baseline.packets, 1);
      const after = dropped.packets > 0 ? drops / dropped.packets : 0;
      dropRatio = dropped.packets > 0 ? after / before : 1;
    }
    return {
      installed,
      online,
      heartbeat: Math.round(heartbeat * 10) / 10,
      aborts,
      errors: reportedErrors + crashes,
      drops,
      drop_ratio: Math.round(dropRatio * 1000) / 1000,
    };
  }
}

/** The wire view: without the per-device bookkeeping. */
function publicView(r: Rollout): Rollout {
  return {
    ...r,
    devices: r.devices.map((d) => {
      const { previous: _p, baseline: _b, ...rest } = d as StoredDevice;
      return rest;
    }),
  };
}
