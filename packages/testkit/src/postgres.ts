import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's postgresql-15 (scripts/setup.d/55-postgresql.sh installs it). */
export const POSTGRES_BIN = "/usr/lib/postgresql/15/bin";

/** Temp dirs of test servers start with this; each holds OWNER_FILE. */
const DIR_PREFIX = "galette-testpg-";
/** The PID of the process that made the dir: a dead owner means the dir is a leftover. */
const OWNER_FILE = "owner.pid";

/** A PostgreSQL 15 server of one test file: its own data dir, port and socket dir. */
export interface TestPostgres {
  port: number;
  /** The postmaster's PID. */
  pid: number;
  /** The temp dir holding the data dir, the socket and server.log; stop() removes it. */
  dir: string;
  /** postgres://galette@127.0.0.1:PORT/DATABASE */
  url(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): string;
  /** Immediate shutdown and removal of the temp dir. */
  stop(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function postgresUid(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("no postgres user: run `make setup` (it installs postgresql-15)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * The command line that runs a PostgreSQL tool so it dies with the thread that starts it:
 * setpriv execs (no fork in between) with PR_SET_PDEATHSIG, which the kernel fires when the
 * forking thread exits; node's spawn forks on the calling JS thread, so the tool dies with
 * that thread even when the test process is SIGKILLed. PostgreSQL refuses to run as root,
 * so as root it also switches to the `postgres` user; the uid change comes before the
 * death signal is armed, which a credential change would otherwise clear.
 */
function asPostgres(tool: string, args: string[]): [string, string[]] {
  const user = process.getuid?.() === 0 ? ["--reuid=postgres", "--regid=postgres", "--init-groups"] : [];
  return ["setpriv", [...user, "--pdeathsig", "KILL", "--", join(POSTGRES_BIN, tool), ...args]];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

/**
 * Removes the temp dirs of test servers whose owning process is gone (SIGKILLed before its
 * stop() ran): their postmaster died with it. A dir without an owner file (just being made,
 * or made by an older version) is left alone.
 */
export function sweepOrphanedPostgresDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), "utf8"));
    } catch {
      continue; // no owner file: not ours to judge
    }
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner))
      rmSync(dir, { recursive: true, force: true });
  }
}

/** The last lines of server.log, for an error that says why the server did not come up. */
function logTail(log: string): string {
  try {
    return readFileSync(log, "utf8").split("\n").slice(-20).join("\n");
  } catch (err) {
    return `(no ${log}: ${(err as Error).message})`;
  }
}

/**
 * Waits until the postmaster says "ready" in postmaster.pid (what `pg_ctl -w start` waits
 * for), failing early when it exits.
 */
async function waitReady(
  postmaster: ChildProcess,
  data: string,
  log: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (postmaster.exitCode !== null || postmaster.signalCode !== null)
      throw new Error(
        `postgres exited (${postmaster.exitCode ?? postmaster.signalCode}) before it was ready:\n${logTail(log)}`,
      );
    let lines: string[] = [];
    try {
      lines = readFileSync(join(data, "postmaster.pid"), "utf8").split("\n");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    // line 1 is the PID, line 8 the status
    if (Number(lines[0]) === postmaster.pid && lines[7]?.trim() === "ready") return;
    if (Date.now() > deadline)
      throw new Error(`postgres not ready after ${timeoutMs / 1000} s:\n${logTail(log)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts a throwaway PostgreSQL 15: initdb in a temp dir (trust auth, C locale, no fsync),
 * the postmaster on a free port with its own socket dir, tied to this thread's life (see
 * asPostgres). A missing installation is an error, never a skip.
 */
export async function startPostgres(): Promise<TestPostgres> {
  for (const tool of ["initdb", "pg_ctl", "createdb", "postgres"]) {
    if (!existsSync(join(POSTGRES_BIN, tool)))
      throw new Error(
        `${join(POSTGRES_BIN, tool)} is missing: run \`make setup\` (it installs postgresql-15)`,
      );
  }
  sweepOrphanedPostgresDirs();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  const data = join(dir, "data");
  const log = join(dir, "server.log");
  const run = (tool: string, args: string[]) => {
    const [command, argv] = asPostgres(tool, args);
    try {
      return execFileSync(command, argv, { stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 }).toString();
    } catch (err) {
      const e = err as { stderr?: Buffer; stdout?: Buffer; message: string };
      throw new Error(
        `${tool} ${args.join(" ")}: ${e.stderr?.toString() || e.stdout?.toString() || e.message}`,
      );
    }
  };
  let postmaster: ChildProcess | undefined;
  try {
    if (process.getuid?.() === 0) {
      const { uid, gid } = postgresUid();
      chownSync(dir, uid, gid);
    }
    chmodSync(dir, 0o700);
    const port = await freePort();
    run("initdb", ["-D", data, "-U", "galette", "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync"]);
    const logFd = openSync(log, "a");
    try {
      const [command, argv] = asPostgres("postgres", [
        "-D",
        data,
        "-p",
        String(port),
        "-k",
        dir,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
      ]);
      // its own session like pg_ctl gives it (a terminal's Ctrl-C is for the test runner);
      // unref: a test process that forgets stop() still exits, and the server with it
      postmaster = spawn(command, argv, { cwd: dir, stdio: ["ignore", logFd, logFd], detached: true });
    } finally {
      closeSync(logFd);
    }
    postmaster.unref();
    const spawnError = new Promise<never>((_, reject) => postmaster?.once("error", reject));
    spawnError.catch(() => undefined); // the race below reports it; later it would be unhandled
    await Promise.race([waitReady(postmaster, data, log, 60_000), spawnError]);
    const pid = postmaster.pid as number;
    const server = postmaster;
    let stopped = false;
    return {
      port,
      pid,
      dir,
      url: (database) => `postgres://galette@127.0.0.1:${port}/${database}`,
      createDatabase(name) {
        run("createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "galette", name]);
        return `postgres://galette@127.0.0.1:${port}/${name}`;
      },
      stop() {
        if (stopped) return;
        stopped = true;
        try {
          // waits until the postmaster has removed postmaster.pid, i.e. its backends are gone
          run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
        } catch (err) {
          server.kill("SIGKILL");
          throw err;
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    postmaster?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
