import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header, type HeaderData, Parser } from "tar";
import { afterAll, describe, expect, it } from "vitest";
import { CrateArchiveError, packCrateDir, unpackCrateArchive } from "../src/crate-archive";
import { MACSWAP_RS, writeCrate } from "./helpers";

const scratch = mkdtempSync(join(tmpdir(), "galette-pack-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function entries(archive: Buffer): string[] {
  const names: string[] = [];
  const parser = new Parser({
    onReadEntry: (entry) => {
      names.push(entry.path);
      entry.resume();
    },
  });
  parser.end(archive);
  return names.sort();
}

describe("packCrateDir", () => {
  it("packs the crate under its directory name, without build outputs", async () => {
    const dir = writeCrate(scratch, "macswap", MACSWAP_RS);
    mkdirSync(join(dir, "target", "debug"), { recursive: true });
    writeFileSync(join(dir, "target", "debug", "big.rlib"), "x");
    expect(entries(await packCrateDir(dir))).toEqual([
      "macswap/",
      "macswap/Cargo.toml",
      "macswap/src/",
      "macswap/src/lib.rs",
    ]);
  });

  it("names a symbolic link and a directory that is not a crate", async () => {
    const dir = writeCrate(scratch, "linked", MACSWAP_RS);
    symlinkSync("/etc/hostname", join(dir, "src", "host"));
    await expect(packCrateDir(dir)).rejects.toThrow(/linked\/src\/host is a symbolic link/);
    await expect(packCrateDir(scratch)).rejects.toThrow(/has no Cargo.toml/);
  });
});

/** One tar entry (header and padded body) of a hand-made archive. */
function entry(path: string, body: string, type: HeaderData["type"] = "File"): Buffer {
  const header = new Header({ path, type, size: body.length, mode: 0o644 });
  header.encode();
  const data = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  data.write(body);
  return Buffer.concat([header.block!, data]);
}
/** The entries and the two zero blocks that end an archive. */
const tar = (...entries: Buffer[]) => Buffer.concat([...entries, Buffer.alloc(1024)]);

describe("unpackCrateArchive", () => {
  const dest = () => mkdtempSync(join(scratch, "unpack-"));

  it("unpacks regular files and directories, gzipped or not", async () => {
    const archive = tar(
      entry("c/", "", "Directory"),
      entry("c/Cargo.toml", "[package]"),
      entry("c/src/lib.rs", "x"),
    );
    for (const body of [archive, gzipSync(archive)]) {
      const d = dest();
      expect(await unpackCrateArchive(body, d)).toEqual({ entries: 3, bytes: 10 });
      expect(readFileSync(join(d, "c", "src", "lib.rs"), "utf8")).toBe("x");
    }
  });

  it("enforces the entry and byte limits as it reads, before the data", async () => {
    const many = tar(...Array.from({ length: 5 }, (_, i) => entry(`c/f${i}`, "x")));
    await expect(unpackCrateArchive(many, dest(), { maxBytes: 1000, maxEntries: 4 })).rejects.toThrow(
      /more than 4 entries/,
    );
    const big = tar(entry("c/a", "x".repeat(600)), entry("c/b", "x".repeat(600)));
    await expect(unpackCrateArchive(big, dest(), { maxBytes: 1000, maxEntries: 10 })).rejects.toThrow(
      /unpacks to more than 1000 bytes/,
    );
  });

  it("refuses an archive that inflates past the limit without reading the rest", async () => {
    // 256 MiB of zeros behind one header: the inflated stream is cut at the limit
    const header = new Header({ path: "c/big", type: "File", size: 200 * 1024 ** 2, mode: 0o644 });
    header.encode();
    const member = gzipSync(Buffer.alloc(1024 * 1024));
    const bomb = Buffer.concat([gzipSync(header.block!), ...Array.from({ length: 256 }, () => member)]);
    await expect(
      unpackCrateArchive(bomb, dest(), { maxBytes: 4 * 1024 ** 2, maxEntries: 10 }),
    ).rejects.toThrow(/unpacks to more than/);
  });

  it("refuses garbage, an empty archive and a second layer of compression", async () => {
    await expect(unpackCrateArchive(Buffer.from("not a tar archive, not at all"), dest())).rejects.toThrow(
      CrateArchiveError,
    );
    await expect(unpackCrateArchive(Buffer.alloc(1024), dest())).rejects.toThrow(/not a readable tar|empty/);
    await expect(unpackCrateArchive(gzipSync(gzipSync(tar(entry("c/a", "x")))), dest())).rejects.toThrow(
      /compressed twice/,
    );
  });
});

describe("unpackCrateArchive conflicts", () => {
  it("refuses a file where a directory is (and the reverse) without naming where it unpacks", async () => {
    for (const archive of [
      tar(entry("c/src/", "", "Directory"), entry("c/src", "x")),
      tar(entry("c/a", "x"), entry("c/a/b", "y")),
    ]) {
      const d = mkdtempSync(join(scratch, "conflict-"));
      const err = await unpackCrateArchive(archive, d).catch((e: Error) => e);
      expect(err).toBeInstanceOf(CrateArchiveError);
      expect((err as Error).message).toMatch(
        /^c\/(src|a\/b): (appears twice in the archive|cannot be unpacked \(E[A-Z]+;)/,
      );
      expect((err as Error).message).not.toContain(d);
    }
  });
});
