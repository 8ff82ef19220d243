// SPDX-License-Identifier: Apache-2.0
/*
 * The fileio probe's hot path under a microscope: pread(2) of SIZE bytes from offset 0
 * of a 4 KiB regular file, in a tight loop, for SECONDS of wall time; prints the number
 * of calls, the loop's own CPU time in ns, and calls per second. BPF programs run in the context of the
 * task that hits the tracepoint, so their cost is in that CPU time, which (unlike
 * calls per second) holds up when other work shares the machine.
 * Usage: fileio_read_loop FILE SIZE SECONDS
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	if (argc != 4)
		return 2;
	int fd = open(argv[1], O_RDONLY);
	size_t size = strtoul(argv[2], 0, 10);
	double secs = atof(argv[3]);
	if (fd < 0 || size > sizeof(buf))
		return 1;
	unsigned long calls = 0;
	double end = now() + secs;
	double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	/* clock_gettime is a vDSO call, not a syscall: checking it every 1024 reads keeps
	 * the loop to pread alone. */
	while (now() < end) {
		for (int i = 0; i < 1024; i++) {
			if (pread(fd, buf, size, 0) != (ssize_t)size)
				return 1;
		}
		calls += 1024;
	}
	/* calls, CPU ns, calls/s: bench.py reads the first and last fields. */
	printf("%lu %.0f %.0f\n", calls, (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0) * 1e9,
	       calls / secs);
	return 0;
}
