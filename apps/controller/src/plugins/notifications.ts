import type { PeerCertificate, TLSSocket } from "node:tls";
import fastifyWebsocket from "@fastify/websocket";
import { normaliseSerial } from "@galette/pki";
import { type DeviceNotification, type DeviceStatusReport, NOTIFICATION_MAX_BYTES } from "@galette/protocol";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Gauge } from "prom-client";
import type { WebSocket } from "ws";
import type { DataDir } from "../control";
import { PacedFanout } from "../fanout";
import type { DeviceRecord } from "../storage/repository";
import { certificateExpired, peerCertificate } from "./auth";

/** ws close codes the agent sees */
export const WS_CLOSE = {
  revoked: 4403,
  certificateExpired: 4401,
  /** a newer connection of the same device took over */
  superseded: 4409,
} as const;

/** ws connections re-checked between two turns of the event loop */
const SWEEP_SLICE = 200;

interface Connection {
  socket: WebSocket;
  serial: string;
  validFrom: string | undefined;
  validTo: string | undefined;
}

export interface Notifications {
  /** holds a notification connection now */
  isOnline(device: string): boolean;
  /** Registers a device's ws; an older one of the same device is closed (newest wins). */
  attach(device: DeviceRecord, socket: WebSocket, request: FastifyRequest): void;
  /** Sends a message on the device's ws held by this controller; false when it holds none. */
  send(device: string, message: DeviceNotification): boolean;
  /** Closes the device's ws at once (revocation through the API). */
  disconnect(device: string, code: number, reason: string): void;
  /**
   * After a push/assign/map change (committed): tell each device and remember what it should
   * converge to. Goes to every controller sharing the database (Repository.publishAssignmentChanged):
   * whichever holds a device's connection tells it.
   */
  assignmentChanged(names: string[], reason: string): Promise<void>;
  /** A status report arrived: observe push-to-converged if it completes a pending change. */
  reported(device: string, status: DeviceStatusReport): void;
  /** Calls `listener` with a device's name when it reports or its connection opens or closes; returns the unsubscribe. */
  subscribe(listener: (device: string) => void): () => void;
}

declare module "fastify" {
  interface FastifyInstance {
    notifications: Notifications;
  }
}

/**
 * Device notification connections (ws): at most one per device, re-checked every
 * `sweepMs` against revocation AND certificate expiry (a ws outlives the handshake that
 * authenticated it), and push-to-converged tracking. Assignment changes arrive through the
 * repository's change feed, so a change made through another replica reaches the devices
 * connected here too.
 */
export const notificationsPlugin = fp(
  async (app: FastifyInstance, options: { data: DataDir; sweepMs: number }) => {
    const { data } = options;
    const connections = new Map<string, Connection>();
    /** device → the version it was told to converge to, and when */
    const pendingConvergence = new Map<string, { chain: string; version: number; since: number }>();
    const listeners = new Set<(device: string) => void>();
    const changed = (device: string) => {
      for (const listener of listeners) listener(device);
    };

    await app.register(fastifyWebsocket, { options: { maxPayload: NOTIFICATION_MAX_BYTES } });

    new Gauge({
      name: "galette_devices_online",
      help: "Devices holding a notification connection",
      registers: [app.metrics.registry],
      collect() {
        this.set(connections.size);
      },
    });

    const notify = async (device: DeviceRecord, reason: string) => {
      const connection = connections.get(device.name);
      if (!connection) return;
      // the ETag its next poll gets (assignment-cache.ts builds each chain part once for all)
      const { etag } = await app.galette.assignments.assignment(device);
      const message: DeviceNotification = { type: "assignment-changed", etag };
      connection.socket.send(JSON.stringify(message));
      app.log.debug({ device: device.name, reason }, "notified device");
    };

    const close = (name: string, code: number, reason: string) => {
      const connection = connections.get(name);
      if (!connection) return;
      connections.delete(name);
      connection.socket.close(code, reason);
    };

    const notifications: Notifications = {
      isOnline: (device) => connections.has(device),
      attach(device, socket, request) {
        const peer: Partial<PeerCertificate> = peerCertificate(request.raw.socket as TLSSocket) ?? {};
        const previous = connections.get(device.name);
        const connection: Connection = {
          socket,
          serial: normaliseSerial(peer.serialNumber ?? device.serial),
          validFrom: peer.valid_from,
          validTo: peer.valid_to,
        };
        connections.set(device.name, connection);
        if (previous) {
          app.log.info({ device: device.name }, "newer notification connection replaces the older one");
          previous.socket.close(WS_CLOSE.superseded, "superseded by a newer connection");
        }
        socket.on("close", () => {
          if (connections.get(device.name) === connection) {
            connections.delete(device.name);
            changed(device.name);
          }
        });
        changed(device.name);
      },
      send(device, message) {
        const connection = connections.get(device);
        if (!connection) return false;
        connection.socket.send(JSON.stringify(message));
        return true;
      },
      disconnect: close,
      assignmentChanged: (names, reason) =>
        names.length > 0 ? data.repo.publishAssignmentChanged(names, reason) : Promise.resolve(),
      reported(device, status) {
        const pending = pendingConvergence.get(device);
        if (
          pending &&
          status.installed?.chain === pending.chain &&
          status.installed.version === pending.version
        ) {
          app.metrics.convergence.observe((Date.now() - pending.since) / 1000);
          pendingConvergence.delete(device);
        }
        changed(device);
      },
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    app.decorate("notifications", notifications);

    /**
     * A change published by any controller: the devices connected here are told; every one
     * is tracked for push-to-converged (a device that only polls may report here).
     */
    const changedHere = async (name: string, reason: string, since: number) => {
      const device = await data.repo.getDevice(name);
      if (!device || device.revokedAt) return;
      pendingConvergence.delete(name);
      // A device left without a chain is told too, so it stops running the old one.
      const chain = await app.galette.assignments.chainVersion(device.assignedChain, device.assignedVersion);
      if (chain) pendingConvergence.set(name, { chain: chain.name, version: chain.version, since });
      await notify(device, reason);
    };
    // Paced: every device told polls and downloads at once (fanout.ts).
    const fanout = new PacedFanout<{ reason: string; since: number }>({
      log: app.log,
      deliver: (name, { reason, since }) => changedHere(name, reason, since),
    });
    const unlisten = data.repo.onAssignmentChanged((names, reason) => {
      const since = Date.now();
      for (const name of names) fanout.enqueue(name, { reason, since });
    });

    // Revoked (also by another process on the data dir) or expired: the ws goes too.
    const sweepOnce = async () => {
      const open = [...connections];
      // SWEEP_SLICE devices per read (one statement, not one per device: with PostgreSQL a
      // round trip each was a fleet's worth of queries every sweep), other work between
      // reads: with SQLite each read blocks the event loop.
      for (let i = 0; i < open.length; i += SWEEP_SLICE) {
        if (i > 0) await new Promise((r) => setImmediate(r));
        // closing: the database may be closed already, and every connection goes anyway
        if (closing) return;
        const slice = open.slice(i, i + SWEEP_SLICE);
        const current = await data.repo.deviceCertificates(slice.map(([name]) => name));
        for (const [name, connection] of slice) {
          if (connections.get(name) !== connection) continue;
          const device = current.get(name);
          if (!device || device.revokedAt !== null || connection.serial !== device.serial) {
            app.log.warn({ device: name }, "closing notification connection of a revoked device");
            close(name, WS_CLOSE.revoked, "revoked");
          } else if (certificateExpired(connection.validTo, connection.validFrom)) {
            app.log.warn(
              { device: name, notAfter: connection.validTo },
              "closing notification connection: certificate expired",
            );
            close(name, WS_CLOSE.certificateExpired, "certificate expired");
          }
        }
      }
    };
    let sweeping: Promise<void> | undefined;
    let closing = false;
    const sweep = setInterval(() => {
      if (sweeping) return;
      sweeping = sweepOnce()
        .catch((err: unknown) => app.log.error({ err }, "notification connections not re-checked; retrying"))
        .finally(() => {
          sweeping = undefined;
        });
    }, options.sweepMs);
    sweep.unref();

    app.addHook("onClose", async () => {
      closing = true;
      clearInterval(sweep);
      await sweeping;
      unlisten();
      fanout.close();
      for (const connection of connections.values()) connection.socket.terminate();
      connections.clear();
    });
  },
  { name: "galette-notifications", dependencies: ["galette-metrics"] },
);
