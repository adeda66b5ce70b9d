import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inNs } from "./netns";

/**
 * A byte relay (`node relay.mjs LISTEN CONNECT`, each `tcp:HOST:PORT` or `unix:PATH`). Two
 * of them joined by a unix socket carry TCP across network namespaces, e.g. a controller
 * on the host's loopback reached from a device namespace only through a data port.
 */
export const relayScript = join(dirname(fileURLToPath(import.meta.url)), "..", "tools", "relay.mjs");

/** Starts a relay (inside namespace `ns` when given) and resolves once it listens. */
export function startRelay(listen: string, connect: string, ns?: string): Promise<ChildProcess> {
  const [cmd, ...rest] = [...(ns ? inNs(ns) : []), process.execPath, relayScript, listen, connect];
  const child = spawn(cmd!, rest, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`relay ${listen} → ${connect} exited (${code})`)));
    child.stdout!.once("data", () => resolve(child));
  });
}
