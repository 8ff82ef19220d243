/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of every map value and event that crosses the kernel/userspace
 * boundary. The probes include it; probes/build.rs runs bindgen over it to produce the
 * Rust mirror (with layout tests), so the two sides cannot drift apart.
 *
 * Rules: fixed-width types only, explicit padding, no pointers, no bitfields.
 */
#ifndef SONDE_ABI_H
#define SONDE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SONDE_COMM_LEN 16

/* ---- process family ---------------------------------------------------- */

/* Index into the per-CPU array map `process_counters` (one __u64 per slot). */
enum sonde_process_counter {
	SONDE_PROC_CREATED = 0,      /* new thread-group leaders (fork/clone without CLONE_THREAD) */
	SONDE_PROC_EXEC = 1,         /* successful execve/execveat */
	SONDE_PROC_EXIT_SUCCESS = 2, /* group leader exited with status 0 */
	SONDE_PROC_EXIT_FAILURE = 3, /* group leader exited with status != 0 */
	SONDE_PROC_EXIT_SIGNAL = 4,  /* group leader killed by a signal */
	SONDE_PROC_LOST_RINGBUF = 5, /* exec events that did not fit in `process_events` */
	SONDE_PROC_COUNTER_SLOTS = 6,
};

/* Ring buffer `process_events`: one record per successful exec. */
struct sonde_exec_event {
	__u64 ktime_ns; /* bpf_ktime_get_ns() at the tracepoint */
	__u32 pid;      /* thread-group id of the process after exec */
	__u32 ppid;     /* thread-group id of the real parent */
	char comm[SONDE_COMM_LEN]; /* basename of the executable, as the kernel sets comm */
};

#endif /* SONDE_ABI_H */
