// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS: every UDP datagram and TCP segment to or from a watched port (53 by default),
 * seen by cgroup_skb programs on the cgroup v2 root, so every socket of every process
 * and container on the host passes through them (ARCHITECTURE.md says why this hook).
 *
 * Only the start of the payload (the header and the question) is copied into the ring
 * buffer with a kernel timestamp; parsing and matching happen in userspace. The
 * programs never drop or change a packet: they always return 1 (pass).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sonde_abi.h"

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

/* 1 MiB: about 2,600 records of 392 bytes. */
#define DNS_RING_BYTES (1024 * 1024)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DNS_RING_BYTES);
} dns_events SEC(".maps");

/*
 * Records are submitted without waking the reader, which polls every 50 ms (timestamps
 * come from the kernel, so a late read changes no figure); a quarter-full ring wakes it
 * at once. One wake-up per packet cost the reader more than its parsing: a query to a
 * local resolver is four records.
 */
static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&dns_events, BPF_RB_AVAIL_DATA) > DNS_RING_BYTES / 4
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

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

static __always_inline int capture(struct __sk_buff *skb, __u8 direction, enum who who)
{
	struct sonde_dns_event *e;
	__u8 saddr[16] = {}, daddr[16] = {};
	__u8 family, proto;
	__u32 l4, payload;
	__u16 ports[2];

	/*
	 * A packet between two sockets of this host crosses loopback: the probe saw it
	 * leave the sender (egress runs for every local socket, in the sender's context
	 * for UDP, so that copy also names the process), and the receiver's copy would
	 * add nothing but a second record. Local resolvers' traffic is half the records.
	 */
	if (direction == SONDE_DNS_INGRESS && skb->ingress_ifindex == LOOPBACK_IFINDEX)
		return 1;

	/* cgroup_skb sees the packet from its network header on, both ways. */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		/* Later fragments carry no L4 header: skip them (DNS avoids fragments). */
		if (ip.frag_off & bpf_htons(0x1fff))
			return 1;
		family = 4;
		proto = ip.protocol;
		l4 = (__u32)ip.ihl * 4;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		/* UDP or TCP right after the fixed header; extension headers are not walked. */
		family = 6;
		proto = ip6.nexthdr;
		l4 = sizeof(ip6);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
	} else {
		return 1;
	}

	if (proto == IPPROTO_UDP_) {
		payload = l4 + 8;
	} else if (proto == IPPROTO_TCP_) {
		__u8 doff;

		if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
			return 1;
		payload = l4 + (__u32)(doff >> 4) * 4;
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return 1;
	ports[0] = bpf_ntohs(ports[0]);
	ports[1] = bpf_ntohs(ports[1]);
	if (!watched(ports[0], ports[1]))
		return 1;
	if (skb->len <= payload)
		return 1; /* TCP handshake and ACKs: no payload */

	e = bpf_ringbuf_reserve(&dns_events, sizeof(*e), 0);
	if (!e) {
		bump(SONDE_DNS_LOST_RINGBUF);
		return 1;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->sport = ports[0];
	e->dport = ports[1];
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	e->family = family;
	e->protocol = proto;
	e->direction = direction;
	e->_pad0 = 0;
	e->_pad1 = 0;
	/*
	 * A UDP send runs the egress hook in the sender's own context (sendmsg down to
	 * ip_finish_output), so the current task is the sender. TCP may transmit from
	 * softirq or timers, and ingress runs in softirq: the current task there is
	 * whoever was interrupted, so those records say "unknown".
	 */
	e->tgid = 0;
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	if (direction == SONDE_DNS_EGRESS && proto == IPPROTO_UDP_) {
		if (who >= WHO_PID)
			e->tgid = bpf_get_current_pid_tgid() >> 32;
		if (who >= WHO_FULL)
			bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	/* The socket's cgroup (the hook sets skb->sk to the socket, in softirq too): it
	 * tells apart containers whose addresses overlap, and names the client's container. */
	e->cgroup_id = bpf_skb_cgroup_id(skb);

	__u64 n = skb->len - payload;
	if (n > SONDE_DNS_CAPTURE)
		n = SONDE_DNS_CAPTURE;
	/*
	 * clang would fold the checks below into the clamp above and the verifier would
	 * lose the bounds: the empty asm makes n opaque, so both bounds are checked on the
	 * register bpf_skb_load_bytes receives.
	 */
	asm volatile("" : "+r"(n));
	if (n < 1 || n > SONDE_DNS_CAPTURE || bpf_skb_load_bytes(skb, payload, e->data, n)) {
		bpf_ringbuf_discard(e, 0);
		bump(SONDE_DNS_LOST_COPY);
		return 1;
	}
	e->captured = n;
	bpf_ringbuf_submit(e, wakeup_flag());
	bump(SONDE_DNS_PACKETS);
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
