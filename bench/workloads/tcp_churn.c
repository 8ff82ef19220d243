// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP connection churn over loopback: each of W client threads connects to its own
 * listener (served by its own thread), sends 1 KiB, closes; the server reads to EOF and
 * closes with SO_LINGER 0. Runs for S seconds and prints "<connections> <seconds>
 * <connections/s>".
 *
 * Why SO_LINGER 0: with ordinary closes every connection leaves a TIME_WAIT socket for
 * 60 s, and at 10-20k connections/s the host's TIME_WAIT table and ephemeral ports fill
 * and empty in waves, so rounds ran at either ~14k or ~22k connections/s (spread 50-60 %)
 * whatever the tracer. The server's reset after the client's FIN ends both sockets at
 * once (client FIN_WAIT2 -> CLOSE, server -> CLOSE): no TIME_WAIT, the same state walk
 * every time. Each connection still passes SYN_SENT, ESTABLISHED, FIN_WAIT1/2 and
 * CLOSE_WAIT, and sends and receives data.
 *
 *     tcp_churn <seconds> <workers>
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static atomic_long done;
static atomic_int stop;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *serve(void *arg)
{
	int l = *(int *)arg;
	char buf[4096];
	struct linger now = {.l_onoff = 1, .l_linger = 0};

	for (;;) {
		int s = accept(l, NULL, NULL);
		if (s < 0)
			return NULL;
		while (read(s, buf, sizeof(buf)) > 0)
			;
		setsockopt(s, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
		close(s);
	}
}

static void *client(void *arg)
{
	struct sockaddr_in *addr = arg;
	char payload[1024];

	memset(payload, 'x', sizeof(payload));
	while (!atomic_load(&stop)) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)addr, sizeof(*addr)) != 0) {
			perror("connect");
			exit(1);
		}
		if (write(c, payload, sizeof(payload)) != sizeof(payload)) {
			perror("write");
			exit(1);
		}
		close(c);
		atomic_fetch_add(&done, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double secs, t0, t1;
	int workers;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <seconds> <workers>\n", argv[0]);
		return 2;
	}
	secs = atof(argv[1]);
	workers = atoi(argv[2]);
	if (workers < 1 || workers > 64 || secs <= 0) {
		fprintf(stderr, "seconds > 0 and 1..64 workers\n");
		return 2;
	}
	struct sockaddr_in addrs[64];
	int listeners[64];
	pthread_t servers[64], clients[64];

	for (int i = 0; i < workers; i++) {
		socklen_t len = sizeof(addrs[i]);
		memset(&addrs[i], 0, sizeof(addrs[i]));
		addrs[i].sin_family = AF_INET;
		addrs[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		listeners[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (listeners[i] < 0 ||
		    bind(listeners[i], (struct sockaddr *)&addrs[i], sizeof(addrs[i])) != 0 ||
		    listen(listeners[i], 1024) != 0 ||
		    getsockname(listeners[i], (struct sockaddr *)&addrs[i], &len) != 0) {
			perror("listen");
			return 1;
		}
		pthread_create(&servers[i], NULL, serve, &listeners[i]);
	}
	t0 = now();
	for (int i = 0; i < workers; i++)
		pthread_create(&clients[i], NULL, client, &addrs[i]);
	while (now() - t0 < secs)
		usleep(10000);
	atomic_store(&stop, 1);
	for (int i = 0; i < workers; i++)
		pthread_join(clients[i], NULL);
	t1 = now();
	printf("%ld %.3f %.1f\n", atomic_load(&done), t1 - t0, atomic_load(&done) / (t1 - t0));
	return 0;
}
