/**
 * The console's client of the controller: the session cookie goes with every request by
 * itself (same origin); mutating requests add the session's CSRF token. Every shape comes
 * from @galette/protocol.
 */
import {
  type ChainVersionResponse,
  CONSOLE_ROUTES,
  type ConsoleEvent,
  type ConsoleSession,
  CSRF_HEADER,
  type ListChainsResponse,
  type ListDevicesResponse,
  type ListRolloutsResponse,
  type MapEntriesDocument,
  type MapEntriesResponse,
  type MapEntry,
  RELEASE_ROUTES,
  ROLLOUT_ROUTES,
  type Signature,
  type SignedMapEntries,
} from "@galette/protocol";

const ROUTES = CONSOLE_ROUTES;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = "";

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers[CSRF_HEADER] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const error = (await res.json()) as { error?: string };
      if (error.error) message = error.error;
    } catch {
      // not JSON: the status line says enough
    }
    throw new ApiError(res.status, message);
  }
  return (res.status === 204 ? undefined : await res.json()) as T;
}

export const api = {
  async login(token: string): Promise<ConsoleSession> {
    const session = await request<ConsoleSession>("POST", ROUTES.session, { token });
    csrf = session.csrf;
    return session;
  },
  /** The session the cookie carries (after a reload), or null when there is none. */
  async currentSession(): Promise<ConsoleSession | null> {
    try {
      const session = await request<ConsoleSession>("GET", ROUTES.session);
      csrf = session.csrf;
      return session;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }
  },
  async logout(): Promise<void> {
    await request<void>("DELETE", ROUTES.session);
    csrf = "";
  },
  devices: () => request<ListDevicesResponse>("GET", "/v1/devices"),
  chains: () => request<ListChainsResponse>("GET", "/v1/chains"),
  chain: (name: string, version?: number) =>
    request<ChainVersionResponse>(
      "GET",
      `/v1/chains/${encodeURIComponent(name)}${version ? `?version=${version}` : ""}`,
    ),
  mapEntries: (chain: string, map: string) =>
    request<MapEntriesResponse>(
      "GET",
      `/v1/chains/${encodeURIComponent(chain)}/maps/${encodeURIComponent(map)}/entries`,
    ),
  signedMapEntries: (chain: string, map: string) =>
    request<{ signed: SignedMapEntries | null }>("GET", RELEASE_ROUTES.signedMapEntries(chain, map)),
  setMapEntries: (
    chain: string,
    map: string,
    change: {
      set: MapEntry[];
      delete: string[];
      signed?: { document: MapEntriesDocument; signature: Signature; publicKey: string };
    },
  ) =>
    request<MapEntriesResponse>(
      "PUT",
      `/v1/chains/${encodeURIComponent(chain)}/maps/${encodeURIComponent(map)}/entries`,
      change,
    ),
};

/**
 * Live device summaries over server-sent events. EventSource reconnects by itself; the
 * stream ends for good when the session does (then `onEnd`).
 */
export function subscribeEvents(onEvent: (event: ConsoleEvent) => void, onError: () => void): () => void {
  const source = new EventSource(ROUTES.events, { withCredentials: true });
  source.onmessage = (message) => onEvent(JSON.parse(message.data as string) as ConsoleEvent);
  source.onerror = onError;
  return () => source.close();
}

// ---- rollouts ----

/** Staged rollouts, newest first (GET /v1/rollouts: read scope). */
export const rollouts = {
  list: () => request<ListRolloutsResponse>("GET", ROLLOUT_ROUTES.rollouts).then((r) => r.rollouts),
};
