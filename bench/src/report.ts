import { efficiency, expensiveCell, headline, latencyAt, throughputAt } from "./aggregate";
import type { BenchResults, ScenarioOutcome } from "./runner";
import { type Target, THREAD_COUNTS } from "./scenarios";
import { ratio, type Spread } from "./stats";

export const NOT_MEASURED = "n/a — not measured";

/** Plot files the report links to (relative to the report's directory). */
export interface PlotRefs {
  [title: string]: string;
}

const fmt = (v: number | undefined, digits: number): string => (v === undefined ? "–" : v.toFixed(digits));
const withSpread = (s: Spread | undefined, scale: number, digits: number): string =>
  s === undefined
    ? "–"
    : s.n > 1
      ? `${fmt(s.median * scale, digits)} (${fmt(s.min * scale, digits)}–${fmt(s.max * scale, digits)})`
      : fmt(s.median * scale, digits);
const pct = (s: Spread | undefined): string => withSpread(s, 100, 0);
const mpps = (s: Spread | undefined): string => withSpread(s, 1e-6, 3);
const us = (s: Spread | undefined): string => withSpread(s, 1, 1);
const rateLabel = (r: number): string =>
  r === 0 ? "saturation" : r >= 1e6 ? `${r / 1e6} Mpps` : `${r / 1e3} kpps`;

/** A row's cells when the scenario did not produce numbers. */
function unavailable(o: ScenarioOutcome): string | undefined {
  if (o.status === "failed") return `failed: ${(o.reason ?? "").split("\n")[0]!.slice(0, 120)}`;
  return undefined;
}

/** A Markdown table with padded columns (the layout the repository's formatter produces). */
function table(header: string[], rows: string[][]): string {
  const esc = (c: string) => c.replace(/\|/g, "\\|");
  const cells = [header, ...rows].map((r) => header.map((_, i) => esc(r[i] ?? "")));
  const width = header.map((_, i) => Math.max(3, ...cells.map((r) => [...r[i]!].length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => c + " ".repeat(width[i]! - [...c].length)).join(" | ")} |`;
  return [line(cells[0]!), line(width.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

function targetText(t: Target): string {
  const bound = t.atLeast !== undefined ? `≥ ${t.atLeast}` : `≤ ${t.atMost}`;
  return `${t.metric} ratio ${bound}`;
}

function targetRows(results: BenchResults): { label?: string; cells: string[] }[] {
  const byName = new Map(results.outcomes.map((o) => [o.scenario.name, o]));
  const rows: { label?: string; cells: string[] }[] = [];
  for (const o of results.outcomes) {
    for (const t of o.scenario.targets ?? []) {
      const againstName = t.against ?? o.scenario.baseline;
      const against = againstName ? byName.get(againstName) : undefined;
      const mine = headline(results, o, t.metric);
      const theirs = against ? headline(results, against, t.metric) : undefined;
      const r = ratio(mine, theirs);
      const scale = t.metric === "throughput" ? 1e-6 : 1;
      const unit = t.metric === "throughput" ? " Mpps" : " µs";
      const na = unavailable(o) ?? (against ? unavailable(against) : `baseline ${againstName} not run`);
      const status =
        r === undefined
          ? (na ?? "n/a — no measurement")
          : (t.atLeast !== undefined && r >= t.atLeast) || (t.atMost !== undefined && r <= t.atMost)
            ? "met"
            : "**NOT met**";
      const perCpu =
        t.metric === "throughput" && against
          ? ratio(efficiency(results, o), efficiency(results, against))
          : undefined;
      const cells = [
        t.label ? `${t.label}: ${o.scenario.title}` : o.scenario.title,
        `vs ${against?.scenario.title ?? againstName ?? "?"}`,
        mine === undefined ? (unavailable(o) ?? "–") : `${fmt(mine * scale, 3)}${unit}`,
        theirs === undefined ? "–" : `${fmt(theirs * scale, 3)}${unit}`,
        r === undefined ? "–" : fmt(r, 2),
        perCpu === undefined ? "–" : fmt(perCpu, 2),
        targetText(t),
        status,
      ];
      rows.push(t.label ? { label: t.label, cells } : { cells });
    }
  }
  return rows;
}

/** One console line per labelled target (e.g. "mmap-map: … ratio 0.93 (throughput ratio ≥ 0.8) met"). */
export function labelledTargetLines(results: BenchResults): string[] {
  return targetRows(results)
    .filter((r) => r.label)
    .map(({ cells: c }) => `${c[0]} ${c[1]}: ratio ${c[4]} (${c[6]}) ${c[7]!.replaceAll("*", "")}`);
}

/** bench/results/<date>.md: tables shaped like the paper's, ratios to the baselines, plots. */
export function renderReport(results: BenchResults, plots: PlotRefs): string {
  const { plan, machine } = results;
  const macswap = results.outcomes.filter(
    (o) => o.scenario.experiment === "macswap" || o.scenario.experiment === "chain5",
  );
  const size0 = plan.sizes[0] ?? 64;
  const byName = new Map(results.outcomes.map((o) => [o.scenario.name, o]));
  const out: string[] = [];
  out.push(
    `# Galette benchmarks — ${results.startedAt.slice(0, 10)}${plan.quick ? " (QUICK smoke run)" : ""}`,
  );
  out.push("");
  out.push(
    `Run ${results.startedAt} → ${results.finishedAt} on Linux ${machine.kernel}, ${machine.cpus} × ${machine.cpuModel}; ` +
      `load average before: ${machine.loadavgBefore}${machine.loadavgAfter ? `, after: ${machine.loadavgAfter}` : ""}.`,
  );
  out.push("");
  out.push(
    `The machine is shared with other jobs (the load average above counts them): absolute numbers move by ±20 % between runs; compare scenarios within one run, which is what the ratios do.`,
  );
  out.push("");
  out.push("## Method");
  out.push("");
  out.push(
    [
      `- Topology: a fresh veth pair per scenario between two namespaces: generator (A) ⇄ device under test (B). The DUT bounces frames back MAC-swapped; throughput = frames counted back at A per second.`,
      `- Generator: \`galgen\` (bench/c) — ${plan.generator === "live" ? "BPF_PROG_RUN live frames (BPF_F_TEST_XDP_LIVE_FRAMES)" : "AF_PACKET sendmmsg with PACKET_QDISC_BYPASS"}, pinned to CPU ${machine.genCpu}. Saturation = the generator sending as fast as it can; paced rates for latency. Sizes are on-the-wire sizes incl. FCS (the veth carries size − 4 bytes).`,
      `- Sink and latency: an XDP program on A counts the bounced frames and records send-stamp → arrival (CLOCK_MONOTONIC, bpf_ktime_get_ns at A's XDP hook) in a histogram (100 ns buckets below 100 µs, 10 µs below 10 ms, 1 ms below 1 s); percentiles are bucket midpoints.`,
      `- CPU: the DUT's veth NAPI runs as a threaded-NAPI kthread pinned to CPU ${machine.dutCpu} with the DUT's userland processes; the generator and A's NAPI (SCHED_FIFO, so the sink is never delayed behind the generator) use CPU ${machine.genCpu}. "DUT CPUs" is per-task accounting — utime+stime from /proc/PID/stat of the DUT's NAPI kthread (XDP programs, veth receive and XDP_TX) plus its userland processes (getrusage-equivalent), in CPUs over the window — which other jobs on a shared machine do not inflate. "CPU ${machine.dutCpu} busy %" is the /proc/stat delta of the DUT CPU, which does include them. The generator's own CPU is its getrusage. /proc/stat and task accounting under-report BPF_PROG_RUN work (the live generator).`,
      `- Repetitions: ${plan.repetitions} per point after ${plan.warmupS} s warm-up; windows of ${plan.throughputS} s (saturation) and ${plan.latencyS} s (paced). Cells show median (min–max) when there is more than one repetition.`,
    ].join("\n"),
  );
  out.push("");

  const calibration = results.outcomes.find((o) => o.scenario.experiment === "calibration");
  if (calibration) {
    const na = unavailable(calibration);
    const c = throughputAt(calibration, size0);
    out.push(
      na
        ? `Generator capacity: ${na}.`
        : `Generator capacity in this run (DUT drops everything in XDP, ${size0} B): ${mpps(c.offeredPps)} Mpps offered using ${withSpread(c.genSelfCpu, 1, 2)} CPU.`,
    );
    out.push("");
  }
  out.push(
    plan.boost
      ? "Priorities: the generator, the DUT's NAPI kthread and its processes ran at nice −20 in autogroups of their own (BENCH_NO_BOOST=1 turns this off), so other jobs on the machine disturb them less."
      : "Priorities: default (BENCH_NO_BOOST=1).",
  );
  out.push("");
  out.push("## Targets (ratios from this run)");
  out.push("");
  out.push(
    "Throughput ratios compare frames bounced per second at saturation (the targets' metric). When the generator side (generator + sink on one CPU) saturates before the DUT, raw throughput hides DUT cost, so the ratio of frames per DUT CPU (per-task accounting) is shown beside it.",
  );
  out.push("");
  const tRows = targetRows(results).map((r) => r.cells);
  out.push(
    tRows.length
      ? table(
          ["scenario", "against", "Galette", "baseline", "ratio", "ratio per DUT CPU", "target", "status"],
          tRows,
        )
      : "_no scenario in this run declares a target_",
  );
  out.push("");

  out.push(`## Table I — throughput at saturation (Mpps) per datapath and frame size`);
  out.push("");
  out.push(
    table(
      [
        "datapath",
        "impl",
        ...plan.sizes.map((s) => `${s} B`),
        `offered @${size0} B`,
        `Galette/baseline @${size0} B`,
      ],
      macswap.map((o) => {
        const na = unavailable(o);
        const base = o.scenario.baseline ? byName.get(o.scenario.baseline) : undefined;
        const r =
          o.scenario.impl === "galette"
            ? na
              ? NOT_MEASURED
              : fmt(
                  ratio(headline(results, o, "throughput"), base && headline(results, base, "throughput")),
                  2,
                )
            : "";
        return [
          o.scenario.title,
          o.scenario.impl,
          ...plan.sizes.map((s) => na ?? mpps(throughputAt(o, s).rxPps)),
          na ?? mpps(throughputAt(o, size0).offeredPps),
          r,
        ];
      }),
    ),
  );
  out.push("");

  out.push(`## Table II — CPU at saturation (${size0} B)`);
  out.push("");
  out.push(
    table(
      [
        "datapath",
        "mode",
        "throughput (Mpps)",
        "DUT CPUs (NAPI + procs)",
        "of which procs",
        "Mpps per DUT CPU",
        `CPU ${machine.dutCpu} busy % (/proc/stat)`,
        "generator CPUs (self)",
      ],
      macswap.map((o) => {
        const na = unavailable(o);
        const c = throughputAt(o, size0);
        return [
          o.scenario.title,
          o.scenario.workerMode ?? "kernel",
          na ?? mpps(c.rxPps),
          na ?? withSpread(c.dutTaskCpu, 1, 2),
          na ?? (c.dutProcsCpu ? withSpread(c.dutProcsCpu, 1, 2) : "– (no userland process)"),
          na ?? mpps(c.ppsPerDutCpu),
          na ?? pct(c.dutCpu),
          na ?? withSpread(c.genSelfCpu, 1, 2),
        ];
      }),
    ),
  );
  out.push("");

  out.push(`## Table III — latency at ${rateLabel(plan.referenceRate)} (${size0} B, µs)`);
  out.push("");
  out.push(
    table(
      [
        "datapath",
        "mode",
        "p50",
        "p90",
        "p99",
        "max",
        "loss %",
        "Galette/baseline p50",
        "Galette/baseline p99",
      ],
      macswap.map((o) => {
        const na = unavailable(o);
        const l = latencyAt(o, plan.referenceRate, size0);
        const base = o.scenario.baseline ? byName.get(o.scenario.baseline) : undefined;
        const rr = (m: "p50" | "p99") =>
          o.scenario.impl !== "galette"
            ? ""
            : na
              ? NOT_MEASURED
              : fmt(ratio(headline(results, o, m), base && headline(results, base, m)), 2);
        return [
          o.scenario.title,
          o.scenario.workerMode ?? "kernel",
          na ?? us(l.p50),
          na ?? us(l.p90),
          na ?? us(l.p99),
          na ?? us(l.max),
          na ?? pct(l.loss),
          rr("p50"),
          rr("p99"),
        ];
      }),
    ),
  );
  out.push("");

  out.push(`## Latency and throughput across rates (${size0} B; Fig. 4–5)`);
  out.push("");
  const rates = [...plan.rates, 0];
  out.push(
    table(
      ["datapath", ...rates.map((r) => `${rateLabel(r)}: rx kpps / p50 / p99 µs`)],
      macswap.map((o) => {
        const na = unavailable(o);
        return [
          o.scenario.title,
          ...rates.map((r) => {
            if (na) return na;
            const l = latencyAt(o, r, size0);
            return `${fmt(l.rxPps && l.rxPps.median / 1e3, 0)} / ${fmt(l.p50?.median, 1)} / ${fmt(l.p99?.median, 1)}`;
          }),
        ];
      }),
    ),
  );
  out.push("");

  out.push("## IRQ vs poll (userland workers, Table III of the paper)");
  out.push("");
  const pairs = new Map<string, { irq?: ScenarioOutcome; poll?: ScenarioOutcome }>();
  for (const o of macswap) {
    if (!o.scenario.workerMode) continue;
    const stem = o.scenario.name.replace(/-(irq|poll)$/, "");
    const p = pairs.get(stem) ?? {};
    p[o.scenario.workerMode] = o;
    pairs.set(stem, p);
  }
  const irqRows: string[][] = [];
  for (const [stem, p] of pairs) {
    for (const mode of ["irq", "poll"] as const) {
      const o = p[mode];
      if (!o) continue;
      const na = unavailable(o);
      const t = throughputAt(o, size0);
      const l = latencyAt(o, plan.referenceRate, size0);
      irqRows.push([
        stem,
        mode === "irq" ? "IRQ (blocking)" : "poll (busy)",
        na ?? mpps(t.rxPps),
        na ?? withSpread(t.dutTaskCpu, 1, 2),
        na ?? withSpread(l.dutTaskCpu, 1, 2),
        na ?? us(l.p50),
        na ?? us(l.p99),
      ]);
    }
  }
  out.push(
    table(
      [
        "worker",
        "mode",
        "saturation Mpps",
        "DUT CPUs at saturation",
        `DUT CPUs at ${rateLabel(plan.referenceRate)}`,
        "p50 µs",
        "p99 µs",
      ],
      irqRows,
    ),
  );
  out.push("");

  out.push(
    `## Expensive NF on a fraction P of frames: XDP placement vs upcall (Fig. 6–7; ${size0} B; normal-traffic throughput at saturation, p99 at ${rateLabel(plan.expensiveRate)})`,
  );
  out.push("");
  const expensive = results.outcomes.filter((o) => o.scenario.experiment === "expensive");
  const expRows: string[][] = [];
  for (const impl of ["baseline", "galette"] as const) {
    const mine = expensive.filter((o) => o.scenario.impl === impl);
    const fractions = [...new Set(mine.map((o) => o.scenario.params?.P ?? 0))].sort((a, b) => a - b);
    for (const P of fractions) {
      const find = (datapath: "xdp" | "afxdp") =>
        mine.find((o) => o.scenario.datapath === datapath && (o.scenario.params?.P ?? 0) === P);
      const x = find("xdp");
      const u = find("afxdp");
      const xn = x ? unavailable(x) : "not run";
      const un = u ? unavailable(u) : "not run";
      const xc = x && !xn ? expensiveCell(x) : undefined;
      const uc = u && !un ? expensiveCell(u) : undefined;
      const both = xc && uc;
      expRows.push([
        impl === "baseline" ? "hand-written C" : "Galette",
        String(P),
        xn ?? mpps(xc?.normalPps),
        un ?? mpps(uc?.normalPps),
        both ? fmt(ratio(uc.normalPps?.median, xc.normalPps?.median), 2) : NOT_MEASURED,
        xn ?? us(xc?.p99),
        un ?? us(uc?.p99),
        both ? fmt(ratio(xc.p99?.median, uc.p99?.median), 2) : NOT_MEASURED,
      ]);
    }
  }
  out.push(
    table(
      [
        "impl",
        "P",
        "XDP: normal Mpps",
        "upcall: normal Mpps",
        "upcall/XDP throughput",
        "XDP: p99 µs",
        "upcall: p99 µs",
        "XDP/upcall p99",
      ],
      expRows,
    ),
  );
  out.push("");

  out.push("## Userland threads at P = 0.5 (Fig. 8)");
  out.push("");
  out.push(
    table(
      ["threads", "normal-traffic Mpps"],
      THREAD_COUNTS.map((n) => {
        const o = byName.get(`galette/threads-${n}`);
        return [String(n), o ? (unavailable(o) ?? mpps(expensiveCell(o).normalPps)) : "not run"];
      }),
    ),
  );
  out.push("");

  out.push("## Plots");
  out.push("");
  for (const [title, file] of Object.entries(plots)) out.push(`![${title}](${file})`);
  out.push("");

  const profiled = results.outcomes.filter((o) => o.profile);
  if (profiled.length) {
    out.push(`## Profiles of the DUT CPU at saturation (${size0} B)`);
    out.push("");
    out.push(
      `Where the DUT CPU's time went for ${
        plan.quick && plan.profile === "targets"
          ? "the first scenario that carries a target (QUICK profiles one; BENCH_PROFILE=all profiles every scenario)"
          : "the scenarios that carry a target and those they are compared with (BENCH_PROFILE=all profiles every scenario)"
      }. XDP programs appear as \`bpf_prog_<tag>_<name>\`.`,
    );
    out.push("");
    for (const o of profiled) {
      out.push(`### ${o.scenario.title}`);
      out.push("");
      out.push(`${o.profile!.method}; overhead / command / object / symbol:`);
      out.push("");
      out.push("```");
      out.push(...o.profile!.top);
      out.push("```");
      out.push("");
    }
  }

  const problems = results.outcomes.filter((o) => o.status !== "ok");
  if (problems.length) {
    out.push("## Scenarios without numbers");
    out.push("");
    for (const o of problems) out.push(`- \`${o.scenario.name}\`: ${o.status} — ${o.reason ?? ""}`);
    out.push("");
  }
  out.push("## Run details");
  out.push("");
  out.push(
    table(
      ["scenario", "status", "windows", "time (s)", "NAPI kthreads (gen / DUT)"],
      results.outcomes.map((o) => [
        o.scenario.name,
        o.status,
        String(o.runs.length),
        fmt(o.durationS, 1),
        o.napi ? `${o.napi.gen.join(",")} / ${o.napi.dut.join(",")}` : "–",
      ]),
    ),
  );
  out.push("");
  return out.join("\n");
}
