/* A hand-written NF object implementing the Galette ABI the way generated shims do: the
 * NF body (configurable per instance through rodata) returns an Action variant, and the
 * shim looks the variant up in galette_actions and returns / tail-calls / upcalls.
 * nf_mode bits: 1 = swap MACs, 2 = write the instance id at STAMP_OFFSET,
 *               4 = variant = low nibble of the byte at VARIANT_OFFSET (else variant 0). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "galette_nf_maps.h"

#define STAMP_OFFSET 42 /* first UDP payload byte of an Ethernet/IPv4/UDP frame */
#define VARIANT_OFFSET 43

const volatile __u32 nf_mode = 0;

static __always_inline __u32 nf_body(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;
	if (data + VARIANT_OFFSET + 1 > end) return 0;
	if (nf_mode & 1) {
		__u8 tmp[6];
		__builtin_memcpy(tmp, data, 6);
		__builtin_memcpy(data, data + 6, 6);
		__builtin_memcpy(data + 6, tmp, 6);
	}
	if (nf_mode & 2) data[STAMP_OFFSET] = (__u8)galette_instance_id;
	if (nf_mode & 4) return data[VARIANT_OFFSET] & (GALETTE_MAX_ACTIONS - 1);
	return 0;
}

SEC("xdp")
int galette_nf(struct xdp_md *ctx)
{
	__u32 variant = nf_body(ctx);
	__u64 *count = bpf_map_lookup_elem(&galette_counts, &variant);
	if (count) (*count)++;
	struct galette_action *a = bpf_map_lookup_elem(&galette_actions, &variant);
	if (!a) return XDP_ABORTED;
	__u32 kind = a->kind, arg = a->arg;
	if (kind == GALETTE_ACT_TAILCALL) {
		bpf_tail_call(ctx, &galette_progs, arg);
		return XDP_DROP; /* empty slot */
	}
	if (kind == GALETTE_ACT_UPCALL) {
		__u32 slot = galette_xsk_slot(ctx);
		if (slot == 0xffffffff) return XDP_DROP;
		if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct galette_upcall_meta))) return XDP_DROP;
		struct galette_upcall_meta *meta = (void *)(long)ctx->data_meta;
		if ((void *)(meta + 1) > (void *)(long)ctx->data) return XDP_DROP;
		meta->instance = galette_instance_id;
		meta->action = variant;
		return bpf_redirect_map(&galette_xsks, slot, XDP_DROP);
	}
	if (kind <= GALETTE_ACT_TX) return kind;
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
