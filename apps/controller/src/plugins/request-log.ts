import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { LogController } from "fastify";
import fp from "fastify-plugin";

/** How often the device request summary is logged at info (ms). */
export const DEVICE_REQUEST_SUMMARY_MS = 60_000;

interface Window {
  requests: number;
  errors: number;
  devices: Set<string>;
  byRoute: Map<string, number>;
  byStatus: Map<number, number>;
  /** response times (ms) of this window, for the percentiles */
  times: number[];
}

const MAX_TIMES = 100_000;

const emptyWindow = (): Window => ({
  requests: 0,
  errors: 0,
  devices: new Set(),
  byRoute: new Map(),
  byStatus: new Map(),
  times: [],
});

const isDeviceRoute = (request: FastifyRequest) =>
  (request.routeOptions?.config as { access?: { kind?: string } } | undefined)?.access?.kind === "device";

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0;

/**
 * Fastify's request logging, except device requests: thousands of agents polling would
 * write a line per poll at info. Their lines go to debug, and one summary line a minute
 * (count, devices, routes, statuses, p50/p99) to info. Failed device requests (5xx) stay
 * at error. Operator requests are logged as Fastify does.
 */
export class RequestLogController extends LogController {
  #window = emptyWindow();
  /**
   * How late the event loop ran its callbacks this window: the server-side times above start
   * when a request is parsed, so time a request waited behind other work shows only here.
   */
  readonly #loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    super();
    this.#loopDelay.enable();
  }

  /** Stops measuring the event loop (the controller is closing). */
  stop(): void {
    this.#loopDelay.disable();
  }

  override incomingRequest(
    request: FastifyRequest,
    reply: FastifyReply,
    metadata?: Record<string, unknown>,
  ): void {
    if (!isDeviceRoute(request)) {
      super.incomingRequest(request, reply, metadata);
      return;
    }
    request.log.debug({ req: request }, "incoming request");
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
    metadata?: Record<string, unknown>,
  ): void {
    if (!isDeviceRoute(request)) {
      super.requestCompleted(error, request, reply, metadata);
      return;
    }
    const w = this.#window;
    w.requests++;
    if (request.device) w.devices.add(request.device.name);
    const route = `${request.method} ${request.routeOptions.url ?? "?"}`;
    w.byRoute.set(route, (w.byRoute.get(route) ?? 0) + 1);
    w.byStatus.set(reply.statusCode, (w.byStatus.get(reply.statusCode) ?? 0) + 1);
    if (w.times.length < MAX_TIMES) w.times.push(reply.elapsedTime);
    if (error || reply.statusCode >= 500) {
      w.errors++;
      reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, "request errored");
    } else {
      reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, "request completed");
    }
  }

  /** Logs the window's summary (if it had requests) and starts a new one. */
  summarize(log: FastifyBaseLogger, seconds: number): void {
    const w = this.#window;
    this.#window = emptyWindow();
    const loop = this.#loopDelay;
    // ns; the histogram counts from its resolution, which is subtracted
    const loopP99Ms = Math.max(0, loop.percentile(99) / 1e6 - 10);
    const loopMaxMs = Math.max(0, loop.max / 1e6 - 10);
    loop.reset();
    if (w.requests === 0) return;
    const sorted = w.times.sort((a, b) => a - b);
    log.info(
      {
        seconds,
        requests: w.requests,
        errors: w.errors,
        devices: w.devices.size,
        routes: Object.fromEntries(w.byRoute),
        statuses: Object.fromEntries(w.byStatus),
        p50Ms: Math.round(percentile(sorted, 50) * 10) / 10,
        p99Ms: Math.round(percentile(sorted, 99) * 10) / 10,
        loopDelayP99Ms: Math.round(loopP99Ms * 10) / 10,
        loopDelayMaxMs: Math.round(loopMaxMs * 10) / 10,
      },
      "device requests",
    );
  }
}

/** Logs the device request summary every `everyMs` (and the last part on close). */
export const requestLogPlugin = fp(
  async (app: FastifyInstance, options: { controller: RequestLogController; everyMs?: number }) => {
    const everyMs = options.everyMs ?? DEVICE_REQUEST_SUMMARY_MS;
    let last = Date.now();
    const summarize = () => {
      const now = Date.now();
      options.controller.summarize(app.log, Math.round((now - last) / 1000));
      last = now;
    };
    const timer = setInterval(summarize, everyMs);
    timer.unref();
    app.addHook("onClose", async () => {
      clearInterval(timer);
      summarize();
      options.controller.stop();
    });
  },
  { name: "galette-request-log" },
);
