// SPDX-License-Identifier: Apache-2.0
/*
 * DNS query loop for bench/dns.py: sends A queries for one name to a resolver over a
 * connected UDP socket, one at a time (send, wait for the answer), for N seconds, and
 * prints "<answered> <timeouts>". One in flight keeps the measurement about the cost
 * per query (the probe runs on each packet in the sender's and resolver's context).
 * With RATE, at most RATE queries a second (the i-th is sent no earlier than i / RATE
 * seconds after the start): a load the agent's reader keeps up with on a busy machine.
 *
 *   dns_query_loop SERVER_IP PORT NAME SECONDS [RATE]
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s SERVER_IP PORT NAME SECONDS [RATE]\n", argv[0]);
		return 2;
	}
	double rate = argc == 6 ? atof(argv[5]) : 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	unsigned char q[300];
	size_t n = 12;
	memset(q, 0, sizeof(q));
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	for (char *name = strdup(argv[3]), *l = strtok(name, "."); l; l = strtok(NULL, ".")) {
		size_t len = strlen(l);
		if (len > 63 || n + len + 6 > sizeof(q)) {
			fprintf(stderr, "name too long\n");
			return 2;
		}
		q[n++] = (unsigned char)len;
		memcpy(q + n, l, len);
		n += len;
	}
	q[n++] = 0;
	q[n++] = 0, q[n++] = 1; /* A */
	q[n++] = 0, q[n++] = 1; /* IN */

	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct timeval tv = {.tv_sec = 1};
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("socket");
		return 1;
	}
	double start = now(), end = start + atof(argv[4]);
	unsigned long answered = 0, timeouts = 0, sent = 0;
	uint16_t id = 0;
	unsigned char r[1500];
	while (now() < end) {
		if (rate > 0) {
			double wait = start + sent / rate - now();
			if (wait > 0) {
				struct timespec ts = {.tv_sec = (time_t)wait,
						      .tv_nsec = (long)((wait - (time_t)wait) * 1e9)};
				nanosleep(&ts, NULL);
			}
		}
		sent++;
		id++;
		q[0] = id >> 8, q[1] = id & 0xff;
		if (send(fd, q, n, 0) < 0) {
			perror("send");
			return 1;
		}
		for (;;) {
			ssize_t got = recv(fd, r, sizeof(r), 0);
			if (got < 0) {
				timeouts++;
				break;
			}
			if (got >= 12 && r[0] == q[0] && r[1] == q[1]) {
				answered++;
				break;
			}
		}
	}
	printf("%lu %lu\n", answered, timeouts);
	return 0;
}
