/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Ring-buffer submission with batched wake-ups, for every probe that streams records.
 * BPF-side only: include after vmlinux.h and bpf_helpers.h.
 *
 * A wake-up is an irq_work, which the kernel raises with a self-interrupt: on a virtual
 * machine a VM exit, microseconds charged to whatever task hit the probe. Waking the
 * reader on every record cost ~40 us of agent CPU per exec; waking it on every record
 * while the ring was past a fill threshold cost each loopback TCP connection ~25 us of
 * the workload's own CPU whenever the reader fell behind (each record after the
 * threshold woke it again until it had caught up). So a record wakes the reader only
 * when it takes the ring's unread bytes across a multiple of `step`: at most one wake-up
 * per `step` bytes written, however far behind the reader is. A crossing that two CPUs
 * writing at once both step over is caught at the next multiple; whatever stays below
 * the first one is taken by the reader's own timer.
 */
#ifndef SONDE_RING_H
#define SONDE_RING_H

/* The kernel's per-record header (BPF_RINGBUF_HDR_SZ); records are 8-byte aligned. */
#define SONDE_RINGBUF_HDR_BYTES 8

static __always_inline void sonde_ring_submit(void *ring, void *rec, __u64 size, __u64 step)
{
	/* Reserved records count as unread, this one included. */
	__u64 unread = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	__u64 mine = ((size + 7) & ~7ULL) + SONDE_RINGBUF_HDR_BYTES;
	__u64 before = unread > mine ? unread - mine : 0;

	bpf_ringbuf_submit(rec, unread / step != before / step ? BPF_RB_FORCE_WAKEUP :
								 BPF_RB_NO_WAKEUP);
}

/*
 * The same rule for a probe that writes at high rates, asked only at some of its records:
 * the caller decides which (e.g. every 32nd of a CPU) and keeps `mark`, a per-CPU __u64
 * holding the unread bytes its last check saw. The record wakes the reader when the
 * unread bytes crossed a multiple of `step` upwards since then; between two checks a
 * CPU writes a few KiB, far below a step. Returns the flags for bpf_ringbuf_submit.
 */
static __always_inline __u64 sonde_ring_wake_sampled(void *ring, __u64 *mark, __u64 step)
{
	/* Reserved records count as unread, the caller's own included. */
	__u64 unread = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	__u64 last = *mark;

	*mark = unread;
	return unread / step > last / step ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

#endif
