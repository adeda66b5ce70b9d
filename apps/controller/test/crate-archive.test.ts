import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Parser } from "tar";
import { afterAll, describe, expect, it } from "vitest";
import { packCrateDir } from "../src/crate-archive";
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
