import { readdirSync, rmSync } from "node:fs";
import path from "node:path";

/**
 * Where Galette's installer pins an installation: one directory per interface scope, named
 * `eth0`, `p1+p2` (two ports), `eth0@NETNS` (ports in a named namespace), dots as `~`
 * (packages/installer/src/spec.ts, devicePins).
 */
export const INSTALLATION_PINS_ROOT = "/sys/fs/bpf/galette";

/** A topology's own names: interfaces and namespaces no other test uses (unique suffix). */
export interface OwnNames {
  ifaces: string[];
  namespaces: string[];
}

/** Whether the pin directory named `scope` is an installation on `own`'s interfaces or in its namespaces. */
export function ownsScope(own: OwnNames, scope: string): boolean {
  const tilde = (s: string) => s.replaceAll(".", "~");
  const [ports = "", netns] = scope.split("@");
  return (
    (netns !== undefined && own.namespaces.some((n) => tilde(n) === netns)) ||
    ports.split("+").some((p) => own.ifaces.some((i) => tilde(i) === p))
  );
}

/** The pinned installations on one of `own`'s interfaces or in one of its namespaces. */
export function pinnedInstallations(own: OwnNames, root = INSTALLATION_PINS_ROOT): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return entries.filter((e) => ownsScope(own, e)).map((e) => path.join(root, e));
}

/**
 * For a topology's cleanup: an installation still pinned on its interfaces is one its test
 * left behind (deleting a namespace detaches the root program; the pins keep every program
 * and map loaded). Removes those pins, so nothing outlives the run, and throws naming them.
 */
export function removeLeftoverPins(own: OwnNames, root = INSTALLATION_PINS_ROOT): void {
  const left = pinnedInstallations(own, root);
  if (left.length === 0) return;
  for (const dir of left) rmSync(dir, { recursive: true, force: true });
  throw new Error(
    `the test left pinned installations on its interfaces (removed now): ${left.join(", ")}; ` +
      "uninstall them (Dataplane.remove with the scope they were installed under) before the topology's cleanup",
  );
}
