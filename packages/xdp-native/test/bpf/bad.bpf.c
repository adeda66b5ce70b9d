/* Deliberately wrong: reads packet bytes without checking data_end, which the verifier
 * must refuse ("invalid access to packet"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int bad_unchecked_read(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	return data[100] == 1 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
