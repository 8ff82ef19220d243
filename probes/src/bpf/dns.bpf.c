// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS: every UDP datagram and TCP segment to or from a watched port (53 by default),
 * seen by cgroup_skb programs on the cgroup v2 root, so every socket of every process
 * and container on the host passes through them (ARCHITECTURE.md says why this hook).
 *
 * Only the start of the payload (the header and the question) is copied into the ring
 * buffer with a kernel timestamp, in a short record when the payload is short;
 * parsing and matching happen in userspace. The
 * programs never drop or change a packet: they always return 1 (pass).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sonde_abi.h"
#include "sonde_ring.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define LOOPBACK_IFINDEX 1 /* lo, in every network namespace */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sonde_dns_config);
} dns_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_DNS_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} dns_counters SEC(".maps");

/* 1 MiB: about 5,700 short records (most DNS packets), 2,600 full ones. */
#define DNS_RING_BYTES (1024 * 1024)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DNS_RING_BYTES);
} dns_events SEC(".maps");

/*
 * Records are submitted without waking the reader, which polls every 50 ms (timestamps
 * come from the kernel, so a late read changes no figure); the record that takes the
 * ring's unread bytes past each quarter wakes it (sonde_ring.h says why not more often).
 * At DNS rates the ring's fill is asked only every DNS_WAKE_CHECK-th record of a CPU
 * (sonde_ring_wake_sampled): asking on every record was an eighth of the program's time.
 */
#define DNS_WAKE_STEP (DNS_RING_BYTES / 4)
#define DNS_WAKE_CHECK 32

/* Per CPU: the ring's unread bytes at this CPU's last check (sonde_ring_wake_sampled). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dns_wake SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&dns_counters, &slot);
	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

static __always_inline int watched(__u16 sport, __u16 dport)
{
	__u32 zero = 0;
	struct sonde_dns_config *cfg = bpf_map_lookup_elem(&dns_config, &zero);
	int i;

	if (!cfg)
		return 0;
	/* Until userspace writes the config (just after attach), watch the default port. */
	if (!cfg->ports[0])
		return sport == 53 || dport == 53;
	for (i = 0; i < SONDE_DNS_MAX_PORTS; i++) {
		__u16 p = cfg->ports[i];
		if (p && (p == sport || p == dport))
			return 1;
	}
	return 0;
}

/* What the egress program may ask about the sending task: cgroup_skb programs get
 * bpf_get_current_pid_tgid from Linux 6.10 and bpf_get_current_comm from 6.16, and the
 * verifier refuses a program that calls a helper its type does not have, so each level
 * is a program of its own and userspace loads the best one the kernel takes. */
enum who {
	WHO_NONE = 0,  /* no process attribution */
	WHO_PID = 1,   /* pid only */
	WHO_FULL = 2,  /* pid and executable name */
};

/* What capture() read of a packet's headers. */
struct dns_packet {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u32 payload; /* offset of the UDP / TCP payload */
};

/*
 * Records one packet in a record with room for `cap` bytes of payload: clang inlines
 * it with a constant `cap`, so each reservation has the constant size the verifier
 * wants. `n` is the payload's length, at most `cap`.
 */
static __always_inline void emit(struct __sk_buff *skb, const struct dns_packet *p,
				 __u8 direction, enum who who, __u64 n, const __u32 cap)
{
	const __u32 size = offsetof(struct sonde_dns_event, data) + cap;
	struct sonde_dns_event *e;

	e = bpf_ringbuf_reserve(&dns_events, size, 0);
	if (!e) {
		bump(SONDE_DNS_LOST_RINGBUF);
		return;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->sport = p->sport;
	e->dport = p->dport;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	e->family = p->family;
	e->protocol = p->proto;
	e->direction = direction;
	e->_pad0 = 0;
	e->_pad1 = 0;
	/* The socket's cgroup (the hook sets skb->sk to the socket, in softirq too): it
	 * tells apart containers whose addresses overlap, and names the client's container. */
	e->cgroup_id = bpf_skb_cgroup_id(skb);

	/*
	 * clang would fold the checks below into the caller's clamp and the verifier would
	 * lose the bounds: the empty asm makes n opaque, so both bounds are checked on the
	 * register bpf_skb_load_bytes receives.
	 */
	asm volatile("" : "+r"(n));
	if (n < 1 || n > cap || bpf_skb_load_bytes(skb, p->payload, e->data, n)) {
		bpf_ringbuf_discard(e, 0);
		bump(SONDE_DNS_LOST_COPY);
		return;
	}
	e->captured = n;

	/*
	 * A UDP send runs the egress hook in the sender's own context (sendmsg down to
	 * ip_finish_output), so the current task is the sender. TCP may transmit from
	 * softirq or timers, and ingress runs in softirq: the current task there is
	 * whoever was interrupted, so those records say "unknown". Only a query's sender
	 * is named (its series key); of a response's, the matcher needs only the thread
	 * group (is the resolver the process that asked upstream?), and the name was a
	 * fifth of the program's time. QR is the top bit of the third payload byte.
	 */
	e->tgid = 0;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	if (direction == SONDE_DNS_EGRESS && p->proto == IPPROTO_UDP_) {
		if (who >= WHO_PID)
			e->tgid = bpf_get_current_pid_tgid() >> 32;
		if (who >= WHO_FULL && n > 2 && !(e->data[2] & 0x80))
			bpf_get_current_comm(e->comm, sizeof(e->comm));
	}

	__u32 slot = SONDE_DNS_PACKETS;
	__u64 *packets = bpf_map_lookup_elem(&dns_counters, &slot);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (packets) {
		*packets += 1; /* per-CPU slot: no other writer */
		if (*packets % DNS_WAKE_CHECK == 0) {
			__u32 zero = 0;
			__u64 *mark = bpf_map_lookup_elem(&dns_wake, &zero);
			if (mark)
				flags = sonde_ring_wake_sampled(&dns_events, mark, DNS_WAKE_STEP);
		}
	}
	bpf_ringbuf_submit(e, flags);
}

static __always_inline int capture(struct __sk_buff *skb, __u8 direction, enum who who)
{
	struct dns_packet p = {};
	__u32 l4;

	/*
	 * A packet between two sockets of this host crosses loopback: the probe saw it
	 * leave the sender (egress runs for every local socket, in the sender's context
	 * for UDP, so that copy also names the process), and the receiver's copy would
	 * add nothing but a second record. Local resolvers' traffic is half the records.
	 */
	if (direction == SONDE_DNS_INGRESS && skb->ingress_ifindex == LOOPBACK_IFINDEX)
		return 1;

	/*
	 * cgroup_skb sees the packet from its network header on, both ways. The network
	 * header and the ports are read in one call where the header has its fixed size
	 * (every packet of the host passes here): a packet too short for that is no DNS.
	 */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct {
			struct iphdr ip;
			__u16 ports[2];
		} h;

		if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
			return 1;
		/* Later fragments carry no L4 header: skip them (DNS avoids fragments). */
		if (h.ip.frag_off & bpf_htons(0x1fff))
			return 1;
		p.family = 4;
		p.proto = h.ip.protocol;
		l4 = (__u32)h.ip.ihl * 4;
		__builtin_memcpy(p.saddr, &h.ip.saddr, 4);
		__builtin_memcpy(p.daddr, &h.ip.daddr, 4);
		/* IP options move the ports. */
		if (l4 != sizeof(h.ip) && bpf_skb_load_bytes(skb, l4, h.ports, sizeof(h.ports)))
			return 1;
		p.sport = h.ports[0];
		p.dport = h.ports[1];
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct {
			struct ipv6hdr ip6;
			__u16 ports[2];
		} h;

		if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
			return 1;
		/* UDP or TCP right after the fixed header; extension headers are not walked. */
		p.family = 6;
		p.proto = h.ip6.nexthdr;
		l4 = sizeof(h.ip6);
		__builtin_memcpy(p.saddr, &h.ip6.saddr, 16);
		__builtin_memcpy(p.daddr, &h.ip6.daddr, 16);
		p.sport = h.ports[0];
		p.dport = h.ports[1];
	} else {
		return 1;
	}

	p.sport = bpf_ntohs(p.sport);
	p.dport = bpf_ntohs(p.dport);
	if (p.proto == IPPROTO_UDP_) {
		if (!watched(p.sport, p.dport))
			return 1;
		p.payload = l4 + 8;
	} else if (p.proto == IPPROTO_TCP_) {
		__u8 doff;

		if (!watched(p.sport, p.dport))
			return 1;
		if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
			return 1;
		p.payload = l4 + (__u32)(doff >> 4) * 4;
	} else {
		return 1;
	}
	if (skb->len <= p.payload)
		return 1; /* TCP handshake and ACKs: no payload */

	__u64 n = skb->len - p.payload;
	if (n <= SONDE_DNS_CAPTURE_SHORT) {
		emit(skb, &p, direction, who, n, SONDE_DNS_CAPTURE_SHORT);
	} else {
		if (n > SONDE_DNS_CAPTURE)
			n = SONDE_DNS_CAPTURE;
		emit(skb, &p, direction, who, n, SONDE_DNS_CAPTURE);
	}
	return 1;
}

SEC("cgroup_skb/ingress")
int sonde_dns_ingress(struct __sk_buff *skb)
{
	return capture(skb, SONDE_DNS_INGRESS, WHO_NONE);
}

SEC("cgroup_skb/egress")
int sonde_dns_egress(struct __sk_buff *skb)
{
	return capture(skb, SONDE_DNS_EGRESS, WHO_FULL);
}

/* Linux 6.10 to 6.15: the sender's pid, no name. */
SEC("cgroup_skb/egress")
int sonde_dns_egress_pid(struct __sk_buff *skb)
{
	return capture(skb, SONDE_DNS_EGRESS, WHO_PID);
}

/* Before 6.10: no process attribution. */
SEC("cgroup_skb/egress")
int sonde_dns_egress_anon(struct __sk_buff *skb)
{
	return capture(skb, SONDE_DNS_EGRESS, WHO_NONE);
}
