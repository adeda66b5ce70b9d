/* Reference (hand-written C) for the expensive-NF experiment, XDP placement: frames flagged
 * expensive get EXPENSIVE_OPS operations in XDP before being bounced; every frame is
 * MAC-swapped and sent back with XDP_TX. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "../frame.h"
#include "../expensive.h"

static long work(__u64 i, void *ctx)
{
	__u64 *x = ctx;
	*x = expensive_step(*x);
	return 0;
}

SEC("xdp")
int expensive_in_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if (data + BENCH_STAMP_OFF + sizeof(struct bench_stamp) > end) return XDP_DROP;
	struct bench_stamp *st = data + BENCH_STAMP_OFF;
	if (st->magic == BENCH_MAGIC && (st->flags & BENCH_F_EXPENSIVE)) {
		__u64 x = st->seq | 1;
		bpf_loop(EXPENSIVE_OPS, work, &x, 0);
		if (x == 0) return XDP_DROP; /* keeps the result live; xorshift never reaches 0 */
	}
	unsigned char tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
