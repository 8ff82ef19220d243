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

/* Value of `fileio_procs` and `block_procs` (shared by all CPUs, atomic adds). */
struct sonde_io_proc_value {
	__u64 bytes;
	__u64 ops;
	char comm[SONDE_COMM_LEN]; /* the process's name when the entry was made */
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

/* ---- tcp family -------------------------------------------------------- */

/* Index into the per-CPU array `tcp_counters` (one __u64 per slot). */
enum sonde_tcp_counter {
	SONDE_TCP_RST_SENT = 0,      /* tcp:tcp_send_reset */
	SONDE_TCP_RST_RECEIVED = 1,  /* tcp:tcp_receive_reset */
	SONDE_TCP_OPENED = 2,        /* connections that reached ESTABLISHED */
	SONDE_TCP_CLOSED = 3,        /* opened connections that reached CLOSE */
	SONDE_TCP_FAILED = 4,        /* SYN_SENT -> CLOSE */
	SONDE_TCP_LOST_RINGBUF = 5,  /* events that did not fit in `tcp_events` */
	SONDE_TCP_LOST_CONNS = 6,    /* connections not tracked: `tcp_conns` full */
	SONDE_TCP_RECLAIMED = 7,     /* entries finished at tcp_destroy_sock: their CLOSE was missed */
	SONDE_TCP_LOST_LISTENERS = 8, /* listeners not recorded: `tcp_listeners` full */
	SONDE_TCP_COUNTER_SLOTS = 9,
};

/*
 * `tcp_states`: per-CPU __s64 deltas of connections per (network type, state) since
 * load, at index family_index * SONDE_TCP_STATE_SLOTS + state (family_index 0 = IPv4,
 * 1 = IPv6; state = the kernel's TCP_* number). Only sockets of the network namespace
 * in `sonde_netns_ino` are counted, the one /proc/net/tcp seeds from.
 */
#define SONDE_TCP_STATE_SLOTS 16

/* `tcp_hists` indexes: log2 histograms of nanoseconds (same slots as the fileio ones). */
enum sonde_tcp_hist_index {
	SONDE_TCP_HIST_RTT_V4 = 0,          /* srtt at close, IPv4 */
	SONDE_TCP_HIST_RTT_V6 = 1,          /* srtt at close, IPv6 */
	SONDE_TCP_HIST_DURATION_IN = 2,     /* ESTABLISHED .. CLOSE, inbound */
	SONDE_TCP_HIST_DURATION_OUT = 3,    /* SYN_SENT .. CLOSE, outbound */
	SONDE_TCP_HIST_SLOTS = 4,
};

struct sonde_tcp_hist {
	__u64 sum_ns;
	__u64 slots[SONDE_LOG2_SLOTS];
};

enum sonde_tcp_direction {
	SONDE_TCP_DIR_UNKNOWN = 0,  /* existed before the probe was loaded */
	SONDE_TCP_DIR_INBOUND = 1,
	SONDE_TCP_DIR_OUTBOUND = 2,
};

/*
 * Value of the hash `tcp_conns`, keyed by the socket's address (__u64). Byte and
 * retransmit totals are the socket's own (tcp_sock bytes_acked, bytes_received,
 * total_retrans) as of the last send/receive/retransmit; base_* are their values when
 * the entry was made (0 for connections seen from their first SYN), so what happened
 * before Sonde is never counted.
 */
struct sonde_tcp_conn {
	__u64 start_ns;         /* bpf_ktime_get_ns() at SYN_SENT / SYN_RECV; 0 if unknown */
	__u64 bytes_acked;
	__u64 bytes_received;
	__u64 base_acked;
	__u64 base_received;
	__u32 total_retrans;
	__u32 base_retrans;
	__u32 tgid;             /* 0 until known */
	__u16 family;           /* AF_INET or AF_INET6 */
	__u16 direction;        /* enum sonde_tcp_direction */
	__u16 lport;            /* host order */
	__u16 rport;            /* host order */
	__u32 opened;           /* 1 once counted as opened */
	__u8 raddr[16];         /* IPv4 in the first 4 bytes */
	char comm[SONDE_COMM_LEN];
};

enum sonde_tcp_event_kind {
	SONDE_TCP_EV_OPEN = 0,
	SONDE_TCP_EV_CLOSE = 1,
	SONDE_TCP_EV_FAIL = 2,
};

/* Ring buffer `tcp_events`: opens, closes (with final totals) and failed connects. */
struct sonde_tcp_event {
	__u64 sk;               /* with conn.start_ns, identifies the connection */
	struct sonde_tcp_conn conn;
	__u32 kind;             /* enum sonde_tcp_event_kind */
	__s32 err;              /* sk_err at a failed connect (positive errno) */
};

/* ---- dns family -------------------------------------------------------- */

/*
 * Bytes of DNS payload copied per packet: the 2-byte TCP length prefix, the 12-byte
 * header and a question with the longest name (255) plus type and class fit, with room
 * to spare. Answers are never copied: latency, rcode and the question are all Sonde reads.
 */
#define SONDE_DNS_CAPTURE 320
/* Ports watched (either end of a UDP datagram or TCP segment). */
#define SONDE_DNS_MAX_PORTS 8

/* Value of the one-entry array `dns_config`, written by userspace at load. */
struct sonde_dns_config {
	__u16 ports[SONDE_DNS_MAX_PORTS]; /* host order; 0 = unused slot */
};

/* Index into the per-CPU array `dns_counters` (one __u64 per slot). */
enum sonde_dns_counter {
	SONDE_DNS_PACKETS = 0,      /* DNS packets copied to `dns_events` */
	SONDE_DNS_LOST_RINGBUF = 1, /* DNS packets that did not fit in `dns_events` */
	SONDE_DNS_COUNTER_SLOTS = 2,
};

enum sonde_dns_direction {
	SONDE_DNS_INGRESS = 0,
	SONDE_DNS_EGRESS = 1,
};

/* Ring buffer `dns_events`: one record per packet to or from a watched port. */
struct sonde_dns_event {
	__u64 ktime_ns;         /* bpf_ktime_get_ns() when the packet passed the hook */
	__u32 tgid;             /* sending thread group (UDP egress only); 0 = unknown */
	__u16 sport;            /* host order */
	__u16 dport;            /* host order */
	__u8 saddr[16];         /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 family;            /* 4 or 6 */
	__u8 protocol;          /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 direction;         /* enum sonde_dns_direction */
	__u8 _pad0;
	__u16 captured;         /* bytes of `data` that hold payload */
	__u16 _pad1;
	char comm[SONDE_COMM_LEN]; /* with tgid */
	__u8 data[SONDE_DNS_CAPTURE]; /* the start of the UDP / TCP payload */
};

#endif /* SONDE_ABI_H */
