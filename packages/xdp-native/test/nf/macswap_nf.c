/* A native NF library implementing the Galette ABI by hand: swaps the Ethernet addresses
 * and records the frame's sequence number (u32 at SEQ_OFFSET) in its first map, which
 * proves the worker passes map fds and that libbpf's symbols resolve from the process.
 * Variant = low nibble of the byte at VARIANT_OFFSET, so tests can steer frames; two
 * byte values misbehave on purpose: BAD_LENGTH grows the frame past its buffer, and
 * BAD_VARIANT returns a variant outside the action table. */
#include "test_nf.h"

#define BAD_LENGTH 0x40
#define BAD_VARIANT 0x80

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION GALETTE_ABI_VERSION
#endif

__u32 galette_nf_abi_version(void)
{
	return TEST_ABI_VERSION;
}

__u32 galette_nf_packet(struct galette_pkt *pkt, const int *map_fds)
{
	if (!swap_and_record(pkt, map_fds)) return 0;
	__u8 steer = pkt->data[VARIANT_OFFSET];
	if (steer == BAD_LENGTH) pkt->len = pkt->len + pkt->tailroom + 1;
	if (steer == BAD_VARIANT) return 1000;
	return steer & (GALETTE_MAX_ACTIONS - 1);
}
