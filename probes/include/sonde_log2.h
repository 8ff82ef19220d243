/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one log2 bucketing every kernel-side histogram uses, so that userspace can export
 * each with the same exact bounds (slot i holds values in (2^(i-1), 2^i] ns).
 * BPF-side only: include after vmlinux.h and sonde_abi.h.
 */
#ifndef SONDE_LOG2_H
#define SONDE_LOG2_H

/* Slot of a value: 0 for 0..1, else the bit length of (v - 1), capped at the last slot. */
static __always_inline __u32 log2_slot(__u64 ns)
{
	__u64 v;
	__u32 r = 0;

	if (ns <= 1)
		return 0;
	v = ns - 1;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { v >>= 1; r += 1; }
	r += v; /* v is 1 here: bit length = index of the top bit + 1 */
	if (r >= SONDE_LOG2_SLOTS)
		r = SONDE_LOG2_SLOTS - 1;
	return r;
}

#endif /* SONDE_LOG2_H */
