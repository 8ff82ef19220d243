// SPDX-License-Identifier: Apache-2.0
/*
 * Attribution churn for bench/attribution_memory.py: short-lived processes, each with an
 * executable name, a TCP peer and (in `containers` mode) a container of its own, so every
 * one is a new key for every per-process, per-peer and per-container series Sonde keeps.
 *
 * Usage:
 *   attr_churn procs DIR FIRST COUNT PORT FILE
 *       For i in [FIRST, FIRST+COUNT): a symlink DIR/p<i> to this program, executed in a
 *       new process (so the kernel names it "p<i>": comm is the basename of the path
 *       executed), which runs `child` below; the symlink is removed after.
 *   attr_churn containers PARENT FIRST COUNT PORT FILE LIVE
 *       For j in [FIRST, FIRST+COUNT): a cgroup PARENT/docker-<64 hex>.scope (Docker's
 *       systemd-driver shape; the id is made of j), a process that moves itself into it
 *       and execs this program as "ctr" running `child`; at most LIVE such cgroups exist
 *       at once (the oldest is removed once its process has exited).
 *   attr_churn child INDEX PORT FILE   (what the processes above run)
 *       Binds a TCP socket to 127.<a>.<b>.<c> (a distinct loopback address per INDEX),
 *       connects to that address at PORT (the driver listens on every address), writes
 *       one byte and closes; appends one byte to FILE; exits 0.
 *
 * The driver of both modes listens on PORT (0: a port the kernel picks; all addresses: the 127.0.0.0/8 route is
 * local, so only loopback traffic reaches it) and reads every connection to its end, so
 * each address is a distinct peer on both sides. Up to 4 children run at once. Prints one
 * line: "<processes> <seconds> <processes per second>". Exits non-zero on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IN_FLIGHT 4

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 127.<100 + i / 65536>.<i / 256 % 256>.<i % 256>: clear of the 127.252.x.x the DNS
 * benches use, distinct for i below 9.4 million. */
static struct in_addr peer_of(long i)
{
	struct in_addr a;
	a.s_addr = htonl((127u << 24) | ((100u + (uint32_t)(i >> 16)) << 16) |
			 ((uint32_t)(i >> 8 & 255) << 8) | (uint32_t)(i & 255));
	return a;
}

static int child(long index, int port, const char *file)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = peer_of(index) };
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("child: bind");
		return 1;
	}
	sa.sin_port = htons(port);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("child: connect");
		return 1;
	}
	if (write(s, "x", 1) != 1) {
		perror("child: send");
		return 1;
	}
	close(s);
	int f = open(file, O_WRONLY | O_APPEND);
	if (f < 0 || write(f, "x", 1) != 1) {
		perror("child: write");
		return 1;
	}
	close(f);
	return 0;
}

static void *serve(void *arg)
{
	int l = *(int *)arg;
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("accept");
			exit(1);
		}
		char buf[64];
		while (read(c, buf, sizeof(buf)) > 0)
			;
		close(c);
	}
	return NULL;
}

/* Listens on `port` (0: one the kernel picks) on every address; returns the port. */
static int listen_on(int port)
{
	static int l;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1024) < 0) {
		perror("listen");
		exit(1);
	}
	pthread_t t;
	if (pthread_create(&t, NULL, serve, &l) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		exit(1);
	}
	socklen_t len = sizeof(sa);
	if (getsockname(l, (struct sockaddr *)&sa, &len) < 0) {
		perror("getsockname");
		exit(1);
	}
	return ntohs(sa.sin_port);
}

/* Waits for one child; returns its slot in `pids`, or exits on a failed child. */
static int reap(pid_t *pids, int n)
{
	int status;
	pid_t p = wait(&status);
	if (p < 0) {
		perror("wait");
		exit(1);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "child %d failed (status %#x)\n", p, status);
		exit(1);
	}
	for (int k = 0; k < n; k++)
		if (pids[k] == p)
			return k;
	fprintf(stderr, "unknown child %d\n", p);
	exit(1);
}

static void cgroup_dir(char *out, size_t len, const char *parent, long j)
{
	/* 64 hex digits: a fixed prefix, then j. */
	snprintf(out, len, "%s/docker-5e4d%044x%016lx.scope", parent, 0u, j);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "child") == 0)
		return child(atol(argv[2]), atoi(argv[3]), argv[4]);
	int procs = argc == 7 && strcmp(argv[1], "procs") == 0;
	int ctrs = argc == 8 && strcmp(argv[1], "containers") == 0;
	if (!procs && !ctrs) {
		fprintf(stderr,
			"usage: %s procs DIR FIRST COUNT PORT FILE\n"
			"       %s containers PARENT FIRST COUNT PORT FILE LIVE\n",
			argv[0], argv[0]);
		return 2;
	}
	const char *dir = argv[2], *file = argv[6];
	long first = atol(argv[3]), count = atol(argv[4]);
	long live = ctrs ? atol(argv[7]) : 0;
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self[n] = 0;
	char port[16];
	snprintf(port, sizeof(port), "%d", listen_on(atoi(argv[5])));

	pid_t pids[IN_FLIGHT] = { 0 };
	long index[IN_FLIGHT] = { 0 };
	int running = 0;
	long removed = first; /* containers: cgroups below this index are gone */
	double start = now();
	for (long i = first; i < first + count || running > 0;) {
		int slot = -1;
		if (running == IN_FLIGHT || i >= first + count) {
			slot = reap(pids, IN_FLIGHT);
			running--;
			if (procs) {
				char path[4096];
				snprintf(path, sizeof(path), "%s/p%06ld", dir, index[slot]);
				unlink(path);
			}
			pids[slot] = 0;
			continue;
		}
		for (int k = 0; k < IN_FLIGHT; k++)
			if (pids[k] == 0)
				slot = k;
		char path[4096], idx[32];
		snprintf(idx, sizeof(idx), "%ld", i);
		if (procs) {
			snprintf(path, sizeof(path), "%s/p%06ld", dir, i);
			if (symlink(self, path) < 0 && errno != EEXIST) {
				perror("symlink");
				return 1;
			}
		} else {
			/* The oldest cgroups go once LIVE exist; a cgroup whose process has not
			 * exited yet is busy, so wait for the children first. */
			while (i - removed >= live) {
				char old[4096];
				cgroup_dir(old, sizeof(old), dir, removed);
				while (rmdir(old) < 0) {
					if (errno != EBUSY || running == 0) {
						perror("rmdir");
						return 1;
					}
					int k = reap(pids, IN_FLIGHT);
					pids[k] = 0;
					running--;
				}
				removed++;
			}
			cgroup_dir(path, sizeof(path), dir, i);
			if (mkdir(path, 0755) < 0) {
				perror("mkdir cgroup");
				return 1;
			}
		}
		char procs_file[4200];
		snprintf(procs_file, sizeof(procs_file), "%s/cgroup.procs", path);
		pid_t p = fork();
		if (p < 0) {
			perror("fork");
			return 1;
		}
		if (p == 0) {
			if (ctrs) {
				int f = open(procs_file, O_WRONLY);
				if (f < 0 || write(f, "0", 1) != 1) {
					perror("joining the cgroup");
					_exit(1);
				}
				close(f);
				char *const args[] = { "ctr", "child", idx, port, (char *)file, NULL };
				execv(self, args);
			} else {
				char *const args[] = { path, "child", idx, port, (char *)file, NULL };
				execv(path, args);
			}
			_exit(127);
		}
		pids[slot] = p;
		index[slot] = i;
		running++;
		i++;
	}
	if (ctrs) {
		for (; removed < first + count; removed++) {
			char old[4096];
			cgroup_dir(old, sizeof(old), dir, removed);
			if (rmdir(old) < 0) {
				perror("rmdir");
				return 1;
			}
		}
	}
	double t = now() - start;
	printf("%ld %.3f %.0f\n", count, t, count / t);
	return 0;
}
