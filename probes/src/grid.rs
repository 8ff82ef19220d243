//! The one histogram grid of every kernel-side latency histogram (design decision 11):
//! buckets on 2^(k/4) seconds (OTLP exponential scale 2), decided exactly on integer
//! nanoseconds.
//!
//! Bucket index i (OTLP's) holds durations in (2^(i/4), 2^((i+1)/4)] seconds. An integer
//! n ns is above the real boundary 1e9 * 2^(k/4) ns exactly when it is above its floor,
//! so each boundary becomes an integer threshold `floor(1e9 * 2^(k/4))`, computed here
//! with exact integer arithmetic (no floating point decides a bucket).
//!
//! Slots (the layout of `slots[]` in `sonde_abi.h`): slot 0 counts durations of 0 ns
//! (OTLP's `zero_count`); slot s >= 1 is bucket index `s - 1 + MIN_INDEX`. The first
//! bucket holds 1 ns and the last one holds `u64::MAX` ns, so every u64 has its bucket
//! and nothing is clamped.
//!
//! This file is also compiled into `build.rs`, which writes the constants and the
//! kernel's tables into the generated header `sonde_grid.h`: one definition of the scale
//! for the probes and for userspace.

/// OTLP exponential-histogram scale: 2^SCALE buckets per doubling.
pub const SCALE: i32 = 2;
/// Buckets per doubling.
pub const PER_DOUBLING: i32 = 1 << SCALE;
/// Bucket index of slot 1: (2^-30, 2^-29.75] s = (0.93, 1.107] ns holds 1 ns.
pub const MIN_INDEX: i32 = -120;
/// Bucket index of the last slot: (2^34, 2^34.25] s holds u64::MAX ns.
pub const MAX_INDEX: i32 = 136;
/// Slots per histogram: the zero slot and one per bucket index.
pub const SLOTS: usize = (MAX_INDEX - MIN_INDEX + 2) as usize;
/// Mantissa bits after the leading one that pick the kernel's candidate slot: with 3, a
/// value's sub-range of its doubling is at most 9/8 wide, narrower than a bucket
/// (2^(1/4) = 1.189), so it holds at most one threshold and one comparison corrects the
/// candidate.
pub const CANDIDATE_BITS: u32 = 3;
/// Entries of each kernel table: a power of two, so a masked index is always in bounds.
pub const TABLE_LEN: usize = 64 << CANDIDATE_BITS;

/// OTLP bucket index of slot `slot` (>= 1).
pub const fn index_of_slot(slot: usize) -> i32 {
    slot as i32 - 1 + MIN_INDEX
}

/// floor(1e9 * 2^(k/4)): the largest integer x with x^4 <= 1e36 * 2^k, i.e. the
/// inclusive upper bound in ns of bucket index k - 1.
pub fn threshold_ns(k: i32) -> u64 {
    // An estimate from f64, then exact integer steps to the floor (the estimate is off by
    // at most a few thousand at 2^64, where an ulp of f64 is 2048).
    let est = 1e9 * 2f64.powf(k as f64 / PER_DOUBLING as f64);
    let mut x = if est >= u64::MAX as f64 {
        u64::MAX
    } else {
        est as u64
    };
    while x > 0 && !at_most(x, k) {
        x -= 1;
    }
    while x < u64::MAX && at_most(x + 1, k) {
        x += 1;
    }
    x
}

/// Whether x <= 1e9 * 2^(k/4) ns, i.e. x^4 <= 1e36 * 2^k, in exact 256-bit arithmetic.
fn at_most(x: u64, k: i32) -> bool {
    const E36: u128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;
    let x2 = u128::from(x) * u128::from(x);
    let x4 = U256::mul(x2, x2);
    if k >= 0 {
        x4 <= U256::from(E36).shl(k as u32)
    } else {
        x4.shl(k.unsigned_abs()) <= U256::from(E36)
    }
}

/// Just enough of a 256-bit unsigned integer for `at_most`: every operand there is
/// below 2^256 (x < 2^64, 1e36 * 2^136 < 2^256, 1e36 / 2^-120 side < 2^240).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct U256 {
    hi: u128,
    lo: u128,
}

impl U256 {
    fn from(v: u128) -> Self {
        Self { hi: 0, lo: v }
    }

    fn mul(a: u128, b: u128) -> Self {
        let (a1, a0) = (a >> 64, a & u128::from(u64::MAX));
        let (b1, b0) = (b >> 64, b & u128::from(u64::MAX));
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        let (mid, carry_mid) = p01.overflowing_add(p10);
        let (lo, carry_lo) = p00.overflowing_add(mid << 64);
        let hi = p11 + (mid >> 64) + (u128::from(carry_mid) << 64) + u128::from(carry_lo);
        Self { hi, lo }
    }

    fn shl(self, n: u32) -> Self {
        match n {
            0 => self,
            1..=127 => Self {
                hi: (self.hi << n) | (self.lo >> (128 - n)),
                lo: self.lo << n,
            },
            _ => Self {
                hi: self.lo << (n - 128),
                lo: 0,
            },
        }
    }
}

/// Inclusive upper bound in ns of every slot: `upper[0] = 0` (the zero slot), `upper[s]`
/// the threshold above bucket index `index_of_slot(s)`; the last is u64::MAX (its real
/// boundary, 2^34.25 s, is beyond any u64).
pub fn upper_bounds_ns() -> Vec<u64> {
    (0..SLOTS)
        .map(|s| match s {
            0 => 0,
            s if s == SLOTS - 1 => u64::MAX,
            _ => threshold_ns(index_of_slot(s) + 1),
        })
        .collect()
}

/// The slot of `ns` by binary search over the thresholds: the reference the kernel's
/// faster path ([`candidate_table`] + one comparison) is tested against.
pub fn slot_of(ns: u64, upper: &[u64]) -> usize {
    upper.partition_point(|u| *u < ns)
}

/// The slot of `ns` on the grid: userspace's bucketing of values it samples itself,
/// the same as the kernel's (both are tested against [`slot_of`]).
pub fn slot(ns: u64) -> usize {
    static UPPER: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    slot_of(ns, UPPER.get_or_init(upper_bounds_ns))
}

/// The kernel's first guess for `ns`'s slot, indexed by `(bit_length - 1) << 3 | next
/// three mantissa bits`: the slot of the smallest value with that prefix. The true slot
/// is the guess or the one after (checked for every prefix by the tests).
pub fn candidate_table(upper: &[u64]) -> Vec<u16> {
    (0..64u32 << CANDIDATE_BITS)
        .map(|i| {
            let bits = (i >> CANDIDATE_BITS) + 1;
            let m = u128::from(i & ((1 << CANDIDATE_BITS) - 1));
            // Smallest value with bit length `bits` and this mantissa prefix (for short
            // values some prefixes do not exist; rounding up gives a valid guess anyway).
            let lo = (((1u128 << CANDIDATE_BITS) + m) << bits).div_ceil(1 << (CANDIDATE_BITS + 1));
            let lo = u64::try_from(lo).unwrap_or(u64::MAX).max(1);
            slot_of(lo, upper) as u16
        })
        .collect()
}

/// The table index the kernel computes for `ns` (>= 1): bit length and mantissa prefix.
pub fn candidate_index(ns: u64) -> usize {
    let bits = 64 - ns.leading_zeros();
    let m = if bits > CANDIDATE_BITS + 1 {
        (ns >> (bits - CANDIDATE_BITS - 1)) & ((1 << CANDIDATE_BITS) - 1)
    } else {
        (ns << (CANDIDATE_BITS + 1 - bits)) & ((1 << CANDIDATE_BITS) - 1)
    };
    (((bits - 1) << CANDIDATE_BITS) as usize) | m as usize
}

/// The kernel's algorithm (`sonde_hist_slot` in `sonde_hist.h`), step for step: the
/// candidate for the value's prefix, then one comparison.
pub fn kernel_slot_of(ns: u64, upper: &[u64], cand: &[u16]) -> usize {
    if ns == 0 {
        return 0;
    }
    let s = usize::from(cand[candidate_index(ns)]);
    if s < SLOTS - 1 && ns > upper[s] {
        s + 1
    } else {
        s
    }
}

/// The generated C header: the grid's constants (used by `sonde_abi.h` for the layout)
/// and the kernel's two tables.
pub fn c_header() -> String {
    use std::fmt::Write as _;
    let upper = upper_bounds_ns();
    let cand = candidate_table(&upper);
    let mut h = String::new();
    let _ = writeln!(
        h,
        "/* Generated by probes/build.rs from probes/src/grid.rs: do not edit. */\n\
         #ifndef SONDE_GRID_H\n#define SONDE_GRID_H\n\n\
         /* Histogram grid: 2^SONDE_HIST_SCALE buckets per doubling of seconds. */\n\
         #define SONDE_HIST_SCALE {SCALE}\n\
         /* OTLP bucket index of slot 1 (slot 0 counts zero durations). */\n\
         #define SONDE_HIST_MIN_INDEX ({MIN_INDEX})\n\
         #define SONDE_HIST_SLOTS {SLOTS}\n\
         #define SONDE_HIST_CANDIDATE_BITS {CANDIDATE_BITS}\n\
         #define SONDE_HIST_TABLE_LEN {TABLE_LEN}\n\n\
         #endif /* SONDE_GRID_H */\n\n\
         /* The kernel's tables, for sonde_hist.h only. */\n\
         #if defined(SONDE_GRID_TABLES) && !defined(SONDE_GRID_TABLES_H)\n\
         #define SONDE_GRID_TABLES_H\n\
         /*\n\
          * Inclusive upper bound in ns of each slot: floor(1e9 * 2^(k/4)), padded to\n\
          * {TABLE_LEN} with U64_MAX so that any index masked to {mask} is in bounds for the\n\
          * verifier. volatile: the compiler must not fold range checks on the indexes\n\
          * from what it knows of the contents; the verifier does not know them.\n\
          */\n\
         static const volatile __u64 sonde_hist_upper[{TABLE_LEN}] = {{",
        mask = TABLE_LEN - 1
    );
    let mut padded = upper.clone();
    padded.resize(TABLE_LEN, u64::MAX);
    for chunk in padded.chunks(4) {
        let row: Vec<String> = chunk.iter().map(|u| format!("{u}ULL")).collect();
        let _ = writeln!(h, "\t{},", row.join(", "));
    }
    let _ = writeln!(
        h,
        "}};\n\n/* First slot of each (bit length - 1, next {CANDIDATE_BITS} mantissa bits). */\n\
         static const volatile __u16 sonde_hist_candidate[{TABLE_LEN}] = {{"
    );
    assert_eq!(cand.len(), TABLE_LEN);
    for chunk in cand.chunks(16) {
        let row: Vec<String> = chunk.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(h, "\t{},", row.join(", "));
    }
    let _ = writeln!(h, "}};\n#endif /* SONDE_GRID_TABLES */");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_the_exact_floors() {
        // Powers of two of seconds are integers of ns from 2^-9 s up: exact.
        assert_eq!(threshold_ns(0), 1_000_000_000);
        assert_eq!(threshold_ns(4), 2_000_000_000);
        assert_eq!(threshold_ns(-4), 500_000_000);
        assert_eq!(threshold_ns(-36), 1_953_125); // 1e9 / 2^9
        assert_eq!(threshold_ns(-40), 976_562); // 976562.5 -> floor
        assert_eq!(threshold_ns(136), 17_179_869_184_000_000_000); // 1e9 * 2^34
                                                                   // Irrational boundaries, checked against a decimal expansion:
                                                                   // 2^(1/4) = 1.18920711500272106671..., 2^(1/2) = 1.41421356237309504880...,
                                                                   // 2^(3/4) = 1.68179283050742908606...
        assert_eq!(threshold_ns(1), 1_189_207_115);
        assert_eq!(threshold_ns(2), 1_414_213_562);
        assert_eq!(threshold_ns(3), 1_681_792_830);
        assert_eq!(threshold_ns(-119), 1); // 1.107 ns
        assert_eq!(threshold_ns(-120), 0); // 0.931 ns
                                           // 2^30.25 s = 1276901416.7767994838... s (80-digit decimal arithmetic)
        assert_eq!(threshold_ns(121), 1_276_901_416_776_799_483);
    }

    #[test]
    fn thresholds_rise_by_a_quarter_doubling_each() {
        let u = upper_bounds_ns();
        assert_eq!(u.len(), SLOTS);
        for s in 2..SLOTS - 1 {
            // Below ~6 ns neighbouring thresholds can share a floor: those buckets hold
            // no integer (an empty bucket, never a wrong one).
            assert!(u[s] >= u[s - 1], "slot {s}");
            if u[s - 1] >= 6 {
                assert!(u[s] > u[s - 1], "slot {s}");
            }
            if u[s - 1] > 1000 {
                let r = u[s] as f64 / u[s - 1] as f64;
                assert!((r - 2f64.powf(0.25)).abs() < 1e-3, "slot {s}: ratio {r}");
            }
        }
    }

    #[test]
    fn every_boundary_and_its_neighbours_land_in_the_right_bucket() {
        let u = upper_bounds_ns();
        let c = candidate_table(&u);
        assert_eq!(kernel_slot_of(0, &u, &c), 0);
        assert_eq!(kernel_slot_of(1, &u, &c), 1);
        assert_eq!(index_of_slot(1), MIN_INDEX);
        for s in 1..SLOTS - 1 {
            let b = u[s];
            for v in [b.saturating_sub(1), b, b + 1] {
                let got = kernel_slot_of(v, &u, &c);
                assert_eq!(got, slot_of(v, &u), "kernel algorithm vs reference, {v} ns");
                // The definition: slot got holds (u[got - 1], u[got]].
                assert!(v <= u[got], "{v} ns above its slot {got}");
                assert!(got == 0 || v > u[got - 1], "{v} ns below its slot {got}");
            }
            // b is the inclusive top of a bucket, b + 1 the first value above it.
            assert!(u[kernel_slot_of(b, &u, &c)] == b);
            assert!(u[kernel_slot_of(b + 1, &u, &c) - 1] == b);
        }
        assert_eq!(kernel_slot_of(u64::MAX, &u, &c), SLOTS - 1);
    }

    #[test]
    fn the_kernel_algorithm_agrees_with_the_reference_on_every_prefix() {
        let u = upper_bounds_ns();
        let c = candidate_table(&u);
        for v in 1..=4096u64 {
            assert_eq!(kernel_slot_of(v, &u, &c), slot_of(v, &u), "{v} ns");
        }
        // Each (bit length, prefix) range: its ends, and a walk through it.
        for i in 0..c.len() {
            let bits = (i >> CANDIDATE_BITS) as u32 + 1;
            if bits <= CANDIDATE_BITS + 1 {
                continue; // covered exhaustively above
            }
            let shift = bits - CANDIDATE_BITS - 1;
            let m = (i & ((1 << CANDIDATE_BITS) - 1)) as u128;
            let lo = ((8 + m) << shift) as u64;
            let hi = (((9 + m) << shift) - 1).min(u128::from(u64::MAX)) as u64;
            assert_eq!(candidate_index(lo), i);
            assert_eq!(candidate_index(hi), i);
            let step = ((hi - lo) / 61).max(1);
            let mut v = lo;
            loop {
                assert_eq!(kernel_slot_of(v, &u, &c), slot_of(v, &u), "{v} ns");
                if hi - v < step {
                    break;
                }
                v += step;
            }
            assert_eq!(kernel_slot_of(hi, &u, &c), slot_of(hi, &u), "{hi} ns");
            assert!(
                slot_of(hi, &u) - slot_of(lo, &u) <= 1,
                "prefix {i}: one threshold at most"
            );
        }
    }

    #[test]
    fn known_durations() {
        let u = upper_bounds_ns();
        let idx = |ns| index_of_slot(slot_of(ns, &u));
        // 1 s is the top of (2^-0.25, 2^0] s: index -1.
        assert_eq!(idx(1_000_000_000), -1);
        assert_eq!(idx(1_000_000_001), 0);
        // 63 ms: 2^-4 s = 62.5 ms < 63 ms <= 2^-3.75 s = 74.3 ms.
        assert_eq!(idx(63_000_000), -16);
        assert_eq!(idx(62_500_000), -17);
        assert_eq!(idx(62_500_001), -16);
    }
}
