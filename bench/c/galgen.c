/* galgen: traffic generator + sink reader for the veth benchmarks. Runs in the generator's
 * namespace: attaches the sink (sink.bpf.o) to its interface for the duration of the run,
 * sends stamped frames to the DUT (AF_PACKET sendmmsg with PACKET_QDISC_BYPASS, or the
 * BPF_PROG_RUN live-frames generator), and after a warm-up measures one window:
 * frames bounced back per second, latency percentiles from the sink's histogram, and CPU
 * (per-CPU /proc/stat deltas of the DUT and generator CPUs, and utime+stime of DUT pids).
 * Prints one JSON object on stdout. See --help. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "frame.h"
#include "sched_boost.h"

#define MAX_BATCH 64

static volatile sig_atomic_t stop_requested;
static void on_signal(int s)
{
	(void)s;
	stop_requested = 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "galgen: %s: %s\n", what, strerror(err));
	exit(1);
}

static void pin_cpu(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof s, &s)) die("sched_setaffinity", errno);
}

/* nice -20 and a short slice (sched_boost.h) in a session (hence autogroup) of our own: with
 * autogroup scheduling a nice value only weighs inside its group, so other jobs on a shared
 * machine would otherwise get an equal share of the generator's CPU. */
static void boost_priority(void)
{
	if (getsid(0) != getpid() && setsid() < 0) die("setsid", errno);
	FILE *f = fopen("/proc/self/autogroup", "w");
	if (f) {
		fprintf(f, "-20");
		fclose(f);
	}
	if (bench_sched_boost(0)) die("sched_setattr(nice -20, short slice)", errno);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
	for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
	return 0;
}

static uint16_t csum16(const void *d, int n)
{
	uint32_t s = 0;
	const uint16_t *p = d;
	while (n > 1) {
		s += *p++;
		n -= 2;
	}
	if (n) s += *(const uint8_t *)p;
	while (s >> 16) s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void build_frame(uint8_t *b, int len, const uint8_t dst[6], const uint8_t src[6])
{
	memset(b, 0, (size_t)len);
	struct ethhdr *e = (void *)b;
	memcpy(e->h_dest, dst, 6);
	memcpy(e->h_source, src, 6);
	e->h_proto = htons(ETH_P_IP);
	struct iphdr *ip = (void *)(e + 1);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons((uint16_t)(len - 14));
	/* TEST-NET-2 addresses: these frames never leave the benchmark's own namespaces */
	ip->saddr = inet_addr("198.51.100.1");
	ip->daddr = inet_addr("198.51.100.2");
	ip->check = csum16(ip, 20);
	struct udphdr *u = (void *)(ip + 1);
	u->source = htons(9);
	u->dest = htons(9);
	u->len = htons((uint16_t)(len - 34));
}

/* Which frames are "expensive": a hash of the sequence number against a threshold, so the
 * fraction is exact over a window and the pattern is not periodic. */
static inline int is_expensive(uint32_t seq, uint64_t threshold)
{
	uint64_t x = seq * 0x9E3779B97F4A7C15ull;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (x & 0xffffffffull) < threshold;
}

struct cpu_sample {
	uint64_t user, nice, sys, idle, iowait, irq, softirq, steal;
};

static int read_cpu(int cpu, struct cpu_sample *c)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f) return -1;
	char line[512], want[16];
	snprintf(want, sizeof want, "cpu%d ", cpu);
	int found = -1;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, want, strlen(want))) continue;
		unsigned long long v[8] = {0};
		sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			&v[4], &v[5], &v[6], &v[7]);
		*c = (struct cpu_sample){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
		found = 0;
		break;
	}
	fclose(f);
	return found;
}

/* utime+stime (clock ticks) of a process, all its threads included. */
static long long read_pid_ticks(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f) return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p) return -1;
	unsigned long long ut = 0, st = 0;
	/* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
	return (long long)(ut + st);
}

#define MAX_PIDS 16
struct snapshot {
	uint64_t t_ns, sent;
	uint64_t stats[SINK_NSTATS];
	uint64_t *hist;
	struct cpu_sample dut_cpu, gen_cpu;
	long long pid_ticks[MAX_PIDS];
	long long napi_ticks[MAX_PIDS];
	double self_cpu_s;
};

struct opts {
	const char *iface, *obj_dir, *mode;
	int size, batch, gen_cpu, dut_cpu, npids, nnapi, with_hist, boost;
	int pids[MAX_PIDS], napi_pids[MAX_PIDS];
	double duration, warmup, rate, expensive;
	uint8_t gen_mac[6], dut_mac[6];
};

static volatile uint64_t *sink_stats, *sink_hist;

static void take_snapshot(struct snapshot *s, const struct opts *o, uint64_t sent)
{
	s->t_ns = now_ns();
	s->sent = sent;
	for (int i = 0; i < SINK_NSTATS; i++) s->stats[i] = sink_stats[i];
	for (int i = 0; i < 2 * HIST_BUCKETS; i++) s->hist[i] = sink_hist[i];
	if (o->dut_cpu >= 0) read_cpu(o->dut_cpu, &s->dut_cpu);
	if (o->gen_cpu >= 0) read_cpu(o->gen_cpu, &s->gen_cpu);
	for (int i = 0; i < o->npids; i++) s->pid_ticks[i] = read_pid_ticks(o->pids[i]);
	for (int i = 0; i < o->nnapi; i++) s->napi_ticks[i] = read_pid_ticks(o->napi_pids[i]);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->self_cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		ru.ru_stime.tv_usec / 1e6;
}

/* CPUs used by a set of tasks over the window (1.0 = one CPU fully busy); -1 if unreadable */
static double tasks_cpu(const long long *t0, const long long *t1, int n, double window)
{
	long long ticks = 0;
	for (int i = 0; i < n; i++) {
		if (t0[i] < 0 || t1[i] < 0) return -1;
		ticks += t1[i] - t0[i];
	}
	return (double)ticks / (double)sysconf(_SC_CLK_TCK) / window;
}

static void print_tasks_cpu(const char *name, const long long *t0, const long long *t1, int n, double window)
{
	double v = n ? tasks_cpu(t0, t1, n, window) : -1;
	if (v < 0)
		printf(",\"%s\":null", name);
	else
		printf(",\"%s\":%.4f", name, v);
}

static void print_cpu(const char *name, int cpu, const struct cpu_sample *a, const struct cpu_sample *b)
{
	double user = (double)(b->user + b->nice - a->user - a->nice), sys = (double)(b->sys - a->sys);
	double irq = (double)(b->irq + b->softirq - a->irq - a->softirq);
	double idle = (double)(b->idle + b->iowait - a->idle - a->iowait), steal = (double)(b->steal - a->steal);
	double tot = user + sys + irq + idle + steal;
	if (tot <= 0) tot = 1;
	printf("\"%s\":{\"cpu\":%d,\"busy\":%.4f,\"user\":%.4f,\"sys\":%.4f,\"irq\":%.4f,\"steal\":%.4f}", name, cpu,
		(user + sys + irq) / tot, user / tot, sys / tot, irq / tot, steal / tot);
}

static void print_latency(const char *name, const uint64_t *h0, const uint64_t *h1, uint64_t max_ns, int with_hist)
{
	uint64_t count = 0;
	double sum = 0;
	for (int b = 0; b < HIST_BUCKETS; b++) {
		uint64_t c = h1[b] - h0[b];
		count += c;
		sum += (double)c * ((double)hist_bucket_low_ns((uint32_t)b) + hist_bucket_width_ns((uint32_t)b) / 2.0);
	}
	printf("\"%s\":{\"count\":%llu", name, (unsigned long long)count);
	if (count) {
		static const double ps[] = {0.5, 0.9, 0.99, 0.999};
		static const char *pn[] = {"p50", "p90", "p99", "p999"};
		int min_b = -1;
		for (int b = 0; b < HIST_BUCKETS && min_b < 0; b++)
			if (h1[b] - h0[b]) min_b = b;
		printf(",\"min_us\":%.2f,\"mean_us\":%.2f", hist_bucket_low_ns((uint32_t)min_b) / 1e3,
			sum / (double)count / 1e3);
		for (int i = 0; i < 4; i++) {
			uint64_t target = (uint64_t)(ps[i] * (double)count + 0.999999), cum = 0;
			int b = 0;
			for (; b < HIST_BUCKETS; b++) {
				cum += h1[b] - h0[b];
				if (cum >= target) break;
			}
			if (b >= HIST_BUCKETS) b = HIST_BUCKETS - 1;
			/* bucket midpoint: 100 ns resolution below 100 us, 10 us below 10 ms, then 1 ms */
			double v = (double)hist_bucket_low_ns((uint32_t)b) + hist_bucket_width_ns((uint32_t)b) / 2.0;
			printf(",\"%s_us\":%.2f", pn[i], v / 1e3);
		}
		if (max_ns) printf(",\"max_us\":%.2f", max_ns / 1e3);
		if (with_hist) {
			printf(",\"hist\":[");
			int first = 1;
			for (int b = 0; b < HIST_BUCKETS; b++) {
				uint64_t c = h1[b] - h0[b];
				if (!c) continue;
				printf("%s[%.1f,%llu]", first ? "" : ",", hist_bucket_low_ns((uint32_t)b) / 1e3,
					(unsigned long long)c);
				first = 0;
			}
			printf("]");
		}
	}
	printf("}");
}

static void *mmap_map(struct bpf_object *obj, const char *name, size_t entries)
{
	int fd = bpf_object__find_map_fd_by_name(obj, name);
	if (fd < 0) die(name, -fd);
	size_t len = (entries * 8 + 4095) & ~4095ul;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) die("mmap sink map", errno);
	return p;
}

static struct bpf_object *open_obj(const char *dir, const char *file)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	struct bpf_object *o = bpf_object__open_file(path, NULL);
	if (!o) die(path, errno);
	int err = bpf_object__load(o);
	if (err) die(path, -err);
	return o;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: galgen -i IFACE -O OBJDIR [-s WIRE_BYTES] [-d SECS] [-w SECS] [-r PPS] [-b BATCH]\n"
		"              [-c GEN_CPU] [-C DUT_CPU] [-p PID,..] [-k PID,..] [-x FRACTION] [-m afpacket|live]\n"
		"              [--gen-mac MAC] [--dut-mac MAC] [--hist] [--boost]\n"
		"  -s  frame size on the wire incl. FCS (64..1518), default 64\n"
		"  -r  target rate in frames/s; 0 (default) sends as fast as possible\n"
		"  -p  DUT userland pids, -k DUT NAPI kthread pids: their CPU time over the window is reported\n"
		"  --boost  nice -20 in an autogroup of its own (less disturbed by other jobs)\n"
		"  -x  fraction of frames flagged expensive (BENCH_F_EXPENSIVE)\n"
		"  -m  afpacket: sendmmsg + PACKET_QDISC_BYPASS (default); live: BPF_PROG_RUN live frames\n"
		"      (needs an XDP program on the DUT side of the veth)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = {.obj_dir = ".",
		.mode = "afpacket",
		.size = 64,
		.batch = 64,
		.gen_cpu = -1,
		.dut_cpu = -1,
		.duration = 2,
		.warmup = 0.5};
	parse_mac("02:00:00:00:00:0a", o.gen_mac);
	parse_mac("02:00:00:00:00:0b", o.dut_mac);
	static const struct option longs[] = {{"iface", 1, 0, 'i'}, {"obj-dir", 1, 0, 'O'}, {"size", 1, 0, 's'},
		{"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"rate", 1, 0, 'r'}, {"batch", 1, 0, 'b'},
		{"cpu", 1, 0, 'c'}, {"dut-cpu", 1, 0, 'C'}, {"dut-pids", 1, 0, 'p'}, {"expensive", 1, 0, 'x'},
		{"mode", 1, 0, 'm'}, {"dut-napi-pids", 1, 0, 'k'}, {"boost", 0, 0, 'B'}, {"gen-mac", 1, 0, 'G'},
		{"dut-mac", 1, 0, 'D'}, {"hist", 0, 0, 'H'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "i:O:s:d:w:r:b:c:C:p:k:x:m:h", longs, NULL)) != -1) {
		switch (c) {
		case 'i': o.iface = optarg; break;
		case 'O': o.obj_dir = optarg; break;
		case 's': o.size = atoi(optarg); break;
		case 'd': o.duration = atof(optarg); break;
		case 'w': o.warmup = atof(optarg); break;
		case 'r': o.rate = atof(optarg); break;
		case 'b': o.batch = atoi(optarg); break;
		case 'c': o.gen_cpu = atoi(optarg); break;
		case 'C': o.dut_cpu = atoi(optarg); break;
		case 'p':
			for (char *t = strtok(optarg, ","); t && o.npids < MAX_PIDS; t = strtok(NULL, ","))
				o.pids[o.npids++] = atoi(t);
			break;
		case 'k':
			for (char *t = strtok(optarg, ","); t && o.nnapi < MAX_PIDS; t = strtok(NULL, ","))
				o.napi_pids[o.nnapi++] = atoi(t);
			break;
		case 'x': o.expensive = atof(optarg); break;
		case 'm': o.mode = optarg; break;
		case 'G':
			if (parse_mac(optarg, o.gen_mac)) {
				fprintf(stderr, "galgen: bad --gen-mac '%s'\n", optarg);
				return 2;
			}
			break;
		case 'D':
			if (parse_mac(optarg, o.dut_mac)) {
				fprintf(stderr, "galgen: bad --dut-mac '%s'\n", optarg);
				return 2;
			}
			break;
		case 'H': o.with_hist = 1; break;
		case 'B': o.boost = 1; break;
		default: usage();
		}
	}
	if (!o.iface) usage();
	if (o.size < 64 || o.size > 1518) {
		fprintf(stderr, "galgen: --size %d outside 64..1518\n", o.size);
		return 2;
	}
	if (o.batch < 1 || o.batch > MAX_BATCH) {
		fprintf(stderr, "galgen: --batch %d outside 1..%d\n", o.batch, MAX_BATCH);
		return 2;
	}
	if (o.expensive < 0 || o.expensive > 1) {
		fprintf(stderr, "galgen: --expensive %g outside 0..1\n", o.expensive);
		return 2;
	}
	int live = !strcmp(o.mode, "live");
	if (!live && strcmp(o.mode, "afpacket")) {
		fprintf(stderr, "galgen: unknown --mode '%s'\n", o.mode);
		return 2;
	}
	int frame_len = o.size - 4; /* the veth carries no FCS */
	uint64_t threshold = (uint64_t)(o.expensive * 4294967296.0);
	if (o.gen_cpu >= 0) pin_cpu(o.gen_cpu);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* paced mode sleeps to within microseconds */
	if (o.boost) boost_priority();
	int ifindex = (int)if_nametoindex(o.iface);
	if (!ifindex) die(o.iface, errno);

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* sink: attach for the run, then put back whatever XDP program was there */
	struct bpf_object *sink = open_obj(o.obj_dir, "sink.bpf.o");
	sink_stats = mmap_map(sink, "stats", SINK_NSTATS);
	sink_hist = mmap_map(sink, "hist", 2 * HIST_BUCKETS);
	uint64_t mac64 = 0;
	memcpy(&mac64, o.gen_mac, 6);
	uint32_t zero = 0;
	int err = bpf_map_update_elem(bpf_object__find_map_fd_by_name(sink, "cfg"), &zero, &mac64, 0);
	if (err) die("sink cfg", -err);
	uint32_t old_prog_id = 0;
	bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &old_prog_id);
	/* hold the old program: once replaced, nothing else may keep it alive */
	int old_prog_fd = old_prog_id ? bpf_prog_get_fd_by_id(old_prog_id) : -1;
	if (old_prog_id && old_prog_fd < 0) die("get the XDP program already on the interface", errno);
	int sink_fd = bpf_program__fd(bpf_object__find_program_by_name(sink, "bench_sink"));
	err = bpf_xdp_attach(ifindex, sink_fd, XDP_FLAGS_DRV_MODE, NULL);
	if (err) die("attach sink (native XDP)", -err);

	static uint8_t frames[MAX_BATCH][BENCH_MAX_FRAME];
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	int sock = -1, live_fd = -1, live_state_fd = -1;
	if (live) {
		struct bpf_object *gen = open_obj(o.obj_dir, "gen_live.bpf.o");
		live_fd = bpf_program__fd(bpf_object__find_program_by_name(gen, "gen_live"));
		live_state_fd = bpf_object__find_map_fd_by_name(gen, "gen_state");
		uint32_t one = 1;
		err = bpf_map_update_elem(live_state_fd, &one, &threshold, 0);
		if (err) die("gen_live state", -err);
		build_frame(frames[0], frame_len, o.dut_mac, o.gen_mac);
	} else {
		sock = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: a send-only socket */
		if (sock < 0) die("socket(AF_PACKET)", errno);
		int one = 1;
		if (setsockopt(sock, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one))
			die("PACKET_QDISC_BYPASS", errno);
		int sndbuf = 4 << 20;
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
		struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = ifindex};
		if (bind(sock, (void *)&sll, sizeof sll)) die("bind(AF_PACKET)", errno);
		for (int i = 0; i < MAX_BATCH; i++) {
			build_frame(frames[i], frame_len, o.dut_mac, o.gen_mac);
			iov[i] = (struct iovec){frames[i], (size_t)frame_len};
			memset(&msgs[i], 0, sizeof msgs[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
	}

	/* paced mode sends small bursts so a burst adds little queueing of its own */
	int burst = o.batch;
	if (o.rate > 0) {
		burst = (int)(o.rate / 50000);
		if (burst < 1) burst = 1;
		if (burst > o.batch) burst = o.batch;
	}
	int live_repeat = o.rate > 0 ? burst : 1 << 14;

	struct snapshot s0 = {0}, s1 = {0};
	s0.hist = calloc(2 * HIST_BUCKETS, 8);
	s1.hist = calloc(2 * HIST_BUCKETS, 8);
	uint64_t start = now_ns(), warm_end = start + (uint64_t)(o.warmup * 1e9);
	uint64_t end = warm_end + (uint64_t)(o.duration * 1e9);
	uint64_t sent = 0, send_errors = 0, seq = 0;
	int phase = 0; /* 0 warm-up, 1 measuring */
	while (!stop_requested) {
		uint64_t t = now_ns();
		if (phase == 0 && t >= warm_end) {
			sink_stats[SINK_MAX_NS] = 0;
			take_snapshot(&s0, &o, sent);
			phase = 1;
		} else if (phase == 1 && t >= end) {
			take_snapshot(&s1, &o, sent);
			phase = 2;
			break;
		}
		if (o.rate > 0) {
			/* pace against the start of the run so short stalls are caught up */
			uint64_t due = start + (uint64_t)((double)sent * 1e9 / o.rate);
			if (t < due) {
				/* long gaps: sleep, so the sink's NAPI thread on this CPU runs without waiting
				 * for the scheduler to preempt a spinning generator */
				if (due - t > 30000) {
					uint64_t wake = due - 10000;
					struct timespec ts = {
						(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
					clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				}
				continue;
			}
		}
		if (live) {
			struct xdp_md ctx = {.data_end = (uint32_t)frame_len, .ingress_ifindex = (uint32_t)ifindex};
			LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frames[0], .data_size_in = (uint32_t)frame_len,
				.ctx_in = &ctx, .ctx_size_in = sizeof ctx, .repeat = (uint32_t)live_repeat,
				.flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);
			err = bpf_prog_test_run_opts(live_fd, &run);
			if (err) die("BPF_PROG_RUN live frames", -err);
			sent += (uint64_t)live_repeat;
		} else {
			/* one timestamp per burst: sendmmsg hands the burst over within microseconds */
			uint64_t send_ns = now_ns();
			for (int i = 0; i < burst; i++) {
				struct bench_stamp st = {.magic = BENCH_MAGIC,
					.seq = (uint32_t)seq,
					.send_ns = send_ns,
					.flags = is_expensive((uint32_t)seq, threshold) ? BENCH_F_EXPENSIVE : 0};
				seq++;
				memcpy(frames[i] + BENCH_STAMP_OFF, &st, sizeof st);
			}
			int r = sendmmsg(sock, msgs, (unsigned)burst, 0);
			if (r > 0)
				sent += (uint64_t)r;
			else
				send_errors++;
		}
	}
	if (old_prog_fd >= 0) {
		if (bpf_xdp_attach(ifindex, old_prog_fd, XDP_FLAGS_DRV_MODE, NULL))
			fprintf(stderr, "galgen: could not restore XDP program id %u on %s\n", old_prog_id, o.iface);
	} else {
		bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
	}
	if (phase != 2) {
		fprintf(stderr, "galgen: interrupted before the measurement window ended\n");
		return 1;
	}

	double window = (double)(s1.t_ns - s0.t_ns) / 1e9;
	uint64_t normal = s1.stats[SINK_NORMAL] - s0.stats[SINK_NORMAL];
	uint64_t expensive = s1.stats[SINK_EXPENSIVE] - s0.stats[SINK_EXPENSIVE];
	uint64_t tx = s1.sent - s0.sent;
	printf("{\"mode\":\"%s\",\"size\":%d,\"rate_target\":%.0f,\"window_s\":%.4f,\"sent\":%llu,\"offered_pps\":%.1f,"
	       "\"received\":%llu,\"rx_pps\":%.1f,\"rx_normal\":%llu,\"rx_expensive\":%llu,\"rx_normal_pps\":%.1f,"
	       "\"rx_bytes\":%llu,\"unswapped\":%llu,\"clock_skew\":%llu,\"send_errors\":%llu,",
		o.mode, o.size, o.rate, window, (unsigned long long)tx, (double)tx / window,
		(unsigned long long)(normal + expensive), (double)(normal + expensive) / window,
		(unsigned long long)normal, (unsigned long long)expensive, (double)normal / window,
		(unsigned long long)(s1.stats[SINK_BYTES] - s0.stats[SINK_BYTES]),
		(unsigned long long)(s1.stats[SINK_UNSWAPPED] - s0.stats[SINK_UNSWAPPED]),
		(unsigned long long)(s1.stats[SINK_CLOCK_SKEW] - s0.stats[SINK_CLOCK_SKEW]),
		(unsigned long long)send_errors);
	printf("\"latency\":{");
	print_latency("normal", s0.hist, s1.hist, s1.stats[SINK_MAX_NS], o.with_hist);
	printf(",");
	print_latency("expensive", s0.hist + HIST_BUCKETS, s1.hist + HIST_BUCKETS, 0, o.with_hist);
	printf("},\"cpu\":{");
	int comma = 0;
	if (o.dut_cpu >= 0) {
		print_cpu("dut", o.dut_cpu, &s0.dut_cpu, &s1.dut_cpu);
		comma = 1;
	}
	if (o.gen_cpu >= 0) {
		if (comma) printf(",");
		print_cpu("gen", o.gen_cpu, &s0.gen_cpu, &s1.gen_cpu);
	}
	printf("}");
	print_tasks_cpu("dut_procs_cpu", s0.pid_ticks, s1.pid_ticks, o.npids, window);
	print_tasks_cpu("dut_napi_cpu", s0.napi_ticks, s1.napi_ticks, o.nnapi, window);
	printf(",\"gen_self_cpu\":%.4f", (s1.self_cpu_s - s0.self_cpu_s) / window);
	printf("}\n");
	return 0;
}
