// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Loads the programs of bench/floor.bpf.c whose names start with FAMILY_, attaches them
 * (cgroup_skb ones to CGROUP), prints "attached N" and holds them until SIGTERM or SIGINT.
 * The links die with the process: nothing is pinned.
 *
 *     floor <floor.bpf.o> <family> [cgroup v2 directory]
 */
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	char prefix[64];
	int n = 0, cg = -1;

	if (argc < 3) {
		fprintf(stderr, "usage: floor <floor.bpf.o> <family> [cgroup v2 directory]\n");
		return 2;
	}
	snprintf(prefix, sizeof(prefix), "%s_", argv[2]);
	if (argc > 3 && (cg = open(argv[3], O_RDONLY | O_DIRECTORY)) < 0) {
		perror(argv[3]);
		return 1;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		perror(argv[1]);
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, !strncmp(bpf_program__name(prog), prefix,
							 strlen(prefix)));
	if (bpf_object__load(obj)) {
		fprintf(stderr, "loading %s failed\n", argv[1]);
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		struct bpf_link *link;

		if (!bpf_program__autoload(prog))
			continue;
		if (bpf_program__type(prog) == BPF_PROG_TYPE_CGROUP_SKB) {
			if (cg < 0) {
				fprintf(stderr, "%s needs a cgroup directory\n", bpf_program__name(prog));
				return 1;
			}
			link = bpf_program__attach_cgroup(prog, cg);
		} else {
			link = bpf_program__attach(prog);
		}
		if (!link) {
			fprintf(stderr, "attaching %s failed\n", bpf_program__name(prog));
			return 1;
		}
		n++;
	}
	if (!n) {
		fprintf(stderr, "no program for family %s\n", argv[2]);
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("attached %d\n", n);
	fflush(stdout);
	while (!stop)
		pause();
	return 0;
}
