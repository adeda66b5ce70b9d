import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeAtomic } from "../src";

const dir = mkdtempSync(path.join(tmpdir(), "galette-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("writeAtomic", () => {
  it("replaces a file whole, with the mode asked for, and leaves no temporary file", () => {
    const file = path.join(dir, "state.json");
    writeFileSync(file, "old");
    writeAtomic(file, "new content", { mode: 0o600 });
    expect(readFileSync(file, "utf8")).toBe("new content");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeAtomic(file, new Uint8Array([1, 2, 3]));
    expect([...readFileSync(file)]).toEqual([1, 2, 3]);
    expect(readdirSync(dir)).toEqual(["state.json"]);
  });

  it("refuses a missing directory or a directory in the way, naming the file, keeping what was there", () => {
    const missing = path.join(dir, "nope", "x.json");
    expect(() => writeAtomic(missing, "x")).toThrow(`cannot write ${missing}: ENOENT`);
    const blocked = path.join(dir, "blocked");
    mkdirSync(path.join(blocked, "inner"), { recursive: true });
    expect(() => writeAtomic(blocked, "x")).toThrow(/cannot write .*blocked: EISDIR/);
    expect(existsSync(path.join(blocked, "inner"))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });
});
