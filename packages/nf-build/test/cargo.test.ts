import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path, { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { RUSTC } from "../src/toolchain";
import { EXAMPLES, exampleDir, repoRoot, run } from "./support";

// The NF crates' own unit tests (in-memory backend), so `make test` covers them: the example
// NFs and the bench NFs. One target dir for all: the nf crate compiles once.
const targetDir = mkdtempSync(path.join(tmpdir(), "galette-nf-cargo-"));
const benchNfs = path.join(repoRoot, "bench", "nfs");
const crates = [
  ...EXAMPLES.map((name) => ({ name, dir: exampleDir(name) })),
  ...readdirSync(benchNfs).map((name) => ({ name: `bench/nfs/${name}`, dir: path.join(benchNfs, name) })),
];

describe("NF crates: cargo test --offline", () => {
  for (const { name, dir } of crates) {
    it(name, async () => {
      const { stdout } = await run("/usr/bin/cargo", ["test", "--offline", "--quiet"], {
        cwd: dir,
        // Debian's rustc-web, never whatever rustup toolchain PATH happens to hold.
        env: { CARGO_TARGET_DIR: targetDir, RUSTC, RUSTDOC: `${dirname(RUSTC)}/rustdoc` },
      });
      expect(stdout).toMatch(/test result: ok\. [1-9]\d* passed; 0 failed/);
    });
  }
});
