/* What the test NF libraries share: where the test frames (test/frames.ts) carry their
 * steering byte and sequence number, and the work of macswap_nf.c that the others repeat. */
#ifndef TEST_NF_H
#define TEST_NF_H

#include <stdint.h>
#include <string.h>

#include "galette_abi.h"

#define VARIANT_OFFSET 43
#define SEQ_OFFSET 44

/* libbpf's, left undefined here: the worker process resolves it */
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);

/* Swaps the Ethernet addresses and records the sequence number in the first map (if the
 * NF has maps). Returns 0 for a frame too short to carry a sequence number (untouched). */
static inline int swap_and_record(struct galette_pkt *pkt, const int *map_fds)
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
	return 1;
}

#endif
