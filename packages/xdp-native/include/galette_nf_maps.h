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
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} galette_xsk_count SEC(".maps");

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
