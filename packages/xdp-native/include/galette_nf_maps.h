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
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} galette_xsk_count SEC(".maps");

/* The XSKMAP slot for an upcalled frame: a random socket of the port it came in on
 * (galette_xsk_count: [0] = sockets per port, [1] = ifindex of the second port, whose
 * sockets are slots [0]..2*[0]-1); 0xffffffff when no worker listens. */
static __always_inline __u32 galette_xsk_slot(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u32 *sockets = bpf_map_lookup_elem(&galette_xsk_count, &key);
	if (!sockets || *sockets == 0)
		return 0xffffffff;
	__u32 n = *sockets;
	key = 1;
	__u32 *second = bpf_map_lookup_elem(&galette_xsk_count, &key);
	__u32 base = second && *second && *second == ctx->ingress_ifindex ? n : 0;
	return base + bpf_get_prandom_u32() % n;
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
