/* Attached to the generator side of a test veth: veth drops XDP_TX/redirected frames
 * unless the receiving peer has an XDP program, so the sink runs this no-op. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
