import pino, { type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** default: $GALETTE_LOG_LEVEL, else "info" */
  level?: string;
  /** human-readable lines instead of JSON; default: when stderr is a terminal */
  pretty?: boolean;
  /** where to write; default: stderr (stdout stays for command output such as --json) */
  fd?: number;
}

/**
 * Every Galette process logs through this: JSON lines for machines (journald, CI logs),
 * coloured one-liners when a person is watching the terminal.
 */
export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.GALETTE_LOG_LEVEL ?? "info";
  const fd = options.fd ?? 2;
  const human = options.pretty ?? (fd === 2 ? process.stderr.isTTY : process.stdout.isTTY) === true;
  const stream = human
    ? pretty({
        destination: fd,
        sync: true,
        colorize: true,
        ignore: "pid,hostname",
        translateTime: "SYS:HH:MM:ss",
      })
    : pino.destination({ fd, sync: true });
  return pino({ name, level }, stream);
}
