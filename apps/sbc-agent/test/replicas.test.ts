/**
 * Two controller replicas (`galette controller serve --database postgres://…`, real
 * processes) sharing a real PostgreSQL 15, and a device whose bundle lists both URLs,
 * speaking the device API through the agent's own client: a push made through replica B
 * reaches the device connected to replica A; replica A SIGKILLed, the device carries on
 * with B and nothing is lost.
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataDir, OperatorClient, writeDeviceBundle } from "@galette/controller";
import { initPkiDir } from "@galette/pki";
import type { DeviceNotification, DeviceStatusReport } from "@galette/protocol";
import { PROTOCOL_VERSION } from "@galette/protocol";
import { type CliRun, galette, spawnGalette } from "@galette/testkit";
import { startPostgres, type TestPostgres } from "@galette/testkit/postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type WebSocket from "ws";
import { DeviceClient } from "../src/client";
import { loadAgentConfig } from "../src/config";

const CHAIN = `[chain]
name = "relay"

[functions.relay-nf]

[[links]]
from = "rx"
to = ["relay-nf"]

[[links]]
from = "relay-nf"
to = ["tx"]
`;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

interface Replica {
  dir: string;
  run: CliRun;
  url: string;
}

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms: number,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ""}`);
}

describe("controller replicas on PostgreSQL", () => {
  let pg: TestPostgres;
  let work: string;
  let database: string;
  let token: string;
  const replicas: Replica[] = [];

  /** every replica's URL, in bundles through --public-url (repeated) */
  const publicUrls: string[] = [];

  const startReplica = async (dir: string, port: number, env: NodeJS.ProcessEnv = {}): Promise<Replica> => {
    const serveInfo = join(dir, "controller.json");
    rmSync(serveInfo, { force: true });
    const run = spawnGalette(
      [
        "controller",
        "serve",
        "--data",
        dir,
        "--database",
        database,
        "--listen",
        `127.0.0.1:${port}`,
        ...publicUrls.flatMap((url) => ["--public-url", url]),
      ],
      { timeoutMs: 600_000, env },
    );
    await waitFor(
      `replica ${dir} listening`,
      () => {
        if (run.child.exitCode !== null) throw new Error(`exited early: ${run.child.exitCode}`);
        return existsSync(serveInfo) ? true : undefined;
      },
      60_000,
    );
    // controller.json names the first --public-url (the bundles' first); this replica is at its port
    const url = `https://127.0.0.1:${port}`;
    const replica = { dir, run, url };
    replicas.push(replica);
    return replica;
  };

  beforeAll(async () => {
    pg = await startPostgres();
    database = pg.createDatabase("replicas");
    work = mkdtempSync(join(tmpdir(), "galette-replicas-"));
    // one PKI for both: each replica has its own copy of the issuing CA and server cert
    const a = join(work, "a");
    const b = join(work, "b");
    initPkiDir(a);
    cpSync(a, b, { recursive: true });
    chmodSync(b, 0o700);
    const seed = await DataDir.connect(a, { database });
    try {
      token = (await seed.createToken("replicas-test", ["admin", "publish", "deploy", "read"])).token;
      // an analysed NF (no build needed: the device here only follows assignments)
      await seed.repo.insertNf({
        name: "relay-nf",
        sourceDigest: "0".repeat(64),
        build: "stored-unbuilt",
        buildMessage: null,
        buildHash: "hash-of-relay-nf",
        interface: {
          file: "lib.rs",
          actions: [{ name: "Tx", location: { file: "lib.rs", line: 1, column: 1 } }],
          maps: [],
        },
        artifacts: [],
        publishedAt: new Date().toISOString(),
      });
    } finally {
      await seed.close();
    }
    const ports = [await freePort(), await freePort()];
    publicUrls.push(...ports.map((port) => `https://127.0.0.1:${port}`));
    await startReplica(a, ports[0]!);
    await startReplica(b, ports[1]!);
  }, 240_000);

  afterAll(async () => {
    for (const r of replicas) {
      r.run.child.kill("SIGTERM");
      await r.run.done;
    }
    pg?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("a push through B reaches the device on A within 2 s; A killed, the device moves to B and loses nothing", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const operator = (r: Replica) => new OperatorClient({ url: r.url, token, caFile: join(r.dir, "ca.crt") });
    // enrolled through B: the bundle lists both replicas (their --public-url), A first
    const enrolled = await operator(b).enrolDevice({ name: "edge-1", labels: { role: "edge" } });
    expect(enrolled.controllerUrls).toEqual([a.url, b.url]);
    const bundle = join(work, "bundle");
    writeDeviceBundle(bundle, enrolled);
    const config = loadAgentConfig(join(bundle, "agent.json"), { interface: "lo" });
    expect(config.controllerUrls).toEqual([a.url, b.url]);
    const client = new DeviceClient([config.controllerUrl, ...(config.controllerUrls ?? [])], config);

    // the agent's notification loop: reconnect when the channel closes
    const notes: Array<{ at: number; n: DeviceNotification; via: string }> = [];
    let ws: WebSocket | undefined;
    let stopped = false;
    const connect = () => {
      const via = client.baseUrl;
      ws = client.openNotifications({
        onOpen: () => {},
        onNotification: (n) => notes.push({ at: Date.now(), n, via }),
        onInvalid: () => {},
        onClose: () => {
          if (!stopped) setTimeout(connect, 200);
        },
      });
    };
    try {
      connect();
      await waitFor("hello from A", () => notes.find((x) => x.n.type === "hello" && x.via === a.url), 10_000);

      // push and assign through B
      const pushed = await operator(b).pushChain({ toml: CHAIN, file: "relay.toml" });
      expect(pushed.version).toBe(1);
      const assignedAt = Date.now();
      await operator(b).assignChain({ chain: "relay", devices: ["edge-1"] });
      const told = await waitFor(
        "assignment-changed on A",
        () => notes.find((x) => x.n.type === "assignment-changed" && x.via === a.url),
        5_000,
      );
      expect(told.at - assignedAt).toBeLessThan(2_000);
      const first = await client.getAssignment(undefined, "x86_64");
      if (!first.changed) throw new Error("expected an assignment");
      expect(first.assignment.chain).toMatchObject({ name: "relay", version: 1 });

      // replica A dies without a goodbye
      a.run.child.kill("SIGKILL");
      await a.run.done;
      await waitFor("hello from B", () => notes.find((x) => x.n.type === "hello" && x.via === b.url), 15_000);
      expect(client.baseUrl).toBe(b.url);
      // nothing lost: B serves the very same assignment (304 on its ETag)
      expect(await client.getAssignment(first.etag, "x86_64")).toEqual({ changed: false });
      const report: DeviceStatusReport = {
        protocolVersion: PROTOCOL_VERSION,
        agentVersion: "test",
        arch: "x86_64",
        kernelVersion: "6.1",
        installed: { chain: "relay", version: 1 },
        state: "converged",
        errors: [],
        counters: [],
      };
      await client.postStatus(report);
      const seen = await operator(b).getDevice("edge-1");
      expect(seen).toMatchObject({ installed: { chain: "relay", version: 1 }, online: true });

      // and B pushes on: a new version reaches the device now on B
      const before = notes.length;
      const second = await operator(b).pushChain({
        toml: CHAIN.replace('to = ["tx"]', 'to = ["pass"]'),
        file: "relay.toml",
      });
      expect(second.version).toBe(2);
      const pushedAt = Date.now();
      const again = await waitFor(
        "assignment-changed on B",
        () => notes.slice(before).find((x) => x.n.type === "assignment-changed" && x.via === b.url),
        5_000,
      );
      expect(again.at - pushedAt).toBeLessThan(2_000);
      const latest = await client.getAssignment(first.etag, "x86_64");
      if (!latest.changed) throw new Error("expected the new version");
      expect(latest.assignment.chain).toMatchObject({ name: "relay", version: 2 });
    } finally {
      stopped = true;
      ws?.terminate();
      client.close();
    }
  }, 120_000);

  it("a replica killed inside a chain push's transaction stores nothing of it, and holds no lock after", async () => {
    const b = replicas[1]!;
    const operator = (r: Replica) => new OperatorClient({ url: r.url, token, caFile: join(r.dir, "ca.crt") });
    const before = (await operator(b).getChain("relay")).version;
    // replica A again (it was killed above), told to stop dead inside the push's transaction
    const pidFile = join(work, "fault.pid");
    const port = Number(new URL(replicas[0]!.url).port);
    const a = await startReplica(replicas[0]!.dir, port, { GALETTE_FAULT_PAUSE: `chain-push:${pidFile}` });
    const push = operator(a)
      .pushChain({ toml: CHAIN.replace('to = ["tx"]', 'to = ["drop"]'), file: "relay.toml" })
      .then(
        () => "answered",
        (err: Error) => err.message,
      );
    await waitFor(
      "the push paused in its transaction",
      () => (existsSync(pidFile) ? true : undefined),
      30_000,
    );
    a.run.child.kill("SIGKILL");
    await a.run.done;
    expect(await push).not.toBe("answered");
    // nothing of it: the same latest version, through the other replica
    expect((await operator(b).getChain("relay")).version).toBe(before);
    // and the transaction lock died with the connection: B pushes at once
    const next = await operator(b).pushChain({ toml: CHAIN, file: "relay.toml" });
    expect(next.version).toBe(before + 1);
  }, 120_000);

  it("`device enroll --controller-url` repeated writes every URL into agent.json", async () => {
    const b = replicas[1]!;
    const out = join(work, "cli-bundle");
    const urls = ["https://ctl-a.example:8443", "https://ctl-b.example:8443"];
    const r = await galette(
      ["device", "enroll", "edge-2", "--out", out, ...urls.flatMap((url) => ["--controller-url", url])],
      { env: { GALETTE_URL: b.url, GALETTE_TOKEN: token, GALETTE_CA: join(b.dir, "ca.crt") } },
    );
    expect(r.code, r.stderr).toBe(0);
    const config = loadAgentConfig(join(out, "agent.json"), { interface: "lo" });
    expect(config.controllerUrl).toBe(urls[0]);
    expect(config.controllerUrls).toEqual(urls);
  }, 120_000);
});
