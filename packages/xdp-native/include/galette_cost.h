/* Per-NF XDP cost: run time and run count of each NF's own program. The kernel's bpf_stats
 * account a program reached by bpf_tail_call to the program the frame entered (the root),
 * so each generated NF shim times itself, and only while a measuring window is open.
 *
 * galette_cost_on: a global in its own data section (libbpf makes it a one-entry array map
 * named ".data.cost"); the installer pins one per installation, every NF object shares it,
 * and the measuring window writes 1 into it, then 0. Reading a global is one load from a
 * constant address: with the window closed a shim pays that load and two branches.
 * galette_nf_cost: per-CPU {ns, runs} per instance id, shared by every NF object the same
 * way; the measuring side sums the CPUs and takes the difference over the window. */
#ifndef GALETTE_COST_H
#define GALETTE_COST_H

#include <linux/types.h>

/* One instance's slot in galette_nf_cost (per CPU). */
struct galette_nf_cost {
	__u64 ns;   /* time from the shim's entry to its tail call or verdict */
	__u64 runs; /* frames timed */
};

#ifdef __bpf__

#include "galette_nf_maps.h" /* galette_instance_id, GALETTE_MAX_INSTANCES */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GALETTE_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct galette_nf_cost);
} galette_nf_cost SEC(".maps");

volatile __u32 galette_cost_on SEC(".data.cost");

/* The entry time while a window is open, else 0 (no clock read). */
static __always_inline __u64 galette_cost_start(void)
{
	return galette_cost_on ? bpf_ktime_get_ns() : 0;
}

/* Adds this run to the instance's slot (nothing when `start` is 0: not measuring). The
 * instance id (a volatile rodata global) is read only then: the closed window pays one test. */
static __always_inline void galette_cost_end(__u64 start)
{
	if (!start) return;
	__u32 instance = galette_instance_id;
	struct galette_nf_cost *c = bpf_map_lookup_elem(&galette_nf_cost, &instance);
	if (!c) return;
	c->ns += bpf_ktime_get_ns() - start;
	c->runs += 1;
}

#endif /* __bpf__ */
#endif
