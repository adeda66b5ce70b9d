import fastifyRateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { RequestError } from "../control";

export interface RateLimits {
  /** requests per minute per device (by certificate CN); default 600 */
  devicePerMinute?: number;
  /** requests per minute per operator token; default 600 */
  tokenPerMinute?: number;
  /** requests per minute per client address on public routes; default 120 */
  publicPerMinute?: number;
}

/** Body limits, per route; the server-wide default is the smallest. */
export const BODY_LIMITS = {
  default: 64 * 1024,
  /** a device status report with counters of every NF */
  statusReport: 256 * 1024,
  /** chain TOML is capped at 1 MiB by its schema; JSON escaping can nearly double it */
  chainPush: 2 * 1024 * 1024,
  /** up to the largest map's worth of hex entries */
  mapEntries: 8 * 1024 * 1024,
} as const;

function rateKey(request: FastifyRequest): string {
  if (request.device) return `device:${request.device.name}`;
  if (request.operator) return `token:${request.operator.tokenHash}`;
  return `ip:${request.ip}`;
}

/**
 * Rate limits after authentication (the auth hook runs first, so the key is the device or
 * token, not an address a NAT may share). Over the limit: 429 with Retry-After.
 */
export const limitsPlugin = fp(
  async (app: FastifyInstance, options: RateLimits) => {
    const perKind = {
      device: options.devicePerMinute ?? 600,
      token: options.tokenPerMinute ?? 600,
      ip: options.publicPerMinute ?? 120,
    };
    await app.register(fastifyRateLimit, {
      global: true,
      hook: "onRequest",
      timeWindow: 60_000,
      keyGenerator: rateKey,
      max: (request) => perKind[rateKey(request).split(":")[0] as keyof typeof perKind],
      errorResponseBuilder: (request, context) => {
        const key = rateKey(request);
        const who = request.device
          ? `device ${request.device.name}`
          : request.operator
            ? `token ${request.operator.name}`
            : "this address";
        request.log.warn(
          { key: key.startsWith("token:") ? `token:${request.operator?.name}` : key },
          "rate limited",
        );
        return new RequestError(
          429,
          `rate limit: ${context.max} requests per minute for ${who}; retry in ${Math.ceil(context.ttl / 1000)} s`,
        );
      },
    });
  },
  { name: "galette-limits", dependencies: ["galette-auth"] },
);
