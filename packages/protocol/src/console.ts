import { z } from "zod";
import { DeviceSummary, TokenScope } from "./operator";

/**
 * The web console's session API: a token is exchanged once for a session cookie
 * (HttpOnly, Secure, SameSite=Strict); every mutating request made with the cookie
 * carries the session's CSRF token in this header.
 */
export const CONSOLE_ROUTES = {
  /** POST: log in (token → cookie); GET: the current session; DELETE: log out */
  session: "/v1/session",
  /** GET: server-sent events (text/event-stream) of ConsoleEvent */
  events: "/v1/events",
} as const;
export const CSRF_HEADER = "x-galette-csrf";
/** `__Host-`: the browser only keeps it when Secure, Path=/ and without Domain. */
export const SESSION_COOKIE = "__Host-galette_session";

/** POST /v1/session */
export const ConsoleLoginRequest = z.strictObject({ token: z.string().min(1).max(200) });
export type ConsoleLoginRequest = z.infer<typeof ConsoleLoginRequest>;

/** Answer of POST and GET /v1/session: who is logged in, with what, until when. */
export const ConsoleSession = z.object({
  /** the token's name */
  name: z.string(),
  /** the token's scopes: a session never has more */
  scopes: z.array(TokenScope),
  /** the session's end: never later than the token's expiry */
  expiresAt: z.string(),
  /** send back in the CSRF header on every POST/PUT/DELETE made with the cookie */
  csrf: z.string(),
});
export type ConsoleSession = z.infer<typeof ConsoleSession>;

/**
 * What GET /v1/events streams, one JSON object per `data:` line: a snapshot of every
 * device on connect and periodically, and a device as soon as it reports.
 */
export const ConsoleEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("devices"), devices: z.array(DeviceSummary) }),
  z.object({ type: z.literal("device"), device: DeviceSummary }),
]);
export type ConsoleEvent = z.infer<typeof ConsoleEvent>;
