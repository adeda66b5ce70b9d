/* A hostile native NF library for the worker isolation tests. It behaves like
 * macswap_nf.c (swap MACs, record the sequence number in its first map, return the low
 * nibble of the steering byte) except for marked frames:
 *   CRASH   writes through a NULL pointer (SIGSEGV)
 *   SHADOW  opens /etc/shadow and, if that worked, copies its first bytes into the frame
 *   SOCKET  opens a UDP socket and sends the frame to 127.0.0.1
 *   EXEC    execs /bin/sh
 *   FLOOD   writes 128 KiB without a newline to its stdout (the worker's status channel)
 *   MAPNEW  creates a BPF map (bpf(BPF_MAP_CREATE))
 * When loaded it also tries to read PROBE_FILE from its constructor (which runs on the
 * worker's control thread) and records what happened under key PROBE_KEY of its map. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/bpf.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test_nf.h"

#define CRASH 0xc1
#define SHADOW 0xc2
#define SOCKET 0xc3
#define EXEC 0xc4
#define FLOOD 0xc5
#define MAPNEW 0xc6
/* map key for the constructor's result: value 0 = it read /etc/shadow, else its errno */
#define PROBE_KEY 0xfffffff0u
/* world-readable: only the worker's Landlock ruleset can refuse it */
#define PROBE_FILE "/etc/passwd"

static int probe_result = -1;

__attribute__((constructor)) static void probe(void)
{
	int fd = open(PROBE_FILE, O_RDONLY);
	if (fd >= 0) {
		probe_result = 0;
		close(fd);
	} else {
		probe_result = errno;
	}
}

__u32 galette_nf_abi_version(void)
{
	return GALETTE_ABI_VERSION;
}

__u32 galette_nf_packet(struct galette_pkt *pkt, const int *map_fds)
{
	if (!swap_and_record(pkt, map_fds)) return 0;
	__u32 key = PROBE_KEY;
	__u8 probe = (__u8)probe_result;
	bpf_map_update_elem(map_fds[0], &key, &probe, 0);

	__u8 steer = pkt->data[VARIANT_OFFSET];
	if (steer == CRASH) {
		volatile int *null = 0;
		*null = 1;
	} else if (steer == SHADOW) {
		int fd = open("/etc/shadow", O_RDONLY);
		if (fd >= 0) {
			ssize_t n = read(fd, pkt->data + SEQ_OFFSET + 4, 8);
			(void)n;
			close(fd);
		}
	} else if (steer == SOCKET) {
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		if (s >= 0) {
			struct sockaddr_in to = {
				.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(0x7f000001)};
			sendto(s, pkt->data, pkt->len, 0, (struct sockaddr *)&to, sizeof to);
			close(s);
		}
	} else if (steer == FLOOD) {
		static char junk[128 * 1024];
		memset(junk, 'x', sizeof junk);
		ssize_t n = write(1, junk, sizeof junk);
		(void)n;
	} else if (steer == MAPNEW) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.map_type = BPF_MAP_TYPE_ARRAY;
		attr.key_size = 4;
		attr.value_size = 4;
		attr.max_entries = 1;
		long fd = syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
		(void)fd;
	} else if (steer == EXEC) {
		char *argv[] = {"/bin/sh", "-c", "id", 0};
		execve("/bin/sh", argv, 0);
	}
	return steer & 0x0f;
}
