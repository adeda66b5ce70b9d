/**
 * The kernel half of the installer: `Dataplane` carries an InstallSpec out with
 * @galette/xdp-native (maps, programs, action tables, PROG_ARRAY slots, the root program
 * and its swap slot, AF_XDP workers), reconfigures a live installation beside itself,
 * adopts one left by a dead process, and removes it. What it leans on lives beside it:
 * the installation record (record.ts), the undo journal of an attempt (undo.ts), the
 * handles it owns and their clean-up (handles.ts), the maps it creates and fills
 * (device-maps.ts). See docs/dataplane.md "Installing chains".
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { createLogger, type Logger } from "@galette/log";
import { GALETTE_MAX_ACTIONS, GALETTE_MAX_INSTANCES, GALETTE_MAX_XSKS } from "@galette/vocabulary";
import {
  AbiNames,
  attachXdp,
  BpfMap,
  BpfObject,
  closeFd,
  detachXdp,
  InProcessWorkerPool,
  ifIndex,
  type NfInstanceConfig,
  netnsPath,
  openPinned,
  type PoolStats,
  type ProgramRunStats,
  programInfo,
  programRunStats,
  queryXdp,
  rootProgramObjectPath,
  rxUpcallObjectPath,
  Trace,
  WorkerCrashError,
  type WorkerError,
  type WorkerHealth,
  WorkerPool,
} from "@galette/xdp-native";
import { costReuse, ensureCostMaps } from "./cost-maps";
import {
  createActionTable,
  createNfMap,
  type DeviceMaps,
  fillPorts,
  fillTable,
  key32,
  PORTS_MAP_SIZE,
} from "./device-maps";
import { InstallError, withContext } from "./errors";
import { LiveHandles, type LiveInstance, pinOrReplace, unpin } from "./handles";
import {
  DEFAULT_STATE_DIR,
  type InstallationRecord,
  processAlive,
  readRecord,
  recordPath,
  type WorkerSettings,
  writeRecord,
} from "./record";
import {
  devicePins,
  type InstallPlan,
  type InstallSpec,
  type InstanceSpec,
  type InterfaceTarget,
  interfaceScope,
  type NfArtifacts,
  planInstallation,
  type Reconfiguration,
  RX_INSTANCE,
  slotTablePin,
  targetPorts,
} from "./spec";
import { createTraceQueue, openTraceMaps, tracePins } from "./trace-maps";
import { Undo } from "./undo";

/** A userland NF's worker died (crash, seccomp kill) or failed; `nf` when attributable. */
export interface NfWorkerError {
  message: string;
  nf?: string;
  instance?: number;
}

export interface DataplaneOptions {
  /** where installation records live (default /run/galette) */
  stateDir?: string;
  /** bpffs root for pins (default /sys/fs/bpf/galette) */
  bpffsRoot?: string;
  workers?: Partial<WorkerSettings>;
  /** generic (skb) XDP instead of native driver mode */
  skb?: boolean;
  logger?: Logger;
  /** called for every worker error after start (also logged), e.g. to report it upstream */
  onNfError?: (err: NfWorkerError) => void;
}

const netnsOf = (t: InterfaceTarget): string | undefined => (t.netns ? netnsPath(t.netns) : undefined);

/** The XDP targets of every port of an installation. */
const xdpTargets = (t: InterfaceTarget) => targetPorts(t).map((ifname) => ({ ifname, netns: netnsOf(t) }));

/** `eth0` or `eth0,eth1`: the installation's ports as the CLI names them. */
const portsLabel = (t: InterfaceTarget): string => targetPorts(t).join(",");

/** `--iface X` or `--ports A,B` (plus `--netns`), as `galette dataplane down` takes them. */
const downFlags = (t: InterfaceTarget): string =>
  `${t.peer ? `--ports ${t.iface},${t.peer}` : `--iface ${t.iface}`}${t.netns ? ` --netns ${t.netns}` : ""}`;

export interface NfCounters {
  id: number;
  name: string;
  uuid: string;
  placement: string;
  /** frames per Action variant (XDP and userland summed) */
  variants: Record<string, number>;
  /** frames this NF handled */
  total: number;
  /** times the userland worker process died while running this NF (since this process started it) */
  workerCrashes: number;
}

/**
 * A chain installed on one interface, owned by this process (it runs the workers).
 * Create with Dataplane.install or Dataplane.adopt.
 */
export class Dataplane {
  #record: InstallationRecord;
  readonly #h: LiveHandles;
  #pool: WorkerPool | InProcessWorkerPool | undefined;
  readonly #onNfError: ((err: NfWorkerError) => void) | undefined;
  #closed = false;
  readonly log: Logger;
  readonly #stateDir: string;

  private constructor(
    record: InstallationRecord,
    dev: DeviceMaps,
    rootFd: number,
    log: Logger,
    stateDir: string,
    onNfError?: (err: NfWorkerError) => void,
  ) {
    this.#onNfError = onNfError;
    this.#record = record;
    this.#h = new LiveHandles(dev, rootFd);
    this.log = log;
    this.#stateDir = stateDir;
  }

  get record(): Readonly<InstallationRecord> {
    return this.#record;
  }
  get spec(): InstallSpec {
    return this.#record.spec;
  }
  get pool(): WorkerPool | InProcessWorkerPool | undefined {
    return this.#pool;
  }

  /**
   * Installs a fresh chain on an interface that has none. Refuses (and touches nothing)
   * when a record or pins of an earlier installation exist: adopt or remove that first.
   */
  static async install(reconf: Reconfiguration, options: DataplaneOptions = {}): Promise<Dataplane> {
    const spec = reconf.spec;
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    const log = (options.logger ?? createLogger("galette-installer")).child({
      iface: spec.target.iface,
      netns: spec.target.netns,
    });
    const existing = readRecord(spec.target, stateDir);
    if (existing)
      throw new InstallError(
        `${portsLabel(spec.target)} already has chain "${existing.spec.chain}" installed (record ${recordPath(spec.target, stateDir)}, pid ${existing.pid}); reconfigure it, adopt it, or remove it with \`galette dataplane down ${downFlags(spec.target)}\``,
      );
    if (existsSync(spec.pins.dir))
      throw new InstallError(
        `${spec.pins.dir} exists without an installation record: leftovers of a crashed install; remove them with \`galette dataplane down ${downFlags(spec.target)}\``,
      );
    const mode = options.skb ? "skb" : "drv";
    const targets = xdpTargets(spec.target);
    for (const target of targets) {
      const state = queryXdp(target);
      if (state.progId !== 0)
        throw new InstallError(
          `${target.ifname} already has an XDP program attached (id ${state.progId}) that is not a Galette installation; detach it first`,
        );
    }

    const undo = new Undo();
    let dp: Dataplane | undefined;
    try {
      mkdirSync(spec.pins.dir, { recursive: true });
      undo.push("remove pin dir", () => rmSync(spec.pins.dir, { recursive: true, force: true }));
      const mk = (
        type: "prog_array" | "xskmap" | "array" | "devmap_hash",
        name: string,
        max: number,
        pin: string,
      ): BpfMap => {
        const m = BpfMap.create({ type, name, keySize: 4, valueSize: 4, maxEntries: max });
        undo.push(`close ${name}`, () => m.close());
        pinOrReplace(m.fd, pin);
        return m;
      };
      const progs = mk("prog_array", AbiNames.progs, GALETTE_MAX_INSTANCES, spec.pins.progs);
      const xsks = mk("xskmap", AbiNames.xsks, GALETTE_MAX_XSKS, spec.pins.xsks);
      // [0] sockets per (port, queue), [1] the second port's ifindex, [2], [3] RX queues per port (set by the workers)
      const xskCount = mk("array", AbiNames.xskCount, 4, spec.pins.xskCount);
      const ports = mk("devmap_hash", AbiNames.ports, PORTS_MAP_SIZE, spec.pins.ports);
      const tables = Array.from({ length: GALETTE_MAX_INSTANCES }, (_, id) => {
        const t = createActionTable();
        undo.push(`close table ${id}`, () => t.close());
        pinOrReplace(t.fd, slotTablePin(spec.pins.dir, id));
        return t;
      });
      const trace = tracePins(spec.pins.dir);
      const root = BpfObject.load(rootProgramObjectPath(), {
        pinMaps: {
          [AbiNames.rootProgs]: spec.pins.rootProgs,
          ...(spec.pins.rootPorts ? { [AbiNames.rootPorts]: spec.pins.rootPorts } : {}),
          [Trace.names.cfg]: trace.cfg,
          [Trace.names.ring]: trace.ring,
        },
      });
      undo.push("close root object", () => root.close());
      const rootFd = root.programFd(AbiNames.rootProgram);
      pinOrReplace(rootFd, spec.pins.root);
      const rootProgs = BpfMap.openPinned(spec.pins.rootProgs);
      undo.push("close root_progs", () => rootProgs.close());
      const rootPorts = spec.pins.rootPorts ? BpfMap.openPinned(spec.pins.rootPorts) : undefined;
      if (rootPorts) undo.push("close root_ports", () => rootPorts.close());
      const traceRing = BpfMap.openPinned(trace.ring);
      undo.push("close trace ring", () => traceRing.close());
      const traceQueue = createTraceQueue();
      undo.push("close trace queue", () => traceQueue.close());
      pinOrReplace(traceQueue.fd, trace.queue);
      const ownRootFd = openPinned(spec.pins.root);
      root.close();

      const record: InstallationRecord = {
        version: 1,
        spec,
        mode,
        ifindex: 0,
        rootProgId: programInfo(ownRootFd).id,
        workers: {
          count: options.workers?.count ?? 2,
          mode: options.workers?.mode ?? "blocking",
          ...(options.workers?.inProcess ? { inProcess: true } : {}),
          ...(options.workers?.hostDelivery === false ? { hostDelivery: false } : {}),
        },
        pid: process.pid,
        updatedAt: new Date().toISOString(),
      };
      dp = new Dataplane(
        record,
        {
          tables,
          progs,
          xsks,
          xskCount,
          ports,
          rootProgs,
          ...(rootPorts ? { rootPorts } : {}),
          traceRing,
          traceQueue,
        },
        ownRootFd,
        log,
        stateDir,
        options.onNfError,
      );
      const created = dp;
      undo.push("close dataplane handles", () => created.#h.closeAll());
      await dp.#build(reconf, undo);
      if (spec.rx) await dp.#ensureRx(undo);
      await dp.#syncPool(undo);
      // Root last: until the chain is complete the interfaces see no Galette program.
      const ifindexes = targets.map((target) => {
        const ifindex = attachXdp(target, ownRootFd, { mode, noReplace: true });
        undo.push(`detach root from ${target.ifname}`, () =>
          detachXdp(target, { mode, expectedFd: ownRootFd }),
        );
        return ifindex;
      });
      record.ifindex = ifindexes[0]!;
      if (ifindexes.length === 2) {
        record.peerIfindex = ifindexes[1]!;
        fillPorts(ports, ifindexes[0]!, ifindexes[1]!, netnsOf(spec.target));
        rootPorts?.update(key32(0), key32(ifindexes[1]!));
      }
      // a chain per direction: the second port's entry first, so no frame of it ever
      // takes the first port's chain
      if (spec.entryB !== undefined) rootProgs.update(key32(1), key32(dp.#progFdOf(spec.entryB)));
      rootProgs.update(key32(0), key32(dp.#progFdOf(spec.entry)));
      writeRecord(record, stateDir);
      log.info(
        {
          chain: spec.chain,
          instances: spec.instances.map((i) => `${i.name}#${i.id}`),
          entry: spec.entry,
          ...(spec.entryB !== undefined ? { entryB: spec.entryB } : {}),
          mode,
          ports: targetPorts(spec.target),
        },
        "chain installed",
      );
      return dp;
    } catch (err) {
      if (dp) dp.#pool?.stop();
      undo.run(log);
      throw withContext(err, `installing chain "${spec.chain}" on ${portsLabel(spec.target)}`);
    }
  }

  /**
   * Takes over an installation whose process is gone: opens its pins, checks the root
   * program is still the attached one (re-attaching it if the interface lost it), and
   * starts fresh workers. XDP kept forwarding all along; userland resumes here.
   */
  static async adopt(target: InterfaceTarget, options: DataplaneOptions = {}): Promise<Dataplane> {
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    const log = (options.logger ?? createLogger("galette-installer")).child({
      iface: target.iface,
      netns: target.netns,
    });
    const record = readRecord(target, stateDir);
    if (!record)
      throw new InstallError(
        `no installation record for ${interfaceScope(target)} in ${stateDir}: nothing to adopt`,
      );
    if (record.pid !== process.pid && processAlive(record.pid))
      throw new InstallError(
        `chain "${record.spec.chain}" on ${portsLabel(target)} is run by live process ${record.pid}; stop it before adopting`,
      );
    const spec = record.spec;
    const undo = new Undo();
    try {
      const open = (pin: string) => {
        const m = BpfMap.openPinned(pin);
        undo.push(`close ${pin}`, () => m.close());
        return m;
      };
      // records written before two-port support have no ports map: their programs each
      // hold a private, empty one (tx reflects), so an unshared empty map is equivalent
      const ports = spec.pins.ports
        ? open(spec.pins.ports)
        : BpfMap.create({
            type: "devmap_hash",
            name: AbiNames.ports,
            keySize: 4,
            valueSize: 4,
            maxEntries: PORTS_MAP_SIZE,
          });
      undo.push("close ports", () => ports.close());
      const trace = openTraceMaps(tracePins(spec.pins.dir));
      undo.push("close trace maps", () => {
        trace.traceRing.close();
        trace.traceQueue.close();
      });
      const dev: DeviceMaps = {
        tables: Array.from({ length: GALETTE_MAX_INSTANCES }, (_, id) =>
          open(slotTablePin(spec.pins.dir, id)),
        ),
        progs: open(spec.pins.progs),
        xsks: open(spec.pins.xsks),
        xskCount: open(spec.pins.xskCount),
        ports,
        rootProgs: open(spec.pins.rootProgs),
        // records written before chains per direction: a one-slot root without this map
        ...(spec.pins.rootPorts ? { rootPorts: open(spec.pins.rootPorts) } : {}),
        ...trace,
      };
      const rootFd = openPinned(spec.pins.root);
      const dp = new Dataplane(record, dev, rootFd, log, stateDir, options.onNfError);
      // from here on every handle opened belongs to dp and is closed with the rest
      undo.push("close dataplane handles", () => dp.#h.closeAll());
      for (const m of spec.maps) dp.#h.maps.set(m.key, BpfMap.openPinned(m.pin));
      for (const i of spec.instances) {
        const inst: LiveInstance = { spec: i };
        dp.#h.instances.set(i.id, inst);
        if (i.xdp) {
          inst.counts = BpfMap.openPinned(i.pins.counts);
          inst.progFd = openPinned(i.pins.prog);
        }
      }
      if (spec.rx) dp.#h.rx = { progFd: openPinned(spec.rx.pins.prog) };
      const rootId = programInfo(rootFd).id;
      const ifindexes = xdpTargets(spec.target).map((xdpTarget) => {
        const state = queryXdp(xdpTarget);
        if (state.progId === 0) {
          log.warn({ port: xdpTarget.ifname }, "root program was detached; attaching it again");
          return attachXdp(xdpTarget, rootFd, { mode: record.mode, noReplace: true });
        }
        if (state.progId !== rootId)
          throw new InstallError(
            `${xdpTarget.ifname} runs XDP program ${state.progId}, not this installation's root program ${rootId}: refusing to adopt (detach it, then \`galette dataplane down ${downFlags(spec.target)}\`)`,
          );
        return ifIndex(xdpTarget.ifname, xdpTarget.netns);
      });
      record.ifindex = ifindexes[0]!;
      if (ifindexes.length === 2) {
        // an interface re-created since (same name, new ifindex) gets the right entries
        record.peerIfindex = ifindexes[1]!;
        fillPorts(dev.ports, ifindexes[0]!, ifindexes[1]!, netnsOf(spec.target));
        dev.rootPorts?.update(key32(0), key32(ifindexes[1]!));
      }
      record.rootProgId = rootId;
      record.pid = process.pid;
      if (options.workers?.count) record.workers.count = options.workers.count;
      if (options.workers?.mode) record.workers.mode = options.workers.mode;
      // A dead owner's sockets are released by the kernel asynchronously: retry while busy.
      await dp.#syncPool(new Undo(), undefined, true);
      record.updatedAt = new Date().toISOString();
      writeRecord(record, stateDir);
      log.info({ chain: spec.chain, pid: process.pid }, "installation adopted");
      return dp;
    } catch (err) {
      undo.run(log);
      throw withContext(err, `adopting the installation on ${portsLabel(target)}`);
    }
  }

  /**
   * Removes an installation without owning it (`galette dataplane down`, or after a crash):
   * detaches the root program if it is still ours, then removes every pin and the record.
   * Returns false when there was nothing to remove.
   */
  static remove(target: InterfaceTarget, options: DataplaneOptions = {}): boolean {
    const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    const record = readRecord(target, stateDir);
    if (record && record.pid !== process.pid && processAlive(record.pid))
      throw new InstallError(
        `chain "${record.spec.chain}" on ${portsLabel(target)} is run by live process ${record.pid}: stop that process (it uninstalls on exit) instead`,
      );
    const pins = record?.spec.pins ?? devicePins(target, options.bpffsRoot);
    let removed = false;
    if (existsSync(pins.root)) {
      const fd = openPinned(pins.root);
      try {
        const rootId = programInfo(fd).id;
        for (const xdpTarget of xdpTargets(target)) {
          let state: ReturnType<typeof queryXdp>;
          try {
            state = queryXdp(xdpTarget);
          } catch (err) {
            // a port that is gone has nothing attached; the other one still gets detached
            if ((err as { code?: string }).code !== "ENODEV") throw err;
            continue;
          }
          if (state.progId !== 0 && state.progId === rootId)
            detachXdp(xdpTarget, { mode: state.skbProgId ? "skb" : "drv", expectedFd: fd });
        }
      } finally {
        closeFd(fd);
      }
    }
    if (existsSync(pins.dir)) {
      rmSync(pins.dir, { recursive: true, force: true });
      removed = true;
    }
    const file = recordPath(target, stateDir);
    if (existsSync(file)) {
      rmSync(file);
      removed = true;
    }
    return removed;
  }

  /**
   * Switches to a new chain: builds what changed beside the live chain, updates the
   * workers, swaps the root slot (atomic), then retires what the new chain no longer uses.
   * On failure everything this attempt created is removed and the live chain keeps running.
   */
  async reconfigure(reconf: Reconfiguration): Promise<void> {
    this.#open();
    const old = this.#record.spec;
    const next = reconf.spec;
    if (interfaceScope(next.target) !== interfaceScope(old.target))
      throw new InstallError(
        `reconfiguration targets ${interfaceScope(next.target)}, this installation is ${interfaceScope(old.target)}`,
      );
    if (next.entryB !== undefined && !this.#h.dev.rootPorts)
      throw new InstallError(
        `chain "${next.chain}" has a direction per port, but the installation on ${portsLabel(old.target)} has a root program from before chains per direction: remove it (\`galette dataplane down ${downFlags(old.target)}\`) and install again`,
      );
    const undo = new Undo();
    const retiring = new Set(reconf.retired);
    try {
      await this.#build(reconf, undo);
      this.#record.spec = next;
      if (next.rx) await this.#ensureRx(undo);
      // Before the swap the workers run old and new userland instances: frames still on
      // the old chain keep their NFs, frames on the new one find theirs.
      const both = [...next.instances, ...old.instances.filter((i) => retiring.has(i.id))].filter(
        (i) => i.userland,
      );
      // (a pool stopped by an earlier switch may still hold the queue for a moment: retry)
      await this.#syncPool(undo, both, true);
    } catch (err) {
      this.#record.spec = old;
      undo.run(this.log);
      throw withContext(
        err,
        `reconfiguring ${old.target.iface} from chain "${old.chain}" to "${next.chain}"`,
      );
    }
    // The switch: one PROG_ARRAY update per direction, each atomic for packets. Slot 1 (the
    // second port's chain) first; emptied after slot 0 when the chain has no directions
    // any more, so those frames fall through to the new slot 0.
    if (next.entryB !== undefined && next.entryB !== old.entryB)
      this.#h.dev.rootProgs.update(key32(1), key32(this.#progFdOf(next.entryB)));
    if (next.entry !== old.entry) this.#h.dev.rootProgs.update(key32(0), key32(this.#progFdOf(next.entry)));
    if (next.entryB === undefined && old.entryB !== undefined) this.#h.dev.rootProgs.delete(key32(1));
    try {
      // Resolves once no worker can still run a retired instance.
      await this.#syncPool(new Undo());
    } catch (err) {
      // The new chain is live; only the cleanup is postponed (a worker may still run old code).
      this.log.error({ err }, "workers did not leave the retired instances; keeping them loaded");
      this.#record.updatedAt = new Date().toISOString();
      writeRecord(this.#record, this.#stateDir);
      return;
    }
    for (const id of reconf.retired) this.#retireInstance(id);
    if (old.rx && !next.rx) this.#retireRx(old);
    for (const key of reconf.maps.retired) {
      const m = old.maps.find((x) => x.key === key)!;
      this.#h.maps.get(key)?.close();
      this.#h.maps.delete(key);
      unpin(m.pin);
    }
    this.#record.updatedAt = new Date().toISOString();
    writeRecord(this.#record, this.#stateDir);
    this.log.info(
      {
        chain: next.chain,
        created: reconf.created,
        reused: reconf.reused,
        retired: reconf.retired,
        entry: next.entry,
        ...(next.entryB !== undefined ? { entryB: next.entryB } : {}),
      },
      "chain reconfigured",
    );
  }

  /** The reconfiguration from this installation to `plan` (pure; throws before touching anything). */
  replan(plan: InstallPlan, artifacts: ReadonlyMap<string, NfArtifacts>): Reconfiguration {
    return planInstallation(plan, artifacts, this.spec.target, {
      live: this.spec,
      bpffsRoot: path.dirname(this.spec.pins.dir),
    });
  }

  /** Per-NF frame counts: XDP counters (galette_counts) plus the workers' counts. */
  counters(): NfCounters[] {
    this.#open();
    const pool = this.#pool?.running ? this.#pool.stats() : undefined;
    const crashes = this.workerHealth()?.crashesByInstance ?? {};
    return this.spec.instances.map((i) => {
      const sums = this.#xdpSums(i);
      const ps = pool?.instances.find((s) => s.id === i.id);
      if (ps) for (let v = 0; v < i.variants.length; v++) sums[v]! += ps.variants[v] ?? 0;
      return {
        id: i.id,
        name: i.name,
        uuid: i.uuid,
        placement: [i.xdp ? "xdp" : "", i.userland ? "userland" : ""].filter(Boolean).join("+"),
        variants: Object.fromEntries(i.variants.map((n, v) => [n, sums[v]!])),
        total: sums.reduce((a, b) => a + b, 0),
        workerCrashes: crashes[i.id] ?? 0,
      };
    });
  }

  /** Frames each instance ran on in XDP (its galette_counts, every variant summed). */
  xdpCounts(): { id: number; total: number }[] {
    this.#open();
    return this.spec.instances.map((i) => ({ id: i.id, total: this.#xdpSums(i).reduce((a, b) => a + b, 0) }));
  }

  #xdpSums(i: InstanceSpec): number[] {
    const sums = new Array<number>(i.variants.length).fill(0);
    const counts = this.#h.instances.get(i.id)?.counts;
    if (counts)
      for (let v = 0; v < i.variants.length; v++) {
        const per = counts.lookupPerCpu(key32(v)) ?? [];
        sums[v] = per.reduce((a, b) => a + Number(b.readBigUInt64LE(0)), 0);
      }
    return sums;
  }

  /** Kernel bpf_stats of the root program: the whole XDP path, every tail-called NF included. */
  rootRunStats(): ProgramRunStats {
    this.#open();
    return programRunStats(this.#h.rootFd);
  }

  workerStats(): PoolStats | undefined {
    return this.#pool?.running ? this.#pool.stats() : undefined;
  }

  /** The worker process supervisor's view (restarts, crashes per instance); none in-process. */
  workerHealth(): WorkerHealth | undefined {
    return this.#pool instanceof WorkerPool && this.#pool.running ? this.#pool.health() : undefined;
  }

  /** Logs a worker error with the NF it concerns and passes it on (onNfError). */
  #workerError(err: WorkerError): void {
    const ids = err instanceof WorkerCrashError ? err.instances : [];
    const inst = ids.length ? this.spec.instances.find((i) => i.id === ids[0]) : undefined;
    const restart =
      err instanceof WorkerCrashError
        ? `; ${err.restartInMs ? `backing off, restarting in ${err.restartInMs} ms` : "restarting"}`
        : "";
    const message = inst
      ? `NF "${inst.name}" (instance ${inst.id}): ${err.message}${restart}`
      : `${err.message}${restart}`;
    this.log.error({ err, nf: inst?.name, instance: inst?.id }, "AF_XDP worker error");
    this.#onNfError?.({ message, ...(inst ? { nf: inst.name, instance: inst.id } : {}) });
  }

  /** A map of the installation by #[maps] field of an NF instance (to fill allow-lists etc.). */
  nfMap(nf: string, field: string): BpfMap {
    const inst = this.spec.instances.find((i) => i.name === nf);
    if (!inst) throw new InstallError(`no NF instance "${nf}" in chain "${this.spec.chain}"`);
    const idx = inst.mapFields.indexOf(field);
    if (idx < 0)
      throw new InstallError(
        `NF "${nf}" has no map "${field}" (maps: ${inst.mapFields.join(", ") || "none"})`,
      );
    return this.#h.maps.get(inst.maps[idx]!)!;
  }

  /** Stops the workers and closes fds, leaving the chain in the kernel (pins keep it). */
  detachProcess(): void {
    if (this.#closed) return;
    this.#pool?.stop();
    this.#pool = undefined;
    this.#h.closeAll();
    this.#closed = true;
  }

  /** Removes everything: root detach, workers, programs, maps, pins, the record. */
  uninstall(): void {
    if (this.#closed) throw new InstallError(`installation on ${this.spec.target.iface} is already closed`);
    const t = this.spec.target;
    for (const xdpTarget of xdpTargets(t)) {
      try {
        detachXdp(xdpTarget, { mode: this.#record.mode, expectedFd: this.#h.rootFd });
      } catch (err) {
        this.log.warn(
          { err, port: xdpTarget.ifname },
          "root program detach failed (the interface may be gone)",
        );
      }
    }
    this.#pool?.stop();
    this.#pool = undefined;
    this.#h.closeAll();
    this.#closed = true;
    rmSync(this.spec.pins.dir, { recursive: true, force: true });
    rmSync(recordPath(t, this.#stateDir), { force: true });
    this.log.info({ chain: this.spec.chain }, "chain uninstalled");
  }

  // -------------------------------------------------------------------------------------

  #open(): void {
    if (this.#closed) throw new InstallError(`installation on ${this.spec.target.iface} is closed`);
  }

  #progFdOf(id: number): number {
    if (id === RX_INSTANCE) {
      if (!this.#h.rx) throw new InstallError("the rx upcall program is not loaded");
      return this.#h.rx.progFd;
    }
    const fd = this.#h.instances.get(id)?.progFd;
    if (fd === undefined) throw new InstallError(`instance ${id} has no XDP program`);
    return fd;
  }

  /** Creates the maps and instances `reconf` marks as created; registers undo steps. */
  async #build(reconf: Reconfiguration, undo: Undo): Promise<void> {
    const spec = reconf.spec;
    for (const key of reconf.maps.created) {
      const m = spec.maps.find((x) => x.key === key)!;
      const map = createNfMap(m);
      undo.push(`close map ${key}`, () => map.close());
      pinOrReplace(map.fd, m.pin);
      undo.push(`unpin map ${key}`, () => unpin(m.pin));
      this.#h.maps.set(key, map);
      undo.push(`forget map ${key}`, () => this.#h.maps.delete(key));
    }
    // Children before parents is not needed: a tail call into a slot filled a moment later
    // only happens once the root slot points at the new chain, which is the last step.
    for (const id of reconf.created) {
      const i = spec.instances.find((x) => x.id === id)!;
      const inst = this.#createInstance(i, undo);
      this.#h.instances.set(id, inst);
      undo.push(`forget instance ${id}`, () => this.#h.instances.delete(id));
    }
  }

  #createInstance(i: InstanceSpec, undo: Undo): LiveInstance {
    const dir = path.dirname(i.pins.prog);
    mkdirSync(dir, { recursive: true });
    undo.push(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    // A fresh slot: its table is idle (all ABORT) until now, nothing reads it yet.
    const actions = this.#h.dev.tables[i.id]!;
    fillTable(actions, i.actions);
    undo.push(`clear table ${i.id}`, () => fillTable(actions, []));
    const inst: LiveInstance = { spec: i };
    if (!i.xdp) return inst;

    const counts = BpfMap.create({
      type: "percpu_array",
      name: "galette_counts",
      keySize: 4,
      valueSize: 8,
      maxEntries: GALETTE_MAX_ACTIONS,
    });
    undo.push(`close counts ${i.id}`, () => counts.close());
    pinOrReplace(counts.fd, i.pins.counts);
    inst.counts = counts;
    const reuseMaps: Record<string, BpfMap> = {
      [AbiNames.actions]: actions,
      [AbiNames.counts]: counts,
      [AbiNames.progs]: this.#h.dev.progs,
      [AbiNames.xsks]: this.#h.dev.xsks,
      [AbiNames.xskCount]: this.#h.dev.xskCount,
    };
    i.mapFields.forEach((field, k) => {
      reuseMaps[`nf_map_${field}`] = this.#h.maps.get(i.maps[k]!)!;
    });
    let obj: BpfObject;
    const cost = ensureCostMaps(this.spec.pins.dir); // per-NF XDP timing, shared by every NF
    try {
      obj = BpfObject.load(i.bpfObject!, {
        name: `nf${i.id}`,
        rodata: { [AbiNames.instanceId]: i.id },
        reuseMaps,
        // objects built before the ports map (or per-NF timing) existed do not declare it
        reuseMapsIfDeclared: {
          [AbiNames.ports]: this.#h.dev.ports,
          [Trace.names.ring]: this.#h.dev.traceRing,
          ...costReuse(cost),
        },
      });
    } catch (err) {
      throw withContext(err, `loading NF "${i.name}" (instance ${i.id}, ${i.bpfObject})`);
    } finally {
      cost.close();
    }
    undo.push(`close object ${i.id}`, () => obj.close());
    const progFd = obj.programFd(AbiNames.nfProgram);
    pinOrReplace(progFd, i.pins.prog);
    inst.object = obj;
    inst.progFd = progFd;
    this.#h.dev.progs.update(key32(i.id), key32(progFd));
    undo.push(`clear slot ${i.id}`, () => {
      this.#h.dev.progs.delete(key32(i.id));
    });
    return inst;
  }

  /**
   * Loads the rx upcall program (once) and points slot 255's table at the entry. When a
   * live chain already uses it, the table change reaches the workers with the next
   * updateInstances, which is then the switch (the root slot keeps pointing at rx).
   */
  async #ensureRx(undo: Undo): Promise<void> {
    const rx = this.spec.rx!;
    const table = this.#h.dev.tables[RX_INSTANCE]!;
    const before = Array.from(
      { length: GALETTE_MAX_ACTIONS },
      (_, k) => table.lookup(key32(k)) ?? Buffer.alloc(8),
    );
    fillTable(table, rx.actions);
    undo.push("restore the rx table", () => {
      for (const [k, v] of before.entries()) table.update(key32(k), v);
    });
    if (this.#h.rx) return;
    const file = rxUpcallObjectPath();
    let obj: BpfObject;
    try {
      obj = BpfObject.load(file, {
        name: "galette_rx",
        reuseMaps: { [AbiNames.xsks]: this.#h.dev.xsks, [AbiNames.xskCount]: this.#h.dev.xskCount },
        reuseMapsIfDeclared: { [Trace.names.ring]: this.#h.dev.traceRing },
      });
    } catch (err) {
      throw withContext(err, `loading the rx upcall program (${file})`);
    }
    const progFd = obj.programFd("galette_rx_upcall");
    pinOrReplace(progFd, rx.pins.prog);
    this.#h.rx = { progFd, object: obj };
    undo.push("unload the rx upcall program", () => {
      unpin(rx.pins.prog);
      obj.close();
      this.#h.rx = undefined;
    });
  }

  #retireRx(old: InstallSpec): void {
    if (!this.#h.rx) return;
    this.#h.closeRx();
    unpin(old.rx!.pins.prog);
    fillTable(this.#h.dev.tables[RX_INSTANCE]!, []);
  }

  #retireInstance(id: number): void {
    const inst = this.#h.instances.get(id);
    if (!inst) return;
    if (inst.spec.xdp) this.#h.dev.progs.delete(key32(id));
    fillTable(this.#h.dev.tables[id]!, []);
    this.#h.closeInstance(id);
    rmSync(path.dirname(inst.spec.pins.prog), { recursive: true, force: true });
  }

  /**
   * Gives the workers every slot's action table (a new XDP instance only fills the table of
   * its fresh slot) and the libraries of `userland`. A running pool is updated in place
   * (updateInstances: atomic, nothing dropped); otherwise the pool is started.
   */
  async #syncPool(
    undo: Undo,
    userland = this.spec.instances.filter((i) => i.userland),
    retryBusy = false,
  ): Promise<void> {
    const upcalls = this.spec.instances.some((i) => i.actions.some((a) => a.kind === "upcall"));
    const needed = userland.length > 0 || upcalls || this.spec.rx !== undefined;
    const libraries = new Map(userland.map((i) => [i.id, i]));
    const instances: NfInstanceConfig[] = this.#h.dev.tables.map((table, id) => {
      const i = libraries.get(id);
      return {
        id,
        actions: table,
        ...(i ? { library: i.library!, maps: i.maps.map((k) => this.#h.maps.get(k)!) } : {}),
      };
    });
    if (this.#pool?.running) {
      if (needed) await this.#pool.updateInstances(instances);
      else {
        // The chain no longer upcalls (the switch is done): frames upcalled just before it
        // are still in the workers' rings; let them through before the sockets go.
        await drainPool(this.#pool);
        this.#pool.stop();
        this.#pool = undefined;
      }
      return;
    }
    if (!needed) return;
    const t = this.spec.target;
    const options = {
      ifname: t.iface,
      ...(t.peer ? { peer: t.peer } : {}),
      ...(this.#record.workers.hostDelivery !== false && !this.#record.workers.inProcess
        ? { hostTap: true }
        : {}),
      ...(t.netns ? { netns: netnsPath(t.netns) } : {}),
      workers: this.#record.workers.count,
      mode: this.#record.workers.mode,
      xskMap: this.#h.dev.xsks,
      xskCountMap: this.#h.dev.xskCount,
      instances,
      traceQueue: this.#h.dev.traceQueue,
      onError: (err: WorkerError) => this.#workerError(err),
    };
    // After a crash the kernel releases the dead owner's AF_XDP sockets asynchronously
    // (seen: 1-3 s on veth): the queue can still be busy when we adopt.
    const startAt = Date.now();
    for (;;) {
      try {
        this.#pool = this.#record.workers.inProcess
          ? await InProcessWorkerPool.start(options)
          : await WorkerPool.start(options);
        break;
      } catch (err) {
        const busy = (err as { code?: string }).code === "EBUSY";
        if (!retryBusy || !busy || Date.now() - startAt > 10_000) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    this.log.debug({ ms: Date.now() - startAt }, "workers started");
    const started = this.#pool;
    undo.push("stop new workers", () => {
      started.stop();
      if (this.#pool === started) this.#pool = undefined;
    });
  }
}

/** Waits until the workers received nothing new for a few polls (bounded: 1 s). */
async function drainPool(pool: WorkerPool | InProcessWorkerPool): Promise<void> {
  let last = pool.stats().totals.rx;
  for (let i = 0, quiet = 0; i < 100 && quiet < 3; i++) {
    await new Promise((r) => setTimeout(r, 10));
    const now = pool.stats().totals.rx;
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
}
