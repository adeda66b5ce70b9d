import { readFileSync } from "node:fs";
import type { Server } from "node:net";
import type { FastifyBaseLogger } from "fastify";

/**
 * Open connections past this share of the open-file limit are warned about: each device
 * holds two (its request connection and its notification socket), and once the limit is
 * reached the kernel refuses new connections without anything reaching our log.
 */
export const CONNECTION_WARN_SHARE = 0.8;
/** at most one warning this often while above the share (ms) */
const WARN_EVERY_MS = 10 * 60_000;

/** The soft open-file limit of this process (Node raises it to the hard limit at start), or undefined where /proc is not Linux's. */
export function openFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      // not Linux: nothing to watch against
      return undefined;
    }
  }
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  const n = Number(soft);
  return soft && Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * Counts the server's open connections and warns (with the numbers and what to change)
 * when they pass CONNECTION_WARN_SHARE of the open-file limit.
 */
export function watchConnectionCapacity(
  server: Server,
  log: FastifyBaseLogger,
  limit = openFileLimit(),
): { open(): number } {
  let open = 0;
  let warnedAt = 0;
  server.on("connection", (socket) => {
    open++;
    socket.once("close", () => {
      open--;
    });
    if (limit === undefined || open < limit * CONNECTION_WARN_SHARE) return;
    const now = Date.now();
    if (now - warnedAt < WARN_EVERY_MS) return;
    warnedAt = now;
    log.warn(
      { connections: open, openFileLimit: limit, devicesAtMost: Math.floor(limit / 2) },
      "open connections are near the open-file limit: each device holds two, and past the limit new connections are refused; raise it (LimitNOFILE= in the systemd unit, or ulimit -n)",
    );
  });
  return { open: () => open };
}
