import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { join, resolve } from "node:path";
import { createLogger } from "@galette/log";
import {
  type AuditEntry,
  DEFAULT_TOKEN_EXPIRY_DAYS,
  type DeviceSummary,
  type EnrollDeviceResponse,
  type Labels,
  TOKEN_SCOPES,
  type TokenScope,
  type TokenSummary,
} from "@galette/protocol";
import type { Command } from "commander";
import { writeDeviceBundle } from "../bundle";
import { DataDir, deviceSummary, openDatabase, RequestError, revokeDevice, revokeTokens } from "../control";
import { nfBuilderForServe } from "../nf-builder";
import { loadOperatorConfig, OperatorClient } from "../operator-client";
import { startController } from "../server";
import { onShutdown } from "../signals";
import { checkPostgresUrl } from "../storage/postgres";
import type { Repository } from "../storage/repository";
import { createToken, parseExpiry, parseScopes, tokenSummary } from "../tokens";
import { readReleasePublicKey, signAndSetMapEntries } from "./release";

const out = (text: string) => process.stdout.write(`${text}\n`);

/** Written by `controller serve` so `device enroll --data DIR` puts the right URL in bundles. */
const SERVE_INFO_FILE = "controller.json";
const DEFAULT_PORT = 8443;

export function parseListen(value: string, flag = "--listen"): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535)
    throw new Error(`${flag} ${JSON.stringify(value)}: expected HOST:PORT, e.g. 0.0.0.0:8443`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

export function parseLabels(value: string | undefined): Labels {
  const labels: Labels = {};
  if (!value) return labels;
  for (const pair of value.split(",").filter(Boolean)) {
    const eq = pair.indexOf("=");
    if (eq <= 0 || eq === pair.length - 1)
      throw new Error(`--labels: ${JSON.stringify(pair)} is not key=value`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}

/** The device API URLs for a bundle: the flags', else what `controller serve` recorded, else the default. */
function publicUrlsOf(dataDir: string, override: string[] = []): string[] {
  if (override.length > 0) return override;
  const info = join(dataDir, SERVE_INFO_FILE);
  if (existsSync(info)) {
    const served = JSON.parse(readFileSync(info, "utf8")) as { url: string; urls?: string[] };
    return served.urls && served.urls.length > 0 ? served.urls : [served.url];
  }
  return [`https://127.0.0.1:${DEFAULT_PORT}`];
}

/** The bundle's controller URLs: the first is where the agent starts, all are its fail-over list. */
function withControllerUrls(enrolled: EnrollDeviceResponse, urls: string[]): EnrollDeviceResponse {
  const list = [...new Set(urls)];
  if (list.length === 0) return enrolled;
  const { controllerUrls: _ignored, ...rest } = enrolled;
  return { ...rest, controllerUrl: list[0]!, ...(list.length > 1 ? { controllerUrls: list } : {}) };
}

const repeatable = (value: string, all: string[] = []) => [...all, value];

/** The flags of a command that can work on a controller's state directly (no API). */
interface DirectFlags {
  data?: string;
  database?: string;
}

const DATABASE_FLAG = [
  "--database <url>",
  "with --data or alone: work directly on the PostgreSQL database a `controller serve --database` uses (postgres://USER[:PASSWORD]@HOST[:PORT]/DB)",
] as const;

const isDirect = (flags: DirectFlags) => flags.data !== undefined || flags.database !== undefined;

/**
 * A controller's state, opened for a direct command: `--data DIR` (its SQLite, or with
 * `--database` its PKI and that PostgreSQL database), or `--database URL` alone for
 * commands that need no PKI.
 */
interface Direct {
  repo: Repository;
  /** set with --data: the PKI (and the serve info) are there */
  data?: DataDir;
  close(): Promise<void>;
}

async function openDirect(flags: DirectFlags): Promise<Direct> {
  if (flags.data) {
    const data = await DataDir.connect(flags.data, {
      ...(flags.database !== undefined ? { database: flags.database } : {}),
      direct: true,
    });
    return { repo: data.repo, data, close: () => data.close() };
  }
  const repo = await openDatabase(checkPostgresUrl(flags.database!), true);
  return { repo, close: () => repo.close() };
}

/** Reads the state directly, closing it after. */
async function readDirect<T>(flags: DirectFlags, fn: (direct: Direct) => Promise<T>): Promise<T> {
  const direct = await openDirect(flags);
  try {
    return await fn(direct);
  } finally {
    await direct.close();
  }
}

/**
 * Runs a mutating direct (`--data DIR` / `--database URL`) operation and writes its audit
 * row (who: local:USER, from: this host), success or failure, like the server does for API
 * calls.
 */
async function withLocalData<T>(
  flags: DirectFlags,
  what: string,
  target: string,
  fn: (direct: Direct) => Promise<T>,
): Promise<T> {
  const direct = await openDirect(flags);
  let status = 200;
  try {
    return await fn(direct);
  } catch (err) {
    // A refusal the CLI itself made (bad flags, a rule) is a 400 like the API's.
    status = err instanceof RequestError ? err.statusCode : 400;
    throw err;
  } finally {
    try {
      await direct.repo.insertAudit({
        at: new Date().toISOString(),
        actor: `local:${userInfo().username}`,
        method: "CLI",
        route: `galette ${what} ${flags.database !== undefined ? "--database" : "--data"}`,
        target,
        status,
        remote: `local:${hostname()}`,
      });
    } finally {
      await direct.close();
    }
  }
}

/** `--since`: a duration back from now (24h, 7d, 30m) or an ISO date. */
export function parseSince(value: string, now = new Date()): string {
  const duration = /^(\d{1,6})([dhm])$/.exec(value.trim());
  if (duration) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[duration[2] as "d" | "h" | "m"];
    return new Date(now.getTime() - Number(duration[1]) * unit).toISOString();
  }
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new Error(`--since ${JSON.stringify(value)}: expected e.g. 24h, 7d or an ISO date`);
  return at.toISOString();
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
}

export function client(): OperatorClient {
  return new OperatorClient(loadOperatorConfig());
}

function printDevices(devices: DeviceSummary[], onlineKnown: boolean): void {
  const rows = devices.map((d) => [
    d.name,
    Object.entries(d.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(",") || "-",
    d.revokedAt ? "revoked" : (d.state ?? "-"),
    d.assigned ? `${d.assigned.chain}@${d.assigned.version ?? "latest"}` : "-",
    d.assignedBy?.kind === "selector"
      ? `rule ${d.assignedBy.rule} (${Object.entries(d.assignedBy.selector)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")})`
      : d.assignedBy?.kind === "explicit"
        ? "device"
        : "-",
    d.installed ? `${d.installed.chain}@${d.installed.version}` : "-",
    d.lastSeenAt ?? "never",
    onlineKnown ? (d.online ? "yes" : "no") : "?",
    String(d.errors.length),
  ]);
  const header = ["NAME", "LABELS", "STATE", "ASSIGNED", "VIA", "INSTALLED", "LAST SEEN", "ONLINE", "ERRORS"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  // Why a device is not running what it was given (e.g. a refused, unsigned version).
  for (const d of devices) {
    if (d.refusal)
      for (const r of d.refusal.reasons)
        out(`${d.name}: ${d.refusal.chain} v${d.refusal.version} refused for this device: ${r}`);
    if (d.rollback)
      out(
        `${d.name}: rolled back ${d.rollback.chain} v${d.rollback.version} at ${d.rollback.at} (held until \`galette device confirm ${d.name}\`): ${d.rollback.reason}`,
      );
    for (const e of d.errors) out(`${d.name}: ${e.message}`);
  }
}

/** `device show`: one device with its capabilities. */
function printDevice(d: DeviceSummary): void {
  printDevices([d], true);
  printCost(d.cost);
  const c = d.capabilities;
  if (!c) {
    out("capabilities: not reported yet");
    return;
  }
  const mib = (n: number) => `${Math.round(n / 1048576)} MiB`;
  out(`kernel:       ${c.kernelRelease} (BTF ${c.btf ? "yes" : "no"})`);
  out(`memory:       ${mib(c.memoryBytes)} (${mib(c.availableMemoryBytes)} available), ${c.cpus} CPUs`);
  out(
    `bpf_loop:     ${c.bpfLoop ? "yes" : "no"}   tail calls: ${c.tailCalls ? "yes" : "no"}   AF_XDP: ${c.afXdp ? "yes" : "no"}`,
  );
  out(`map types:    ${c.mapTypes.join(", ") || "none"}`);
  for (const i of c.interfaces)
    out(
      `interface ${i.name}: XDP ${i.xdp}, ${i.rxQueues} RX queues, zero-copy ${i.zeroCopy === null ? "unknown" : i.zeroCopy ? "yes" : "no"}${i.problems.length ? ` (${i.problems.join("; ")})` : ""}`,
    );
  for (const p of c.problems) out(`probe: ${p}`);
  out(`probed at:    ${c.probedAt}`);
  if (d.graceSeconds !== undefined) out(`dead-man's switch grace: ${d.graceSeconds} s`);
}

/** Per-NF cost: the chain's XDP ns/frame (bpf_stats window), each NF's own XDP frames and ns/frame (its shim's timing in the window) and userland time. */
function printCost(cost: DeviceSummary["cost"]): void {
  if (!cost) {
    out("cost:         not measured yet");
    return;
  }
  const ns = (n: number | undefined) => (n === undefined ? "-" : `${n.toFixed(0)} ns`);
  out(
    `cost:         XDP path ${cost.xdp.nsPerRun === undefined ? "idle" : `${ns(cost.xdp.nsPerRun)}/frame`} over ${cost.xdp.runCount} frames (bpf_stats, ${cost.windowMs} ms window at ${cost.measuredAt})`,
  );
  printTable(
    ["NF", "PLACEMENT", "XDP FRAMES (WINDOW)", "XDP NS/FRAME", "USERLAND CALLS", "USERLAND NS/CALL"],
    cost.nfs.map((n) => [
      n.instance ?? n.uuid,
      n.placement,
      String(n.xdpRuns),
      ns(n.xdp?.nsPerRun),
      String(n.userlandCalls),
      ns(n.userlandNsPerCall),
    ]),
  );
}

export function registerControllerCommands(program: Command): void {
  const controller = program.command("controller").description("Run the Galette controller");
  controller
    .command("serve")
    .description("Serve the device API (mTLS) and operator API (bearer tokens) over HTTPS")
    .requiredOption("--data <dir>", "controller data directory (from `galette pki init`)")
    .option("--listen <host:port>", "address to listen on", `127.0.0.1:${DEFAULT_PORT}`)
    .option(
      "--public-url <url>",
      "controller URL written into device bundles (default: the listen address); repeat it to list every replica's URL, this one's or the shared address first",
      repeatable,
    )
    .option(
      "--database <url>",
      "postgres://USER@HOST:PORT/DB: keep state and artifacts in PostgreSQL, shared by every replica serving that database (default: SQLite in --data)",
    )
    .option(
      "--metrics-listen <host:port>",
      "also serve /metrics WITHOUT a token, plain HTTP, on this address (loopback or a management network)",
    )
    .action(
      async (flags: {
        data: string;
        listen: string;
        publicUrl?: string[];
        database?: string;
        metricsListen?: string;
      }) => {
        const { host, port } = parseListen(flags.listen);
        // before anything starts (an empty value must not mean SQLite)
        if (flags.database !== undefined) checkPostgresUrl(flags.database);
        const metricsListen = flags.metricsListen
          ? parseListen(flags.metricsListen, "--metrics-listen")
          : undefined;
        const log = createLogger("galette-controller");
        const running = await startController({
          dataDir: flags.data,
          host,
          port,
          logger: log,
          ...(flags.publicUrl?.[0] ? { publicUrl: flags.publicUrl[0], replicaUrls: flags.publicUrl } : {}),
          ...(flags.database !== undefined ? { database: flags.database } : {}),
          ...(metricsListen ? { metricsListen } : {}),
          nfBuilder: nfBuilderForServe(),
        });
        writeFileSync(
          join(flags.data, SERVE_INFO_FILE),
          `${JSON.stringify({ url: flags.publicUrl?.[0] ?? running.url, ...(flags.publicUrl && flags.publicUrl.length > 1 ? { urls: flags.publicUrl } : {}) }, null, 2)}\n`,
        );
        await new Promise<void>((done) => {
          const shutdown = onShutdown((why) => {
            log.info({ why }, "stopping: closing connections and the database");
            running
              .close()
              .catch((err: unknown) => log.error({ err }, "closing the controller failed"))
              .finally(() => {
                shutdown.dispose();
                done();
              });
          });
        });
      },
    );

  const device = program.command("device").description("Enrol, revoke and list devices");
  device
    .command("enroll")
    .alias("enrol")
    .description(
      "Issue a device certificate and write its bundle (device.crt, device.key, ca.crt, agent.json)",
    )
    .argument("<name>", "device name (the certificate's CN)")
    .requiredOption("--out <dir>", "bundle directory to write")
    .option("--labels <k=v,...>", "labels for selecting devices, e.g. role=edge,site=lab")
    .option("--data <dir>", "work directly on a controller data directory instead of the operator API")
    .option(...DATABASE_FLAG)
    .option(
      "--controller-url <url>",
      "controller URL for the agent config (default: what the controller serves); repeat it to list every replica: the agent fails over between them",
      repeatable,
    )
    .option("--validity-days <n>", "certificate validity in days", (v) => Number.parseInt(v, 10))
    .option(
      "--release-key <file>",
      "release.pub the device pins: it loads only what this key signed (repeat for several keys)",
      (v: string, all: string[] = []) => [...all, v],
    )
    .action(
      async (
        name: string,
        flags: {
          out: string;
          labels?: string;
          data?: string;
          database?: string;
          controllerUrl?: string[];
          validityDays?: number;
          releaseKey?: string[];
        },
      ) => {
        const labels = parseLabels(flags.labels);
        // Read before enrolling: a bad key file must not leave a half-enrolled device.
        const releaseKeys = (flags.releaseKey ?? []).map(readReleasePublicKey);
        let enrolled: Awaited<ReturnType<OperatorClient["enrolDevice"]>>;
        if (flags.database !== undefined && flags.data === undefined)
          throw new Error(
            "device enroll --database needs --data DIR too: the controller's issuing CA there signs the device certificate",
          );
        if (isDirect(flags)) {
          enrolled = await withLocalData(flags, "device enroll", name, async (direct) => {
            const data = direct.data!;
            const urls = publicUrlsOf(data.dir, flags.controllerUrl);
            return withControllerUrls(
              await data.enrolDevice(name, labels, urls[0]!, flags.validityDays),
              urls,
            );
          });
        } else {
          enrolled = await client().enrolDevice({
            name,
            labels,
            ...(flags.validityDays ? { validityDays: flags.validityDays } : {}),
          });
          if (flags.controllerUrl) enrolled = withControllerUrls(enrolled, flags.controllerUrl);
        }
        const files = writeDeviceBundle(resolve(flags.out), enrolled, releaseKeys);
        out(`enrolled ${name} (serial ${enrolled.serial}, valid until ${enrolled.notAfter})`);
        for (const file of files) out(`  ${file}`);
      },
    );

  device
    .command("revoke")
    .description("Revoke a device: its certificate is refused from the next request on")
    .argument("<name>", "device name")
    .option("--data <dir>", "work directly on a controller data directory instead of the operator API")
    .option(...DATABASE_FLAG)
    .action(async (name: string, flags: DirectFlags) => {
      let revoked: { name: string; serial: string; revokedAt: string | null };
      if (isDirect(flags)) {
        revoked = await withLocalData(flags, "device revoke", name, (direct) =>
          revokeDevice(direct.repo, name),
        );
      } else {
        revoked = await client().revokeDevice(name);
      }
      out(`revoked ${revoked.name} (serial ${revoked.serial}) at ${revoked.revokedAt}`);
    });

  device
    .command("list")
    .description("List devices: state, assigned and installed chain, last seen, errors")
    .option("--data <dir>", "read a controller data directory directly (online state unknown)")
    .option(...DATABASE_FLAG)
    .option("--json", "print JSON")
    .action(async (flags: DirectFlags & { json?: boolean }) => {
      let devices: DeviceSummary[];
      if (isDirect(flags)) {
        devices = await readDirect(flags, async (direct) =>
          (await direct.repo.listDevices()).map((d) => deviceSummary(d, false)),
        );
      } else {
        devices = (await client().listDevices()).devices;
      }
      if (flags.json) out(JSON.stringify({ devices }, null, 2));
      else printDevices(devices, !isDirect(flags));
    });

  device
    .command("show")
    .description("One device: state, chains, errors, refusal, rollback and the capabilities its agent probed")
    .argument("<name>", "device name")
    .option("--json", "print JSON")
    .action(async (name: string, flags: { json?: boolean }) => {
      const d = await client().getDevice(name);
      if (flags.json) out(JSON.stringify(d, null, 2));
      else printDevice(d);
    });

  device
    .command("confirm")
    .description(
      "Confirm the chain version the device's dead-man's switch rolled back: the device installs it again, without the switch",
    )
    .argument("<name>", "device name")
    .action(async (name: string) => {
      const confirmed = await client().confirmDevice(name);
      out(
        `confirmed ${confirmed.confirmed.chain} v${confirmed.confirmed.version} for ${confirmed.name}: it installs it again (no dead-man's switch for it)`,
      );
    });

  const token = program
    .command("token")
    .description("Operator API tokens (scopes: " + TOKEN_SCOPES.join(", ") + ")");
  token
    .command("create")
    .description(
      "Create an operator token; it is printed once (only its hash is stored). Needs the admin scope.",
    )
    .option("--name <name>", "what the token is for", "operator")
    .option(
      "--scopes <list>",
      `comma-separated scopes among ${TOKEN_SCOPES.join(", ")} (default with --data/--database on a controller without tokens: admin)`,
    )
    .option(
      "--expires <when>",
      `a duration (90d, 12h, 30m) or an ISO date (default ${DEFAULT_TOKEN_EXPIRY_DAYS}d)`,
    )
    .option("--data <dir>", "work directly on a controller data directory (how the first token is made)")
    .option(...DATABASE_FLAG)
    .action(async (flags: DirectFlags & { name: string; scopes?: string; expires?: string }) => {
      const expiresAt = flags.expires ? parseExpiry(flags.expires) : undefined;
      let created: { token: string };
      if (isDirect(flags)) {
        created = await withLocalData(flags, "token create", flags.name, async ({ repo }) => {
          let scopes: TokenScope[];
          if (flags.scopes) scopes = parseScopes(flags.scopes);
          else if ((await repo.countTokens()) === 0) scopes = ["admin"];
          else throw new Error(`--scopes: give the token's scopes, among ${TOKEN_SCOPES.join(", ")}`);
          return createToken(repo, flags.name, scopes, expiresAt);
        });
      } else {
        if (!flags.scopes)
          throw new Error(`--scopes: give the token's scopes, among ${TOKEN_SCOPES.join(", ")}`);
        created = await client().createToken({
          name: flags.name,
          scopes: parseScopes(flags.scopes),
          ...(expiresAt ? { expiresAt } : {}),
        });
      }
      out(created.token);
    });

  token
    .command("list")
    .description("List tokens: name, scopes, created, last used, expires (never the secrets)")
    .option("--data <dir>", "read a controller data directory directly")
    .option(...DATABASE_FLAG)
    .option("--json", "print JSON")
    .action(async (flags: DirectFlags & { json?: boolean }) => {
      let tokens: TokenSummary[];
      if (isDirect(flags)) {
        tokens = await readDirect(flags, async ({ repo }) => (await repo.listTokens()).map(tokenSummary));
      } else {
        tokens = (await client().listTokens()).tokens;
      }
      if (flags.json) {
        out(JSON.stringify({ tokens }, null, 2));
        return;
      }
      const now = Date.now();
      printTable(
        ["NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES"],
        tokens.map((t) => [
          t.name,
          t.scopes.join(","),
          t.createdAt,
          t.lastUsedAt ?? "never",
          new Date(t.expiresAt).getTime() <= now ? `${t.expiresAt} (expired)` : t.expiresAt,
        ]),
      );
    });

  token
    .command("revoke")
    .description("Revoke every token of NAME; requests with them fail from then on")
    .argument("<name>", "token name given at create")
    .option("--data <dir>", "work directly on a controller data directory")
    .option(...DATABASE_FLAG)
    .action(async (name: string, flags: DirectFlags) => {
      let revoked: { name: string; revoked: number };
      if (isDirect(flags)) {
        revoked = await withLocalData(flags, "token revoke", name, ({ repo }) => revokeTokens(repo, name));
      } else {
        revoked = await client().revokeToken(name);
      }
      out(`revoked ${revoked.revoked} token(s) named ${revoked.name}`);
    });

  program
    .command("audit")
    .description(
      "Mutating operator calls: when, who, from where, what, and the outcome. Needs the admin scope.",
    )
    .option("--since <when>", "only calls since then: a duration back from now (24h, 7d) or an ISO date")
    .option("--data <dir>", "read a controller data directory directly")
    .option(...DATABASE_FLAG)
    .option("--json", "print JSON")
    .action(async (flags: DirectFlags & { since?: string; json?: boolean }) => {
      const since = flags.since ? parseSince(flags.since) : undefined;
      let entries: AuditEntry[];
      if (isDirect(flags)) {
        entries = await readDirect(flags, ({ repo }) =>
          repo.listAudit({ ...(since ? { since } : {}), limit: 10000 }),
        );
      } else {
        entries = (await client().listAudit(since)).entries;
      }
      if (flags.json) {
        out(JSON.stringify({ entries }, null, 2));
        return;
      }
      printTable(
        ["AT", "WHO", "FROM", "WHAT", "TARGET", "STATUS"],
        entries.map((e) => [
          e.at,
          e.actor,
          e.remote,
          `${e.method} ${e.route}`,
          e.target ?? "-",
          String(e.status),
        ]),
      );
    });

  const map = program.command("map").description("Map entries of a chain, applied by its devices");
  map
    .command("set")
    .description("Set (KEY=VALUE) or delete (-KEY) entries; keys and values are hex bytes")
    .argument("<chain>", "chain name")
    .argument("<map>", "map id, e.g. access-control.allow_list or a shared map's name")
    .argument("<entries...>", "KEY=VALUE to set, -KEY to delete")
    .option("--key <file>", "release.key: sign the entries the map holds after the change (devices check it)")
    .action(async (chain: string, mapId: string, entries: string[], flags: { key?: string }) => {
      const set: Array<{ key: string; value: string }> = [];
      const remove: string[] = [];
      for (const entry of entries) {
        if (entry.startsWith("-")) remove.push(entry.slice(1));
        else {
          const eq = entry.indexOf("=");
          if (eq <= 0) throw new Error(`${JSON.stringify(entry)}: expected KEY=VALUE or -KEY (hex bytes)`);
          set.push({ key: entry.slice(0, eq), value: entry.slice(eq + 1) });
        }
      }
      const result = flags.key
        ? await signAndSetMapEntries(client(), chain, mapId, set, remove, flags.key)
        : await client().setMapEntries(chain, mapId, { set, delete: remove });
      out(`${chain}/${mapId}: ${result.entries.length} entries`);
    });
  map
    .command("get")
    .description("Print a map's entries as KEY=VALUE lines")
    .argument("<chain>", "chain name")
    .argument("<map>", "map id")
    .action(async (chain: string, mapId: string) => {
      const result = await client().getMapEntries(chain, mapId);
      for (const entry of result.entries) out(`${entry.key}=${entry.value}`);
    });
}
