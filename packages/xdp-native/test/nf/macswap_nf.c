/* A native NF library implementing the Galette ABI by hand: swaps the Ethernet addresses
 * and records the frame's sequence number (u32 at SEQ_OFFSET) in its first map, which
 * proves the worker passes map fds and that libbpf's symbols resolve from the process.
 * Variant = low nibble of the byte at VARIANT_OFFSET, so tests can steer frames; two
 * byte values misbehave on purpose: BAD_LENGTH grows the frame past its buffer, and
 * BAD_VARIANT returns a variant outside the action table. */
#include <stdint.h>
#include <string.h>

#include "galette_abi.h"

#define VARIANT_OFFSET 43
#define SEQ_OFFSET 44
#define BAD_LENGTH 0x40
#define BAD_VARIANT 0x80

int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION GALETTE_ABI_VERSION
#endif

__u32 galette_nf_abi_version(void)
{
	return TEST_ABI_VERSION;
}

__u32 galette_nf_packet(struct galette_pkt *pkt, const int *map_fds)
{
	if (pkt->len < SEQ_OFFSET + 4) return 0;
	uint8_t tmp[6];
	memcpy(tmp, pkt->data, 6);
	memcpy(pkt->data, pkt->data + 6, 6);
	memcpy(pkt->data + 6, tmp, 6);
	if (map_fds) {
		__u32 seq;
		__u8 seen = 1;
		memcpy(&seq, pkt->data + SEQ_OFFSET, 4);
		bpf_map_update_elem(map_fds[0], &seq, &seen, 0);
	}
	__u8 steer = pkt->data[VARIANT_OFFSET];
	if (steer == BAD_LENGTH) pkt->len = pkt->len + pkt->tailroom + 1;
	if (steer == BAD_VARIANT) return 1000;
	return steer & (GALETTE_MAX_ACTIONS - 1);
}
