/* BPF_PROG_RUN live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES): every repetition of the
 * test frame runs this program, which stamps it and transmits it out of the generator's
 * veth with XDP_TX. Requires an XDP program on the peer (the DUT side). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../frame.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* [0] = frames stamped, [1] = expensive threshold (of 2^32) */
	__type(key, __u32);
	__type(value, __u64);
} gen_state SEC(".maps");

SEC("xdp")
int gen_live(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	if (data + BENCH_STAMP_OFF + sizeof(struct bench_stamp) > end) return XDP_ABORTED;
	struct bench_stamp *st = data + BENCH_STAMP_OFF;
	__u32 k0 = 0, k1 = 1;
	__u64 *seq = bpf_map_lookup_elem(&gen_state, &k0);
	__u64 *thr = bpf_map_lookup_elem(&gen_state, &k1);
	if (!seq || !thr) return XDP_ABORTED;
	__u64 s = __sync_fetch_and_add(seq, 1);
	st->magic = BENCH_MAGIC;
	st->flags = bpf_get_prandom_u32() < *thr ? BENCH_F_EXPENSIVE : 0;
	st->seq = (__u32)s;
	st->send_ns = bpf_ktime_get_ns();
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
