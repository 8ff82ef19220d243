// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floors of each bench, on the same hooks as Sonde's family (the same kind of
 * attachment: classic tracepoints for fileio, raw tracepoints for tcp, cgroup_skb on the
 * cgroup v2 root for dns):
 *
 * - <family>_*: programs that do nothing. What a workload loses with these attached is what
 *   the kernel charges for calling any program there (the tracepoint's dispatch, the
 *   program's entry and return with this CPU's speculation mitigations), which no probe
 *   on those hooks can go below.
 * - least<family>_*: the least a probe must do to give the family's main metric at all,
 *   and no more: fileio, a latency histogram of the calls (two clock reads, a start time
 *   per CPU, Sonde's exact bucketing, a per-CPU count; no file type, no file system, no
 *   process, and wrong for a call that sleeps and moves CPU); tcp, connection durations
 *   (a hash entry per connection from SYN to CLOSE, a per-CPU histogram; the other
 *   hooks empty); dns, telling DNS packets from the rest (the IP and UDP headers read,
 *   the ports compared, a per-CPU count; nothing recorded).
 *
 * bench/floor.c loads the programs of one prefix and holds them attached until stopped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include "sonde_hist.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PAIR(sys)                                                               \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                              \
	int fileio_enter_##sys(void *ctx)                                       \
	{                                                                       \
		return 0;                                                       \
	}                                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                               \
	int fileio_exit_##sys(void *ctx)                                        \
	{                                                                       \
		return 0;                                                       \
	}

/* receiver/src/family/fileio/probe.rs: the six read/write pairs. */
PAIR(read)
PAIR(write)
PAIR(pread64)
PAIR(pwrite64)
PAIR(readv)
PAIR(writev)

/* An empty program named <prefix>_<tp> on the raw tracepoint tp. */
#define RAW(prefix, tp)                                                         \
	SEC("raw_tracepoint/" #tp)                                              \
	int prefix##_##tp(void *ctx)                                            \
	{                                                                       \
		return 0;                                                       \
	}

/* receiver/src/family/tcp/probe.rs: every hook of the tcp family. */
RAW(tcp, inet_sock_set_state)
RAW(tcp, tcp_destroy_sock)
RAW(tcp, sock_send_length)
RAW(tcp, sock_recv_length)
RAW(tcp, tcp_retransmit_skb)
RAW(tcp, tcp_send_reset)
RAW(tcp, tcp_receive_reset)

/* receiver/src/family/dns/probe.rs: one program each way on the cgroup v2 root; 1 lets
 * the packet through. */
SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	return 1;
}

/* ---- least ------------------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} least_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_HIST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} least_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} least_conns SEC(".maps");

static __always_inline void least_count(__u64 ns)
{
	__u32 slot = sonde_hist_slot(ns);
	__u64 *n = bpf_map_lookup_elem(&least_hist, &slot);

	if (n)
		*n += 1;
}

#define LEAST_PAIR(sys)                                                         \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                              \
	int leastfileio_enter_##sys(void *ctx)                                  \
	{                                                                       \
		__u32 zero = 0;                                                 \
		__u64 *start = bpf_map_lookup_elem(&least_start, &zero);        \
		if (start)                                                      \
			*start = bpf_ktime_get_ns();                            \
		return 0;                                                       \
	}                                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                               \
	int leastfileio_exit_##sys(void *ctx)                                   \
	{                                                                       \
		__u32 zero = 0;                                                 \
		__u64 *start = bpf_map_lookup_elem(&least_start, &zero);        \
		if (!start || !*start)                                          \
			return 0;                                               \
		least_count(bpf_ktime_get_ns() - *start);                       \
		*start = 0;                                                     \
		return 0;                                                       \
	}

LEAST_PAIR(read)
LEAST_PAIR(write)
LEAST_PAIR(pread64)
LEAST_PAIR(pwrite64)
LEAST_PAIR(readv)
LEAST_PAIR(writev)

/* args: (const struct sock *sk, int oldstate, int newstate). */
SEC("raw_tracepoint/inet_sock_set_state")
int leasttcp_state(__u64 *ctx)
{
	__u64 sk = ctx[0], now, *start;
	int new = (int)ctx[2];

	if (new == TCP_SYN_SENT || new == TCP_SYN_RECV) {
		now = bpf_ktime_get_ns();
		bpf_map_update_elem(&least_conns, &sk, &now, BPF_ANY);
	} else if (new == TCP_CLOSE) {
		start = bpf_map_lookup_elem(&least_conns, &sk);
		if (start) {
			least_count(bpf_ktime_get_ns() - *start);
			bpf_map_delete_elem(&least_conns, &sk);
		}
	}
	return 0;
}

RAW(leasttcp, tcp_destroy_sock)
RAW(leasttcp, sock_send_length)
RAW(leasttcp, sock_recv_length)
RAW(leasttcp, tcp_retransmit_skb)
RAW(leasttcp, tcp_send_reset)
RAW(leasttcp, tcp_receive_reset)

/* Whether the packet is UDP to or from port 53 (IPv4 or IPv6 without extension headers):
 * counted per CPU. */
static __always_inline int least_dns(struct __sk_buff *skb)
{
	__u8 vhl, proto;
	__u16 ports[2];
	__u32 off, zero = 0;
	__u64 *n;

	if (bpf_skb_load_bytes(skb, 0, &vhl, 1))
		return 1;
	if (vhl >> 4 == 4) {
		if (bpf_skb_load_bytes(skb, 9, &proto, 1))
			return 1;
		off = (vhl & 0xf) * 4;
	} else if (vhl >> 4 == 6) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return 1;
		off = 40;
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP || bpf_skb_load_bytes(skb, off, ports, 4))
		return 1;
	if (ports[0] == __builtin_bswap16(53) || ports[1] == __builtin_bswap16(53)) {
		n = bpf_map_lookup_elem(&least_start, &zero);
		if (n)
			*n += 1;
	}
	return 1;
}

SEC("cgroup_skb/ingress")
int leastdns_ingress(struct __sk_buff *skb)
{
	return least_dns(skb);
}

SEC("cgroup_skb/egress")
int leastdns_egress(struct __sk_buff *skb)
{
	return least_dns(skb);
}
