/**
 * The device carries `galette-agent` as one JavaScript file: what goes into it is the
 * agent's whole dependency closure, so the NF compiler (nf-build, tree-sitter) must not.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { build } from "tsup";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyAssets, executableBundle, listFiles, xdpNativeRuntime } from "../../../packaging/bundle";
import pkg from "../package.json" with { type: "json" };

const appDir = path.resolve(import.meta.dirname, "..");

describe("the galette-agent bundle", () => {
  const out = mkdtempSync(path.join(tmpdir(), "galette-agent-bundle-"));
  let inputs: string[] = [];

  beforeAll(async () => {
    const options = executableBundle({ name: "galette-agent", entry: path.join(appDir, "src/cli.ts") });
    await build({ ...options, outDir: out, config: false });
    copyAssets(out, xdpNativeRuntime());
    const meta = JSON.parse(readFileSync(path.join(out, "metafile-esm.json"), "utf8")) as {
      inputs: Record<string, unknown>;
    };
    inputs = Object.keys(meta.inputs);
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("holds the agent, installer, protocol, xdp-native and log (chain: types only) — no NF compiler", () => {
    const ours = new Set(
      inputs.flatMap((f) => /(?:^|\/)(packages|apps)\/([^/]+)\/src\//.exec(f)?.slice(2, 3) ?? []),
    );
    for (const needed of ["sbc-agent", "installer", "protocol", "xdp-native", "log"])
      expect(ours).toContain(needed);
    for (const forbidden of ["nf-build", "controller", "testkit"]) expect(ours).not.toContain(forbidden);
    expect(inputs.filter((f) => /tree-sitter|nf-build/.test(f))).toEqual([]);
  });

  it("runs on its own: no TypeScript, no tsx, no repository around it", () => {
    expect(listFiles(out).sort()).toEqual(
      expect.arrayContaining([
        "galette-agent.mjs",
        "packages/xdp-native/build/Release/galette_xdp.node",
        "packages/xdp-native/build/Release/root.bpf.o",
      ]),
    );
    const version = execFileSync(process.execPath, [path.join(out, "galette-agent.mjs"), "--version"], {
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      encoding: "utf8",
    });
    expect(version.trim()).toBe(pkg.version);
  });

  it("runs with the V8 flags of node-flags, which every launcher passes (dev, package, bench)", () => {
    const flags = readFileSync(path.join(appDir, "node-flags"), "utf8").split(/\s+/).filter(Boolean);
    expect(flags).toContain("--no-opt");
    // node accepts them without a word on stderr
    const r = spawnSync(process.execPath, [...flags, path.join(out, "galette-agent.mjs"), "--version"], {
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      encoding: "utf8",
    });
    expect({ status: r.status, stdout: r.stdout.trim(), stderr: r.stderr }).toEqual({
      status: 0,
      stdout: pkg.version,
      stderr: "",
    });
    // Flags that turn WebAssembly off (--lite-mode, --jitless) break the agent on Node 22:
    // importing node:http as ESM loads undici, which compiles its HTTP parser to wasm.
    const wasm = execFileSync(process.execPath, [...flags, "-p", "typeof WebAssembly"], { encoding: "utf8" });
    expect(wasm.trim()).toBe("object");
    const repo = path.resolve(appDir, "../..");
    const read = (f: string) => readFileSync(path.join(repo, f), "utf8");
    expect(read("apps/sbc-agent/bin/galette-agent")).toMatch(/exec node \$\(cat "\$here\/node-flags"\) /);
    expect(read("packaging/debian/galette-agent/galette-agent.sh")).toMatch(
      /exec \/usr\/lib\/galette-agent\/node \$\(cat \/usr\/lib\/galette-agent\/node-flags\) /,
    );
    expect(read("packaging/build-debs.sh")).toContain('apps/sbc-agent/node-flags "$lib/node-flags"');
    expect(read("bench/src/footprint.ts")).toContain("apps/sbc-agent/node-flags");
  });
});
