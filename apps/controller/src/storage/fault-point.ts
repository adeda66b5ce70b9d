import { writeFileSync } from "node:fs";

/**
 * Crash-test hook. With `GALETTE_FAULT_PAUSE=NAME:FILE` in the environment, the process that
 * reaches fault point NAME writes its pid to FILE and then blocks for good (the event loop
 * too), so a test can SIGKILL it at that exact place, e.g. inside a storage transaction, and
 * check what survived. Without the variable (always, outside tests) it does nothing.
 */
export function faultPoint(name: string): void {
  const spec = process.env.GALETTE_FAULT_PAUSE;
  if (!spec) return;
  const sep = spec.indexOf(":");
  if (sep <= 0 || spec.slice(0, sep) !== name) return;
  writeFileSync(spec.slice(sep + 1), String(process.pid));
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(cell, 0, 0);
}
