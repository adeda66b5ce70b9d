/** How much to measure. Full: the `make bench` suite (< 10 min); quick: a ~1-minute smoke run. */
export interface BenchPlan {
  quick: boolean;
  repetitions: number;
  /** seconds of traffic before each measurement window (galgen -w) */
  warmupS: number;
  /** seconds of each saturation-throughput window */
  throughputS: number;
  /** seconds of each paced (latency) window */
  latencyS: number;
  /** frame sizes on the wire (incl. FCS) for the saturation runs */
  sizes: number[];
  /** paced rates (frames/s) at 64 B for the latency sweep; saturation is the flood run */
  rates: number[];
  /** paced rate of the latency-distribution plot and the p50/p99 table */
  referenceRate: number;
  /** fractions P of expensive frames to measure (expensive scenarios at other P are skipped) */
  expensiveFractions: number[];
  /** paced rate at which the expensive-NF experiment measures p99 */
  expensiveRate: number;
  generator: "afpacket" | "live";
  /**
   * Run the generator, the DUT's NAPI kthread and its processes at nice -20 (own autogroups),
   * so other jobs on a shared machine disturb the measurement less.
   */
  boost: boolean;
  /**
   * Profile the DUT CPU (perf) during an extra 64 B saturation window: "all", or "targets"
   * (default) = scenarios that declare a target and the scenarios they are compared with.
   */
  profile: "all" | "targets" | "none";
  /** run only scenarios whose name contains one of these (empty = all) */
  only: string[];
}

export function makePlan(env: NodeJS.ProcessEnv = process.env): BenchPlan {
  const quick = isTruthy(env.QUICK);
  const generator = env.BENCH_GENERATOR ?? "afpacket";
  if (generator !== "afpacket" && generator !== "live")
    throw new Error(`BENCH_GENERATOR must be "afpacket" or "live", got ${JSON.stringify(generator)}`);
  const boost = !isTruthy(env.BENCH_NO_BOOST);
  const profile = env.BENCH_PROFILE === undefined || env.BENCH_PROFILE === "" ? "targets" : env.BENCH_PROFILE;
  if (profile !== "all" && profile !== "targets" && profile !== "none")
    throw new Error(`BENCH_PROFILE must be "all", "targets" or "none", got ${JSON.stringify(profile)}`);
  const only = (env.BENCH_ONLY ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  // Rates scaled to a 2-vCPU veth: the XDP_TX baseline saturates near 1 Mpps here, the
  // userland ones at 0.1–0.3 Mpps, so the sweep crosses every datapath's knee.
  return quick
    ? {
        quick,
        repetitions: 1,
        warmupS: 0.2,
        throughputS: 0.5,
        latencyS: 0.5,
        sizes: [64],
        rates: [10_000, 100_000],
        referenceRate: 10_000,
        expensiveFractions: [0.5],
        expensiveRate: 20_000,
        generator,
        boost,
        profile,
        only,
      }
    : {
        quick,
        repetitions: 3,
        warmupS: 0.3,
        throughputS: 1,
        latencyS: 1,
        sizes: [64, 512, 1518],
        // no paced rate above 400 kpps: every datapath saturates below ~0.75 Mpps here and
        // the flood window is the saturation point
        rates: [10_000, 50_000, 100_000, 200_000, 400_000],
        referenceRate: 10_000,
        // four of the paper's seven P (0.05, 0.1 and 0.25 dropped to keep the suite < 10 min)
        expensiveFractions: [0, 0.01, 0.5, 1],
        expensiveRate: 20_000,
        generator,
        boost,
        profile,
        only,
      };
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}
