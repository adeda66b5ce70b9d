/* The maps and rodata every NF object declares (galette_abi.h names them). Included by the
 * shims nf-build generates and by hand-written test NFs, so there is one definition. */
#ifndef GALETTE_NF_MAPS_H
#define GALETTE_NF_MAPS_H

#include "galette_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GALETTE_MAX_ACTIONS);
	__type(key, __u32);
	__type(value, struct galette_action);
} galette_actions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, GALETTE_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, __u32);
} galette_progs SEC(".maps");

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

/* The XSKMAP slot for an upcalled frame: a random socket of the group of the port and RX
 * queue it came in on (AF_XDP takes a frame only on a socket bound to that very queue).
 * galette_xsk_count: [0] = sockets per group, [1] = ifindex of the second port (0: one
 * port), [2], [3] = RX queues served on the first and second port (0 counts as 1). Groups
 * are port-major: port 0's queues, then port 1's; group g owns slots g*[0]..(g+1)*[0]-1.
 * 0xffffffff when no worker listens or the queue is not served. */
static __always_inline __u32 galette_xsk_slot(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u32 *sockets = bpf_map_lookup_elem(&galette_xsk_count, &key);
	if (!sockets || *sockets == 0) return 0xffffffff;
	__u32 n = *sockets;
	key = 1;
	__u32 *second = bpf_map_lookup_elem(&galette_xsk_count, &key);
	key = 2;
	__u32 *q0 = bpf_map_lookup_elem(&galette_xsk_count, &key);
	key = 3;
	__u32 *q1 = bpf_map_lookup_elem(&galette_xsk_count, &key);
	__u32 first_queues = q0 && *q0 ? *q0 : 1;
	__u32 base = 0, queues = first_queues;
	if (second && *second && *second == ctx->ingress_ifindex) {
		base = first_queues;
		queues = q1 && *q1 ? *q1 : 1;
	}
	__u32 queue = ctx->rx_queue_index;
	if (queue >= queues) return 0xffffffff;
	return (base + queue) * n + bpf_get_prandom_u32() % n;
}

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8); /* an installation has one or two ports */
	__type(key, __u32);
	__type(value, __u32);
} galette_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GALETTE_MAX_ACTIONS);
	__type(key, __u32);
	__type(value, __u64);
} galette_counts SEC(".maps");

const volatile __u32 galette_instance_id = 0;

#endif
