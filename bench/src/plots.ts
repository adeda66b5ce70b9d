import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import * as vl from "vega-lite";
import { expensiveCell, latencyAt, referenceHistogram, throughputAt } from "./aggregate";
import { NOT_MEASURED } from "./report";
import type { BenchResults } from "./runner";
import { EXPENSIVE_FRACTIONS, THREAD_COUNTS } from "./scenarios";
import { cdf } from "./stats";

type Row = Record<string, string | number>;
type VlSpec = vl.TopLevelSpec;

export interface Plot {
  /** file name, e.g. "latency-cdf.png" */
  file: string;
  title: string;
  spec: VlSpec;
}

const WIDTH = 560;
const HEIGHT = 320;

/** The part of a single-view Vega-Lite spec that differs between plots. */
interface ChartBody {
  mark: string | Record<string, unknown>;
  encoding: Record<string, unknown>;
}

function chart(title: string, rows: Row[], body: ChartBody, emptyNote: string): VlSpec {
  if (rows.length === 0) {
    return {
      title,
      width: WIDTH,
      height: 120,
      data: { values: [{ note: emptyNote }] },
      mark: { type: "text", fontSize: 16 },
      encoding: { text: { field: "note", type: "nominal" } },
    } as VlSpec;
  }
  return { title, width: WIDTH, height: HEIGHT, data: { values: rows }, ...body } as unknown as VlSpec;
}

const color = {
  field: "datapath",
  type: "nominal",
  legend: { orient: "bottom", columns: 2, labelLimit: 400 },
};

/** The plots of the paper's figures that this run can draw (placeholders where nothing ran). */
export function buildPlots(results: BenchResults): Plot[] {
  const { plan } = results;
  const size0 = plan.sizes[0] ?? 64;
  const ran = results.outcomes.filter((o) => o.status === "ok");
  const macswap = ran.filter(
    (o) => o.scenario.experiment === "macswap" || o.scenario.experiment === "chain5",
  );

  const cdfRows: Row[] = macswap.flatMap((o) =>
    cdf((referenceHistogram(o, plan.referenceRate) ?? []).map(([lowUs, count]) => ({ lowUs, count }))).map(
      (p) => ({
        datapath: o.scenario.title,
        us: Math.max(p.us, 0.1),
        fraction: p.fraction,
      }),
    ),
  );
  const rateRows: Row[] = macswap.flatMap((o) =>
    [...plan.rates, 0].flatMap((rate) => {
      const l = latencyAt(o, rate, size0);
      if (!l.rxPps || !l.offeredPps) return [];
      return [
        {
          datapath: o.scenario.title,
          offered_kpps: l.offeredPps.median / 1e3,
          rx_kpps: l.rxPps.median / 1e3,
          p99_us: Math.max(l.p99?.median ?? 0.1, 0.1),
        },
      ];
    }),
  );
  const sizeRows: Row[] = macswap.flatMap((o) =>
    plan.sizes.flatMap((size) => {
      const t = throughputAt(o, size).rxPps;
      return t
        ? [
            {
              datapath: o.scenario.title,
              size: `${size} B`,
              mpps: t.median / 1e6,
              min: t.min / 1e6,
              max: t.max / 1e6,
            },
          ]
        : [];
    }),
  );
  const expRows: Row[] = ran
    .filter((o) => o.scenario.experiment === "expensive")
    .flatMap((o) => {
      const c = expensiveCell(o);
      return [
        {
          datapath: `${o.scenario.impl === "galette" ? "Galette" : "C reference"}: ${o.scenario.datapath === "xdp" ? "in XDP" : "upcalled"}`,
          P: o.scenario.params?.P ?? 0,
          mpps: (c.normalPps?.median ?? 0) / 1e6,
          p99_us: Math.max(c.p99?.median ?? 0.1, 0.1),
        },
      ];
    });
  const threadRows: Row[] = ran
    .filter((o) => o.scenario.experiment === "threads")
    .map((o) => ({
      datapath: "upcalled, P=0.5",
      threads: o.scenario.params?.threads ?? 1,
      mpps: (expensiveCell(o).normalPps?.median ?? 0) / 1e6,
    }));

  const log = { type: "log" } as const;
  return [
    {
      file: "latency-cdf.png",
      title: `Latency distribution per datapath at ${plan.referenceRate / 1e3} kpps, ${size0} B (Fig. 5)`,
      spec: chart(
        `Latency CDF at ${plan.referenceRate / 1e3} kpps, ${size0} B`,
        cdfRows,
        {
          mark: { type: "line", interpolate: "step-after" },
          encoding: {
            x: { field: "us", type: "quantitative", scale: log, title: "latency (µs, log)" },
            y: { field: "fraction", type: "quantitative", title: "fraction of frames ≤ x" },
            color,
          },
        },
        "no latency histogram recorded",
      ),
    },
    {
      file: "throughput-vs-rate.png",
      title: `Throughput vs offered rate, ${size0} B (Fig. 4)`,
      spec: chart(
        `Bounced vs offered rate, ${size0} B`,
        rateRows,
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "offered_kpps", type: "quantitative", scale: log, title: "offered (kpps, log)" },
            y: { field: "rx_kpps", type: "quantitative", scale: log, title: "bounced back (kpps, log)" },
            color,
          },
        },
        "no rate sweep ran",
      ),
    },
    {
      file: "p99-vs-rate.png",
      title: `p99 latency vs offered rate, ${size0} B (Fig. 5)`,
      spec: chart(
        `p99 latency vs offered rate, ${size0} B`,
        rateRows,
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "offered_kpps", type: "quantitative", scale: log, title: "offered (kpps, log)" },
            y: { field: "p99_us", type: "quantitative", scale: log, title: "p99 (µs, log)" },
            color,
          },
        },
        "no rate sweep ran",
      ),
    },
    {
      file: "throughput-by-size.png",
      title: "Saturation throughput per frame size (Table I)",
      spec: chart(
        "Saturation throughput per frame size",
        sizeRows,
        {
          mark: "bar",
          encoding: {
            x: {
              field: "size",
              type: "nominal",
              title: "frame size",
              sort: plan.sizes.map((s) => `${s} B`),
              axis: { labelAngle: 0 },
            },
            xOffset: { field: "datapath" },
            y: { field: "mpps", type: "quantitative", title: "Mpps (median)" },
            color,
          },
        },
        "no saturation run",
      ),
    },
    {
      file: "expensive-throughput.png",
      title: "Normal-traffic throughput vs P, XDP placement vs upcall (Fig. 6)",
      spec: chart(
        "Normal-traffic throughput vs fraction P of expensive frames",
        expRows,
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "P", type: "quantitative", scale: { domain: [0, 1] } },
            y: { field: "mpps", type: "quantitative", title: "Mpps" },
            color,
          },
        },
        `${NOT_MEASURED} (Galette expensive-NF scenarios, P ∈ {${EXPENSIVE_FRACTIONS.join(", ")}})`,
      ),
    },
    {
      file: "expensive-p99.png",
      title: "Normal-traffic p99 vs P, XDP placement vs upcall (Fig. 7)",
      spec: chart(
        "Normal-traffic p99 latency vs fraction P of expensive frames",
        expRows,
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "P", type: "quantitative", scale: { domain: [0, 1] } },
            y: { field: "p99_us", type: "quantitative", scale: log, title: "p99 (µs, log)" },
            color,
          },
        },
        `${NOT_MEASURED} (Galette expensive-NF scenarios)`,
      ),
    },
    {
      file: "threads.png",
      title: "Throughput vs userland threads at P = 0.5 (Fig. 8)",
      spec: chart(
        "Normal-traffic throughput vs userland threads, P = 0.5",
        threadRows,
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "threads", type: "quantitative", scale: { domain: [0, Math.max(...THREAD_COUNTS)] } },
            y: { field: "mpps", type: "quantitative", title: "Mpps" },
            color,
          },
        },
        `${NOT_MEASURED} (Galette thread sweep)`,
      ),
    },
  ];
}

/** Vega-Lite → Vega → SVG (headless, no canvas) → PNG with resvg (prebuilt, ships in its npm package). */
export async function renderPng(spec: VlSpec): Promise<Buffer> {
  const compiled = vl.compile({ background: "white", ...spec } as VlSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
    fitTo: { mode: "zoom", value: 2 },
  })
    .render()
    .asPng();
  return Buffer.from(png);
}

/** Render every plot into `dir`; returns title → file name. */
export async function writePlots(results: BenchResults, dir: string): Promise<Record<string, string>> {
  mkdirSync(dir, { recursive: true });
  const refs: Record<string, string> = {};
  for (const p of buildPlots(results)) {
    writeFileSync(join(dir, p.file), await renderPng(p.spec));
    refs[p.title] = p.file;
  }
  return refs;
}
