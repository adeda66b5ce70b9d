/* The fixed root program of a Galette interface. It stays attached for the life of the
 * installation; switching chains means replacing the single entry of galette_root_progs,
 * which the kernel does atomically (packets see either the old or the new chain).
 *
 * With no chain installed (empty slot) the tail call falls through and we return
 * XDP_PASS: the interface behaves like a plain interface, so attaching the root before
 * the first chain, or between an uninstall and a reinstall, never blackholes traffic. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "galette_abi.h"
#define GALETTE_TRACE_ROOT_PROGRAM
#include "galette_trace.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} galette_root_progs SEC(".maps");

SEC("xdp")
int galette_root(struct xdp_md *ctx)
{
	/* tracing off: one load of a global and a branch */
	if (galette_trace_cfg.on) galette_trace_root(ctx, &galette_trace_cfg);
	bpf_tail_call(ctx, &galette_root_progs, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
