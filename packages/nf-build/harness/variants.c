/* Programs that end a BPF_PROG_TEST_RUN of an NF with the NF's verdict: `galette nf test`
 * points each Action variant i at galette_variant_<i> (a tail call), which returns i + 1. */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define VARIANT(i) \
	SEC("xdp") int galette_variant_##i(struct xdp_md *ctx) \
	{ \
		(void)ctx; \
		return (i) + 1; \
	}

/* One invocation per line; clang-format cannot lay out a sequence of declaration macros. */
// clang-format off
VARIANT(0)
VARIANT(1)
VARIANT(2)
VARIANT(3)
VARIANT(4)
VARIANT(5)
VARIANT(6)
VARIANT(7)
VARIANT(8)
VARIANT(9)
VARIANT(10)
VARIANT(11)
VARIANT(12)
VARIANT(13)
VARIANT(14)
VARIANT(15)
// clang-format on

char LICENSE[] SEC("license") = "GPL";
