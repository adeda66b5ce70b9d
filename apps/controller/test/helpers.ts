import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { initPkiDir } from "@galette/pki";
import {
  type DeviceCapabilities,
  DeviceNotification,
  type DeviceStatusReport,
  type EnrollDeviceResponse,
  PROTOCOL_VERSION,
  PublishNfResponse,
} from "@galette/protocol";
import { startPostgres, type TestPostgres } from "@galette/testkit/postgres";
import { pino } from "pino";
import { create as createTar } from "tar";
import { afterAll, beforeAll, expect } from "vitest";
import WebSocket from "ws";
import { DataDir } from "../src/control";
import type { NfBuilder } from "../src/nf-publish";
import { type ControllerOptions, type RunningController, startController } from "../src/server";

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

export interface ClientCredentials {
  certPem?: string;
  keyPem?: string;
}

/** One HTTPS request on a fresh TLS connection (no agent: each call does its own handshake). */
export function call(
  baseUrl: string,
  caPem: string,
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer | object;
    client?: ClientCredentials;
    token?: string;
  } = {},
): Promise<TestResponse> {
  const url = new URL(path, baseUrl);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  let payload: Buffer | undefined;
  if (options.body !== undefined) {
    if (Buffer.isBuffer(options.body)) payload = options.body;
    else if (typeof options.body === "string") payload = Buffer.from(options.body);
    else {
      payload = Buffer.from(JSON.stringify(options.body));
      headers["content-type"] ??= "application/json";
    }
  }
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  // Node sends a DELETE body without chunked encoding, so the length must be explicit.
  if (payload) headers["content-length"] ??= String(payload.length);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: options.method ?? "GET",
        headers,
        ca: caPem,
        agent: false,
        ...(options.client?.certPem ? { cert: options.client.certPem, key: options.client.keyPem } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: <T>() => JSON.parse(body.toString("utf8")) as T,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (payload) req.end(payload);
    else req.end();
  });
}

/** pino logger whose JSON lines land in `lines`, so tests can assert what was logged. */
export function captureLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: pino({ level: "info" }, sink), lines };
}

export interface Harness {
  dir: string;
  controller: RunningController;
  caPem: string;
  token: string;
  logs: Array<Record<string, unknown>>;
  call(path: string, options?: Parameters<typeof call>[3]): Promise<TestResponse>;
  /** bundles of the devices enrolled through enrol(), by name */
  bundles: Record<string, EnrollDeviceResponse>;
  /** enrols a device through the operator API (expects 201) and keeps its bundle */
  enrol(name: string, labels?: Record<string, string>): Promise<EnrollDeviceResponse>;
  /** the client certificate options of an enrolled device, for call() */
  asDevice(name: string): { certPem: string; keyPem: string };
  /** publishes an NF crate (Cargo.toml + this lib.rs) as the operator; expects 201 */
  publishNf(name: string, libRs: string): Promise<TestResponse>;
  /** pushes a chain version as the operator; expects 201 */
  pushChain(toml: string, file?: string): Promise<{ version: number }>;
  /** publishes the macswap and acl NFs (MACSWAP_RS, ACL_RS) and pushes their chains (MACSWAP_TOML, ACL_TOML) */
  publishExamples(): Promise<{ macswap: PublishNfResponse; acl: PublishNfResponse }>;
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A data dir with a CA, an operator token with every scope, and a controller on 127.0.0.1:<ephemeral>. */
export async function startHarness(
  options: Pick<
    ControllerOptions,
    | "nfBuilder"
    | "maxNfArchiveBytes"
    | "revocationSweepMs"
    | "rateLimits"
    | "metricsListen"
    | "requestTimeoutMs"
  > = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "galette-controller-"));
  // crates are written next to the data dir, not inside it
  const crates = mkdtempSync(join(tmpdir(), "galette-crates-"));
  const pki = initPkiDir(dir);
  const direct = DataDir.open(dir);
  const { token } = await direct.createToken("test-operator", [
    "admin",
    "publish",
    "deploy",
    "read",
    "metrics",
  ]);
  await direct.close();
  const { logger, lines } = captureLogger();
  const start = () =>
    startController({
      dataDir: dir,
      port: 0,
      logger,
      revocationSweepMs: 200,
      ...options,
    });
  const harness: Harness = {
    dir,
    controller: await start(),
    caPem: pki.ca.certPem,
    token,
    logs: lines,
    call: (path, opts) => call(harness.controller.url, pki.ca.certPem, path, opts),
    bundles: {},
    async enrol(name, labels = {}) {
      const res = await harness.call("/v1/devices", { method: "POST", token, body: { name, labels } });
      expect(res.status, res.body.toString()).toBe(201);
      const bundle = res.json<EnrollDeviceResponse>();
      harness.bundles[name] = bundle;
      return bundle;
    },
    asDevice(name) {
      const bundle = harness.bundles[name];
      if (!bundle) throw new Error(`device ${name} was not enrolled through the harness`);
      return { certPem: bundle.certPem, keyPem: bundle.keyPem };
    },
    async publishNf(name, libRs) {
      writeCrate(crates, name, libRs);
      const res = await harness.call("/v1/nfs", {
        method: "POST",
        token,
        headers: { "content-type": "application/x-tar" },
        body: tarOf(crates, name),
      });
      expect(res.status, res.body.toString()).toBe(201);
      return res;
    },
    async pushChain(toml, file = "chain.toml") {
      const res = await harness.call("/v1/chains", { method: "POST", token, body: { toml, file } });
      expect(res.status, res.body.toString()).toBe(201);
      return res.json<{ version: number }>();
    },
    async publishExamples() {
      const macswap = PublishNfResponse.parse((await harness.publishNf("macswap", MACSWAP_RS)).json());
      const acl = PublishNfResponse.parse((await harness.publishNf("acl", ACL_RS)).json());
      await harness.pushChain(MACSWAP_TOML);
      await harness.pushChain(ACL_TOML);
      return { macswap, acl };
    },
    async restart() {
      await harness.controller.close();
      harness.controller = await start();
    },
    async cleanup() {
      await harness.controller.close();
      rmSync(dir, { recursive: true, force: true });
      rmSync(crates, { recursive: true, force: true });
    },
  };
  return harness;
}

export interface DeviceSocket {
  ws: WebSocket;
  /** every notification received so far, parsed */
  messages: DeviceNotification[];
  /** the first message (the controller's hello) arrived; rejects if the connection fails */
  hello: Promise<void>;
  closed: Promise<{ code: number; at: number }>;
  /** resolves once `n` notifications arrived; fails naming how many did after `timeoutMs` */
  received(n: number, timeoutMs?: number): Promise<void>;
}

/** A device's notification websocket, opened with its client certificate. */
export function deviceSocket(
  h: Pick<Harness, "controller" | "caPem">,
  client: { certPem: string; keyPem: string },
): DeviceSocket {
  const ws = new WebSocket(`${h.controller.url.replace("https", "wss")}/v1/device/notifications`, {
    ca: h.caPem,
    cert: client.certPem,
    key: client.keyPem,
  });
  const messages: DeviceNotification[] = [];
  ws.on("message", (data) => messages.push(DeviceNotification.parse(JSON.parse(String(data)))));
  const hello = new Promise<void>((resolve, reject) => {
    ws.once("message", () => resolve());
    ws.once("error", reject);
  });
  const closed = new Promise<{ code: number; at: number }>((resolve) =>
    ws.once("close", (code) => resolve({ code, at: Date.now() })),
  );
  const received = async (n: number, timeoutMs = 5000) => {
    const deadline = Date.now() + timeoutMs;
    while (messages.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (messages.length < n) throw new Error(`only ${messages.length} of ${n} notifications arrived`);
  };
  return { ws, messages, hello, closed, received };
}

/** Writes a minimal NF crate (Cargo.toml + src/lib.rs) and returns its directory. */
export function writeCrate(root: string, name: string, libRs: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(
    join(dir, "Cargo.toml"),
    `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2024"\n\n[dependencies]\nnf = { path = "../../packages/nf/nf" }\n`,
  );
  writeFileSync(join(dir, "src", "lib.rs"), libRs);
  return dir;
}

/** tar of `root/name` with entries under `name/`. */
export function tarOf(root: string, name: string): Buffer {
  const file = join(root, `${name}.tar`);
  createTar({ cwd: root, file, sync: true, portable: true }, [name]);
  return readFileSync(file);
}

export const MACSWAP_RS = `#![no_std]
use nf::{Packet, maps};

#[maps]
pub struct Maps {
    #[map(type = "array", size = 1)]
    pub counters: (u32, u64),
}

pub enum Action {
    Tx,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let _ = maps;
    let _ = pkt;
    Action::Tx
}
`;

export const ACL_RS = `#![no_std]
use nf::{Packet, maps};

#[repr(C)]
pub struct LpmKey {
    pub prefix_len: u32,
    pub addr: [u8; 4],
}

#[maps]
pub struct Maps {
    pub allow_list: (LpmKey, u8),
}

pub enum Action {
    Allowed,
    Denied,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let _ = maps;
    let _ = pkt;
    Action::Allowed
}
`;

export const MACSWAP_TOML = `[chain]
name = "macswap"

[functions.macswap.maps]
counters = { type = "array", size = 1 }

[[links]]
from = "rx"
to = ["macswap"]

[[links]]
from = "macswap"
to = ["tx"]
`;

export const ACL_TOML = `[chain]
name = "acl"

[functions.acl.maps]
allow_list = { type = "lpm-trie", size = 1024 }

[[links]]
from = "rx"
to = ["acl"]

[[links]]
from = "acl"
to = ["tx", "drop"]
`;

/** A device probe as an agent reports it: a 6.18 kernel with every feature, one native-XDP port. */
export const PROBED_CAPABILITIES: DeviceCapabilities = {
  probedAt: "2026-01-01T00:00:00.000Z",
  kernelRelease: "6.18.0",
  kernel: { major: 6, minor: 18 },
  cpus: 4,
  memoryBytes: 4 * 1024 ** 3,
  availableMemoryBytes: 2 * 1024 ** 3,
  btf: true,
  bpfLoop: true,
  tailCalls: true,
  afXdp: true,
  mapTypes: ["hash_map", "array", "lpm_trie", "percpu_array", "percpu_hash", "lru_hash"],
  interfaces: [{ name: "eth0", xdp: "native", rxQueues: 4, zeroCopy: null, problems: [] }],
  problems: [],
};

/** A stand-in for the NF compiler at the controller's builder seam: deterministic bytes per NF and target. */
export const fakeBuilder: NfBuilder = async ({ name, sourceDigest }) => ({
  buildHash: `test-${sourceDigest.slice(0, 16)}`,
  artifacts: [
    { kind: "bpf-object", bytes: Buffer.from(`bpf object of ${name} ${sourceDigest}`) },
    {
      kind: "native-lib",
      triple: "x86_64-unknown-linux-gnu",
      bytes: Buffer.from(`x86_64 lib of ${name} ${sourceDigest}`),
    },
    {
      kind: "native-lib",
      triple: "aarch64-unknown-linux-gnu",
      bytes: Buffer.from(`aarch64 lib of ${name} ${sourceDigest}`),
    },
  ],
});

export interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh TLS connection: the request target
 * goes out exactly as given (no URL normalisation), so tests can send absolute-form
 * targets, dot segments, double slashes and odd encodings. `status` 0 = the server closed
 * the connection without an HTTP response.
 */
export function rawRequest(
  baseUrl: string,
  caPem: string,
  target: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    client?: ClientCredentials;
    minVersion?: "TLSv1.2" | "TLSv1.3";
    maxVersion?: "TLSv1.2" | "TLSv1.3";
  } = {},
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: url.hostname,
      port: Number(url.port),
      ca: caPem,
      ...(options.client?.certPem ? { cert: options.client.certPem, key: options.client.keyPem } : {}),
      ...(options.minVersion ? { minVersion: options.minVersion } : {}),
      ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no response to ${options.method ?? "GET"} ${target} within 10 s`));
    }, 10_000);
    socket.on("secureConnect", () => {
      const body = options.body ?? "";
      const headers: Record<string, string> = {
        host: url.host,
        connection: "close",
        ...(options.body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}),
        ...(options.headers ?? {}),
      };
      const head = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      socket.write(`${options.method ?? "GET"} ${target} HTTP/1.1\r\n${head}\r\n${body}`);
    });
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\r\n\r\n");
      const headers = split < 0 ? text : text.slice(0, split);
      let body = split < 0 ? "" : text.slice(split + 4);
      if (/^transfer-encoding:\s*chunked/im.test(headers)) {
        let decoded = "";
        let rest = body;
        for (;;) {
          const eol = rest.indexOf("\r\n");
          const size = Number.parseInt(rest.slice(0, eol), 16);
          if (!size) break;
          decoded += rest.slice(eol + 2, eol + 2 + size);
          rest = rest.slice(eol + 2 + size + 2);
        }
        body = decoded;
      }
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), headers, body });
    });
  });
}

/** A device's status report as an agent sends it: idle, nothing installed, unless `fields` say otherwise. */
export function statusReport(fields: Partial<DeviceStatusReport> = {}): DeviceStatusReport {
  return {
    protocolVersion: PROTOCOL_VERSION,
    agentVersion: "0.1.0",
    arch: "x86_64",
    kernelVersion: "6.1.0",
    installed: null,
    state: "idle",
    errors: [],
    counters: [],
    rollback: null,
    ...fields,
  };
}

/** The repository's root, where `pnpm galette` runs. */
export const repoRoot = join(import.meta.dirname, "../../..");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `pnpm galette ARGS` from the repository root, as an operator would; `env` adds to
 * (or, e.g. GALETTE_CONFIG, replaces) the test's environment.
 */
export function runGalette(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      "pnpm",
      ["-s", "galette", ...args],
      { cwd: repoRoot, timeout: 120_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * runGalette with an empty operator config (written to DIR/cli.json), so a developer's
 * ~/.config/galette/cli.json never leaks into the test.
 */
export function galetteWithEmptyConfig(
  dir: string,
): (args: string[], env?: Record<string, string>) => Promise<CliResult> {
  const config = join(dir, "cli.json");
  writeFileSync(config, "{}\n");
  return (args, env = {}) => runGalette(args, { GALETTE_CONFIG: config, ...env });
}

/** A `galette controller serve` started by runServe, and everything it printed so far. */
export interface ServeProcess {
  child: ChildProcess;
  output(): string;
}

/**
 * Starts `pnpm galette controller serve ARGS` in a process group of its own (pnpm → tsx →
 * node: stopServe stops them all) and waits until it wrote DATA/controller.json, it exited,
 * or 150 s passed; the caller asserts which.
 */
export async function runServe(dataDir: string, args: string[]): Promise<ServeProcess> {
  const child = spawn("pnpm", ["-s", "galette", "controller", "serve", "--data", dataDir, ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GALETTE_LOG_LEVEL: "warn" },
    detached: true,
  });
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const deadline = Date.now() + 150_000;
  while (!existsSync(join(dataDir, "controller.json")) && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 100));
  return { child, output: () => output };
}

/** SIGTERM to a runServe process group, and its leader's exit. */
export async function stopServe(serve: ServeProcess | undefined): Promise<void> {
  const child = serve?.child;
  if (child?.pid === undefined || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(-child.pid, "SIGTERM");
  await exited;
}

/**
 * One PostgreSQL 15 for the enclosing suite (file or describe): started in beforeAll, stopped
 * in afterAll, which vitest runs even when a test or a later beforeAll failed. Call it before
 * the suite's own hooks: afterAll hooks run in reverse order, so the server is stopped after
 * whatever the suite connected to it. The returned accessor is for hooks and tests.
 */
export function usePostgres(): () => TestPostgres {
  let server: TestPostgres | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(() => server?.stop());
  return () => {
    if (!server) throw new Error("usePostgres(): no server yet (it starts in beforeAll)");
    return server;
  };
}
