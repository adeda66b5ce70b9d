import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { CHAINS, galetteDutArgs, u32u64MapSet } from "../src/galette";
import { scenario, scenarios } from "../src/scenarios";

const execFileP = promisify(execFile);

/** galette-dut with arguments that fail validation before anything is installed. */
async function badDut(args: string[]): Promise<{ code: number; stderr: string }> {
  const [loader, tsx, script] = galetteDutArgs("lo", { chain: CHAINS.macswap });
  return execFileP(process.execPath, [loader!, tsx!, script!, ...args]).then(
    () => ({ code: 0, stderr: "" }),
    (e: { code: number; stderr: string }) => e,
  );
}

describe("Galette scenarios", () => {
  it("are registered for every paper experiment", () => {
    const galette = scenarios().filter((s) => s.impl === "galette");
    expect(new Set(galette.map((s) => s.experiment))).toEqual(
      new Set(["macswap", "chain5", "expensive", "threads"]),
    );
    expect(scenario("galette/threads-2").params?.threads).toBe(2);
  });

  it("map-set arguments are little-endian u32 key and u64 value", () => {
    expect(u32u64MapSet("expensive", "config", 0, 100_000)).toBe(
      "expensive.config=00000000:a086010000000000",
    );
  });

  it("galette-dut names the bad argument", async () => {
    expect(await badDut(["--iface", "lo"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/--chain and --iface are required/),
    });
    expect(await badDut(["--chain", "x.toml", "--iface", "lo", "--mode", "spin"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/--mode must be busy-poll or blocking, got "spin"/),
    });
    expect(await badDut(["--chain", "x.toml", "--iface", "lo", "--workers", "0"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/--workers must be a positive integer, got "0"/),
    });
    expect(await badDut(["--chain", "x.toml", "--iface", "lo", "--map-set", "config=0:1"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/--map-set "config=0:1": expected NF\.MAP=KEYHEX:VALUEHEX/),
    });
  });

  it("galette-dut names a missing chain file", async () => {
    expect(await badDut(["--chain", "bench/chains/missing.toml", "--iface", "lo"])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/missing\.toml/),
    });
  });
});
