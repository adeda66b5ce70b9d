import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describeKernel } from "@galette/testkit";
import { afterAll, expect, it } from "vitest";
import { buildTools } from "../src/tools";

const execFileP = promisify(execFile);
const repoRoot = join(import.meta.dirname, "..", "..");
const outDir = mkdtempSync(join(tmpdir(), "galette-bench-test-"));

describeKernel("make bench QUICK=1 (real veth, real frames)", () => {
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it("writes the report, its raw JSON and every plot (numbers are not asserted)", async () => {
    // the same script `make bench` runs; QUICK comes through the environment as with make
    const { stdout } = await execFileP("bash", [join(repoRoot, "scripts", "bench.sh")], {
      cwd: repoRoot,
      env: { ...process.env, QUICK: "1", BENCH_OUT: outDir },
      timeout: 720_000,
      maxBuffer: 64 << 20,
    });
    expect(stdout).toMatch(/bench: \d+ scenario\(s\) measured, 0 failed/);
    const report = readdirSync(outDir).find((f) => f.endsWith("-quick.md"));
    expect(report, `no report in ${outDir}: ${readdirSync(outDir).join(", ")}`).toBeDefined();
    const md = readFileSync(join(outDir, report!), "utf8");
    expect(md).toContain("Table I — throughput at saturation");
    expect(md).toContain("XDP_TX macswap (C)");
    const images = [...md.matchAll(/!\[[^\]]*\]\(([^)]+\.png)\)/g)].map((m) => m[1]!);
    expect(images.length).toBeGreaterThanOrEqual(7);
    for (const img of images) {
      const png = readFileSync(join(outDir, img));
      expect(png.subarray(1, 4).toString()).toBe("PNG");
    }
    const raw = JSON.parse(readFileSync(join(outDir, report!.replace(/\.md$/, ".json")), "utf8"));
    type Outcome = {
      status: string;
      scenario: { name: string; experiment: string };
      runs: Array<{ kind: string; result: { sent: number; received: number } }>;
      profile?: { method: string; top: string[] };
    };
    const ok = (raw.outcomes as Outcome[]).filter((o) => o.status === "ok");
    expect(ok.length).toBeGreaterThanOrEqual(4);
    // Every measured scenario bounced frames back in every window (calibration's DUT drops all).
    for (const o of ok) {
      expect(o.runs.length, o.scenario.name).toBeGreaterThan(0);
      for (const run of o.runs) {
        const where = `${o.scenario.name} ${run.kind}`;
        expect(run.result.sent, where).toBeGreaterThan(0);
        if (o.scenario.experiment === "calibration") expect(run.result.received, where).toBe(0);
        else expect(run.result.received, where).toBeGreaterThan(0);
      }
    }
    // Galette's real dataplane (installer + NFs), not only the C baselines
    expect(ok.map((o) => o.scenario.name)).toContain("galette/xdp-macswap");
    expect(md).toContain("Galette macswap chain in XDP");
    // QUICK profiles one scenario (the first with a target): perf record and report ran on the DUT CPU
    const profiled = (raw.outcomes as Outcome[]).filter((o) => o.profile);
    expect(profiled.map((o) => o.scenario.name)).toEqual(["galette/xdp-macswap"]);
    expect(profiled[0]!.profile!.method).toMatch(/^perf record -e cpu-clock .*, \d+ samples/);
    expect(md).toContain("## Profiles of the DUT CPU at saturation");
    // per-packet cost without the generator: every program, each measurement with its spread and ratio
    expect(md).toContain("## Per-packet cost without the generator");
    for (const row of ["XDP_TX macswap (C)", "Galette, 1 NF", "Galette, 5 NFs", "Galette, 33 NFs"])
      expect(md).toMatch(
        new RegExp(
          `\\| ${row.replace(/[()]/g, "\\$&")}[^|]* \\| \\d+ \\(\\d+–\\d+\\) \\| \\d+\\.\\d\\d× \\|`,
        ),
      );
    // the footprint rows (agent and controller RSS/CPU) and the mapped-array row against the bare upcall
    expect(md).toContain("## Footprint (bundled executables");
    expect(md).toContain("mmap-map: ");
    // the controller scale rows: 1000 simulated devices, a push under load, kill -9 recovery
    expect(md).toContain("## Controller scale");
    expect(md).toMatch(/\| 1000 \| SQLite \| \d+\.\d \| \d+\.\d \|/);
    expect(md).toMatch(/\| push \(assign to every device; artifacts fetched\) \| 1000 \|/);
    expect(md).toMatch(/\| kill -9 \+ restart/);
  });

  it("galgen rejects a bad frame size by name", async () => {
    const tools = await buildTools();
    expect(existsSync(tools.galgen)).toBe(true);
    const err = await execFileP(tools.galgen, ["-i", "lo", "-s", "20"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toMatch(/--size 20 outside 64\.\.1518/);
  });
});
