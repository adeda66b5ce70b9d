/* Frame layout and helpers shared by the generator, the sink and the baselines.
 *
 * Every benchmark frame is Ethernet/IPv4/UDP with a 16-byte stamp at the start of the UDP
 * payload (offset 42). It fits the 60-byte minimum frame (64 B on the wire with FCS):
 *   u16 magic  BENCH_MAGIC
 *   u16 flags  BENCH_F_EXPENSIVE: the "expensive NF" experiments treat this frame as costly
 *   u32 seq
 *   u64 send_ns (CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads)
 * Host byte order: generator, DUT and sink run on the same machine. */
#pragma once
#include <linux/types.h>

#define BENCH_STAMP_OFF 42
#define BENCH_MAGIC 0x6761
#define BENCH_F_EXPENSIVE 0x1
#define BENCH_MIN_FRAME 60
#define BENCH_MAX_FRAME 1514

struct bench_stamp {
	__u16 magic;
	__u16 flags;
	__u32 seq;
	__u64 send_ns;
} __attribute__((packed));

/* Latency histogram shared by sink.bpf.c and galgen.c: 100 ns buckets below 100 us,
 * 10 us buckets below 10 ms, 1 ms buckets below 1 s, then one overflow bucket. */
#define HIST_FINE 1000
#define HIST_MID 990
#define HIST_COARSE 990
#define HIST_BUCKETS (HIST_FINE + HIST_MID + HIST_COARSE + 1)
static inline __u32 hist_bucket(__u64 ns)
{
	if (ns < 100000) return (__u32)(ns / 100);
	if (ns < 10000000) return HIST_FINE + (__u32)(ns / 10000) - 10;
	if (ns < 1000000000) return HIST_FINE + HIST_MID + (__u32)(ns / 1000000) - 10;
	return HIST_BUCKETS - 1;
}
static inline __u64 hist_bucket_low_ns(__u32 b)
{
	if (b < HIST_FINE) return (__u64)b * 100;
	if (b < HIST_FINE + HIST_MID) return (__u64)(b - HIST_FINE + 10) * 10000;
	if (b < HIST_BUCKETS - 1) return (__u64)(b - HIST_FINE - HIST_MID + 10) * 1000000;
	return 1000000000;
}
static inline __u64 hist_bucket_width_ns(__u32 b)
{
	if (b < HIST_FINE) return 100;
	if (b < HIST_FINE + HIST_MID) return 10000;
	return 1000000;
}

/* Sink counters (array indices in sink.bpf.c's `stats`). */
enum sink_stat {
	SINK_NORMAL = 0,     /* bounced bench frames without BENCH_F_EXPENSIVE */
	SINK_EXPENSIVE = 1,  /* bounced bench frames with BENCH_F_EXPENSIVE */
	SINK_BYTES = 2,	     /* bytes of all bounced bench frames */
	SINK_UNSWAPPED = 3,  /* bench frames whose destination MAC is not the generator's */
	SINK_CLOCK_SKEW = 4, /* stamps from the future (should stay 0) */
	SINK_MAX_NS = 5,     /* largest normal-frame latency seen */
	SINK_NSTATS = 8
};

/* Config (array `cfg` in sink.bpf.c): the generator's MAC as a u64 (6 bytes, little end). */
#define SINK_CFG_GEN_MAC 0
