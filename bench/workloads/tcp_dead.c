// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connections that die in every way that once leaked probe state, over loopback, N in
 * all, in rotation: a normal close; a reset from the server after it sent data, read by
 * the client after the reset closed its socket (half of them after a half-close); a
 * client reset before the server accepts; a refused connect (nothing listens). Prints
 * "<connections> <seconds> <connections/s>".
 *
 *     tcp_dead <connections>
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void linger0(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0)
		die("SO_LINGER");
}

static int tcp_state(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
		die("TCP_INFO");
	return info.tcpi_state;
}

static int listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(l, 1024) != 0 ||
	    getsockname(l, (struct sockaddr *)addr, &len) != 0)
		die("listen");
	return l;
}

static int dial(struct sockaddr_in *addr)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)addr, sizeof(*addr)) != 0)
		die("connect");
	return c;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr, closed;
	char buf[128];
	long n, i;
	double t0, t1;
	int l, gone;

	if (argc != 2 || (n = atol(argv[1])) < 1) {
		fprintf(stderr, "usage: %s <connections>\n", argv[0]);
		return 2;
	}
	l = listener(&addr);
	gone = listener(&closed);
	close(gone); /* a port nothing listens on */
	memset(buf, 'x', sizeof(buf));
	t0 = now();
	for (i = 0; i < n; i++) {
		int c, s;

		switch (i % 4) {
		case 0: /* normal close, the server first (its side keeps the TIME_WAIT) */
			c = dial(&addr);
			s = accept(l, NULL, NULL);
			if (s < 0 || write(c, buf, 100) != 100 || read(s, buf, 100) != 100)
				die("exchange");
			close(s);
			while (read(c, buf, sizeof(buf)) > 0)
				;
			close(c);
			break;
		case 1: /* data, then a reset; the client reads after the reset */
			c = dial(&addr);
			s = accept(l, NULL, NULL);
			if (s < 0)
				die("accept");
			if ((i / 4) % 2 && (shutdown(c, SHUT_WR) != 0 || read(s, buf, 1) != 0))
				die("half-close");
			if (write(s, buf, 100) != 100)
				die("server write");
			linger0(s);
			close(s);
			while (tcp_state(c) != TCP_CLOSE)
				;
			if (read(c, buf, 100) != 100)
				die("read after reset");
			close(c);
			break;
		case 2: /* the client resets before the server accepts */
			c = dial(&addr);
			linger0(c);
			close(c);
			s = accept(l, NULL, NULL);
			if (s < 0)
				die("accept");
			close(s);
			break;
		default: /* refused */
			c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&closed, sizeof(closed)) == 0)
				die("connect to a closed port succeeded");
			close(c);
		}
	}
	t1 = now();
	printf("%ld %.3f %.1f\n", n, t1 - t0, n / (t1 - t0));
	return 0;
}
