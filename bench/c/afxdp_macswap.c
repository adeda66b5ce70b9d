/* Baseline: hand-written AF_XDP copy-mode macswap worker (the paper's userland reference).
 * Attaches xsk_redirect.bpf.o in native mode on IFACE, binds one AF_XDP socket (copy mode;
 * veth has no zero-copy) and bounces every frame back MAC-swapped until SIGTERM.
 *   -m busy : spin on the rings (the paper's "poll" mode)
 *   -m poll : block in poll() until frames arrive (the paper's "IRQ" mode)
 *   -p PROG -e : use another program of the object (e.g. expensive_upcall.bpf.o) and do the
 *                expensive NF's work (expensive.h) on frames flagged BENCH_F_EXPENSIVE
 * Prints "ready" on stdout once it forwards, and a JSON summary when it stops. */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>
#include "expensive.h"
#include "frame.h"

#define NUM_FRAMES 4096
#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define RX_BATCH 64

static volatile sig_atomic_t stop_requested;
static volatile unsigned long long expensive_result;
static void on_signal(int s)
{
	(void)s;
	stop_requested = 1;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "afxdp_macswap: %s: %s\n", what, strerror(err));
	exit(1);
}

static inline void swap_mac(uint8_t *p)
{
	uint8_t t[6];
	memcpy(t, p, 6);
	memcpy(p, p + 6, 6);
	memcpy(p + 6, t, 6);
}

int main(int argc, char **argv)
{
	const char *iface = NULL, *obj_path = NULL, *mode = "busy", *prog_name = "xsk_redirect";
	int cpu = -1, c, expensive = 0;
	while ((c = getopt(argc, argv, "i:o:m:c:p:e")) != -1) {
		switch (c) {
		case 'i': iface = optarg; break;
		case 'o': obj_path = optarg; break;
		case 'm': mode = optarg; break;
		case 'c': cpu = atoi(optarg); break;
		case 'p': prog_name = optarg; break;
		case 'e': expensive = 1; break;
		default: iface = NULL; break;
		}
	}
	int blocking = !strcmp(mode, "poll");
	if (!iface || !obj_path || (!blocking && strcmp(mode, "busy"))) {
		fprintf(stderr, "usage: afxdp_macswap -i IFACE -o OBJ [-p PROG] [-e] [-m busy|poll] [-c CPU]\n");
		return 2;
	}
	if (cpu >= 0) {
		cpu_set_t s;
		CPU_ZERO(&s);
		CPU_SET(cpu, &s);
		if (sched_setaffinity(0, sizeof s, &s)) die("sched_setaffinity", errno);
	}
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll() returns on SIGTERM */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the runner that started us */

	int ifindex = (int)if_nametoindex(iface);
	if (!ifindex) die(iface, errno);
	struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) die(obj_path, errno);
	int err = bpf_object__load(obj);
	if (err) die(obj_path, -err);
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);
	if (!prog) die(prog_name, ENOENT);
	int prog_fd = bpf_program__fd(prog);
	int xsks_fd = bpf_object__find_map_fd_by_name(obj, "xsks");

	void *umem_area =
		mmap(NULL, (size_t)NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (umem_area == MAP_FAILED) die("mmap umem", errno);
	/* libxdp 1.3 reads the cached ring indices before setting them: start from zero */
	struct xsk_ring_prod fill = {0}, tx = {0};
	struct xsk_ring_cons comp = {0}, rx = {0};
	struct xsk_umem *umem;
	struct xsk_umem_config ucfg = {.fill_size = NUM_FRAMES, .comp_size = NUM_FRAMES, .frame_size = FRAME_SIZE};
	err = xsk_umem__create(&umem, umem_area, (size_t)NUM_FRAMES * FRAME_SIZE, &fill, &comp, &ucfg);
	if (err) die("xsk_umem__create", -err);
	struct xsk_socket *xsk;
	struct xsk_socket_config scfg = {.rx_size = 2048,
		.tx_size = 2048,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP};
	err = xsk_socket__create(&xsk, iface, 0, umem, &rx, &tx, &scfg);
	if (err) die("xsk_socket__create (copy mode, queue 0)", -err);
	int xsk_fd = xsk_socket__fd(xsk);
	uint32_t zero = 0;
	if (bpf_map_update_elem(xsks_fd, &zero, &xsk_fd, 0)) die("XSKMAP update", errno);
	err = bpf_xdp_attach(ifindex, prog_fd, XDP_FLAGS_DRV_MODE, NULL);
	if (err) die("attach xsk_redirect (native XDP)", -err);

	uint32_t idx;
	unsigned n = xsk_ring_prod__reserve(&fill, NUM_FRAMES / 2, &idx);
	for (unsigned i = 0; i < n; i++) *xsk_ring_prod__fill_addr(&fill, idx + i) = (uint64_t)i * FRAME_SIZE;
	xsk_ring_prod__submit(&fill, n);
	/* the other half of the UMEM backs the TX ring until completions recycle frames */
	printf("ready\n");
	fflush(stdout);

	unsigned long long rx_total = 0, tx_completed = 0, wakeups = 0, tx_kicks = 0;
	unsigned long outstanding = 0;
	struct pollfd pfd = {.fd = xsk_fd, .events = POLLIN};
	while (!stop_requested) {
		/* IRQ mode sleeps only when nothing is left to transmit: in copy mode each TX kick
		 * sends at most 32 frames, so frames still queued need more kicks, not a wake-up */
		if (blocking && !outstanding) poll(&pfd, 1, 200);
		uint32_t rx_idx = 0, tx_idx = 0;
		unsigned got = xsk_ring_cons__peek(&rx, RX_BATCH, &rx_idx);
		if (!got) {
			if (xsk_ring_prod__needs_wakeup(&fill)) {
				recvfrom(xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
				wakeups++;
			}
		} else {
			while (xsk_ring_prod__reserve(&tx, got, &tx_idx) != got) {
				if (stop_requested) break;
				sendto(xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
			}
			if (stop_requested) break;
			for (unsigned j = 0; j < got; j++) {
				const struct xdp_desc *d = xsk_ring_cons__rx_desc(&rx, rx_idx + j);
				uint8_t *frame = xsk_umem__get_data(umem_area, d->addr);
				if (expensive && d->len >= BENCH_STAMP_OFF + sizeof(struct bench_stamp)) {
					struct bench_stamp st;
					memcpy(&st, frame + BENCH_STAMP_OFF, sizeof st);
					if (st.magic == BENCH_MAGIC && (st.flags & BENCH_F_EXPENSIVE)) {
						unsigned long long x = st.seq | 1;
						for (int k = 0; k < EXPENSIVE_OPS; k++) x = expensive_step(x);
						expensive_result = x; /* keeps the work from being optimised away */
					}
				}
				swap_mac(frame);
				struct xdp_desc *t = xsk_ring_prod__tx_desc(&tx, tx_idx + j);
				t->addr = d->addr;
				t->len = d->len;
			}
			xsk_ring_prod__submit(&tx, got);
			xsk_ring_cons__release(&rx, got);
			rx_total += got;
			outstanding += got;
		}
		/* copy mode transmits only on a kick */
		if (outstanding && xsk_ring_prod__needs_wakeup(&tx)) {
			sendto(xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
			tx_kicks++;
		}
		uint32_t comp_idx = 0, fill_idx = 0;
		unsigned done = xsk_ring_cons__peek(&comp, RX_BATCH * 4, &comp_idx);
		if (done) {
			while (xsk_ring_prod__reserve(&fill, done, &fill_idx) != done) {
				if (stop_requested) break;
			}
			if (stop_requested) break;
			for (unsigned j = 0; j < done; j++)
				*xsk_ring_prod__fill_addr(&fill, fill_idx + j) =
					*xsk_ring_cons__comp_addr(&comp, comp_idx + j);
			xsk_ring_prod__submit(&fill, done);
			xsk_ring_cons__release(&comp, done);
			tx_completed += done;
			outstanding -= done < outstanding ? done : outstanding;
		}
	}
	struct xdp_statistics st = {0};
	socklen_t sl = sizeof st;
	getsockopt(xsk_fd, SOL_XDP, XDP_STATISTICS, &st, &sl);
	bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	printf("{\"rx\":%llu,\"tx_completed\":%llu,\"fill_wakeups\":%llu,\"tx_kicks\":%llu,\"rx_dropped\":%llu,"
	       "\"rx_ring_full\":%llu,\"fill_ring_empty\":%llu}\n",
		rx_total, tx_completed, wakeups, tx_kicks, (unsigned long long)st.rx_dropped,
		(unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs);
	return 0;
}
