/* Packet tracing (`galette trace`): shared by the root program, the generated NF shims,
 * the rx upcall program (BPF C) and the userland workers (C++).
 *
 * The root program marks a frame that matches the tracer's filter: 8 bytes of XDP
 * metadata (struct galette_trace_mark) holding a per-frame id, and one record with the
 * frame's first bytes in the ring buffer galette_trace_ring. Every NF shim that sees the
 * mark adds a record (instance, variant, action taken); an upcall keeps the mark in front
 * of the upcall metadata and flags it (GALETTE_UPCALL_TRACED), and the worker then writes
 * one record per NF call into the BPF queue map the installer passes it (a process without
 * privileges cannot write a BPF ring buffer, but may push to a queue map it holds). The
 * tracer joins both by frame id. With tracing off the root pays one map value test and
 * each shim one comparison of data_meta with data. */
#ifndef GALETTE_TRACE_H
#define GALETTE_TRACE_H

#include <linux/types.h>

#define GALETTE_TRACE_MAGIC 0x43525447u	     /* "GTRC": the mark is ours */
#define GALETTE_UPCALL_TRACED 0x80000000u    /* in galette_upcall_meta.action: a mark precedes the meta */
#define GALETTE_TRACE_RING_SIZE (256 * 1024) /* bytes of galette_trace_ring (a power of two of pages) */
#define GALETTE_TRACE_SNAP 128		     /* frame bytes in the root's record */
#define GALETTE_TRACE_ROOT 0xffffffffu	     /* instance of the root's record (the frame arrived) */

enum galette_trace_tier {
	GALETTE_TIER_XDP = 0,
	GALETTE_TIER_USERLAND = 1,
};

/* Filter terms (galette_trace_cfg.terms / .negate): a frame is traced when every term
 * holds, each negated term does not. */
enum galette_trace_term {
	GALETTE_TF_ETHERTYPE = 1 << 0,
	GALETTE_TF_PROTO = 1 << 1, /* IPv4 protocol / IPv6 next header */
	GALETTE_TF_SRC = 1 << 2,   /* IPv4 source in src/src_mask */
	GALETTE_TF_DST = 1 << 3,
	GALETTE_TF_HOST = 1 << 4,  /* source or destination in host/host_mask */
	GALETTE_TF_SPORT = 1 << 5, /* TCP/UDP */
	GALETTE_TF_DPORT = 1 << 6,
	GALETTE_TF_PORT = 1 << 7, /* source or destination port */
};

/* XDP metadata of a traced frame (in front of the upcall meta once upcalled). */
struct galette_trace_mark {
	__u32 magic;
	__u32 frame;
};

/* One step of a traced frame. The root's record (instance GALETTE_TRACE_ROOT) is followed
 * by GALETTE_TRACE_SNAP bytes of which `caplen` are the frame's first bytes. */
struct galette_trace_record {
	__u64 ts;	/* CLOCK_MONOTONIC ns: when the NF returned (root: when the frame arrived) */
	__u32 frame;	/* id given by the root program */
	__u32 instance; /* NF instance */
	__u32 variant;	/* Action variant the NF returned */
	__u32 kind;	/* enum galette_action_kind taken for it */
	__u32 arg;	/* its target instance (TAILCALL/UPCALL) */
	__u16 tier;	/* enum galette_trace_tier */
	__u16 caplen;
	__u32 len;     /* frame length (root record) */
	__u32 ifindex; /* ingress interface (root record) */
};

/* galette_trace_cfg[0], written by the tracer. Addresses in network byte order, ports and
 * ethertype in host byte order. */
struct galette_trace_cfg {
	__u32 on;
	__u32 owner; /* pid of the tracer holding it */
	__u32 terms;
	__u32 negate;
	__u32 sample; /* trace 1 in `sample` matching frames (0 and 1: all) */
	__u32 seq;    /* last frame id given */
	__u32 lost;   /* records the ring had no room for */
	__u16 ethertype;
	__u8 proto;
	__u8 pad;
	__u32 src, src_mask, dst, dst_mask, host, host_mask;
	__u16 sport, dport, port, pad2;
};

#ifdef __bpf__

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GALETTE_TRACE_RING_SIZE);
} galette_trace_ring SEC(".maps");

/* The frame id of a traced frame, 0 when it carries no mark. */
static __always_inline __u32 galette_trace_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct galette_trace_mark *mark = (void *)(long)ctx->data_meta;
	if ((void *)(mark + 1) > data) return 0;
	return mark->magic == GALETTE_TRACE_MAGIC ? mark->frame : 0;
}

static __always_inline void galette_trace_step(__u32 frame, __u32 instance, __u32 variant, __u32 kind, __u32 arg)
{
	struct galette_trace_record *r = bpf_ringbuf_reserve(&galette_trace_ring, sizeof(*r), 0);
	if (!r) return;
	r->ts = bpf_ktime_get_ns();
	r->frame = frame;
	r->instance = instance;
	r->variant = variant;
	r->kind = kind;
	r->arg = arg;
	r->tier = GALETTE_TIER_XDP;
	r->caplen = 0;
	r->len = 0;
	r->ifindex = 0;
	bpf_ringbuf_submit(r, 0);
}

/* Writes the upcall metadata (and keeps a trace mark in front of it): the worker reads
 * the meta at data - 8 and, when flagged, the mark at data - 16. -1: no room. */
static __always_inline int galette_upcall_meta_write(struct xdp_md *ctx, __u32 instance, __u32 action)
{
	__u32 frame = galette_trace_frame(ctx);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct galette_upcall_meta))) return -1;
	void *data = (void *)(long)ctx->data;
	if (frame) {
		struct galette_trace_mark *mark = (void *)(long)ctx->data_meta;
		struct galette_upcall_meta *meta = (void *)(mark + 1);
		if ((void *)(meta + 1) > data) return -1;
		mark->magic = GALETTE_TRACE_MAGIC;
		mark->frame = frame;
		meta->instance = instance;
		meta->action = action | GALETTE_UPCALL_TRACED;
		return 0;
	}
	struct galette_upcall_meta *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > data) return -1;
	meta->instance = instance;
	meta->action = action;
	return 0;
}

#ifdef GALETTE_TRACE_ROOT_PROGRAM

/* A global in its own data section: libbpf makes it a one-entry array map named
 * ".data.trace" (the installer pins it, the tracer writes entry 0). Reading a global is one
 * load from a constant address, cheaper than a map lookup on every frame. */
struct galette_trace_cfg galette_trace_cfg SEC(".data.trace");

static __always_inline int galette_trace_match(struct xdp_md *ctx, const struct galette_trace_cfg *c)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) return 0;
	__u16 ethertype = bpf_ntohs(eth->h_proto);
	__u32 got = 0, terms = c->terms;
	if (ethertype == c->ethertype) got |= GALETTE_TF_ETHERTYPE;
	int proto = -1;
	void *l4 = 0;
	if (ethertype == ETH_P_IP) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end) return 0;
		proto = ip->protocol;
		if ((ip->saddr & c->src_mask) == c->src) got |= GALETTE_TF_SRC;
		if ((ip->daddr & c->dst_mask) == c->dst) got |= GALETTE_TF_DST;
		if ((ip->saddr & c->host_mask) == c->host || (ip->daddr & c->host_mask) == c->host)
			got |= GALETTE_TF_HOST;
		/* ports only in the first fragment */
		if (!(ip->frag_off & bpf_htons(0x1fff))) l4 = (void *)ip + ip->ihl * 4;
	} else if (ethertype == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end) return 0;
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
	}
	if (proto >= 0 && proto == c->proto) got |= GALETTE_TF_PROTO;
	if (l4 && (proto == IPPROTO_UDP || proto == IPPROTO_TCP)) {
		__u16 *ports = l4;
		if ((void *)(ports + 2) <= end) {
			__u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);
			if (sport == c->sport) got |= GALETTE_TF_SPORT;
			if (dport == c->dport) got |= GALETTE_TF_DPORT;
			if (sport == c->port || dport == c->port) got |= GALETTE_TF_PORT;
		}
	}
	/* address terms only hold for IPv4; every other term computed above */
	return (terms & ~c->negate & ~got) == 0 && (terms & c->negate & got) == 0;
}

/* Root program: marks a matching frame and records its arrival with its first bytes. */
static __always_inline void galette_trace_root(struct xdp_md *ctx, struct galette_trace_cfg *c)
{
	if (!galette_trace_match(ctx, c)) return;
	if (c->sample > 1 && bpf_get_prandom_u32() % c->sample) return;
	__u32 frame = __sync_fetch_and_add(&c->seq, 1) + 1;
	if (!frame) frame = __sync_fetch_and_add(&c->seq, 1) + 1; /* 0 means "not traced" */
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct galette_trace_mark))) return;
	void *data = (void *)(long)ctx->data;
	struct galette_trace_mark *mark = (void *)(long)ctx->data_meta;
	if ((void *)(mark + 1) > data) return;
	mark->magic = GALETTE_TRACE_MAGIC;
	mark->frame = frame;
	struct galette_trace_record *r = bpf_ringbuf_reserve(&galette_trace_ring, sizeof(*r) + GALETTE_TRACE_SNAP, 0);
	if (!r) {
		__sync_fetch_and_add(&c->lost, 1);
		return;
	}
	/* direct packet reads (no bpf_xdp_load_bytes: that needs Linux 5.18) */
	data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *snap = (void *)(r + 1);
	__u32 caplen = 0;
	for (int i = 0; i < GALETTE_TRACE_SNAP; i++) {
		__u8 *b = data + i;
		if ((void *)(b + 1) > end) break;
		snap[i] = *b;
		caplen++;
	}
	r->ts = bpf_ktime_get_ns();
	r->frame = frame;
	r->instance = GALETTE_TRACE_ROOT;
	r->variant = 0;
	r->kind = 0;
	r->arg = 0;
	r->tier = GALETTE_TIER_XDP;
	r->len = (__u32)(end - data); /* the linear part: a multi-buffer frame's fragments are not counted */
	r->ifindex = ctx->ingress_ifindex;
	r->caplen = caplen;
	bpf_ringbuf_submit(r, 0);
}

#endif /* GALETTE_TRACE_ROOT_PROGRAM */
#endif /* __bpf__ */
#endif
