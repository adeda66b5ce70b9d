import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { costPlan, longChainToml, renderCost } from "../src/cost";
import { galetteScenarios } from "../src/galette";
import { parseGenOutput } from "../src/gen";
import { makePlan } from "../src/plan";
import { buildPlots, renderPng } from "../src/plots";
import { labelledTargetLines, NOT_MEASURED, renderReport } from "../src/report";
import { metaOf, runsFor } from "../src/runner";
import { filesFor, loopDelayFromMetrics, mergeWindows, renderScale, scaleOptionsFromEnv } from "../src/scale";
import { failureReason } from "../src/scale-failure";
import {
  baselineScenarios,
  expensiveReferenceScenarios,
  registerScenario,
  scenario,
  scenarios,
} from "../src/scenarios";
import { cdf, median, ratio, spread } from "../src/stats";
import { hasOwnAutogroup } from "../src/topology";
import { genResult, okOutcome, quickPlan, resultsOf } from "./fixtures";

describe("stats", () => {
  it("median, spread and ratio", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(() => median([])).toThrow(/empty/);
    expect(spread([5, undefined, 1, null, 3])).toEqual({ median: 3, min: 1, max: 5, n: 3 });
    expect(spread([undefined])).toBeUndefined();
    expect(ratio(9, 10)).toBeCloseTo(0.9);
    expect(ratio(1, 0)).toBeUndefined();
    expect(ratio(undefined, 1)).toBeUndefined();
  });
  it("cdf of a sparse histogram ends at 1", () => {
    const c = cdf([
      { lowUs: 10, count: 3 },
      { lowUs: 1, count: 1 },
    ]);
    expect(c).toEqual([
      { us: 1, fraction: 0.25 },
      { us: 10, fraction: 1 },
    ]);
  });
});

describe("galgen output", () => {
  it("parses the last JSON line", () => {
    const r = genResult(1000, 5, 9);
    expect(parseGenOutput(`noise\n${JSON.stringify(r)}\n`).rx_pps).toBe(1000);
  });
  it("names the output when it is not JSON", () => {
    expect(() => parseGenOutput("galgen: attach sink: Operation not permitted")).toThrow(
      /no JSON result: "galgen: attach sink/,
    );
  });
  it("names a missing or mistyped field", () => {
    const { rx_pps: _, ...rest } = genResult(1, 1, 1);
    expect(() => parseGenOutput(JSON.stringify(rest))).toThrow(
      /field "rx_pps" is undefined, expected a number/,
    );
    expect(() => parseGenOutput(JSON.stringify({ ...genResult(1, 1, 1), latency: {} }))).toThrow(/"latency"/);
  });
});

describe("plan", () => {
  it("QUICK is one repetition of one size; full is >= 3 repetitions of 64/512/1518", () => {
    expect(makePlan({ QUICK: "1" })).toMatchObject({ quick: true, repetitions: 1, sizes: [64] });
    const full = makePlan({});
    expect(full.quick).toBe(false);
    expect(full.repetitions).toBeGreaterThanOrEqual(3);
    expect(full.sizes).toEqual([64, 512, 1518]);
    expect(makePlan({ QUICK: "0" }).quick).toBe(false);
  });
  it("rejects an unknown generator by name", () => {
    expect(() => makePlan({ BENCH_GENERATOR: "pktgen" })).toThrow(/BENCH_GENERATOR .* "pktgen"/);
  });
  it("profiles targets by default and rejects an unknown BENCH_PROFILE by name", () => {
    expect(makePlan({}).profile).toBe("targets");
    expect(makePlan({ BENCH_PROFILE: "all" }).profile).toBe("all");
    expect(() => makePlan({ BENCH_PROFILE: "yes" })).toThrow(/BENCH_PROFILE .* "yes"/);
  });
  it("splits BENCH_ONLY", () => {
    expect(makePlan({ BENCH_ONLY: "xdp, afpacket" }).only).toEqual(["xdp", "afpacket"]);
  });
  it("runs saturation per size then the rate sweep for macswap; P-flagged runs for expensive", () => {
    const plan = quickPlan();
    expect(runsFor({ experiment: "macswap" }, plan).map((r) => [r.kind, r.rate])).toEqual([
      ["throughput", 0],
      ...plan.rates.map((r) => ["latency", r]),
    ]);
    expect(runsFor({ experiment: "expensive", params: { P: 0.5 } }, plan)).toEqual([
      { kind: "expensive-throughput", size: 64, rate: 0, expensive: 0.5 },
      { kind: "expensive-latency", size: 64, rate: plan.expensiveRate, expensive: 0.5 },
    ]);
  });
});

describe("scenario registry", () => {
  it("has the C baselines and a Galette scenario for every paper experiment", () => {
    const names = scenarios().map((s) => s.name);
    expect(names).toContain("baseline/xdp-macswap");
    expect(names).toContain("baseline/afxdp-macswap-poll");
    expect(names).toContain("baseline/afxdp-macswap-irq");
    expect(names).toContain("baseline/afpacket-macswap-irq");
    for (const e of ["macswap", "chain5", "expensive", "threads"])
      expect(scenarios().some((s) => s.impl === "galette" && s.experiment === e)).toBe(true);
    for (const s of scenarios()) if (s.baseline) expect(() => scenario(s.baseline!)).not.toThrow();
  });
  it("refuses to register a name twice, names unknown ones", () => {
    expect(() => registerScenario(baselineScenarios[0]!)).toThrow(/already registered/);
    expect(() => registerScenario(galetteScenarios[0]!)).toThrow(/already registered/);
    expect(() => scenario("nope")).toThrow(/unknown bench scenario "nope"; known: .*baseline\/xdp-macswap/);
  });
});

describe("report", () => {
  const xdp = baselineScenarios.find((s) => s.name === "baseline/xdp-macswap")!;
  const galetteXdp = galetteScenarios.find((s) => s.name === "galette/xdp-macswap")!;
  it("shows n/a for Galette rows that measured nothing, and the baseline numbers", () => {
    const md = renderReport(
      resultsOf([
        okOutcome(xdp, 1_000_000, 5, 20),
        { scenario: metaOf(galetteXdp), status: "failed", reason: "later", runs: [] },
      ]),
      { "Latency CDF": "x/latency-cdf.png" },
    );
    for (const heading of [
      "Table I",
      "Table II",
      "Table III",
      "IRQ vs poll",
      "Fig. 6–7",
      "Fig. 8",
      "Targets",
    ])
      expect(md).toContain(heading);
    expect(md).toMatch(/\| XDP_TX macswap \(C\) +\| baseline +\| 1\.000 +\|/);
    expect(md).toContain(NOT_MEASURED);
    expect(md).toContain("![Latency CDF](x/latency-cdf.png)");
  });
  it("computes Galette/baseline ratios and flags missed targets", () => {
    const md = renderReport(
      resultsOf([
        okOutcome(xdp, 1_000_000, 5, 20),
        { ...okOutcome(galetteXdp, 800_000, 5.5, 22), scenario: metaOf(galetteXdp) },
      ]),
      {},
    );
    // throughput 0.8 < 0.9: not met (same DUT CPU in the fixtures: 0.8 per DUT CPU too); p50 1.1 <= 1.2: met
    expect(md).toMatch(/\| 0\.80 +\| 0\.80 +\| throughput ratio ≥ 0\.9 +\| \*\*NOT met\*\* +\|/);
    expect(md).toMatch(/\| 1\.10 +\| – +\| p50 ratio ≤ 1\.2 +\| met +\|/);
  });
  it("labels the mmap-map row: the counting macswap upcall against the bare one, on the console too", () => {
    const byName = (n: string) => galetteScenarios.find((s) => s.name === n)!;
    const results = resultsOf([
      {
        ...okOutcome(byName("galette/upcall-macswap-irq"), 200_000, 50, 80),
        scenario: metaOf(byName("galette/upcall-macswap-irq")),
      },
      {
        ...okOutcome(byName("galette/upcall-macswap-counting-irq"), 180_000, 50, 80),
        scenario: metaOf(byName("galette/upcall-macswap-counting-irq")),
      },
    ]);
    expect(renderReport(results, {})).toMatch(
      /\| mmap-map: Galette nf-examples\/macswap .*\| 0\.90 +\| .*throughput ratio ≥ 0\.8 +\| met +\|/,
    );
    expect(labelledTargetLines(results)).toEqual([
      expect.stringMatching(/^mmap-map: .* ratio 0\.90 \(throughput ratio ≥ 0\.8\) met$/),
    ]);
  });
  it("puts the C reference and Galette expensive-NF rows side by side with upcall/XDP ratios", () => {
    const [xdpP, upcallP] = expensiveReferenceScenarios.filter((s) => s.params?.P === 0.5);
    const expensiveOutcome = (s: typeof xdpP, normalPps: number, p99: number) => ({
      scenario: metaOf(s!),
      status: "ok" as const,
      runs: [
        {
          kind: "expensive-throughput" as const,
          size: 64,
          rate: 0,
          rep: 0,
          result: genResult(normalPps, 1, 1),
        },
        {
          kind: "expensive-latency" as const,
          size: 64,
          rate: 20_000,
          rep: 0,
          result: genResult(20_000, 1, p99),
        },
      ],
    });
    const md = renderReport(
      resultsOf([
        expensiveOutcome(xdpP, 10_000, 1000),
        expensiveOutcome(upcallP, 100_000, 50),
        ...galetteScenarios
          .filter((s) => s.experiment === "expensive" && s.params?.P === 0.5)
          .map((s) => ({ scenario: metaOf(s), status: "failed" as const, reason: "later", runs: [] })),
      ]),
      {},
    );
    expect(md.replace(/ +/g, " ")).toContain(
      "| hand-written C | 0.5 | 0.010 | 0.100 | 10.00 | 1000.0 | 50.0 | 20.00 |",
    );
    expect(md).toMatch(/\| Galette +\| 0\.5 +\| failed: later +\| failed: later +\| n\/a — not measured/);
  });
  it("reports a failed scenario with its error instead of numbers", () => {
    const md = renderReport(
      resultsOf([{ scenario: metaOf(xdp), status: "failed", reason: "attach: EPERM", runs: [] }]),
      {},
    );
    expect(md).toContain("failed: attach: EPERM");
  });
});

describe("plots", () => {
  it("draws every figure, placeholders included, as PNG", async () => {
    const xdp = baselineScenarios[0]!;
    const plots = buildPlots(resultsOf([okOutcome(xdp, 1_000_000, 5, 20)]));
    expect(plots.map((p) => p.file)).toEqual([
      "latency-cdf.png",
      "throughput-vs-rate.png",
      "p99-vs-rate.png",
      "throughput-by-size.png",
      "expensive-throughput.png",
      "expensive-p99.png",
      "threads.png",
    ]);
    const png = await renderPng(plots[0]!.spec);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  });
});

describe("per-packet cost section", () => {
  it("a 33-NF chain is 32 pass NFs then macswap, linked in order to tx", () => {
    const toml = longChainToml(33);
    expect(toml.match(/^\[functions\./gm)).toHaveLength(33);
    expect(toml).toContain('[functions.pass-32]\npath = "bench/nfs/pass"');
    expect(toml).toContain('from = "rx"\nto = ["pass-1"]');
    expect(toml).toContain('from = "pass-32"\nto = ["macswap"]');
    expect(toml).toContain('from = "macswap"\nto = ["tx"]');
  });

  it("renders median (min–max) and ratios against the baseline of the same run", () => {
    const s = (...v: number[]) => ({
      median: median(v),
      min: Math.min(...v),
      max: Math.max(...v),
      n: v.length,
    });
    const table = renderCost(
      [
        {
          name: "baseline/xdp-macswap",
          title: "XDP_TX macswap (C)",
          testRunNs: s(24, 25, 25),
          statsNs: s(64, 64, 65),
          sameCpuP50Us: s(4.3, 4.5, 4.7),
        },
        {
          name: "galette/xdp-macswap",
          title: "Galette, 1 NF",
          testRunNs: s(50, 55, 56),
          statsNs: s(128, 128, 128),
          sameCpuP50Us: s(4.5, 5, 5.3),
        },
      ],
      costPlan(true),
    );
    expect(table).toContain(
      "| XDP_TX macswap (C) | 25 (24–25) | 1.00× | 64 (64–65) | 1.00× | 4.5 (4.3–4.7) | 1.00× |",
    );
    expect(table).toContain(
      "| Galette, 1 NF | 55 (50–56) | 2.20× | 128 (128–128) | 2.00× | 5.0 (4.5–5.3) | 1.11× |",
    );
    expect(costPlan(true).repetitions).toBeGreaterThanOrEqual(3);
  });
});

describe("controller scale options and report", () => {
  it("parses the fleet sizes and databases, refusing anything else by name", () => {
    expect(scaleOptionsFromEnv({})).toEqual({});
    expect(scaleOptionsFromEnv({ BENCH_SCALE_SIM_DEVICES: "1250" })).toEqual({ simDevicesPerProcess: 1250 });
    for (const bad of ["0", "-1", "1.5", "many"])
      expect(() => scaleOptionsFromEnv({ BENCH_SCALE_SIM_DEVICES: bad })).toThrow(/BENCH_SCALE_SIM_DEVICES/);
    expect(
      scaleOptionsFromEnv({ BENCH_SCALE_DEVICES: "1000, 5000", BENCH_SCALE_DATABASES: "sqlite,postgres" }),
    ).toEqual({
      counts: [1000, 5000],
      backends: ["sqlite", "postgres"],
    });
    for (const bad of ["", "0", "10k", "1000,", "60000", "1.5"])
      if (bad) expect(() => scaleOptionsFromEnv({ BENCH_SCALE_DEVICES: bad })).toThrow(/BENCH_SCALE_DEVICES/);
    for (const bad of ["mysql", "sqlite,", "postgres://x"])
      expect(() => scaleOptionsFromEnv({ BENCH_SCALE_DATABASES: bad })).toThrow(/BENCH_SCALE_DATABASES/);
  });

  it("names what failed a simulated device's request", () => {
    expect(
      failureReason(
        new Error("GET /v1/device/assignment: HTTP 503: the controller's database is unavailable"),
      ),
    ).toBe("HTTP 503");
    expect(failureReason(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))).toBe(
      "ECONNRESET",
    );
    expect(failureReason(new Error("no controller answered: connect EMFILE 127.0.0.1:1"))).toBe("EMFILE");
    expect(failureReason(new Error("the answer did not arrive in time"))).toBe(
      "the answer did not arrive in time",
    );
    expect(
      failureReason(
        new Error("POST https://127.0.0.1:35941/v1/device/status: did not complete within 10000 ms"),
      ),
    ).toBe("did not complete within 10000 ms");
  });

  it("sizes the open-file limit for the process that needs most: the controller, or one simulator", () => {
    // the controller holds two connections per device; a simulator three per device it simulates
    expect(filesFor(10_000, 2500)).toBe(21_024);
    expect(filesFor(5000, 2500)).toBe(11_024);
    expect(filesFor(1000, 2500)).toBe(4024);
    expect(filesFor(5000, 5000)).toBe(16_024);
  });

  it("merges the simulator processes' windows: percentiles over all samples, sums, the slowest loop", () => {
    const window = (poll: number[], loopP99: number, reasons: Record<string, number>) => ({
      poll,
      status: [1],
      artifact: [],
      pollFailures: 1,
      statusFailures: 0,
      artifactFailures: 0,
      unchanged: poll.length,
      wsOpen: 10,
      loopDelay: { p99Ms: loopP99, maxMs: loopP99 * 2 },
      failureReasons: reasons,
    });
    // one process fast, the other slow: the fleet's p99 is the slow one's, not an average
    const fast = Array.from({ length: 99 }, () => 1);
    const stats = mergeWindows([
      window(fast, 5, { "HTTP 503": 1 }),
      window([500, 600], 40, { "HTTP 503": 2, ECONNRESET: 1 }),
    ]);
    expect(stats.poll).toEqual({ count: 101, failures: 2, p50Ms: 1, p99Ms: 500, maxMs: 600 });
    expect(stats.artifact.count).toBe(0);
    expect(stats.wsOpen).toBe(20);
    expect(stats.unchanged).toBe(101);
    expect(stats.loopDelay).toEqual({ p99Ms: 40, maxMs: 80 });
    expect(stats.failureReasons).toEqual({ "HTTP 503": 3, ECONNRESET: 1 });
  });

  it("reads the controller's event-loop delay from its metrics, less the sampler's resolution", () => {
    const text = [
      "# HELP nodejs_eventloop_lag_p99_seconds The 99th percentile of the recorded event loop delays.",
      "# TYPE nodejs_eventloop_lag_p99_seconds gauge",
      "nodejs_eventloop_lag_p99_seconds 0.012",
      "nodejs_eventloop_lag_max_seconds 0.2515",
      "nodejs_eventloop_lag_p90_seconds 0.011",
    ].join("\n");
    const d = loopDelayFromMetrics(text);
    expect(d.p99Ms).toBeCloseTo(2, 6);
    expect(d.maxMs).toBeCloseTo(241.5, 6);
    expect(() => loopDelayFromMetrics("nodejs_eventloop_lag_p99_seconds 0.01\n")).toThrow(/max_seconds/);
  });

  it("renders measured, skipped and event rows with what was met", () => {
    const latency = { count: 10, failures: 0, p50Ms: 2, p99Ms: 20, maxMs: 30 };
    const md = renderScale({
      rows: [
        {
          devices: 1000,
          backend: "SQLite",
          poll: latency,
          status: latency,
          wsOpen: 1000,
          controllerCpuPct: 12,
          controllerRssMb: 250,
          simulatorCpuPct: 8,
          simulatorProcesses: 1,
          simulatorLoopP99Ms: 3,
          simulatorLoopMaxMs: 12,
          controllerLoopP99Ms: 4,
          controllerLoopMaxMs: 41.5,
          failureReasons: {},
          met: true,
        },
        {
          devices: 5000,
          backend: "PostgreSQL",
          poll: { ...latency, failures: 3 },
          status: { ...latency, failures: 1 },
          wsOpen: 5000,
          controllerCpuPct: 40,
          controllerRssMb: 700,
          databaseCpuPct: 35,
          simulatorCpuPct: 30,
          simulatorProcesses: 2,
          simulatorLoopP99Ms: 50,
          simulatorLoopMaxMs: 90,
          controllerLoopP99Ms: 20,
          controllerLoopMaxMs: 250,
          failureReasons: { ECONNRESET: 1, "HTTP 503": 3 },
          met: false,
        },
      ],
      skipped: [{ devices: 10_000, reason: "needs 20512 open files per process; the limit here is 20000" }],
      largestMet: 1000,
      recovery: {
        devices: 1000,
        backend: "SQLite",
        listeningS: 0.7,
        servedS: 9.9,
        controllerCpuS: 3.1,
        missing: 0,
        unchanged: 1000,
        met: false,
      },
    });
    expect(md).toContain(
      "| 1000 | SQLite | 2.0 | 20.0 | 20.0 | 0 | 1000 | 12.0 | 250.0 | 4.0 / 41.5 | – | 1, 8.0 | 3.0 / 12.0 | yes |",
    );
    expect(md).toContain(
      "| 5000 | PostgreSQL | 2.0 | 20.0 | 20.0 | 4 | 5000 | 40.0 | 700.0 | 20.0 / 250.0 | 35.0 | 2, 30.0 | 50.0 / 90.0 | **no** |",
    );
    expect(md).toContain("| 10000 | | not measured: needs 20512 open files");
    expect(md).toContain("Failed requests at 5000 devices (PostgreSQL): HTTP 503 ×3, ECONNRESET ×1.");
    expect(md).not.toContain("Failed requests at 1000");
    expect(md).toContain(
      "Largest fleet meeting the target: 1000 (SQLite), none of those measured (PostgreSQL).",
    );
    expect(md).toMatch(/\| kill -9 \+ restart .* \| 9\.9 \| 0 \| \| ≤ 5 s \| \*\*no\*\* \|/);
  });
});

describe("scheduling boost", () => {
  it("tells a task with its own autogroup from one in the root group (CI jobs, kernel threads)", async () => {
    // kthreadd (pid 2) and every task started without setsid share the root group, whose nice
    // the kernel refuses with EINVAL; a setsid child has a group of its own
    expect(hasOwnAutogroup(2)).toBe(false);
    const child = spawn("setsid", ["sleep", "5"], { stdio: "ignore" });
    try {
      await new Promise((r) => setTimeout(r, 200));
      expect(hasOwnAutogroup(child.pid!)).toBe(true);
    } finally {
      child.kill();
    }
  });
});
