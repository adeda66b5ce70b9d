import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { access } from "./auth";

export interface Metrics {
  registry: Registry;
  convergence: Histogram;
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

/**
 * Prometheus metrics. GET /metrics on the main listener needs a token with the `metrics`
 * scope; `startController({ metricsListen })` also serves them without a token on a
 * separate plain-HTTP address (see metricsOnlyRoutes), for a scraper on a management network.
 */
export const metricsPlugin = fp(
  async (app: FastifyInstance) => {
    const registry = new Registry();
    const requests = new Counter({
      name: "galette_http_requests_total",
      help: "HTTP requests handled, by route and status",
      labelNames: ["method", "route", "status"] as const,
      registers: [registry],
    });
    const convergence = new Histogram({
      name: "galette_push_to_converged_seconds",
      help: "From a push/assign that changed a device's chain to the device reporting it installed",
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers: [registry],
    });
    app.decorate("metrics", { registry, convergence });

    app.addHook("onResponse", async (request, reply) => {
      requests.inc({
        method: request.method,
        // the route pattern, never the raw URL: label values an attacker picks would grow the registry
        route: request.is404 ? "unmatched" : (request.routeOptions.url ?? "unmatched"),
        status: reply.statusCode,
      });
    });
  },
  { name: "galette-metrics" },
);

let processRegistry: Registry | undefined;

/**
 * The process's own metrics: CPU, memory, open files, heap, GC pauses and event-loop lag
 * (`nodejs_eventloop_lag_*`), what an operator looks at first when device requests slow
 * down. One collector per process (it samples the event loop for as long as it lives),
 * whatever number of controllers the process runs.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
  }
  return processRegistry;
}

/** The controller's metrics and the process's, in Prometheus text format. */
async function exposition(registry: Registry): Promise<string> {
  return `${await registry.metrics()}\n${await processMetrics().metrics()}`;
}

/** GET /metrics with the `metrics` scope. */
export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  app.get("/metrics", { config: { access: access.operator("metrics") } }, async (_request, reply) => {
    reply.header("content-type", app.metrics.registry.contentType);
    return exposition(app.metrics.registry);
  });
}

/** The separate metrics listener's only route: no token (the address is the access control). */
export function metricsOnlyRoutes(registry: Registry) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get("/metrics", { config: { access: access.public } }, async (_request, reply) => {
      reply.header("content-type", registry.contentType);
      return exposition(registry);
    });
  };
}
