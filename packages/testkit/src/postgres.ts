import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's postgresql-15 (scripts/setup.d/55-postgresql.sh installs it). */
export const POSTGRES_BIN = "/usr/lib/postgresql/15/bin";

/** A PostgreSQL 15 server of one test file: its own data dir, port and socket dir. */
export interface TestPostgres {
  port: number;
  /** postgres://galette@127.0.0.1:PORT/DATABASE */
  url(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): string;
  /** Immediate shutdown and removal of the data dir. */
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
 * Starts a throwaway PostgreSQL 15: initdb in a temp dir (trust auth, C locale, no fsync),
 * pg_ctl on a free port with its own socket dir. PostgreSQL refuses to run as root, so as
 * root it runs as the `postgres` user. A missing installation is an error, never a skip.
 */
export async function startPostgres(): Promise<TestPostgres> {
  for (const tool of ["initdb", "pg_ctl", "createdb"]) {
    if (!existsSync(join(POSTGRES_BIN, tool)))
      throw new Error(
        `${join(POSTGRES_BIN, tool)} is missing: run \`make setup\` (it installs postgresql-15)`,
      );
  }
  const dir = mkdtempSync(join(tmpdir(), "galette-pg-"));
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  const run = (tool: string, args: string[]) => {
    const command = asRoot ? "runuser" : join(POSTGRES_BIN, tool);
    const argv = asRoot ? ["-u", "postgres", "--", join(POSTGRES_BIN, tool), ...args] : args;
    try {
      return execFileSync(command, argv, { stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 }).toString();
    } catch (err) {
      const e = err as { stderr?: Buffer; stdout?: Buffer; message: string };
      throw new Error(
        `${tool} ${args.join(" ")}: ${e.stderr?.toString() || e.stdout?.toString() || e.message}`,
      );
    }
  };
  if (asRoot) {
    const { uid, gid } = postgresUid();
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  const port = await freePort();
  run("initdb", ["-D", data, "-U", "galette", "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync"]);
  run("pg_ctl", [
    "-D",
    data,
    "-l",
    join(dir, "server.log"),
    "-w",
    "-t",
    "60",
    "-o",
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
    "start",
  ]);
  let stopped = false;
  return {
    port,
    url: (database) => `postgres://galette@127.0.0.1:${port}/${database}`,
    createDatabase(name) {
      run("createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "galette", name]);
      return `postgres://galette@127.0.0.1:${port}/${name}`;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
