/* The "expensive NF" of the paper's Fig. 6–8: ~100k operations on each frame flagged
 * BENCH_F_EXPENSIVE. The same xorshift64 step runs in XDP (bpf_loop) and in the AF_XDP
 * worker, so both placements do the same work per expensive frame. */
#pragma once
#define EXPENSIVE_OPS 100000

static inline unsigned long long expensive_step(unsigned long long x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}
