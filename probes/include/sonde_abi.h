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

/* ---- fileio family ----------------------------------------------------- */

/*
 * Log2 latency histograms: slot 0 holds 0..1 ns, slot i (i >= 1) holds (2^(i-1), 2^i] ns,
 * so slot i's inclusive upper bound is exactly 2^i ns and userspace exports the bounds
 * 2^0 .. 2^(SLOTS-2) ns (in seconds) plus the +Inf bucket, losslessly.
 */
#define SONDE_LOG2_SLOTS 40

/* `direction` in the keys below. */
enum sonde_io_direction {
	SONDE_IO_READ = 0,
	SONDE_IO_WRITE = 1,
};

/*
 * Key of `fileio_stats` (per file system) and `block_stats` (per block device).
 * `dev` is the kernel's dev_t encoding: major << 20 | minor (s_dev of the file's super
 * block, or the request's partition / disk).
 */
struct sonde_io_key {
	__u32 dev;
	__u32 direction;
};

/* Value of `fileio_stats` and `block_stats` (per-CPU: userspace sums the CPUs). */
struct sonde_io_stats {
	__u64 ops;        /* completed operations */
	__u64 bytes;      /* bytes transferred (syscall return value / request bytes) */
	__u64 time_ns;    /* sum of latencies: the histogram's sum, and operation_time */
	__u64 slots[SONDE_LOG2_SLOTS];
};

/* Key of `fileio_procs` and `block_procs`: bytes per process, file system / device and direction. */
struct sonde_io_proc_key {
	__u32 tgid;
	__u32 dev;
	__u32 direction;
	__u32 _pad;
};

/* Value of `fileio_procs` and `block_procs` (per-CPU). */
struct sonde_io_proc_value {
	__u64 bytes;
	__u64 ops;
	char comm[SONDE_COMM_LEN]; /* set on the CPU that created the entry; empty on the others */
};

/* Index into the per-CPU array `fileio_counters` (one __u64 per slot). */
enum sonde_fileio_counter {
	SONDE_FILEIO_LOST_STATS = 0,     /* file ops not counted: `fileio_stats` full */
	SONDE_FILEIO_LOST_PROCS = 1,     /* file ops whose process share was lost: `fileio_procs` full */
	SONDE_BLOCK_LOST_STATS = 2,      /* requests not counted: `block_stats` full */
	SONDE_BLOCK_LOST_PROCS = 3,      /* requests whose process share was lost: `block_procs` full */
	SONDE_BLOCK_LOST_START = 4,      /* requests issued while `block_start` was full (no latency) */
	SONDE_FILEIO_COUNTER_SLOTS = 5,
};

#endif /* SONDE_ABI_H */
