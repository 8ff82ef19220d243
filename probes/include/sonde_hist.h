/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one bucketing of every kernel-side latency histogram (design decision 11): buckets
 * on 2^(k/4) seconds, OTLP exponential scale SONDE_HIST_SCALE, decided exactly on integer
 * nanoseconds. Slot 0 counts 0 ns; slot s >= 1 holds (upper[s-1], upper[s]] ns, where
 * upper[] are the exact integer thresholds floor(1e9 * 2^(k/4)) generated from
 * probes/src/grid.rs (which also holds the userspace reference and its tests).
 * BPF-side only: include after vmlinux.h and sonde_abi.h.
 */
#ifndef SONDE_HIST_H
#define SONDE_HIST_H

#define SONDE_GRID_TABLES
#include "sonde_grid.h"

/*
 * The slot of `ns`: the bit length and the next SONDE_HIST_CANDIDATE_BITS mantissa bits
 * pick a candidate (the slot of the smallest value with that prefix); such a prefix
 * range is narrower than a bucket, so at most one threshold lies inside it and one
 * comparison settles the slot. Userspace's `grid::kernel_slot_of` is this, step for
 * step, tested against a binary search at every threshold.
 */
static __always_inline __u64 sonde_hist_slot(__u64 ns)
{
	__u64 v = ns;
	__u64 bits = 0, m, s;

	if (!ns)
		return 0;
	if (v >> 32) { v >>= 32; bits += 32; }
	if (v >> 16) { v >>= 16; bits += 16; }
	if (v >> 8) { v >>= 8; bits += 8; }
	if (v >> 4) { v >>= 4; bits += 4; }
	if (v >> 2) { v >>= 2; bits += 2; }
	if (v >> 1) { v >>= 1; bits += 1; }
	bits += 1; /* v is 1 here: bits is the bit length, 1..64 */
	if (bits > SONDE_HIST_CANDIDATE_BITS + 1)
		m = (ns >> (bits - SONDE_HIST_CANDIDATE_BITS - 1)) & ((1 << SONDE_HIST_CANDIDATE_BITS) - 1);
	else
		m = (ns << (SONDE_HIST_CANDIDATE_BITS + 1 - bits)) & ((1 << SONDE_HIST_CANDIDATE_BITS) - 1);
	s = sonde_hist_candidate[(((bits - 1) << SONDE_HIST_CANDIDATE_BITS) | m) & (SONDE_HIST_TABLE_LEN - 1)];
	if (ns > sonde_hist_upper[s & (SONDE_HIST_TABLE_LEN - 1)])
		s += 1;
	/* Always true (the tables stop at the last slot); it tells the verifier. */
	if (s >= SONDE_HIST_SLOTS)
		s = SONDE_HIST_SLOTS - 1;
	return s;
}

#endif /* SONDE_HIST_H */
