import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "vitest";

export interface Availability {
  ok: boolean;
  reason?: string;
}

let cached: Availability | undefined;

/** Cheap checks for what kernel tests need: root, a mounted bpffs, iproute2 and nsenter. */
export function kernelAvailability(): Availability {
  if (cached) return cached;
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push("not running as root");
  const mounts = existsSync("/proc/mounts") ? readFileSync("/proc/mounts", "utf8") : "";
  if (!/ \/sys\/fs\/bpf bpf /.test(mounts))
    problems.push("bpffs is not mounted on /sys/fs/bpf (run `make setup`)");
  for (const tool of ["ip", "nsenter"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      problems.push(`\`${tool}\` is not installed`);
    }
  }
  cached = problems.length ? { ok: false, reason: problems.join("; ") } : { ok: true };
  return cached;
}

export const isCI = (): boolean => process.env.CI === "true";

/**
 * A describe block for tests that need the real kernel. Without the features it is
 * skipped on a developer machine, but with CI=true it FAILS with the reason: a kernel
 * test that cannot run must never pass silently in CI.
 */
export function describeKernel(name: string, fn: () => void): void {
  const avail = kernelAvailability();
  if (avail.ok) {
    describe(name, fn);
    return;
  }
  if (isCI()) {
    describe(name, () => {
      it("has the kernel features it needs", () => {
        throw new Error(`kernel test cannot run: ${avail.reason} (CI=true: failing instead of skipping)`);
      });
    });
    return;
  }
  describe.runIf(false)(`${name} [needs kernel: ${avail.reason}]`, fn);
}
