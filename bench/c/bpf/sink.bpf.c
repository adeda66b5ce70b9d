/* Sink on the generator side (XDP, native mode): counts the frames the DUT bounced back and
 * records their one-way-back round-trip latency (send stamp -> arrival at this hook) in a
 * histogram. Bench frames are dropped here so the generator's CPU does not pay for a stack
 * traversal; anything else (ARP, ...) passes. Maps are mmapable so galgen reads them
 * without syscalls. One NAPI context (the veth's) updates them; atomics keep it safe
 * anyway. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "../frame.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SINK_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * HIST_BUCKETS); /* normal frames, then expensive frames */
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} cfg SEC(".maps");

static __always_inline void add(void *map, __u32 key, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(map, &key);
	if (p) __sync_fetch_and_add(p, v);
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	if (data + BENCH_STAMP_OFF + sizeof(struct bench_stamp) > end) return XDP_PASS;
	struct bench_stamp *st = data + BENCH_STAMP_OFF;
	struct ethhdr *eth = data;
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP) || st->magic != BENCH_MAGIC) return XDP_PASS;

	__u64 now = bpf_ktime_get_ns();
	__u32 z = 0;
	__u64 *gen_mac = bpf_map_lookup_elem(&cfg, &z);
	__u64 dst = 0;
	__builtin_memcpy(&dst, eth->h_dest, ETH_ALEN);
	if (!gen_mac || dst != *gen_mac) {
		add(&stats, SINK_UNSWAPPED, 1);
		return XDP_DROP;
	}
	int expensive = st->flags & BENCH_F_EXPENSIVE;
	add(&stats, expensive ? SINK_EXPENSIVE : SINK_NORMAL, 1);
	add(&stats, SINK_BYTES, end - data);
	__u64 sent = st->send_ns;
	if (sent > now) {
		add(&stats, SINK_CLOCK_SKEW, 1);
		return XDP_DROP;
	}
	__u64 lat = now - sent;
	add(&hist, hist_bucket(lat) + (expensive ? HIST_BUCKETS : 0), 1);
	if (!expensive) {
		__u32 k = SINK_MAX_NS;
		__u64 *mx = bpf_map_lookup_elem(&stats, &k);
		if (mx && lat > *mx) *mx = lat; /* racy max is fine: one NAPI context writes */
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
