import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { sweepOrphanedPostgresDirs } from "../src/postgres";

/** Starts a server, prints its PID and dir, then waits for a kill that never lets stop() run. */
const child =
  `import { startPostgres } from ${JSON.stringify(join(import.meta.dirname, "../src/postgres.ts"))};` +
  "const pg = await startPostgres(); console.log(JSON.stringify({ pid: pg.pid, dir: pg.dir }));" +
  "setInterval(() => {}, 1000);";

/** Running, i.e. neither gone nor a zombie waiting for init to reap it. */
function running(pid: number): boolean {
  try {
    // the state follows the parenthesised command name
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

describe("startPostgres", () => {
  it("takes its server down with a test process that is SIGKILLed, and the next start sweeps its dir", async () => {
    const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", child], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    proc.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    let server: { pid: number; dir: string } | undefined;
    try {
      for await (const line of createInterface({ input: proc.stdout })) {
        server = JSON.parse(line) as { pid: number; dir: string };
        break;
      }
      expect(server, stderr).toBeDefined();
      const { pid, dir } = server as { pid: number; dir: string };
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("postgres");
      expect(running(pid)).toBe(true);

      proc.kill("SIGKILL");
      await exited;
      const deadline = Date.now() + 5_000;
      while (running(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(running(pid), `postmaster ${pid} outlived its SIGKILLed parent`).toBe(false);

      // its owner is gone: the next start (or anyone) removes what stop() never did
      expect(existsSync(dir)).toBe(true);
      sweepOrphanedPostgresDirs();
      expect(existsSync(dir)).toBe(false);
    } finally {
      proc.kill("SIGKILL");
      if (server) {
        if (running(server.pid)) process.kill(server.pid, "SIGKILL");
        rmSync(server.dir, { recursive: true, force: true });
      }
    }
  });
});
