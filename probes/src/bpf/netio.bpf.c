// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Network I/O per process and container: bytes that sendmsg / recvmsg calls on TCP and
 * UDP sockets returned, from the raw tracepoints sock_send_length and sock_recv_length
 * (kernel 6.3+). Both fire in the calling task after every call through sock_sendmsg /
 * sock_recvmsg (send, sendto, sendmsg, sendmmsg, write on a socket, and the receive side
 * alike, io_uring included), so the task's cgroup and name are the caller's. Raw, not
 * the classic sock:* events: those build a record of the socket's fields before any
 * program runs (about 60 ns per call here); the raw arguments (struct sock *sk, int ret,
 * int flags) are checked against the kernel BTF's btf_trace_* typedefs before loading.
 *
 * Counted: calls that moved bytes (ret > 0) on AF_INET / AF_INET6 sockets whose protocol
 * is TCP, UDP, UDP-Lite or MPTCP (to the application MPTCP is TCP; its subflows do not
 * pass here, so nothing is counted twice). Not counted: receives with MSG_PEEK (the same
 * bytes are read again), Unix and other socket families, and what the kernel sends on its
 * own (retransmissions, ACKs) or forwards.
 *
 * Bytes are added to a shared hash keyed by (cgroup id, process name): a key per
 * executable per cgroup, not per pid. Two such maps take turns (see sonde_abi.h): the
 * one `netio_gen` names is written, userspace empties the other, so entries never need
 * deleting under the kernel's feet and a map holds one interval's keys. When the map is
 * full, bytes go to unkeyed per-CPU totals and the call is counted as lost attribution,
 * so sums stay exact.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sonde_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136
#define IPPROTO_MPTCP 262
#define MSG_PEEK 2

#define NETIO_BYTES_MAP(name)                                   \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_HASH);                \
		__uint(max_entries, SONDE_NETIO_MAX_KEYS);      \
		__uint(map_flags, BPF_F_NO_PREALLOC);           \
		__type(key, struct sonde_netio_key);            \
		__type(value, struct sonde_netio_value);        \
	} name SEC(".maps")

NETIO_BYTES_MAP(netio_bytes_0);
NETIO_BYTES_MAP(netio_bytes_1);

/* Which of the two maps the programs write: set by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} netio_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_NETIO_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} netio_counters SEC(".maps");

static __always_inline void add_slot(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&netio_counters, &slot);
	if (v)
		*v += n; /* per-CPU slot: no other writer */
}

static __always_inline int on_io(__u64 *ctx, bool rx)
{
	struct sonde_netio_key key = {};
	__u32 zero_idx = 0;
	__u32 *gen;
	void *bytes;
	struct sonde_netio_value *v;
	struct task_struct *task;
	struct sock *sk = (struct sock *)ctx[0];
	int ret = (int)ctx[1], flags = (int)ctx[2];
	__u16 family, proto;

	if (ret <= 0 || (rx && (flags & MSG_PEEK)))
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_UDPLITE &&
	    proto != IPPROTO_MPTCP)
		return 0;

	key.cgroup_id = bpf_get_current_cgroup_id();
	/* The process's name, not the thread's: threads rename themselves (worker pools),
	 * and the series is the executable's. Direct BTF loads (two 8-byte words), no
	 * helper call: comm is always NUL-padded to its 16 bytes. */
	task = bpf_get_current_task_btf();
	__builtin_memcpy(key.comm, task->group_leader->comm, sizeof(key.comm));

	gen = bpf_map_lookup_elem(&netio_gen, &zero_idx);
	bytes = gen && *gen ? (void *)&netio_bytes_1 : (void *)&netio_bytes_0;

	v = bpf_map_lookup_elem(bytes, &key);
	if (!v) {
		struct sonde_netio_value zero = {};

		/* Another CPU may make the entry first: BPF_NOEXIST then fails, the lookup
		 * below finds theirs. */
		bpf_map_update_elem(bytes, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(bytes, &key);
		if (!v) {
			add_slot(rx ? SONDE_NETIO_UNKEYED_RX : SONDE_NETIO_UNKEYED_TX, ret);
			add_slot(SONDE_NETIO_LOST_KEYS, 1);
			return 0;
		}
	}
	if (rx)
		__sync_fetch_and_add(&v->rx_bytes, (__u64)ret);
	else
		__sync_fetch_and_add(&v->tx_bytes, (__u64)ret);
	return 0;
}

SEC("raw_tracepoint/sock_send_length")
int sonde_netio_send(__u64 *ctx)
{
	return on_io(ctx, false);
}

SEC("raw_tracepoint/sock_recv_length")
int sonde_netio_recv(__u64 *ctx)
{
	return on_io(ctx, true);
}
