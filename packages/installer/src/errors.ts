/** An installation step the kernel refused; the live chain (if any) was left as it was. */
export class InstallError extends Error {
  override name = "InstallError";
}

/**
 * `err` as an InstallError that starts with what was being done (`context`), with the
 * verifier's log appended when the kernel gave one. An error that already says it passes
 * through unchanged, so nested steps do not repeat their context.
 */
export function withContext(err: unknown, context: string): Error {
  if (err instanceof InstallError && err.message.startsWith(context)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const e = new InstallError(`${context}: ${msg}`, { cause: err });
  const vlog = (err as { verifierLog?: unknown } | undefined)?.verifierLog;
  if (typeof vlog === "string" && vlog && !msg.includes(vlog)) e.message += `\nverifier log:\n${vlog}`;
  return e;
}
