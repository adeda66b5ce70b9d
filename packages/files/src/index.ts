import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import path from "node:path";

export interface WriteAtomicOptions {
  /** permissions of the new file (default 0o644, less the umask) */
  mode?: number;
}

/**
 * Replaces `file` with `data`: written to a temporary file beside it, flushed to disk, then
 * renamed over it, and the directory flushed too. Readers (and a reboot after a power cut)
 * see the old content or the new, never part of one. The temporary name is unique per
 * process and call, so concurrent writers of one file each land whole (the last one wins).
 * On failure nothing is left behind and the error names the file.
 */
export function writeAtomic(file: string, data: string | Uint8Array, options: WriteAtomicOptions = {}): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fd = openSync(tmp, "wx", options.mode ?? 0o644);
    try {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    throw Object.assign(new Error(`cannot write ${file}: ${e.message}`, { cause: err }), { code: e.code });
  }
  // the rename itself is durable only once the directory is
  const dir = openSync(path.dirname(file), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
