/* An NF object with the Galette ABI (same maps as access-control) whose program the
 * verifier rejects: it reads the packet without checking data_end. The failure-path test
 * installs it as a "new build" of access-control. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "galette_nf_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65535);
	__uint(key_size, 8);
	__uint(value_size, 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} nf_map_allow_list SEC(".maps");

SEC("xdp")
int galette_nf(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	/* no data_end check: "invalid access to packet" */
	return data[40] == 0x42 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
