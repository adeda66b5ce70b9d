import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { lineChain } from "./chain-fixtures";

const root = join(import.meta.dirname, "../../..");
const scratch = mkdtempSync(join(tmpdir(), "galette-chain-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `pnpm galette ARGS` from the repository root, as a user would. */
function galette(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("pnpm", ["galette", ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function scratchFile(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

describe("galette chain validate", () => {
  it("prints ok for every example chain with --structure-only", async () => {
    const files = ["security", "macswap", "long-line", "branching", "compute"].map((c) => `chains/${c}.toml`);
    const r = await galette("chain", "validate", "--structure-only", ...files);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(files.map((f) => `${f}: ok`));
  });

  it("checks every example chain against its NF crates when not --structure-only", async () => {
    const files = ["security", "macswap", "long-line", "branching", "compute"].map((c) => `chains/${c}.toml`);
    const r = await galette("chain", "validate", ...files);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(files.map((f) => `${f}: ok`));
  });

  it("names the chain line and the NF source when arity or maps do not match the crate", async () => {
    const bad = scratchFile(
      "arity.toml",
      [
        "[functions.macswap.maps]",
        'countres = { type = "array", size = 1 }',
        "[[links]]",
        'from = "rx"',
        'to = ["macswap"]',
        "[[links]]",
        'from = "macswap"',
        'to = ["tx", "drop"]',
        "",
      ].join("\n"),
    );
    const r = await galette("chain", "validate", bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/arity\.toml:8:\d+: error: .*macswap.*2 link target.*1 variant.*Tx/);
    expect(r.stdout).toMatch(/arity\.toml:2:\d+: error: .*countres.*did you mean "counters"/);
    expect(r.stdout).toContain("nf-examples/macswap/src/lib.rs");
  });

  it("prints all errors compiler-style and exits 1, still checking the other files", async () => {
    const bad = scratchFile(
      "bad.toml",
      '[maps.flow-state]\ntpye = "hash_map"\nsize = 0\n[functions.a]\nmaps = { flow-state = "_" }\n[[links]]\nfrom = "rx"\nto = ["b"]\n',
    );
    const r = await galette("chain", "validate", "--structure-only", bad, "chains/macswap.toml");
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `${bad}:2:1: error: unknown key "tpye" in [maps.flow-state] — did you mean "type"?`,
    );
    expect(r.stdout).toContain(`${bad}:3:8: error: map size in [maps.flow-state] must be a positive integer`);
    expect(r.stdout).toContain(`${bad}:8:7: error: unknown link target "b"`);
    expect(r.stdout).toContain(`${bad}:4:12: error: function "a" has no outgoing link`);
    expect(r.stdout).toMatch(/bad\.toml: failed \(\d+ errors\)/);
    expect(r.stdout).toContain("chains/macswap.toml: ok");
  });

  it("exits 0 with warnings only, and prints them", async () => {
    const warn = scratchFile(
      "warn.toml",
      '[functions.a]\n[functions.b]\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = ["tx"]\n[[links]]\nfrom = "b"\nto = ["tx"]\n',
    );
    const r = await galette("chain", "validate", "--structure-only", warn);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${warn}:2:12: warning: function "b" is unreachable`);
    expect(r.stdout).toContain(`${warn}: ok (1 warning)`);
  });

  it("reports a missing file as an error on that file", async () => {
    const r = await galette("chain", "validate", "--json", "chains/does-not-exist.toml");
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout);
    expect(json.ok).toBe(false);
    expect(json.files[0].diagnostics[0]).toMatchObject({
      code: "read-error",
      file: "chains/does-not-exist.toml",
    });
  });
});

describe("galette chain plan", () => {
  it("--json on security.toml has the contract's field names and placements", async () => {
    const r = await galette("chain", "plan", "--json", "chains/security.toml");
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout); // nothing but JSON on stdout (pnpm prints no header)
    expect(plan.chain).toBe("security");
    const nf = (n: string) => plan.nfs.find((x: { name: string }) => x.name === n);
    for (const n of plan.nfs)
      expect(Object.keys(n)).toEqual(expect.arrayContaining(["name", "uuid", "xdp", "userland", "maps"]));
    expect(nf("access-control")).toMatchObject({ xdp: true });
    expect(nf("weak-classifier")).toMatchObject({ xdp: true });
    expect(nf("dpi")).toMatchObject({ xdp: false, userland: true });
    expect(plan.edges).toContainEqual(
      expect.objectContaining({ from: "weak-classifier", to: "dpi", kind: "upcall" }),
    );
    expect(Array.isArray(plan.maps)).toBe(true);
    expect(plan.warnings).toEqual([]);
  });

  it("prints a readable table with the tail-call warning for the 40-NF line", async () => {
    const r = await galette("chain", "plan", "chains/long-line.toml");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/chain long-line .*40 NFs.*33 in XDP, 7 in userland/);
    expect(r.stdout).toMatch(/ttl-33 +[0-9a-f-]{36} +yes +- .*0:ttl-34 \(upcall\)/);
    expect(r.stdout).toMatch(/ttl-34 +[0-9a-f-]{36} +- +yes/);
    expect(r.stdout).toContain('warning: "ttl-34" runs in userland');
  });

  it("exits 1 with located errors on an invalid chain", async () => {
    const bad = scratchFile(
      "cycle.toml",
      '[functions.a]\n[[links]]\nfrom = "rx"\nto = ["a"]\n[[links]]\nfrom = "a"\nto = ["a"]\n',
    );
    const r = await galette("chain", "plan", bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${bad}:7:7: error: cycle: a → a`);
  });
});

describe("galette chain validate/plan: device limits", () => {
  it("refuses 8000- and 300-NF line chains at file:line, naming the 256-instance limit (no stack overflow)", async () => {
    for (const n of [8000, 300]) {
      const file = scratchFile(`line-${n}.toml`, lineChain(n));
      for (const args of [["validate", "--structure-only"], ["validate"], ["plan"]]) {
        const r = await galette("chain", ...args, file);
        expect(r.code, `${args.join(" ")} ${n}`).toBe(1);
        expect(r.stdout).toContain(
          `${file}:511:12: error: the chain has ${n} NF instances, but a device holds at most 255: the 256-instance limit`,
        );
        expect(r.stderr).not.toMatch(/Maximum call stack|RangeError/);
      }
    }
  });
});

describe("galette: unknown commands and options exit 1, with or without --help", () => {
  it.each([
    [["nosuch", "--help"], /unknown command 'nosuch'/],
    [["nosuch"], /unknown command 'nosuch'/],
    [["fleet", "start", "--help"], /unknown command 'fleet'/],
    [
      ["rollout", "start", "security", "--phase", "1,100%"],
      /unknown option '--phase'\n\(Did you mean --phases\?\)/,
    ],
    [["chain", "valdate", "--help"], /unknown command 'valdate'\n\(Did you mean validate\?\)/],
    [["chain", "validate", "--nosuch", "--help"], /unknown option '--nosuch'/],
    [["chain", "validate", "--structure-onyl", "x.toml"], /\(Did you mean --structure-only\?\)/],
  ])("galette %j", async (args, message) => {
    const r = await galette(...args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  it("still exits 0 for help on real commands", async () => {
    for (const args of [
      ["--help"],
      ["chain", "--help"],
      ["chain", "validate", "--help"],
      ["help", "chain"],
    ]) {
      const r = await galette(...args);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout).toMatch(/Usage: galette/);
    }
  });
});
