// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP connection churn over loopback: each of W threads owns a listener and plays both
 * ends of its connections in turn: connect, accept, write 1 KiB, close the client, read
 * to EOF, close the server side with SO_LINGER 0. Runs for S seconds and prints
 * "<connections> <seconds> <connections/s>".
 *
 * Why one thread plays both ends: over loopback each step completes inside the system
 * call that starts it (the handshake runs in the softirq that connect(2)'s own transmit
 * raises, the accept queue already holds the child, the data and FIN are queued before
 * the reads), so no call ever sleeps and the loop is the same sequence of kernel work
 * every time. With a client thread and a server thread on one CPU, each connection woke
 * the other thread, and how the scheduler interleaved the two varied from run to run:
 * rounds of the same configuration disagreed by 20 % in throughput and in CPU per
 * connection. Every tracer's programs still run in this thread's context, so the
 * workload's CPU time holds their whole cost.
 *
 * Why SO_LINGER 0: with ordinary closes every connection leaves a TIME_WAIT socket for
 * 60 s, and at 10-20k connections/s the host's TIME_WAIT table and ephemeral ports fill
 * and empty in waves (rounds at ~14k or ~22k connections/s whatever the tracer). The
 * server's reset after the client's FIN ends both sockets at once (client FIN_WAIT2 ->
 * CLOSE, server CLOSE_WAIT -> CLOSE): no TIME_WAIT. Each connection still passes SYN_SENT,
 * SYN_RECV, ESTABLISHED, FIN_WAIT1/2 and CLOSE_WAIT, and sends and receives data.
 *
 * `fin` as a third argument ends every connection without a reset instead: the server
 * side reads the 1 KiB and closes first (FIN), then the client reads to EOF and closes.
 * The server's side then waits in TIME_WAIT (bounded by the ephemeral ports: a SYN that
 * reuses a port takes over its time-wait socket), the client's has none, and no
 * connection ends with an error (bench/spans.py: connections no span rule picks). `rst`
 * is the default close. A fourth argument paces the threads to at most that many
 * connections a second in all (a thread's i-th no earlier than i / its share of the rate
 * after the start): a load the agent keeps up with on a busy machine.
 *
 *     tcp_churn <seconds> <workers> [fin|rst [per_second]]
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

static int fin;             /* the server side closes first with a FIN, no reset */
static double per_thread;   /* connections a second per thread; 0: as fast as possible */
static double t0;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void *churn(void *arg)
{
	int l = *(int *)arg;
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	struct linger reset = {.l_onoff = 1, .l_linger = 0};
	char payload[1024], buf[4096];
	long n = 0;

	if (getsockname(l, (struct sockaddr *)&addr, &len) != 0)
		die("getsockname");
	memset(payload, 'x', sizeof(payload));
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int c, s;
		ssize_t got;

		if (per_thread > 0) {
			double wait = t0 + n / per_thread - now();
			if (wait > 0)
				usleep((useconds_t)(wait * 1e6));
		}
		c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)) != 0)
			die("connect");
		s = accept(l, NULL, NULL);
		if (s < 0)
			die("accept");
		if (write(c, payload, sizeof(payload)) != sizeof(payload))
			die("write");
		if (fin) {
			/* All of the 1 KiB: unread data would make the server's close a reset. */
			size_t have = 0;

			while (have < sizeof(payload) && (got = read(s, buf, sizeof(buf))) > 0)
				have += (size_t)got;
			if (have < sizeof(payload))
				die("read");
			close(s);
			while ((got = read(c, buf, sizeof(buf))) > 0)
				;
			if (got < 0)
				die("read");
			close(c);
			n++;
			continue;
		}
		close(c);
		while ((got = read(s, buf, sizeof(buf))) > 0)
			;
		if (got < 0)
			die("read");
		setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		close(s);
		n++;
	}
	atomic_fetch_add(&done, n);
	return NULL;
}

int main(int argc, char **argv)
{
	double secs, t1;
	int workers;

	if (argc < 3 || argc > 5 ||
	    (argc >= 4 && strcmp(argv[3], "fin") != 0 && strcmp(argv[3], "rst") != 0)) {
		fprintf(stderr, "usage: %s <seconds> <workers> [fin|rst [per_second]]\n", argv[0]);
		return 2;
	}
	secs = atof(argv[1]);
	workers = atoi(argv[2]);
	if (workers < 1 || workers > 64 || secs <= 0) {
		fprintf(stderr, "seconds > 0 and 1..64 workers\n");
		return 2;
	}
	fin = argc >= 4 && strcmp(argv[3], "fin") == 0;
	per_thread = argc == 5 ? atof(argv[4]) / workers : 0;
	int listeners[64];
	pthread_t threads[64];

	for (int i = 0; i < workers; i++) {
		struct sockaddr_in addr = {.sin_family = AF_INET};

		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		listeners[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (listeners[i] < 0 ||
		    bind(listeners[i], (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
		    listen(listeners[i], 16) != 0)
			die("listen");
	}
	t0 = now();
	for (int i = 0; i < workers; i++)
		pthread_create(&threads[i], NULL, churn, &listeners[i]);
	while (now() - t0 < secs)
		usleep(10000);
	atomic_store(&stop, 1);
	for (int i = 0; i < workers; i++)
		pthread_join(threads[i], NULL);
	t1 = now();
	printf("%ld %.3f %.1f\n", atomic_load(&done), t1 - t0, atomic_load(&done) / (t1 - t0));
	return 0;
}
