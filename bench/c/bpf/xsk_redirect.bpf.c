/* Baseline AF_XDP steering: every frame goes to an AF_XDP socket of the worker (slot chosen
 * at random among `nsocks`, as Galette's upcall does), so userland does all the work. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_SOCKS 16
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_SOCKS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nsocks SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	__u32 z = 0;
	__u32 *n = bpf_map_lookup_elem(&nsocks, &z);
	__u32 ns = n && *n && *n <= MAX_SOCKS ? *n : 1;
	return bpf_redirect_map(&xsks, bpf_get_prandom_u32() % ns, XDP_DROP);
}

char _license[] SEC("license") = "GPL";
