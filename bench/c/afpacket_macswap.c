/* Baseline: hand-written AF_PACKET macswap forwarder. Receives every frame on IFACE with
 * recvmmsg, swaps the MACs and sends the batch back with sendmmsg (qdisc bypassed), until
 * SIGTERM.
 *   -m block : block in recvmmsg (the "IRQ" style)
 *   -m busy  : spin with MSG_DONTWAIT (the "poll" style)
 * Prints "ready" on stdout once bound, and a JSON summary when it stops. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#define BATCH 64
#define BUF 2048

static volatile sig_atomic_t stop_requested;
static void on_signal(int s)
{
	(void)s;
	stop_requested = 1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "afpacket_macswap: %s: %s\n", what, strerror(err));
	exit(1);
}

int main(int argc, char **argv)
{
	const char *iface = NULL, *mode = "block";
	int cpu = -1, c;
	while ((c = getopt(argc, argv, "i:m:c:")) != -1) {
		switch (c) {
		case 'i': iface = optarg; break;
		case 'm': mode = optarg; break;
		case 'c': cpu = atoi(optarg); break;
		default: iface = NULL; break;
		}
	}
	int busy = !strcmp(mode, "busy");
	if (!iface || (!busy && strcmp(mode, "block"))) {
		fprintf(stderr, "usage: afpacket_macswap -i IFACE [-m block|busy] [-c CPU]\n");
		return 2;
	}
	if (cpu >= 0) {
		cpu_set_t s;
		CPU_ZERO(&s);
		CPU_SET(cpu, &s);
		if (sched_setaffinity(0, sizeof s, &s)) die("sched_setaffinity", errno);
	}
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: recvmmsg returns on SIGTERM */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the runner that started us */

	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (fd < 0) die("socket(AF_PACKET)", errno);
	int one = 1;
	/* never receive our own transmissions back */
	if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one)) die("PACKET_IGNORE_OUTGOING", errno);
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one)) die("PACKET_QDISC_BYPASS", errno);
	int rcvbuf = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {0, 200000}; /* wake up to notice SIGTERM even if it raced */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex(iface)};
	if (!sll.sll_ifindex) die(iface, errno);
	if (bind(fd, (void *)&sll, sizeof sll)) die("bind(AF_PACKET)", errno);
	printf("ready\n");
	fflush(stdout);

	static uint8_t bufs[BATCH][BUF];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	unsigned long long forwarded = 0, send_errors = 0;
	while (!stop_requested) {
		for (int i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){bufs[i], BUF};
			memset(&msgs[i], 0, sizeof msgs[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int r = recvmmsg(fd, msgs, BATCH, busy ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
		if (r <= 0) continue;
		for (int i = 0; i < r; i++) {
			uint8_t t[6];
			memcpy(t, bufs[i], 6);
			memcpy(bufs[i], bufs[i] + 6, 6);
			memcpy(bufs[i] + 6, t, 6);
			iov[i].iov_len = msgs[i].msg_len;
		}
		int s = sendmmsg(fd, msgs, (unsigned)r, 0);
		if (s < r) send_errors += (unsigned long long)(s < 0 ? r : r - s);
		forwarded += (unsigned long long)r;
	}
	printf("{\"forwarded\":%llu,\"send_errors\":%llu}\n", forwarded, send_errors);
	return 0;
}
