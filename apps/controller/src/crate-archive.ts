import { createWriteStream, existsSync, lstatSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { basename, dirname, join, posix, resolve } from "node:path";
import { Readable, Transform, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { create as createTar, Parser, type ReadEntry } from "tar";

/** Build outputs and VCS data never belong in a published crate. */
const EXCLUDED = new Set(["target", ".git", "node_modules"]);

/**
 * Packs an NF crate directory for `POST /v1/nfs` (what `galette nf publish DIR` sends):
 * a tar with entries under `<dir name>/`, without target/, .git or node_modules.
 * Symbolic links are an error naming the file (the controller would refuse them).
 */
export async function packCrateDir(crateDir: string): Promise<Buffer> {
  const dir = resolve(crateDir);
  if (!existsSync(join(dir, "Cargo.toml")))
    throw new Error(`${dir} has no Cargo.toml: not a crate directory`);
  const name = basename(dir);
  const links: string[] = [];
  const stream = createTar(
    {
      cwd: dirname(dir),
      portable: true,
      gzip: false,
      filter: (path) => {
        const parts = path.split("/");
        if (parts.slice(1).some((part) => EXCLUDED.has(part))) return false;
        if (lstatSync(join(dirname(dir), path)).isSymbolicLink()) {
          links.push(path);
          return false;
        }
        return true;
      },
    },
    [name],
  );
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  if (links.length > 0) {
    throw new Error(
      `${links[0]} is a symbolic link; NF crates may contain only regular files and directories`,
    );
  }
  return Buffer.concat(chunks);
}

export interface CrateArchiveLimits {
  /** regular-file bytes, all entries together */
  maxBytes: number;
  maxEntries: number;
}

export const DEFAULT_CRATE_ARCHIVE_LIMITS: CrateArchiveLimits = {
  maxBytes: 64 * 1024 * 1024,
  maxEntries: 4096,
};

/** Zero padding tar writers add after the end-of-archive blocks (tar pads to 10 KiB records). */
const MAX_TRAILING_BYTES = 1024 * 1024;

/** An upload refused: `problems[0]` says why (a path inside the archive and what is wrong with it). */
export class CrateArchiveError extends Error {
  constructor(readonly problems: string[]) {
    super(problems[0]);
    this.name = "CrateArchiveError";
  }
}

/** What an entry's path must be: relative, no `..`, no empty or odd segments. */
function pathProblem(path: string): string | undefined {
  if (path.startsWith("/") || /^[a-zA-Z]:/.test(path)) return `${path}: absolute path`;
  if (path.includes("\\") || path.includes("\0")) return `${path}: invalid character in path`;
  if (posix.normalize(path).split("/").includes("..") || path.split("/").includes(".."))
    return `${path}: path escapes the archive ('..')`;
  if (path.split("/").length > 32) return `${path}: nested too deeply`;
  return undefined;
}

const KIND: Record<string, string> = {
  SymbolicLink: "a symbolic link",
  Link: "a hard link",
  CharacterDevice: "a character device",
  BlockDevice: "a block device",
  FIFO: "a fifo",
};

/**
 * Unpacks an uploaded crate (tar, optionally gzipped) into `dest`, streaming: gzip is
 * inflated on libuv's thread pool, never on the event loop, and the limits are enforced as
 * bytes come out of it, so a gzip bomb is refused after at most `maxBytes` (plus tar headers)
 * have been inflated. Only regular files and directories with relative paths inside the
 * archive are written; anything else refuses the whole archive (CrateArchiveError) and the
 * caller discards `dest`.
 */
export async function unpackCrateArchive(
  archive: Buffer,
  dest: string,
  limits: CrateArchiveLimits = DEFAULT_CRATE_ARCHIVE_LIMITS,
): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  let inflated = 0;
  // tar headers, padding and the end blocks on top of the file bytes
  const maxTarBytes = limits.maxBytes + (limits.maxEntries + 4) * 1536;
  let refused: CrateArchiveError | undefined;
  const refuse = (problem: string) => {
    refused ??= new CrateArchiveError([problem]);
    throw refused;
  };
  const parser = new Parser({ strict: true, zstd: false });
  let sawEof = false;
  let trailing = 0;
  parser.on("eof", () => {
    sawEof = true;
  });
  /** The checks, as each header arrives (before its data); throws CrateArchiveError. */
  const check = (entry: ReadEntry): void => {
    entries++;
    if (entries > limits.maxEntries) refuse(`the archive has more than ${limits.maxEntries} entries`);
    const path = entry.path;
    const kind =
      KIND[entry.type] ??
      (entry.type === "File" || entry.type === "OldFile" || entry.type === "Directory"
        ? undefined
        : `a ${entry.type} entry`);
    if (kind) refuse(`${path}: is ${kind}; only regular files and directories are accepted`);
    const bad = pathProblem(path);
    if (bad) refuse(bad);
    if (entry.type !== "Directory") {
      bytes += entry.size ?? 0;
      if (bytes > limits.maxBytes) refuse(`the archive unpacks to more than ${limits.maxBytes} bytes`);
    }
  };
  const write = async (entry: ReadEntry): Promise<void> => {
    const target = join(dest, entry.path);
    if (entry.type === "Directory") {
      entry.resume();
      await mkdir(target, { recursive: true, mode: 0o755 });
      return;
    }
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    // wx: a second entry with the same path is refused, never written over the first
    const out = createWriteStream(target, { flags: "wx", mode: 0o644 });
    await pipeline(entry as unknown as Readable, out);
  };
  // entries are written one after the other, in archive order (a directory before its files)
  let written: Promise<void> = Promise.resolve();
  parser.on("entry", (entry: ReadEntry) => {
    if (!refused) {
      try {
        check(entry);
      } catch {
        // refused is set
      }
    }
    if (refused) {
      entry.resume();
      return;
    }
    written = written.then(() =>
      refused
        ? void entry.resume()
        : write(entry).catch((err: NodeJS.ErrnoException) => {
            entry.resume();
            refused ??= new CrateArchiveError([
              err.code === "EEXIST"
                ? `${entry.path}: appears twice in the archive`
                : // the code, not the message: it would name the directory we unpack in
                  `${entry.path}: cannot be unpacked (${err.code ?? "error"}; a file where a directory is, or the reverse?)`,
            ]);
          }),
    );
  });
  const stop = (problem: string) => {
    refused ??= new CrateArchiveError([problem]);
    return refused;
  };
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      // node-tar would inflate a compressed stream it finds here itself, synchronously and
      // outside these limits: an archive inside the compression is refused
      const magic = chunk.length >= 4 ? chunk.readUInt32BE(0) : 0;
      if (inflated === 0 && (magic >>> 16 === 0x1f8b || magic === 0x28b52ffd))
        return done(stop("the archive is compressed twice (or is not a tar)"));
      inflated += chunk.length;
      // node-tar keeps what follows its end-of-archive in one growing buffer: never feed it that
      if (sawEof) {
        trailing += chunk.length;
        return done(trailing > MAX_TRAILING_BYTES ? stop("data after the end of the tar archive") : null);
      }
      if (inflated > maxTarBytes)
        return done(stop(`the archive unpacks to more than ${limits.maxBytes} bytes`));
      if (refused) return done(refused);
      done(null, chunk);
    },
  });
  const gzipped = archive.length >= 2 && archive[0] === 0x1f && archive[1] === 0x8b;
  try {
    const sink = parser as unknown as Writable;
    if (gzipped) await pipeline(Readable.from([archive]), createGunzip(), counter, sink);
    else await pipeline(Readable.from([archive]), counter, sink);
  } catch (err) {
    if (refused) throw refused;
    if (err instanceof CrateArchiveError) throw err;
    throw new CrateArchiveError([
      `not a readable ${gzipped ? "gzipped " : ""}tar: ${(err as Error).message}`,
    ]);
  }
  await written;
  if (refused) throw refused;
  if (entries === 0) throw new CrateArchiveError(["the archive is empty (or not a tar)"]);
  return { entries, bytes };
}
