/* Galette dataplane ABI: shared by the generated XDP shims (BPF C), the native NF
 * libraries (Rust, mirrored in packages/nf) and the AF_XDP userland workers (addon).
 * Change it only together with all three and bump GALETTE_ABI_VERSION. */
#ifndef GALETTE_ABI_H
#define GALETTE_ABI_H

#include <linux/types.h>

#define GALETTE_ABI_VERSION 1

#define GALETTE_MAX_ACTIONS 16	  /* Action variants per NF (entries of its action table) */
#define GALETTE_MAX_INSTANCES 256 /* NF instances per device = PROG_ARRAY slots */
#define GALETTE_MAX_XSKS 64	  /* AF_XDP sockets (worker threads x RX queues of the ports) */
#define GALETTE_MAX_MAPS 16	  /* maps one NF may declare */

/* What an NF's Action variant does. kind < 100 is a final verdict; the first four equal
 * the XDP_* codes so the shim can return them unchanged. */
enum galette_action_kind {
	GALETTE_ACT_ABORT = 0,	    /* XDP_ABORTED */
	GALETTE_ACT_DROP = 1,	    /* XDP_DROP */
	GALETTE_ACT_PASS = 2,	    /* XDP_PASS: hand to the kernel stack */
	GALETTE_ACT_TX = 3,	    /* out of the other port of a two-port installation (DEVMAP
				     * galette_ports: ingress ifindex -> egress); on a single port
				     * (no entry) XDP_TX, out of the port it came in on */
	GALETTE_ACT_REDIRECT = 4,   /* reserved: DEVMAP redirect to port `arg` */
	GALETTE_ACT_REFLECT = 5,    /* XDP_TX always: out of the port it came in on */
	GALETTE_ACT_TAILCALL = 100, /* continue in XDP with instance `arg` (= PROG_ARRAY slot) */
	GALETTE_ACT_UPCALL = 101,   /* continue in userland with instance `arg` */
};

/* One entry of an NF instance's action table (BPF ARRAY map, key = variant index). */
struct galette_action {
	__u32 kind; /* enum galette_action_kind */
	__u32 arg;  /* instance id for TAILCALL/UPCALL, port for REDIRECT, else 0 */
};

/* The 8 bytes an upcalling XDP shim stores in front of the frame (bpf_xdp_adjust_meta):
 * which instance upcalled and with which action variant. The worker looks the pair up in
 * that instance's action table to find the userland instance to run next. */
struct galette_upcall_meta {
	__u32 instance;
	__u32 action;
};

/* A frame as native NF libraries see it. The NF may move `data`/`len` within the
 * headroom/tailroom (head/tail adjustment) and the worker transmits what it is left with. */
struct galette_pkt {
	__u8 *data;
	__u32 len;
	__u32 headroom; /* bytes available before data */
	__u32 tailroom; /* bytes available after data + len */
};

/* Names in every generated NF object (one object = one NF build; one loaded program per
 * NF instance):
 *   program  SEC("xdp") galette_nf          the entry: runs the NF, then acts on its verdict
 *   map      galette_actions   ARRAY[GALETTE_MAX_ACTIONS] u32 -> struct galette_action
 *                              (per instance: the installer gives each instance its own)
 *   map      galette_progs     PROG_ARRAY[GALETTE_MAX_INSTANCES] (shared by a device's NFs)
 *   map      galette_xsks      XSKMAP[GALETTE_MAX_XSKS] (shared)
 *   map      galette_xsk_count ARRAY[4] u32 -> u32: [0] live sockets per (port, RX
 *                              queue), [1] the second port's ifindex (0: one port), [2],
 *                              [3] RX queues served per port (shared; the upcall picks a
 *                              random socket of the ingress port and queue: galette_xsk_slot)
 *   map      galette_ports     DEVMAP_HASH[8] ingress ifindex -> egress
 *                              ifindex (shared; empty on a single-port installation)
 *   map      galette_counts    PERCPU_ARRAY[GALETTE_MAX_ACTIONS] u64 frames per variant
 *                              (per instance)
 *   rodata   const volatile __u32 galette_instance_id (set per instance before load)
 *   maps     nf_map_<field>    one per #[maps] field, in declaration order
 * The device's fixed root program tail-calls slot 0 of its own PROG_ARRAY
 * (galette_root_progs[2]); swapping that one entry switches chains atomically. A chain
 * with a direction per port fills slot 1 too: frames arriving on the port named by
 * galette_root_ports[0] (ARRAY[1] u32 ifindex, the second port) take it. */

/* Symbols every native NF library exports:
 *   __u32 galette_nf_abi_version(void);                 -> GALETTE_ABI_VERSION
 *   __u32 galette_nf_packet(struct galette_pkt *pkt, const int *map_fds);
 *       returns the Action variant index; map_fds holds one BPF map fd per #[maps]
 *       field, in declaration order. Map access uses libbpf's bpf_map_*_elem, left
 *       undefined in the library and resolved from the worker process.
 * and optionally (workers prefer it when exported):
 *   __u32 galette_nf_packet_mapped(struct galette_pkt *pkt, const struct galette_nf_map *maps);
 *       the same, with one struct galette_nf_map per #[maps] field. */

/* One map as a native NF sees it. `data` is the worker's shared mapping of a
 * BPF_F_MMAPABLE ARRAY's values (element i at data + i * round_up(value_size, 8), the
 * kernel's array layout), so lookups and updates are memory accesses; NULL for every
 * other map (hash, LRU, LPM, per-CPU arrays, arrays created without the flag), which go
 * through bpf() on `fd`. */
struct galette_nf_map {
	__s32 fd;
	__u32 max_entries; /* with data: elements mapped */
	__u32 value_size;  /* with data: the map's value size (the NF checks its type against it) */
	__u32 reserved;
	void *data;
};

#endif
