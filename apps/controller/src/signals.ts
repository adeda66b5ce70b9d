/**
 * How long-running commands (`controller serve`, `dataplane up`) stop: on SIGINT or
 * SIGTERM to their own PID, whoever sends it (a supervisor, a script, `timeout`).
 *
 * - The first signal calls `stop`; later ones are ignored while it runs. A Ctrl-C in a
 *   terminal reaches every process of the group and `pnpm galette` forwards it once more,
 *   so the same signal commonly arrives twice, and the second must not kill a process
 *   that is halfway through uninstalling a chain.
 * - Started by a package manager (`pnpm galette …`: npm_lifecycle_event is set), the
 *   command also stops when that parent goes away: a pnpm killed with SIGKILL forwards
 *   nothing, and an orphaned `dataplane up` would keep its chain installed.
 */
export interface Shutdown {
  /** the reason stop was called with, once it has been */
  readonly requested: string | undefined;
  /** removes the handlers (signals then kill the process again) */
  dispose(): void;
}

const PARENT_POLL_MS = 250;

export function onShutdown(stop: (why: string) => void): Shutdown {
  let requested: string | undefined;
  const trigger = (why: string) => {
    if (requested !== undefined) return;
    requested = why;
    stop(why);
  };
  const onInt = () => trigger("SIGINT");
  const onTerm = () => trigger("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  let watch: NodeJS.Timeout | undefined;
  if (process.env.npm_lifecycle_event) {
    const parent = process.ppid;
    watch = setInterval(() => {
      if (process.ppid !== parent) trigger(`parent process ${parent} exited`);
    }, PARENT_POLL_MS).unref();
  }
  return {
    get requested() {
      return requested;
    },
    dispose() {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      if (watch) clearInterval(watch);
    },
  };
}
