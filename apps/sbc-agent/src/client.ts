/**
 * The device side of the controller's device API: HTTPS with the device certificate
 * (mutual TLS, server verified against the bundle's CA — never disabled), and the ws
 * notification channel.
 */
import { readFileSync } from "node:fs";
import { Agent, request as httpsRequest, type RequestOptions } from "node:https";
import type { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, type TLSSocket } from "node:tls";
import {
  DEVICE_ROUTES,
  DeviceNotification,
  type DeviceStatusReport,
  describeZodError,
  ErrorResponse,
  NOTIFICATION_MAX_BYTES,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  SignedDeviceAssignment,
  type TraceUpload,
} from "@galette/protocol";
import WebSocket from "ws";

export interface DeviceCredentials {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** The controller answered with an error status (the body's `error` is in the message). */
export class ControllerError extends Error {
  override name = "ControllerError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export type AssignmentResult =
  | { changed: false }
  | { changed: true; assignment: SignedDeviceAssignment; etag: string | undefined };

const REQUEST_TIMEOUT_MS = 15_000;

/**
 * Bounds on what one request may take, whatever the other end does: an idle connection
 * times out after `idleMs`, a whole request (waiting for the kept-alive connection
 * included) after `deadlineMs`, and a body larger than the limit is cut off, so a slow or
 * hostile peer can neither hold the device's requests nor fill its memory.
 */
export interface DeviceClientLimits {
  idleMs: number;
  deadlineMs: number;
  maxResponseBytes: number;
  /** NF artifacts (BPF objects, native libraries) may be larger and slower to arrive */
  artifactDeadlineMs: number;
  maxArtifactBytes: number;
}

export const DEFAULT_CLIENT_LIMITS: DeviceClientLimits = {
  idleMs: REQUEST_TIMEOUT_MS,
  deadlineMs: 4 * REQUEST_TIMEOUT_MS,
  // an assignment carries signed map entries (up to 8 MiB of hex each push)
  maxResponseBytes: 32 << 20,
  artifactDeadlineMs: 600_000,
  maxArtifactBytes: 64 << 20,
};

interface RequestBounds {
  idleMs: number;
  deadlineMs: number;
  maxBytes: number;
}

/**
 * The device's connections (requests and the ws channel) offer the newest TLS session
 * ticket each controller gave it, so a reconnect resumes the session: no certificate
 * signing or chain verification on either side. That matters after a controller restart,
 * when the whole fleet reconnects at once (the controller derives its ticket keys from its
 * PKI, so its tickets outlive a restart). Node's own Agent forgets a host's session after
 * any failed connection — e.g. every attempt while a restarted controller is not yet
 * listening. A ticket the controller cannot use costs nothing: it does a full handshake,
 * and requests are still checked against the device's certificate and revocation.
 */
class ResumingAgent extends Agent {
  readonly #sessions = new Map<string, Buffer>();

  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const key = `${options.host ?? options.hostname}:${options.port}`;
    const session = this.#sessions.get(key);
    // (Node passes `session` on to tls.connect; its RequestOptions type does not name it)
    const resumed: RequestOptions & { session?: Buffer } = session ? { ...options, session } : options;
    const socket = super.createConnection(resumed, callback) as TLSSocket | null | undefined;
    socket?.on("session", (ticket: Buffer) => this.#sessions.set(key, ticket));
    return socket;
  }
}

/**
 * The device API of one controller, or of several replicas sharing one database: requests
 * go to the current URL; when it cannot be reached (refused, reset, timed out — not an
 * HTTP error, which is an answer) the client moves to the next URL and tries there, each
 * URL at most once per request. The ws channel follows the current URL.
 */
export class DeviceClient {
  readonly #tls: {
    cert: Buffer;
    key: Buffer;
    ca: Buffer;
    minVersion: "TLSv1.3";
    secureContext: SecureContext;
  };
  readonly #agent: Agent;
  readonly #limits: DeviceClientLimits;
  readonly urls: readonly string[];
  #current = 0;

  constructor(
    baseUrls: string | readonly string[],
    creds: DeviceCredentials,
    limits: Partial<DeviceClientLimits> = {},
  ) {
    this.#limits = { ...DEFAULT_CLIENT_LIMITS, ...limits };
    this.urls = [...new Set(typeof baseUrls === "string" ? [baseUrls] : baseUrls)];
    if (this.urls.length === 0) throw new Error("no controller URL");
    const read = (what: string, file: string) => {
      try {
        return readFileSync(file);
      } catch (err) {
        throw new Error(`cannot read the ${what} ${file}: ${(err as Error).message}`);
      }
    };
    const material = {
      cert: read("device certificate", creds.certFile),
      key: read("device key", creds.keyFile),
      ca: read("CA certificate", creds.caFile),
      // the controller speaks TLS 1.3 only; never negotiate down
      minVersion: "TLSv1.3" as const,
    };
    // parsed once: otherwise every new connection (each reconnect) parses the key and certificates again
    this.#tls = { ...material, secureContext: createSecureContext(material) };
    // One kept-alive connection for the device's requests (they queue on it; the ws channel
    // has its own): a controller holds two connections per device, and one reconnecting
    // after a restart makes two handshakes, not one more per request that overlaps a poll.
    this.#agent = new ResumingAgent({ ...this.#tls, keepAlive: true, maxSockets: 1 });
  }

  /** The controller URL in use now. */
  get baseUrl(): string {
    return this.urls[this.#current]!;
  }

  /** Moves on from `failed` (unless another request already moved on). */
  #failOver(failed: number): void {
    if (this.#current === failed && this.urls.length > 1) this.#current = (failed + 1) % this.urls.length;
  }

  close(): void {
    this.#agent.destroy();
  }

  async #request(
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: Buffer,
    bounds: Partial<RequestBounds> = {},
    pooled = true,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const { idleMs, deadlineMs, maxResponseBytes } = this.#limits;
    const full: RequestBounds = { idleMs, deadlineMs, maxBytes: maxResponseBytes, ...bounds };
    const errors: string[] = [];
    for (let attempt = 0; attempt < this.urls.length; attempt++) {
      const index = this.#current;
      try {
        return await this.#requestOnce(this.urls[index]!, method, path, headers, body, full, pooled);
      } catch (err) {
        errors.push((err as Error).message);
        this.#failOver(index);
      }
    }
    throw new Error(errors.length === 1 ? errors[0] : `no controller answered: ${errors.join("; ")}`);
  }

  #requestOnce(
    baseUrl: string,
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    bounds: RequestBounds,
    pooled: boolean,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const url = new URL(path, baseUrl);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        {
          method,
          // unpooled: a one-off connection with the same TLS settings
          ...(pooled ? { agent: this.#agent } : { agent: false, ...this.#tls }),
          headers: { [PROTOCOL_VERSION_HEADER]: String(PROTOCOL_VERSION), ...headers },
          timeout: bounds.idleMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const declared = Number(res.headers["content-length"] ?? 0);
          if (declared > bounds.maxBytes)
            req.destroy(new Error(`the answer's ${declared} bytes are over the limit of ${bounds.maxBytes}`));
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > bounds.maxBytes)
              req.destroy(new Error(`the answer is over the limit of ${bounds.maxBytes} bytes`));
            else chunks.push(c);
          });
          res.on("end", () => {
            clearTimeout(deadline);
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          });
          res.on("error", (err) => reject(new Error(`${method} ${url.href}: ${err.message}`)));
        },
      );
      // from now, so the wait for the kept-alive connection counts too (a request still
      // queued for it reports no error when destroyed: reject here)
      const deadline = setTimeout(() => {
        const err = new Error(`did not complete within ${bounds.deadlineMs} ms`);
        req.destroy(err);
        reject(new Error(`${method} ${url.href}: ${err.message}`));
      }, bounds.deadlineMs);
      req.on("timeout", () => req.destroy(new Error(`timed out after ${bounds.idleMs} ms idle`)));
      req.on("error", (err) => {
        clearTimeout(deadline);
        reject(new Error(`${method} ${url.href}: ${err.message}`, { cause: err }));
      });
      req.on("close", () => clearTimeout(deadline));
      req.end(body);
    });
  }

  #fail(method: string, path: string, status: number, body: Buffer): never {
    let message = body.toString("utf8").slice(0, 300);
    try {
      const parsed = ErrorResponse.safeParse(JSON.parse(message));
      if (parsed.success) message = parsed.data.error;
    } catch {
      // not JSON: keep the raw text
    }
    throw new ControllerError(`${method} ${path}: HTTP ${status}: ${message}`, status);
  }

  /** GET the assignment; `etag` of the one we hold makes an unchanged answer a 304. */
  async getAssignment(etag: string | undefined, arch: string): Promise<AssignmentResult> {
    const path = `${DEVICE_ROUTES.assignment}?arch=${encodeURIComponent(arch)}`;
    const res = await this.#request("GET", path, etag ? { "if-none-match": etag } : {});
    if (res.status === 304) return { changed: false };
    if (res.status !== 200) this.#fail("GET", path, res.status, res.body);
    let json: unknown;
    try {
      json = JSON.parse(res.body.toString("utf8"));
    } catch (err) {
      throw new Error(`GET ${path}: the body is not JSON: ${(err as Error).message}`);
    }
    const parsed = SignedDeviceAssignment.safeParse(json);
    if (!parsed.success)
      throw new Error(`GET ${path}: invalid assignment: ${describeZodError(parsed.error).join("; ")}`);
    const tag = res.headers.etag;
    return { changed: true, assignment: parsed.data, etag: typeof tag === "string" ? tag : undefined };
  }

  /**
   * Whether the controller answers at all (any HTTP status) within `timeoutMs`, on a new
   * connection: the dead-man's switch asks this after a chain change, and a kept-alive
   * socket opened before the change would prove nothing about the path now.
   */
  async reach(timeoutMs: number): Promise<void> {
    await this.#request(
      "GET",
      DEVICE_ROUTES.assignment,
      { connection: "close" },
      undefined,
      { idleMs: timeoutMs, deadlineMs: timeoutMs },
      false,
    );
  }

  /** The artifact's bytes, unverified: the caller checks the digest before using them. */
  async fetchArtifact(digest: string): Promise<Buffer> {
    const path = DEVICE_ROUTES.artifact(digest);
    const res = await this.#request("GET", path, {}, undefined, {
      deadlineMs: this.#limits.artifactDeadlineMs,
      maxBytes: this.#limits.maxArtifactBytes,
    });
    if (res.status !== 200) this.#fail("GET", path, res.status, res.body);
    return res.body;
  }

  async postStatus(report: DeviceStatusReport): Promise<void> {
    const path = DEVICE_ROUTES.status;
    const res = await this.#request(
      "POST",
      path,
      { "content-type": "application/json" },
      Buffer.from(JSON.stringify(report)),
    );
    if (res.status >= 300) this.#fail("POST", path, res.status, res.body);
  }

  /** Uploads traced frames to a trace session the controller opened; `more`: it still wants frames. */
  async postTrace(id: string, body: TraceUpload): Promise<{ more: boolean }> {
    const path = DEVICE_ROUTES.trace(id);
    const res = await this.#request(
      "POST",
      path,
      { "content-type": "application/json" },
      Buffer.from(JSON.stringify(body)),
    );
    if (res.status >= 300) this.#fail("POST", path, res.status, res.body);
    return { more: (JSON.parse(res.body.toString("utf8")) as { more?: boolean }).more === true };
  }

  /** Opens the notification channel (same mutual TLS). The caller handles reconnects. */
  openNotifications(handlers: {
    onOpen: () => void;
    onNotification: (n: DeviceNotification) => void;
    onInvalid: (text: string) => void;
    onClose: (reason: string) => void;
  }): WebSocket {
    const index = this.#current;
    const url = new URL(DEVICE_ROUTES.notifications, this.urls[index]);
    url.protocol = "wss:";
    let opened = false;
    const ws = new WebSocket(url, {
      ...this.#tls,
      // through the agent: the channel resumes the TLS session too (ResumingAgent)
      agent: this.#agent,
      headers: { [PROTOCOL_VERSION_HEADER]: String(PROTOCOL_VERSION) },
      handshakeTimeout: REQUEST_TIMEOUT_MS,
      // ws would take 100 MiB messages by default
      maxPayload: NOTIFICATION_MAX_BYTES,
    });
    let reason = "closed";
    ws.on("open", () => {
      opened = true;
      handlers.onOpen();
    });
    ws.on("message", (data) => {
      const parsed = DeviceNotification.safeParse(safeJson(data.toString()));
      if (parsed.success) handlers.onNotification(parsed.data);
      else handlers.onInvalid(data.toString().slice(0, 200));
    });
    ws.on("unexpected-response", (_req, res) => {
      reason = `HTTP ${res.statusCode ?? 0} on the ws upgrade`;
      ws.terminate();
    });
    ws.on("error", (err) => {
      reason = err.message;
    });
    ws.on("close", () => {
      // never connected, or the replica went away: the next attempt goes to the next URL
      if (!opened || reason !== "closed") this.#failOver(index);
      handlers.onClose(reason);
    });
    return ws;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
