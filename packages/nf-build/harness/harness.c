/* Runs an NF over a corpus of frames and prints, per frame, "<variant> <frame hex after>".
 *
 *   harness so LIB.so CORPUS [MAP...]   dlopen a native NF library (galette_abi.h symbols)
 *       MAP = pin:/sys/fs/bpf/...        a real BPF map (build with -lbpf)
 *       MAP = fake:KIND:KS:VS[:K=V,...]  an in-process map (build with -DFAKE_MAPS -rdynamic;
 *                                        KIND hash|array|lpm; K/V hex), for qemu-user runs
 *   harness xdp PROG_PIN CORPUS         BPF_PROG_TEST_RUN of a pinned galette_nf program whose
 *                                       action table maps variant i to verdict i + 1
 * CORPUS: one frame per line, hex. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "galette_abi.h"

#define MAX_FRAME 2048
#define ROOM 256

static int hex_decode(const char *s, unsigned char *out, int max)
{
	int n = 0;
	while (s[0] && s[1] && s[0] != '\n' && s[0] != ',' && s[0] != ':' && s[0] != '=' && n < max) {
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1) return -1;
		out[n++] = (unsigned char)v;
		s += 2;
	}
	return n;
}

static void print_result(unsigned variant, const unsigned char *p, unsigned len)
{
	printf("%u ", variant);
	for (unsigned i = 0; i < len; i++) printf("%02x", p[i]);
	printf("\n");
}

#ifdef FAKE_MAPS
/* In-process stand-ins for libbpf's map calls, resolved by the dlopened NF (-rdynamic). */
#define FAKE_MAX 8
#define FAKE_ENTRIES 256
#define FAKE_FD0 1000
struct fake_map {
	int kind; /* 0 hash, 1 array, 2 lpm */
	int ks, vs, n;
	unsigned char keys[FAKE_ENTRIES][64];
	unsigned char vals[FAKE_ENTRIES][64];
};
static struct fake_map fakes[FAKE_MAX];
static int nfakes;

static struct fake_map *fake_of(int fd)
{
	return fd >= FAKE_FD0 && fd < FAKE_FD0 + nfakes ? &fakes[fd - FAKE_FD0] : NULL;
}

static int lpm_match(const struct fake_map *m, const unsigned char *entry, const unsigned char *key)
{
	uint32_t plen, klen;
	memcpy(&plen, entry, 4);
	memcpy(&klen, key, 4);
	if (plen > klen || plen > (uint32_t)(m->ks - 4) * 8) return -1;
	for (uint32_t b = 0; b < plen; b++) {
		int byte = 4 + b / 8, bit = 7 - b % 8;
		if (((entry[byte] >> bit) & 1) != ((key[byte] >> bit) & 1)) return -1;
	}
	return (int)plen;
}

static int fake_find(struct fake_map *m, const void *key)
{
	for (int i = 0; i < m->n; i++)
		if (!memcmp(m->keys[i], key, m->ks)) return i;
	return -1;
}

int bpf_map_lookup_elem(int fd, const void *key, void *value)
{
	struct fake_map *m = fake_of(fd);
	if (!m) return -9;
	int best = -1, best_len = -1;
	if (m->kind == 2) {
		for (int i = 0; i < m->n; i++) {
			int l = lpm_match(m, m->keys[i], key);
			if (l > best_len) best_len = l, best = i;
		}
	} else {
		best = fake_find(m, key);
	}
	if (best < 0) {
		if (m->kind == 1) { /* arrays always hold a (zeroed) value */
			memset(value, 0, m->vs);
			return 0;
		}
		return -2;
	}
	memcpy(value, m->vals[best], m->vs);
	return 0;
}

int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)
{
	(void)flags;
	struct fake_map *m = fake_of(fd);
	if (!m) return -9;
	int i = fake_find(m, key);
	if (i < 0) {
		if (m->n == FAKE_ENTRIES) return -7;
		i = m->n++;
		memcpy(m->keys[i], key, m->ks);
	}
	memcpy(m->vals[i], value, m->vs);
	return 0;
}

int bpf_map_delete_elem(int fd, const void *key)
{
	struct fake_map *m = fake_of(fd);
	if (!m) return -9;
	int i = fake_find(m, key);
	if (i < 0) return -2;
	m->n--;
	memmove(m->keys[i], m->keys[i + 1], (size_t)(m->n - i) * 64);
	memmove(m->vals[i], m->vals[i + 1], (size_t)(m->n - i) * 64);
	return 0;
}

static int open_map(const char *spec)
{
	char kind[16];
	int ks, vs, used = 0;
	if (strncmp(spec, "fake:", 5) || nfakes == FAKE_MAX ||
		sscanf(spec + 5, "%15[a-z]:%d:%d%n", kind, &ks, &vs, &used) != 3 || ks > 64 || vs > 64) {
		fprintf(stderr, "bad map spec %s\n", spec);
		exit(2);
	}
	struct fake_map *m = &fakes[nfakes];
	m->kind = !strcmp(kind, "array") ? 1 : !strcmp(kind, "lpm") ? 2 : 0;
	m->ks = ks;
	m->vs = vs;
	const char *p = spec + 5 + used;
	while (*p == ':' || *p == ',') {
		unsigned char k[64] = {0}, v[64] = {0};
		p++;
		int kn = hex_decode(p, k, 64);
		p += kn * 2;
		if (*p != '=') {
			fprintf(stderr, "bad entry in %s\n", spec);
			exit(2);
		}
		p++;
		int vn = hex_decode(p, v, 64);
		p += vn * 2;
		if (kn != ks || vn != vs) {
			fprintf(stderr, "entry size mismatch in %s\n", spec);
			exit(2);
		}
		int fd = FAKE_FD0 + nfakes;
		nfakes++;
		bpf_map_update_elem(fd, k, v, 0);
		nfakes--;
	}
	return FAKE_FD0 + nfakes++;
}
#else
#include <bpf/bpf.h>
static int open_map(const char *spec)
{
	if (strncmp(spec, "pin:", 4)) {
		fprintf(stderr, "bad map spec %s\n", spec);
		exit(2);
	}
	int fd = bpf_obj_get(spec + 4);
	if (fd < 0) {
		fprintf(stderr, "bpf_obj_get %s: %d\n", spec + 4, fd);
		exit(2);
	}
	return fd;
}

static int run_xdp(const char *pin, FILE *corpus)
{
	int prog = bpf_obj_get(pin);
	if (prog < 0) {
		fprintf(stderr, "bpf_obj_get %s: %d\n", pin, prog);
		return 2;
	}
	static char line[MAX_FRAME * 2 + 8];
	unsigned char in[MAX_FRAME], out[MAX_FRAME + ROOM];
	while (fgets(line, sizeof line, corpus)) {
		int n = hex_decode(line, in, MAX_FRAME);
		if (n <= 0) continue;
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = (unsigned)n, .data_out = out,
			.data_size_out = sizeof out, .repeat = 1);
		int err = bpf_prog_test_run_opts(prog, &opts);
		if (err) {
			fprintf(stderr, "BPF_PROG_TEST_RUN: %d\n", err);
			return 1;
		}
		print_result(opts.retval - 1, out, opts.data_size_out);
	}
	return 0;
}
#endif

static int run_so(const char *lib, FILE *corpus, int nmaps, char **specs)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 2;
	}
	uint32_t (*abi)(void) = (uint32_t (*)(void))dlsym(h, "galette_nf_abi_version");
	uint32_t (*packet)(struct galette_pkt *, const int *) =
		(uint32_t (*)(struct galette_pkt *, const int *))dlsym(h, "galette_nf_packet");
	if (!abi || !packet || abi() != GALETTE_ABI_VERSION) {
		fprintf(stderr, "%s does not export the galette NF ABI v%d\n", lib, GALETTE_ABI_VERSION);
		return 2;
	}
	int fds[GALETTE_MAX_MAPS];
	for (int i = 0; i < nmaps && i < GALETTE_MAX_MAPS; i++) fds[i] = open_map(specs[i]);
	static char line[MAX_FRAME * 2 + 8];
	static unsigned char buf[ROOM + MAX_FRAME + ROOM];
	while (fgets(line, sizeof line, corpus)) {
		int n = hex_decode(line, buf + ROOM, MAX_FRAME);
		if (n <= 0) continue;
		struct galette_pkt pkt = {.data = buf + ROOM, .len = (uint32_t)n, .headroom = ROOM, .tailroom = ROOM};
		uint32_t variant = packet(&pkt, fds);
		print_result(variant, pkt.data, pkt.len);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s so LIB CORPUS [MAP...] | xdp PROG_PIN CORPUS\n", argv[0]);
		return 2;
	}
	FILE *corpus = fopen(argv[3], "r");
	if (!corpus) {
		perror(argv[3]);
		return 2;
	}
	if (!strcmp(argv[1], "so")) return run_so(argv[2], corpus, argc - 4, argv + 4);
#ifndef FAKE_MAPS
	if (!strcmp(argv[1], "xdp")) return run_xdp(argv[2], corpus);
#endif
	fprintf(stderr, "unknown mode %s\n", argv[1]);
	return 2;
}
