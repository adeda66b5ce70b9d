/* sched_boost TID...: nice -20 and a short scheduling slice for each thread (sched_boost.h).
 * The runner applies it to the DUT's NAPI kthreads and every thread of its processes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched_boost.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: sched_boost TID...\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		char *end;
		long tid = strtol(argv[i], &end, 10);
		if (*end || tid <= 0) {
			fprintf(stderr, "sched_boost: '%s' is not a thread id\n", argv[i]);
			return 2;
		}
		if (bench_sched_boost((int)tid)) {
			fprintf(stderr, "sched_boost: sched_setattr(%ld): %s\n", tid, strerror(errno));
			return 1;
		}
	}
	return 0;
}
