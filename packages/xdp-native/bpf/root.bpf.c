/* The fixed root program of a Galette interface. It stays attached for the life of the
 * installation; switching chains means replacing an entry of galette_root_progs, which
 * the kernel does atomically (packets see either the old or the new chain).
 *
 * Slot 0 is the chain's entry. A chain with a direction per port also fills slot 1: frames
 * arriving on the port galette_root_ports[0] names (the second port) take it. When slot 1
 * is empty the tail call falls through and those frames take slot 0 as well.
 *
 * With no chain installed (empty slots) the tail calls fall through and we return
 * XDP_PASS: the interface behaves like a plain interface, so attaching the root before
 * the first chain, or between an uninstall and a reinstall, never blackholes traffic. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "galette_abi.h"
#define GALETTE_TRACE_ROOT_PROGRAM
#include "galette_trace.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} galette_root_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} galette_root_ports SEC(".maps");

SEC("xdp")
int galette_root(struct xdp_md *ctx)
{
	/* tracing off: one load of a global and a branch */
	if (galette_trace_cfg.on) galette_trace_root(ctx, &galette_trace_cfg);
	__u32 key = 0;
	__u32 *second = bpf_map_lookup_elem(&galette_root_ports, &key);
	if (second && *second && *second == ctx->ingress_ifindex) bpf_tail_call(ctx, &galette_root_progs, 1);
	bpf_tail_call(ctx, &galette_root_progs, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
