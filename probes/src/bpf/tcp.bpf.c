// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP: connection lifecycle, bytes, retransmits, RTT and resets, from tracepoints only.
 *
 *   inet_sock_set_state (raw)  every state change: connections per state (per-CPU deltas),
 *                              opens, closes and failed connects (ring buffer, low rate),
 *                              duration and srtt-at-close histograms (per-CPU, in the
 *                              kernel, on the grid of sonde_hist.h)
 *   tcp_destroy_sock (raw)     reclaims the entry of a socket whose CLOSE was not seen
 *   sock_send_length /         refresh the connection's own byte totals (tcp_sock
 *   sock_recv_length (raw)     bytes_acked / bytes_received, srtt) so userspace counts
 *                              traffic and samples the RTT of open connections every interval
 *   tcp_retransmit_skb (raw)   refresh the connection's total_retrans
 *   tcp_send_reset /           per-CPU counters
 *   tcp_receive_reset (raw)
 *
 * No syscall tracepoint: attaching any one (sys_exit_listen was one) puts every task on
 * the host on the slow system call path, for every call, while it is attached (+35-40 ns
 * per getpid here). A listener whose port listen(2) picks itself is resolved lazily
 * instead (tcp_pending_listeners).
 *
 * Every program is a raw tracepoint: the kernel skips a classic tracepoint program
 * whenever any BPF program is already running on the CPU (the shared bpf_prog_active
 * guard, e.g. a softirq arriving during a file I/O program), but a raw tracepoint program
 * only when that same program is already running there, and a classic tracepoint builds a
 * record of its fields before any program runs (about 60 ns per hit here). A raw
 * tracepoint's arguments are not relocated by CO-RE: userspace checks their types against
 * the kernel BTF's btf_trace_* typedef before loading. Every skip is counted by the kernel
 * (recursion_misses) and exported by userspace.
 *
 * Bytes and retransmits are the socket's own cumulative counters read with CO-RE, never
 * sums of tracepoint arguments, so the totals at close are exactly the kernel's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sonde_abi.h"
#include "sonde_hist.h"
#include "sonde_ring.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Inode of the network namespace whose sockets `tcp_states` counts (0: all); set by
 * userspace before load to its own, the namespace /proc/net/tcp seeds the count from. */
const volatile __u32 sonde_netns_ino = 0;

/* That namespace's `struct net`, once a socket has shown it: its address is fixed for
 * its life, and Sonde's own namespace outlives Sonde, so every later transition compares
 * one pointer instead of following it to the inode (a read saved per transition). */
__u64 sonde_netns_net = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_TCP_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} tcp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * SONDE_TCP_STATE_SLOTS);
	__type(key, __u32);
	__type(value, __s64);
} tcp_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_TCP_HIST_SLOTS);
	__type(key, __u32);
	__type(value, struct sonde_tcp_hist);
} tcp_hists SEC(".maps");

/* Sparse (a host holds far fewer live connections than this), so not preallocated: the
 * map pins memory for the connections it holds, not for the 65 536 it could. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct sonde_tcp_conn);
} tcp_conns SEC(".maps");

/*
 * Listening sockets' owners: inbound connections are established in softirq context,
 * where the current task is not the server. Keyed by network namespace, family, port and
 * bound address, so a listener on the same port in another namespace (a container) or on
 * another address cannot take over the attribution. An SO_REUSEPORT group shares one key:
 * the first listener's process owns it, `refs` counts the group's listeners and the entry
 * goes when the last one closes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sonde_tcp_listener_key);
	__type(value, struct sonde_tcp_listener);
} tcp_listeners SEC(".maps");

/*
 * A socket that listens without bind(2) gets its port (autobind) only after the LISTEN
 * transition, which still reads port 0, and no later transition or tracepoint passes
 * that socket in listen(2). So the transition parks the socket and its owner in a slot
 * here, and the first inbound connection that finds no listener looks through the slots,
 * reads each parked socket's port (bound by then) and records the one it belongs to in
 * `tcp_listeners`. Keyed by slot number so a program can visit every entry with a bounded
 * loop (bpf_for_each_map_elem needs Linux 5.13); BPF_NOEXIST claims a slot atomically.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_TCP_PENDING_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sonde_tcp_pending_listener);
} tcp_pending_listeners SEC(".maps");

/* Entries in `tcp_pending_listeners` (added after a slot is claimed, taken off after one
 * is deleted): while it is 0, as on almost every host, a connection whose listener is
 * unknown (one older than Sonde) costs one load, not a look at every slot. */
__s64 sonde_tcp_pending = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} tcp_events SEC(".maps");

/*
 * Room for a connection record off the 512-byte BPF stack, one slot per use. Programs
 * run with preemption off, and a raw tracepoint program never nests in itself on a CPU,
 * but a different program can run in an interrupt on top of one: each program has slots
 * of its own.
 */
enum scratch_slot {
	SCRATCH_STATE_NEW = 0,     /* sonde_tcp_state: a connection's first entry */
	SCRATCH_ADOPT = 1,         /* send and receive programs: an adopted connection (process
				    * context, preemption off: they never interrupt each other) */
	SCRATCH_SLOTS = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct sonde_tcp_conn);
} tcp_scratch SEC(".maps");

/* A zeroed connection record in this CPU's `slot`. */
static __always_inline struct sonde_tcp_conn *scratch(__u32 slot)
{
	struct sonde_tcp_conn *c = bpf_map_lookup_elem(&tcp_scratch, &slot);

	if (c)
		__builtin_memset(c, 0, sizeof(*c));
	return c;
}

/* A wake-up per quarter of the ring (sonde_ring.h): room left while the reader wakes. */
#define RING_WAKE_BYTES (128 * 1024)

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_counters, &slot);
	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

static __always_inline void hist_add(__u32 idx, __u64 ns)
{
	struct sonde_tcp_hist *h = bpf_map_lookup_elem(&tcp_hists, &idx);
	__u64 slot = sonde_hist_slot(ns);

	if (!h)
		return;
	h->sum_ns += ns;
	if (slot < SONDE_HIST_SLOTS)
		h->slots[slot] += 1;
}

static __always_inline void state_add(__u16 family, int state, __s64 d)
{
	__u32 idx;
	__s64 *v;

	if (state <= 0 || state >= SONDE_TCP_STATE_SLOTS)
		return;
	idx = (family == AF_INET6 ? SONDE_TCP_STATE_SLOTS : 0) + (__u32)state;
	v = bpf_map_lookup_elem(&tcp_states, &idx);
	if (v)
		*v += d;
}

/*
 * Payload totals from the socket's own counters. The kernel counts sequence space, so
 * bytes_acked includes our SYN (active opens) and our FIN once acked, and bytes_received
 * includes the peer's FIN; those are taken off so the totals are the bytes the
 * applications wrote. sk_state is still the old state inside inet_sock_set_state.
 */
#define TCPHDR_FIN 0x01

/*
 * The head of the socket's sock_common (addresses, ports, family, state, namespace,
 * flags), read with one helper call per program run: a bpf_probe_read_kernel costs about
 * 25 ns whatever its size, and the state program used to make three to six of them per
 * transition for these fields alone. Fields are taken at their CO-RE offsets; one that
 * some kernel places past SKC_BYTES is read on its own instead (the offset is a constant
 * once relocated, so the verifier sees only the branch that applies).
 */
#define SKC_BYTES 104

struct skc {
	__u64 w[SKC_BYTES / 8];
};

static __always_inline void skc_load(struct sock *sk, struct skc *h)
{
	bpf_probe_read_kernel(h, sizeof(*h), __builtin_preserve_access_index(&sk->__sk_common));
}

#define SKC_FITS(field)                                                                    \
	(bpf_core_field_offset(struct sock_common, field) +                                \
		 bpf_core_field_size(struct sock_common, field) <=                         \
	 SKC_BYTES)
#define SKC_AT(h, field, type)                                                             \
	(*(type *)((void *)(h) + bpf_core_field_offset(struct sock_common, field)))
/* A scalar field of sock_common, from `h` (read from `sk`). */
#define SKC(h, sk, field, type)                                                            \
	(SKC_FITS(field) ? SKC_AT(h, field, type) : (type)BPF_CORE_READ(sk, __sk_common.field))

/* An address field of sock_common (4 or 16 bytes) into `dst`. */
#define SKC_ADDR(dst, h, sk, field, len)                                                   \
	do {                                                                               \
		if (SKC_FITS(field))                                                       \
			__builtin_memcpy(dst, (void *)(h) +                                \
					 bpf_core_field_offset(struct sock_common, field), \
					 len);                                             \
		else                                                                       \
			bpf_core_read(dst, len, &sk->__sk_common.field);                   \
	} while (0)

/*
 * Whether the peer's FIN is in bytes_received. tcp_data_queue advances rcv_nxt (and
 * bytes_received) past the FIN a few instructions before tcp_fin sets SOCK_DONE, and a
 * send/recv tracepoint on another CPU can read in between: that read would count the FIN
 * as a payload byte, and the never-backwards rule below would keep it. In that window
 * the FIN-carrying skb is the tail of the receive queue (the reader cannot dequeue it
 * before tcp_fin runs: both hold the socket's lock), so look there too. Read after
 * bytes_received, so a FIN counted there is seen here.
 */
static __always_inline int peer_fin_received(struct sock *sk, unsigned long flags)
{
	struct sk_buff *tail;
	struct tcp_skb_cb *cb;

	if (flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
		return 1;
	tail = BPF_CORE_READ(sk, sk_receive_queue.prev);
	if (!tail || (void *)tail == (void *)__builtin_preserve_access_index(&sk->sk_receive_queue))
		return 0;
	cb = (struct tcp_skb_cb *)__builtin_preserve_access_index(&tail->cb[0]);
	return (BPF_CORE_READ(cb, tcp_flags) & TCPHDR_FIN) != 0;
}

/*
 * The tcp_sock fields read_totals needs but total_retrans (write_seq, snd_una, srtt_us,
 * bytes_received, bytes_acked), in one read when they lie within TPW_BYTES of each other
 * (Linux 6.8+ groups them by cache line: 256 bytes from write_seq to bytes_acked), else
 * one read each. The bounds are CO-RE constants, so the verifier sees one branch. The
 * window lives in a per-CPU array, a slot per program (a raw tracepoint program never
 * nests in itself on a CPU, but another one can run in an interrupt on top of it).
 */
#define TPW_BYTES 256

enum window_slot {
	WINDOW_STATE = 0,
	WINDOW_DESTROY = 1,
	WINDOW_SEND = 2,
	WINDOW_RECV = 3,
	WINDOW_RETRANSMIT = 4,
	WINDOW_SLOTS = 5,
};

struct tcp_window {
	__u8 b[TPW_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WINDOW_SLOTS);
	__type(key, __u32);
	__type(value, struct tcp_window);
} tcp_windows SEC(".maps");

#define TP_OFF(f) bpf_core_field_offset(struct tcp_sock, f)
#define TP_END(f) (TP_OFF(f) + bpf_core_field_size(struct tcp_sock, f))
#define MIN2(a, b) ((a) < (b) ? (a) : (b))
#define MAX2(a, b) ((a) > (b) ? (a) : (b))
#define TPW_LO                                                                             \
	MIN2(MIN2(TP_OFF(write_seq), TP_OFF(snd_una)),                                     \
	     MIN2(TP_OFF(srtt_us), MIN2(TP_OFF(bytes_received), TP_OFF(bytes_acked))))
#define TPW_HI                                                                             \
	MAX2(MAX2(TP_END(write_seq), TP_END(snd_una)),                                     \
	     MAX2(TP_END(srtt_us), MAX2(TP_END(bytes_received), TP_END(bytes_acked))))
#define TPW_AT(w, lo, f, type) (*(type *)((void *)(w) + TP_OFF(f) - (lo)))

struct tp_fields {
	__u64 acked, received;
	__u32 snd_una, write_seq, srtt_us;
};

static __always_inline void read_tp_fields(struct tcp_sock *tp, __u32 slot, struct tp_fields *f)
{
	__u32 lo = TPW_LO, hi = TPW_HI;
	struct tcp_window *w = bpf_map_lookup_elem(&tcp_windows, &slot);

	if (w && hi - lo <= TPW_BYTES) {
		/* On a failed read the helper zeroes the window: totals of 0, as the
		 * one-field reads give. */
		bpf_probe_read_kernel(w, hi - lo, (void *)tp + lo);
		f->acked = TPW_AT(w, lo, bytes_acked, __u64);
		f->received = TPW_AT(w, lo, bytes_received, __u64);
		f->snd_una = TPW_AT(w, lo, snd_una, __u32);
		f->write_seq = TPW_AT(w, lo, write_seq, __u32);
		f->srtt_us = TPW_AT(w, lo, srtt_us, __u32);
		return;
	}
	f->acked = BPF_CORE_READ(tp, bytes_acked);
	f->received = BPF_CORE_READ(tp, bytes_received);
	f->snd_una = BPF_CORE_READ(tp, snd_una);
	f->write_seq = BPF_CORE_READ(tp, write_seq);
	f->srtt_us = BPF_CORE_READ(tp, srtt_us);
}

/* `state`: the socket's sk_state, which the state-change program has as an argument;
 * `slot`: the calling program's window (enum window_slot). */
static __always_inline void read_totals(struct sock *sk, struct sonde_tcp_conn *c, int state,
					__u32 slot)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct tp_fields f;
	__u64 acked, received;
	unsigned long flags;

	read_tp_fields(tp, slot, &f);
	acked = f.acked;
	received = f.received;

	if (c->direction == SONDE_TCP_DIR_OUTBOUND && acked > 0)
		acked -= 1; /* our SYN */
	if ((state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING ||
	     state == TCP_LAST_ACK) &&
	    f.snd_una == f.write_seq && acked > 0)
		acked -= 1; /* our FIN, sent and acked */
	/* Never backwards: a FIN acked after the last read would otherwise show as -1. */
	if (acked > c->bytes_acked)
		c->bytes_acked = acked;
	/* Nothing received since the last read (a send, most often): taking the peer's FIN
	 * off could only lower it, and it never goes back, so the two reads the FIN check
	 * takes are skipped. */
	if (received > c->bytes_received) {
		/* sk_flags, read here and not taken from the sock_common head read before: it
		 * must follow bytes_received (peer_fin_received). */
		flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
		if (peer_fin_received(sk, flags))
			received -= 1; /* the peer's FIN */
		if (received > c->bytes_received)
			c->bytes_received = received;
	}
	c->total_retrans = BPF_CORE_READ(tp, total_retrans);
	/* The kernel keeps srtt << 3 in microseconds. Userspace samples it every interval
	 * from the map, so a long-lived connection shows its RTT while it lives. */
	c->srtt_us = f.srtt_us >> 3;
}

/* The peer's address and port, once the kernel has set them (from ESTABLISHED on for a
 * server-side child, from connect(2) on for a client). */
static __always_inline void read_peer(struct sock *sk, struct skc *h, __u16 family,
				      struct sonde_tcp_conn *c)
{
	c->rport = __builtin_bswap16(SKC(h, sk, skc_dport, __u16));
	if (family == AF_INET6)
		SKC_ADDR(c->raddr, h, sk, skc_v6_daddr, 16);
	else
		SKC_ADDR(c->raddr, h, sk, skc_daddr, 4);
}

/*
 * The sk_prot pointers of TCP sockets seen so far (tcp_prot, tcpv6_prot): a socket whose
 * sk_prot is one of them is TCP without reading sk_protocol, which lies far from the
 * sock_common head (a helper call saved per transition). Anything else is checked by
 * sk_protocol and, if TCP, fills a free slot; a third TCP proto (sockmap, kTLS swap in
 * their own) is simply always checked.
 */
__u64 sonde_tcp_prots[2] = {};

static __always_inline int is_tcp(struct sock *sk, struct skc *h)
{
	__u64 prot = SKC(h, sk, skc_prot, __u64);

	if (prot && (prot == sonde_tcp_prots[0] || prot == sonde_tcp_prots[1]))
		return 1;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (!sonde_tcp_prots[0])
		sonde_tcp_prots[0] = prot;
	else if (!sonde_tcp_prots[1] && prot != sonde_tcp_prots[0])
		sonde_tcp_prots[1] = prot;
	return 1;
}

/* A connection first seen after it was set up (it predates the probe): attributed to the
 * current task, which is the one sending or receiving; what it did before is baseline. */
static __always_inline struct sonde_tcp_conn *conn_adopt(struct sock *sk, struct skc *h, __u64 key,
							  __u32 slot)
{
	struct sonde_tcp_conn *c;
	__u16 family = SKC(h, sk, skc_family, __u16);
	int state;

	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (!is_tcp(sk, h))
		return 0;
	/* Only a connection that is up: a socket in CLOSE (read after a reset), LISTEN or a
	 * SYN state would make an entry no later transition removes. */
	state = SKC(h, sk, skc_state, __u8);
	if (state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_FIN_WAIT2 &&
	    state != TCP_CLOSE_WAIT && state != TCP_CLOSING && state != TCP_LAST_ACK)
		return 0;
	c = scratch(SCRATCH_ADOPT);
	if (!c)
		return 0;
	c->family = family;
	c->direction = SONDE_TCP_DIR_UNKNOWN;
	c->lport = SKC(h, sk, skc_num, __u16);
	read_peer(sk, h, family, c);
	c->tgid = bpf_get_current_pid_tgid() >> 32;
	c->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	read_totals(sk, c, state, slot);
	c->base_acked = c->bytes_acked;
	c->base_received = c->bytes_received;
	c->base_retrans = c->total_retrans;
	if (bpf_map_update_elem(&tcp_conns, &key, c, BPF_NOEXIST)) {
		bump(SONDE_TCP_LOST_CONNS);
		return 0;
	}
	return bpf_map_lookup_elem(&tcp_conns, &key);
}

/* Whether the socket is in the namespace `tcp_states` counts (see sonde_netns_net). */
static __always_inline int in_counted_netns(struct sock *sk, struct skc *h)
{
	__u64 net;

	if (!sonde_netns_ino)
		return 1;
	net = SKC(h, sk, skc_net.net, __u64);
	if (sonde_netns_net)
		return net == sonde_netns_net;
	if (BPF_CORE_READ((struct net *)net, ns.inum) != sonde_netns_ino)
		return 0;
	sonde_netns_net = net;
	return 1;
}

/* The socket's network namespace, local port and bound local address: with the family,
 * a listener's key. A new server-side child at its first transition carries its
 * listener's port; its local address is the listener's on older kernels and already its
 * own on newer ones (6.x set it before the transition), so a child that finds no listener
 * under its address looks for a wildcard one. */
static __always_inline void listener_key_of(struct sock *sk, struct skc *h, __u16 family,
					    struct sonde_tcp_listener_key *k)
{
	struct net *net = (struct net *)SKC(h, sk, skc_net.net, __u64);

	k->netns = BPF_CORE_READ(net, ns.inum);
	k->family = family;
	/* inet_sport, not skc_num: at the CLOSE transition the kernel has already released
	 * an ephemeral port (inet_num = 0), but the socket still carries it here. */
	k->port = __builtin_bswap16(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (family == AF_INET6)
		SKC_ADDR(k->addr, h, sk, skc_v6_rcv_saddr, 16);
	else
		/* Four bytes exactly: the rest stays 0. */
		SKC_ADDR(k->addr, h, sk, skc_rcv_saddr, 4);
}

/* listen(2) runs in process context, so the current task owns the listener. */
static __always_inline void owner_current(struct sonde_tcp_listener *o)
{
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->refs = 1;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void listener_insert(struct sonde_tcp_listener_key *k,
					    struct sonde_tcp_listener *o)
{
	struct sonde_tcp_listener *cur = bpf_map_lookup_elem(&tcp_listeners, k);

	if (cur) {
		__sync_fetch_and_add(&cur->refs, 1); /* another member of a reuseport group */
		return;
	}
	if (!bpf_map_update_elem(&tcp_listeners, k, o, BPF_NOEXIST))
		return;
	cur = bpf_map_lookup_elem(&tcp_listeners, k); /* made meanwhile on another CPU */
	if (cur)
		__sync_fetch_and_add(&cur->refs, 1);
	else
		bump(SONDE_TCP_LOST_LISTENERS);
}

static __always_inline void listener_open(struct sock *sk, struct skc *h, __u16 family)
{
	struct sonde_tcp_listener_key k = {};
	struct sonde_tcp_listener o = {};

	listener_key_of(sk, h, family, &k);
	owner_current(&o);
	listener_insert(&k, &o);
}

/*
 * The three functions over the parked listeners loop over every slot. They are global
 * (not static) functions, which the verifier checks once on their own: inlined into the
 * state program, the loops' branches multiplied with the program's own past the
 * verifier's limit. Their arguments are scalars, as global functions need.
 */

/* LISTEN with port 0 (listen(2) without bind(2)): park the socket and its owner. */
__attribute__((noinline)) int sonde_tcp_park(__u64 sk)
{
	struct sonde_tcp_pending_listener p = {.sk = sk};
	__u32 i;

	owner_current(&p.owner);
	/* The key is a copy of the counter: a counter passed by address is a stack slot
	 * the verifier does not track, and it took the loop for an infinite one. */
	for (i = 0; i < SONDE_TCP_PENDING_SLOTS; i++) {
		__u32 slot = i;

		if (!bpf_map_update_elem(&tcp_pending_listeners, &slot, &p, BPF_NOEXIST)) {
			__sync_fetch_and_add(&sonde_tcp_pending, 1);
			return 0;
		}
	}
	bump(SONDE_TCP_LOST_LISTENERS);
	return 0;
}

static __always_inline void pending_take(__u32 i)
{
	/* Only the CPU whose delete succeeds counts it: two may race for one slot. */
	if (!bpf_map_delete_elem(&tcp_pending_listeners, &i))
		__sync_fetch_and_add(&sonde_tcp_pending, -1);
}

/* A listener closing: its parked entry, if it never got a connection, goes too. */
__attribute__((noinline)) int sonde_tcp_unpark(__u64 sk)
{
	struct sonde_tcp_pending_listener *p;
	__u32 i;

	for (i = 0; i < SONDE_TCP_PENDING_SLOTS; i++) {
		__u32 slot = i;

		p = bpf_map_lookup_elem(&tcp_pending_listeners, &slot);
		if (p && p->sk == sk) {
			pending_take(slot);
			return 0;
		}
	}
	return 0;
}

/*
 * A new server-side child found no listener under its wildcard key (network namespace,
 * family, port): record the parked listener it belongs to, whose port the kernel has
 * bound by now, under that key (an autobound listener is always on the wildcard address),
 * and return 1. Only a parked socket listening, in the child's namespace, family and
 * port, matches.
 */
__attribute__((noinline)) int sonde_tcp_unpark_for(__u32 netns, __u32 family, __u32 port)
{
	struct sonde_tcp_pending_listener *p;
	struct sonde_tcp_listener_key k;
	struct skc h;
	struct sock *psk;
	__u32 i;

	for (i = 0; i < SONDE_TCP_PENDING_SLOTS; i++) {
		__u32 slot = i;

		p = bpf_map_lookup_elem(&tcp_pending_listeners, &slot);
		if (!p)
			continue;
		psk = (struct sock *)p->sk;
		skc_load(psk, &h);
		/* Not dropped when not listening: a socket parked a moment ago still reads
		 * its old state (the transition runs before the store). Its close unparks it. */
		if (SKC(&h, psk, skc_state, __u8) != TCP_LISTEN ||
		    SKC(&h, psk, skc_family, __u16) != family)
			continue;
		if (__builtin_bswap16(BPF_CORE_READ((struct inet_sock *)psk, inet_sport)) != port)
			continue;
		__builtin_memset(&k, 0, sizeof(k));
		listener_key_of(psk, &h, family, &k);
		if (k.netns != netns)
			continue;
		listener_insert(&k, &p->owner);
		pending_take(slot);
		return 1;
	}
	return 0;
}

static __always_inline void listener_close(struct sock *sk, struct skc *h, __u16 family)
{
	struct sonde_tcp_listener_key k = {};
	struct sonde_tcp_listener *cur;

	listener_key_of(sk, h, family, &k);
	cur = bpf_map_lookup_elem(&tcp_listeners, &k);
	if (!cur)
		return;
	/* No fetching atomics (they need Linux 5.12): add, then read. Two members closing at
	 * once both read 0 and both delete, which is harmless. */
	__sync_fetch_and_add(&cur->refs, -1);
	if ((__s32)cur->refs <= 0)
		bpf_map_delete_elem(&tcp_listeners, &k);
}

/* The connection's last transition (CLOSE) or, if that was missed, its destruction:
 * final totals, histograms, and the close or failure event. The entry is deleted before
 * the event is emitted: once userspace has the event, the entry must be gone from its
 * walk of live connections, or its bytes would count twice. `old`: the state it leaves
 * (a SYN_SENT that never opened is a failed connect); `state`: its sk_state now. */
static __always_inline void conn_finish(struct sock *sk, __u64 key, struct sonde_tcp_conn *c,
					int old, int state, __u32 slot)
{
	struct sonde_tcp_event *e;
	__u64 now = bpf_ktime_get_ns(), start;
	__u32 opened, srtt_us;
	__u16 direction, family;
	int failed;

	read_totals(sk, c, state, slot);
	/* What the histograms need, kept: the entry's memory may be reused once deleted. */
	opened = c->opened;
	direction = c->direction;
	family = c->family;
	start = c->start_ns;
	srtt_us = c->srtt_us;
	failed = old == TCP_SYN_SENT && !opened;
	/* The record is written straight into the ring and committed after the delete. */
	e = bpf_ringbuf_reserve(&tcp_events, sizeof(*e), 0);
	if (e)
		__builtin_memcpy(&e->conn, c, sizeof(*c));
	if (bpf_map_delete_elem(&tcp_conns, &key)) {
		/* Another CPU finished it first. */
		if (e)
			bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return;
	}
	if (failed) {
		bump(SONDE_TCP_FAILED);
	} else {
		if (opened) {
			bump(SONDE_TCP_CLOSED);
			hist_add(direction == SONDE_TCP_DIR_INBOUND ? SONDE_TCP_HIST_DURATION_IN :
								      SONDE_TCP_HIST_DURATION_OUT,
				 now - start);
		}
		if ((opened || direction == SONDE_TCP_DIR_UNKNOWN) && srtt_us)
			hist_add(family == AF_INET6 ? SONDE_TCP_HIST_RTT_V6 : SONDE_TCP_HIST_RTT_V4,
				 (__u64)srtt_us * 1000);
	}
	if (!e) {
		bump(SONDE_TCP_LOST_RINGBUF);
		return;
	}
	e->sk = key;
	e->kind = failed ? SONDE_TCP_EV_FAIL : SONDE_TCP_EV_CLOSE;
	/* sk_err says how it ended: the connect's error for a failure, ECONNRESET when the
	 * peer reset the connection (worth a span). */
	e->err = BPF_CORE_READ(sk, sk_err);
	e->end_ns = now;
	/* Under connection churn a wake-up per event costs more than the event; userspace
	 * also drains on a short timer. */
	sonde_ring_submit(&tcp_events, e, sizeof(*e), RING_WAKE_BYTES);
}

/*
 * args: (const struct sock *sk, int oldstate, int newstate). Called before the new state
 * is stored, so sk_state still reads the old one.
 */
SEC("raw_tracepoint/inet_sock_set_state")
int sonde_tcp_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	__u64 key = ctx[0];
	int old = (int)ctx[1], new = (int)ctx[2];
	struct sonde_tcp_conn *c;
	struct skc h;
	__u16 family;

	skc_load(sk, &h);
	if (!is_tcp(sk, &h))
		return 0;
	family = SKC(&h, sk, skc_family, __u16);
	if (family != AF_INET && family != AF_INET6)
		return 0;

	if (in_counted_netns(sk, &h)) {
		/* A new server-side child is cloned from its listener, so its first
		 * transition reads LISTEN -> SYN_RECV: the listener is still listening. */
		if (!(old == TCP_LISTEN && new == TCP_SYN_RECV))
			state_add(family, old, -1);
		state_add(family, new, 1);
	}

	if (new == TCP_LISTEN) {
		/* listen(2) without bind(2): the port is picked right after this transition. */
		if (!BPF_CORE_READ((struct inet_sock *)sk, inet_sport)) {
			sonde_tcp_park(key);
			return 0;
		}
		listener_open(sk, &h, family);
		return 0;
	}
	if (old == TCP_LISTEN && new == TCP_CLOSE) {
		if (sonde_tcp_pending > 0)
			sonde_tcp_unpark(key);
		listener_close(sk, &h, family);
		return 0;
	}

	if (new == TCP_SYN_SENT || new == TCP_SYN_RECV) {
		struct sonde_tcp_conn *n = scratch(SCRATCH_STATE_NEW);

		if (!n) {
			bump(SONDE_TCP_LOST_CONNS);
			return 0;
		}
		n->start_ns = bpf_ktime_get_ns();
		n->family = family;
		n->lport = SKC(&h, sk, skc_num, __u16);
		if (new == TCP_SYN_SENT) {
			/* connect(2): process context. */
			n->direction = SONDE_TCP_DIR_OUTBOUND;
			n->tgid = bpf_get_current_pid_tgid() >> 32;
			n->cgroup_id = bpf_get_current_cgroup_id();
			bpf_get_current_comm(n->comm, sizeof(n->comm));
			read_peer(sk, &h, family, n);
		} else {
			struct sonde_tcp_listener_key lk = {};
			struct sonde_tcp_listener *o;

			listener_key_of(sk, &h, family, &lk);
			o = bpf_map_lookup_elem(&tcp_listeners, &lk);
			if (!o) {
				/* A wildcard listener (0.0.0.0, ::): the child may already carry its
				 * own local address here (kernels that set it before this transition). */
				__builtin_memset(lk.addr, 0, sizeof(lk.addr));
				o = bpf_map_lookup_elem(&tcp_listeners, &lk);
			}
			/* A parked listener (listen(2) without bind(2)) is on the wildcard
			 * address. While none is parked this costs one load. */
			if (!o && sonde_tcp_pending > 0 &&
			    sonde_tcp_unpark_for(lk.netns, lk.family, lk.port))
				o = bpf_map_lookup_elem(&tcp_listeners, &lk);
			n->direction = SONDE_TCP_DIR_INBOUND;
			if (o) {
				/* softirq: the listener's owner, recorded at listen(2). */
				n->tgid = o->tgid;
				n->cgroup_id = o->cgroup_id;
				__builtin_memcpy(n->comm, o->comm, sizeof(n->comm));
			}
		}
		/* ANY: a socket's memory is reused at once, so an entry left under this
		 * address (its destruction missed) belongs to a dead socket. */
		if (bpf_map_update_elem(&tcp_conns, &key, n, BPF_ANY))
			bump(SONDE_TCP_LOST_CONNS);
		return 0;
	}

	/* The other transitions (FIN_WAIT1, CLOSE_WAIT...) change nothing in the entry. */
	if (new == TCP_ESTABLISHED) {
		c = bpf_map_lookup_elem(&tcp_conns, &key);
		if (!c || c->opened)
			return 0;
		c->opened = 1;
		/* A client's port is chosen after its SYN_SENT transition. */
		c->lport = SKC(&h, sk, skc_num, __u16);
		read_peer(sk, &h, family, c);
		/* No record: userspace counts the open when its walk finds the entry
		 * established, or at the close (half the ring traffic under churn). */
		bump(SONDE_TCP_OPENED);
		return 0;
	}
	if (new == TCP_CLOSE) {
		c = bpf_map_lookup_elem(&tcp_conns, &key);
		/* sk_state still reads `old` here. */
		if (c)
			conn_finish(sk, key, c, old, old, WINDOW_STATE);
	}
	return 0;
}

/*
 * args: (struct sock *sk). Every full TCP socket ends here, after its CLOSE transition.
 * An entry still present means that transition was not seen (the program was skipped):
 * the connection is finished here, so its entry cannot leak and its bytes still count.
 */
SEC("raw_tracepoint/tcp_destroy_sock")
int sonde_tcp_destroy(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	__u64 key = ctx[0];
	struct sonde_tcp_conn *c = bpf_map_lookup_elem(&tcp_conns, &key);

	if (!c)
		return 0;
	bump(SONDE_TCP_RECLAIMED);
	conn_finish(sk, key, c,
		    c->opened				       ? TCP_ESTABLISHED :
		    c->direction == SONDE_TCP_DIR_OUTBOUND ? TCP_SYN_SENT :
							     TCP_SYN_RECV,
		    BPF_CORE_READ(sk, __sk_common.skc_state), WINDOW_DESTROY);
	return 0;
}

/*
 * args: (struct sock *sk, int ret, int flags), after every sendmsg / recvmsg of every
 * socket (raw, as the programs below: the arguments come as they are, where a classic
 * tracepoint first builds a record of them; userspace checks their types against the
 * kernel's BTF before loading). A socket in `tcp_conns` is TCP; any other is looked at
 * only to adopt a TCP connection older than Sonde.
 */
static __always_inline int on_io(__u64 *ctx, __u32 slot)
{
	struct sock *sk = (struct sock *)ctx[0];
	__u64 key = ctx[0];
	struct sonde_tcp_conn *c;

	if ((int)ctx[1] <= 0)
		return 0;
	c = bpf_map_lookup_elem(&tcp_conns, &key);
	if (!c) {
		struct skc h;

		skc_load(sk, &h);
		conn_adopt(sk, &h, key, slot);
		return 0;
	}
	if (!c->tgid) {
		/* An inbound connection whose listener predates the probe: the first task
		 * to send or receive on it owns it. */
		c->tgid = bpf_get_current_pid_tgid() >> 32;
		c->cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(c->comm, sizeof(c->comm));
	}
	read_totals(sk, c, BPF_CORE_READ(sk, __sk_common.skc_state), slot);
	return 0;
}

SEC("raw_tracepoint/sock_send_length")
int sonde_tcp_send(__u64 *ctx)
{
	return on_io(ctx, WINDOW_SEND);
}

SEC("raw_tracepoint/sock_recv_length")
int sonde_tcp_recv(__u64 *ctx)
{
	return on_io(ctx, WINDOW_RECV);
}

/* args: (const struct sock *sk, const struct sk_buff *skb, ...): the socket only. */
SEC("raw_tracepoint/tcp_retransmit_skb")
int sonde_tcp_retransmit(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	__u64 key = ctx[0];
	struct sonde_tcp_conn *c = bpf_map_lookup_elem(&tcp_conns, &key);

	if (!c)
		return 0; /* a connection from before the probe: counted from its next send */
	read_totals(sk, c, BPF_CORE_READ(sk, __sk_common.skc_state), WINDOW_RETRANSMIT);
	return 0;
}

/* Counted only: no argument is read, so their lists (which grew a reason in 6.10) do not
 * matter. */
SEC("raw_tracepoint/tcp_send_reset")
int sonde_tcp_send_reset(void *ctx)
{
	bump(SONDE_TCP_RST_SENT);
	return 0;
}

SEC("raw_tracepoint/tcp_receive_reset")
int sonde_tcp_receive_reset(void *ctx)
{
	bump(SONDE_TCP_RST_RECEIVED);
	return 0;
}
