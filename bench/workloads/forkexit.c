// SPDX-License-Identifier: Apache-2.0
/*
 * Process churn for the process-probe benchmark: each worker forks a child and waits for
 * it, over and over, for SECONDS. In `fork` mode the child calls _exit(0) at once; in
 * `exec` mode it execs PROGRAM (default /bin/true) first. Every operation therefore fires
 * sched_process_fork and sched_process_exit once (and sched_process_exec once in `exec`
 * mode) in a new process, never a thread.
 *
 * Usage: forkexit fork|exec SECONDS [WORKERS] [PROGRAM]
 * Prints one line: "<ops> <elapsed seconds> <ops per second>", where ops counts children
 * that exited with status 0, summed over the workers. Exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One worker's loop; returns the number of children that exited 0, or -1 on failure. */
static long churn(int exec_mode, const char *program, double end)
{
	char *const argv[] = { (char *)program, NULL };
	long ops = 0;

	/* clock_gettime is a vDSO call, not a syscall: it adds no tracepoint hits. */
	while (now() < end) {
		pid_t child = fork();
		if (child < 0) {
			perror("fork");
			return -1;
		}
		if (child == 0) {
			if (exec_mode) {
				execv(program, argv);
				_exit(127);
			}
			_exit(0);
		}
		int status;
		while (waitpid(child, &status, 0) < 0) {
			if (errno != EINTR) {
				perror("waitpid");
				return -1;
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "child %d did not exit 0 (status %#x)\n", child, status);
			return -1;
		}
		ops++;
	}
	return ops;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 5 ||
	    (strcmp(argv[1], "fork") != 0 && strcmp(argv[1], "exec") != 0)) {
		fprintf(stderr, "usage: %s fork|exec SECONDS [WORKERS] [PROGRAM]\n", argv[0]);
		return 2;
	}
	int exec_mode = strcmp(argv[1], "exec") == 0;
	double secs = atof(argv[2]);
	int workers = argc > 3 ? atoi(argv[3]) : 1;
	const char *program = argc > 4 ? argv[4] : "/bin/true";
	if (secs <= 0 || workers < 1 || workers > 256) {
		fprintf(stderr, "SECONDS must be > 0 and WORKERS in 1..256\n");
		return 2;
	}

	/* Each worker writes its count into its own slot of a shared page. */
	long *counts = mmap(NULL, sizeof(long) * 256, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counts == MAP_FAILED) {
		perror("mmap");
		return 1;
	}

	double start = now();
	double end = start + secs;
	int failed = 0;
	if (workers == 1) {
		counts[0] = churn(exec_mode, program, end);
		failed = counts[0] < 0;
	} else {
		for (int w = 0; w < workers; w++) {
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				return 1;
			}
			if (pid == 0) {
				counts[w] = churn(exec_mode, program, end);
				_exit(counts[w] < 0);
			}
		}
		for (int w = 0; w < workers; w++) {
			int status;
			if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
				failed = 1;
		}
	}
	double elapsed = now() - start;
	if (failed)
		return 1;
	long ops = 0;
	for (int w = 0; w < workers; w++)
		ops += counts[w];
	printf("%ld %.6f %.1f\n", ops, elapsed, ops / elapsed);
	return 0;
}
