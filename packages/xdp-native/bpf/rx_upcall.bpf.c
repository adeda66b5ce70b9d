/* The entry of a chain whose first NF runs only in userland: the root program tail-calls
 * this, and it upcalls every frame as the "rx" pseudo-instance (GALETTE_MAX_INSTANCES - 1),
 * variant 0, or variant 1 for frames of a two-port installation's second port. The workers
 * resolve that through slot 255's action table to the entry NF of the frame's direction. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "galette_abi.h"
#include "galette_trace.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, GALETTE_MAX_XSKS);
	__type(key, __u32);
	__type(value, __u32);
} galette_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} galette_xsk_count SEC(".maps");

SEC("xdp")
int galette_rx_upcall(struct xdp_md *ctx)
{
	/* a random socket of the ingress port and RX queue (as galette_xsk_slot in
	 * galette_nf_maps.h: [0] sockets per group, [1] second port, [2], [3] queues per port) */
	__u32 key = 0;
	__u32 *sockets = bpf_map_lookup_elem(&galette_xsk_count, &key);
	if (!sockets || *sockets == 0) return XDP_DROP;
	__u32 n = *sockets;
	key = 1;
	__u32 *second = bpf_map_lookup_elem(&galette_xsk_count, &key);
	key = 2;
	__u32 *q0 = bpf_map_lookup_elem(&galette_xsk_count, &key);
	key = 3;
	__u32 *q1 = bpf_map_lookup_elem(&galette_xsk_count, &key);
	__u32 first_queues = q0 && *q0 ? *q0 : 1;
	__u32 base = 0, queues = first_queues, action = 0;
	if (second && *second && *second == ctx->ingress_ifindex) {
		base = first_queues;
		queues = q1 && *q1 ? *q1 : 1;
		action = 1; /* the second port's entry (a chain per direction) */
	}
	if (ctx->rx_queue_index >= queues) return XDP_DROP;
	if (galette_upcall_meta_write(ctx, GALETTE_MAX_INSTANCES - 1, action)) return XDP_DROP;
	return bpf_redirect_map(&galette_xsks, (base + ctx->rx_queue_index) * n + bpf_get_prandom_u32() % n, XDP_DROP);
}

char LICENSE[] SEC("license") = "GPL";
