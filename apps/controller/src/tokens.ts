import { randomBytes } from "node:crypto";
import {
  type CreateTokenResponse,
  DEFAULT_TOKEN_EXPIRY_DAYS,
  MAX_TOKEN_EXPIRY_DAYS,
  Name,
  TOKEN_SCOPES,
  TokenScope,
  type TokenSummary,
} from "@galette/protocol";
import { RequestError } from "./control";
import { sha256Hex } from "./storage/artifacts";
import type { Repository, TokenRecord } from "./storage/repository";

const TOKEN_PREFIX = "glt_";
const DAY_MS = 86_400_000;

export function hashToken(token: string): string {
  return sha256Hex(token);
}

/** `a,b` → scopes, refusing unknown and repeated names with the list of known ones. */
export function parseScopes(value: string): TokenScope[] {
  const scopes = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (scopes.length === 0) throw new Error(`--scopes: give one or more of ${TOKEN_SCOPES.join(", ")}`);
  for (const scope of scopes) {
    if (!TokenScope.safeParse(scope).success)
      throw new Error(`--scopes: unknown scope ${JSON.stringify(scope)} (known: ${TOKEN_SCOPES.join(", ")})`);
  }
  if (new Set(scopes).size !== scopes.length) throw new Error("--scopes: a scope is listed twice");
  return scopes as TokenScope[];
}

/**
 * `--expires`: a duration from now (`90d`, `12h`, `30m`) or an ISO date/time. Returns the
 * expiry as an ISO string; refuses the past and anything past the maximum.
 */
export function parseExpiry(value: string, now = new Date()): string {
  const duration = /^(\d{1,6})([dhm])$/.exec(value.trim());
  let at: Date;
  if (duration) {
    const unit = { d: DAY_MS, h: 3_600_000, m: 60_000 }[duration[2] as "d" | "h" | "m"];
    at = new Date(now.getTime() + Number(duration[1]) * unit);
  } else {
    at = new Date(value);
    if (Number.isNaN(at.getTime()))
      throw new Error(`--expires ${JSON.stringify(value)}: expected e.g. 30d, 12h or an ISO date`);
  }
  return at.toISOString();
}

/** The expiry a token gets: `requested` checked against now and the maximum, else the default. */
export function tokenExpiry(requested: string | undefined, now = new Date()): string {
  if (requested === undefined)
    return new Date(now.getTime() + DEFAULT_TOKEN_EXPIRY_DAYS * DAY_MS).toISOString();
  const at = new Date(requested);
  if (Number.isNaN(at.getTime()))
    throw new RequestError(400, `expiresAt ${JSON.stringify(requested)} is not a date`);
  if (at.getTime() <= now.getTime())
    throw new RequestError(400, `expiresAt ${at.toISOString()} is not in the future`);
  if (at.getTime() > now.getTime() + MAX_TOKEN_EXPIRY_DAYS * DAY_MS)
    throw new RequestError(
      400,
      `expiresAt ${at.toISOString()} is more than ${MAX_TOKEN_EXPIRY_DAYS} days away`,
    );
  return at.toISOString();
}

/** Creates a token, stores only its hash, returns the token (shown once). */
export async function createToken(
  repo: Repository,
  name: string,
  scopes: readonly TokenScope[],
  expiresAt?: string,
): Promise<CreateTokenResponse> {
  const checked = Name.safeParse(name);
  if (!checked.success)
    throw new RequestError(400, `token name ${JSON.stringify(name)}: ${checked.error.issues[0]?.message}`);
  if (scopes.length === 0) throw new RequestError(400, "a token needs at least one scope");
  for (const scope of scopes) {
    if (!TokenScope.safeParse(scope).success)
      throw new RequestError(400, `unknown scope ${JSON.stringify(scope)}`);
  }
  const now = new Date();
  const expiry = tokenExpiry(expiresAt, now);
  const token = TOKEN_PREFIX + randomBytes(32).toString("base64url");
  const createdAt = now.toISOString();
  await repo.insertToken({ name, hash: hashToken(token), scopes: [...scopes], createdAt, expiresAt: expiry });
  return { name, token, scopes: [...scopes], createdAt, expiresAt: expiry };
}

/** A token as listed: no secret, no hash. A row without an expiry shows as already expired. */
export function tokenSummary(record: TokenRecord): TokenSummary {
  return {
    name: record.name,
    scopes: record.scopes,
    createdAt: record.createdAt,
    lastUsedAt: record.lastUsedAt,
    expiresAt: record.expiresAt ?? record.createdAt,
  };
}

export function isExpired(record: TokenRecord, now = Date.now()): boolean {
  return record.expiresAt === null || new Date(record.expiresAt).getTime() <= now;
}
