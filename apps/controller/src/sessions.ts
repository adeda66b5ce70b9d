import { randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenScope } from "@galette/protocol";
import { sha256Hex } from "./storage/artifacts";
import type { TokenRecord } from "./storage/repository";

/** A console session lasts at most this long, and never past its token's expiry. */
export const SESSION_MAX_MS = 12 * 3_600_000;
/** Sessions one controller holds at most; the oldest goes first. */
const MAX_SESSIONS = 10_000;

export interface ConsoleSessionRecord {
  /** sha256 of the token it was made from: looked up on every request (revocation is immediate) */
  tokenHash: string;
  name: string;
  scopes: TokenScope[];
  expiresAt: number;
  csrf: string;
}

/**
 * Console sessions, in memory: a controller restart logs everyone out. The cookie holds a
 * random id; only its sha256 is kept, so a leaked map (a heap dump) logs nobody in.
 */
export class ConsoleSessions {
  readonly #byIdHash = new Map<string, ConsoleSessionRecord>();

  /** A session for `token`: its scopes, ending at the sooner of SESSION_MAX_MS and the token's expiry. */
  create(
    token: TokenRecord,
    tokenHash: string,
    now = Date.now(),
  ): { id: string; session: ConsoleSessionRecord } {
    this.sweep(now);
    while (this.#byIdHash.size >= MAX_SESSIONS) {
      const oldest = this.#byIdHash.keys().next().value;
      if (oldest === undefined) break;
      this.#byIdHash.delete(oldest);
    }
    const tokenExpiry = token.expiresAt ? Date.parse(token.expiresAt) : Number.POSITIVE_INFINITY;
    const session: ConsoleSessionRecord = {
      tokenHash,
      name: token.name,
      scopes: [...token.scopes],
      expiresAt: Math.min(now + SESSION_MAX_MS, tokenExpiry),
      csrf: randomBytes(32).toString("base64url"),
    };
    const id = randomBytes(32).toString("base64url");
    this.#byIdHash.set(sha256Hex(id), session);
    return { id, session };
  }

  /** The live session of a cookie value, or undefined (unknown, or expired: then forgotten). */
  get(id: string, now = Date.now()): ConsoleSessionRecord | undefined {
    const key = sha256Hex(id);
    const session = this.#byIdHash.get(key);
    if (session && session.expiresAt <= now) {
      this.#byIdHash.delete(key);
      return undefined;
    }
    return session;
  }

  delete(id: string): void {
    this.#byIdHash.delete(sha256Hex(id));
  }

  /** Drops every session made from this token (its revocation or expiry was noticed). */
  deleteForToken(tokenHash: string): void {
    for (const [key, session] of this.#byIdHash)
      if (session.tokenHash === tokenHash) this.#byIdHash.delete(key);
  }

  sweep(now = Date.now()): void {
    for (const [key, session] of this.#byIdHash) if (session.expiresAt <= now) this.#byIdHash.delete(key);
  }
}

/** Constant-time comparison of a presented CSRF token with the session's. */
export function csrfMatches(presented: string | string[] | undefined, expected: string): boolean {
  if (typeof presented !== "string") return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
