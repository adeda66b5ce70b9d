// The report `galette nf inspect` prints.
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type NfInspectIo, runNfInspect } from "../src/inspect";

const FIXTURES = path.join(import.meta.dirname, "fixtures/analyze");

/** `galette nf inspect ARGS` (`--json` first if given), with captured output and exit code. */
async function inspect(...args: string[]) {
  const json = args[0] === "--json";
  const out = { stdout: "", stderr: "", exitCode: 0 };
  const io: NfInspectIo = {
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    cwd: FIXTURES,
  };
  out.exitCode = await runNfInspect(json ? args.slice(1) : args, { json }, io);
  return out;
}

describe("galette nf inspect", () => {
  it("prints maps with types and sizes, actions in order and std use", async () => {
    const out = await inspect(path.join(FIXTURES, "listing2"), path.join(FIXTURES, "uses-std"));
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe(
      [
        "listing2  listing2/src/lib.rs",
        "  std: no (#![no_std])",
        "  maps (struct Maps):",
        "    counters  (u32, u64)  key 4 B, value 8 B  type from chain  listing2/src/lib.rs:8:9",
        "  actions (enum Action):",
        "    0  Tx    listing2/src/lib.rs:12:5",
        "    1  Drop  listing2/src/lib.rs:13:5",
        "",
        "uses-std  uses-std/src/lib.rs",
        "  std: yes (userland only: needs disable_xdp = true in the chain)",
        "  maps: none",
        "  actions (enum Action):",
        "    0  Tx    uses-std/src/lib.rs:4:5",
        "    1  Drop  uses-std/src/lib.rs:5:5",
        "",
      ].join("\n"),
    );
  });

  it("shows map types/sizes from #[map] and warnings on stderr", async () => {
    const out = await inspect(path.join(FIXTURES, "layouts"));
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain("flows          (FlowKey, Counter)");
    expect(out.stdout).toMatch(
      /allow +\(LpmKeyV4, u8\) +key 8 B, value 1 B +lpm_trie, size 1024 +layouts\/src\/lib\.rs:73:9/,
    );
    expect(out.stdout).toMatch(/v6 +\(nf::LpmKeyV6, \(u8, u8\)\) +key 20 B, value \? B/);
    expect(out.stderr.split("\n").filter((l) => l.includes(": warning: "))).toHaveLength(4);
  });

  it("--json prints the analyses", async () => {
    const out = await inspect("--json", path.join(FIXTURES, "listing2"));
    expect(out.exitCode).toBe(0);
    const results = JSON.parse(out.stdout);
    expect(results).toHaveLength(1);
    expect(results[0].analysis.name).toBe("listing2");
    expect(results[0].analysis.actions.map((a: { name: string }) => a.name)).toEqual(["Tx", "Drop"]);
    expect(results[0].diagnostics).toEqual([]);
  });

  it("errors are file:line:col: error: … and exit 1, other crates still print", async () => {
    const out = await inspect(path.join(FIXTURES, "non-tuple-field"), path.join(FIXTURES, "listing2"));
    expect(out.exitCode).toBe(1);
    expect(out.stderr.split("\n").filter((l) => !l.startsWith("  "))).toEqual([
      "non-tuple-field/src/lib.rs:7:14: error: map field `bad` has type `Map<u32, u64>`; #[maps] fields must be `(Key, Value)` tuples",
      "non-tuple-field/src/lib.rs:8:17: error: map field `triple` has type `(u32, u64, u8)`; #[maps] fields must be `(Key, Value)` tuples",
      "",
    ]);
    expect(out.stdout).toContain("listing2  listing2/src/lib.rs");
  });

  it("--json with a failing crate: diagnostics in the JSON, exit 1", async () => {
    const out = await inspect("--json", path.join(FIXTURES, "no-packet"));
    expect(out.exitCode).toBe(1);
    const [result] = JSON.parse(out.stdout);
    expect(result.analysis).toBeUndefined();
    expect(result.diagnostics[0]).toMatchObject({
      code: "nf-no-packet-fn",
      line: 1,
      column: 1,
      severity: "error",
    });
  });
});
