// Kept apart from scale-sim.ts, which takes over its process's IPC channel when imported.

/** What failed a request, short enough to count: the HTTP status, else the error code, else the message's start. */
export function failureReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const status = /HTTP (\d{3})/.exec(message);
  if (status) return `HTTP ${status[1]}`;
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === "string") return code;
  const named = /\b(E[A-Z]{3,})\b/.exec(message);
  if (named) return named[1]!;
  // the client names the request first ("POST https://127.0.0.1:PORT/v1/device/status: …"):
  // counted by what happened, not by where
  return message.replace(/^[A-Z]+ \S+: /, "").slice(0, 60);
}
