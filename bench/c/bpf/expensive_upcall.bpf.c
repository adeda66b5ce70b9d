/* Reference (hand-written C) for the expensive-NF experiment, upcall placement: frames
 * flagged expensive are redirected to the AF_XDP worker (which does the work and bounces
 * them); normal frames are MAC-swapped and bounced in XDP. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "../frame.h"

#define MAX_SOCKS 16
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_SOCKS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nsocks SEC(".maps");

SEC("xdp")
int expensive_upcall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if (data + BENCH_STAMP_OFF + sizeof(struct bench_stamp) > end) return XDP_DROP;
	struct bench_stamp *st = data + BENCH_STAMP_OFF;
	if (st->magic == BENCH_MAGIC && (st->flags & BENCH_F_EXPENSIVE)) {
		__u32 z = 0;
		__u32 *n = bpf_map_lookup_elem(&nsocks, &z);
		__u32 ns = n && *n && *n <= MAX_SOCKS ? *n : 1;
		return bpf_redirect_map(&xsks, bpf_get_prandom_u32() % ns, XDP_DROP);
	}
	unsigned char tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
