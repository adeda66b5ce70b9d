import { join } from "node:path";
import type { NfInterface } from "@galette/chain";
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { registerChainCommands } from "../src/commands/chain";

const root = join(import.meta.dirname, "../../..");

/** Runs `chain ARGS` in-process with a given interface resolver; returns stdout and exit code. */
async function run(args: string[], resolveInterfaces?: Parameters<typeof registerChainCommands>[1]) {
  const program = new Command("galette").exitOverride();
  registerChainCommands(program, resolveInterfaces);
  let stdout = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(["node", "galette", "chain", ...args]);
  } finally {
    spy.mockRestore();
  }
  const code = process.exitCode ?? 0;
  process.exitCode = undefined;
  return { stdout, code };
}

afterEach(() => {
  process.exitCode = undefined;
});

const macswap = join(root, "chains/macswap.toml");
const lib = "nf-examples/macswap/src/lib.rs";
const iface = (actions: string[]): NfInterface => ({
  file: lib,
  actions: actions.map((name, i) => ({ name, location: { file: lib, line: 30 + i, column: 5 } })),
  maps: [{ name: "counters", keySize: 4, valueSize: 8, location: { file: lib, line: 12, column: 5 } }],
});

describe("chain validate: the NF-interface seam (resolveInterfaces)", () => {
  it("runs checkNfInterfaces with what the resolver returns", async () => {
    const resolveInterfaces = vi.fn(async () => ({
      interfaces: new Map([["macswap", iface(["Tx", "Drop"])]]),
      diagnostics: [],
    }));
    const r = await run(["validate", macswap], { resolveInterfaces });
    expect(resolveInterfaces).toHaveBeenCalledOnce();
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `${macswap}:16:6: error: "macswap" has 1 link target(s) (tx) but its Action enum in ${lib} has 2 variant(s) (Tx, Drop)`,
    );
    expect(r.stdout).not.toContain("need the NF compiler");
  });

  it("passes when the NF matches, and --structure-only skips the resolver", async () => {
    const resolveInterfaces = vi.fn(async () => ({
      interfaces: new Map([["macswap", iface(["Tx"])]]),
      diagnostics: [],
    }));
    expect((await run(["validate", macswap], { resolveInterfaces })).code).toBe(0);
    const structural = await run(["validate", "--structure-only", macswap], { resolveInterfaces });
    expect(structural.code).toBe(0);
    expect(structural.stdout.trim()).toBe(`${macswap}: ok`);
    expect(resolveInterfaces).toHaveBeenCalledOnce();
  });
});
