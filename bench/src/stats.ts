/** Small, pure statistics over repetitions. */

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of an empty list");
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median and min/max of the finite values; undefined when there are none. */
export function spread(values: readonly (number | null | undefined)[]): Spread | undefined {
  const v = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  if (v.length === 0) return undefined;
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/** Galette / baseline, undefined when either side is missing or the baseline is zero. */
export function ratio(numerator: number | undefined, denominator: number | undefined): number | undefined {
  if (numerator === undefined || denominator === undefined || denominator === 0) return undefined;
  return numerator / denominator;
}

export interface LatencyBucket {
  lowUs: number;
  count: number;
}

/** Cumulative distribution (fraction ≤ bucket) of a sparse latency histogram. */
export function cdf(hist: readonly LatencyBucket[]): Array<{ us: number; fraction: number }> {
  const total = hist.reduce((a, b) => a + b.count, 0);
  if (total === 0) return [];
  let cum = 0;
  return [...hist]
    .sort((a, b) => a.lowUs - b.lowUs)
    .map((b) => {
      cum += b.count;
      return { us: b.lowUs, fraction: cum / total };
    });
}
