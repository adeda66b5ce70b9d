import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path, { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { RUSTC } from "../src/toolchain";
import { EXAMPLES, exampleDir, run } from "./support";

// The examples' own unit tests (in-memory backend), so `make test` covers them. One target
// dir for all: the nf crate compiles once.
const targetDir = mkdtempSync(path.join(tmpdir(), "galette-nf-cargo-"));

describe("example NFs: cargo test --offline", () => {
  for (const name of EXAMPLES) {
    it(name, async () => {
      const { stdout } = await run("/usr/bin/cargo", ["test", "--offline", "--quiet"], {
        cwd: exampleDir(name),
        // Debian's rustc-web, never whatever rustup toolchain PATH happens to hold.
        env: { CARGO_TARGET_DIR: targetDir, RUSTC, RUSTDOC: `${dirname(RUSTC)}/rustdoc` },
      });
      expect(stdout).toMatch(/test result: ok\. [1-9]\d* passed; 0 failed/);
    });
  }
});
