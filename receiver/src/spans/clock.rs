//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock Unix nanoseconds.
//!
//! The offset is measured once at start-up: CLOCK_REALTIME read between two
//! CLOCK_MONOTONIC readings, keeping the tightest of a few tries, so the error is at most
//! half the narrowest window (well under a microsecond). Measuring once means a later
//! wall-clock step (NTP) does not bend span durations, which are differences of kernel
//! times and so stay exact.

/// A measured offset between the monotonic clock and the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonotonicToWall {
    /// realtime - monotonic, nanoseconds.
    offset_ns: i128,
}

impl MonotonicToWall {
    pub fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Reads both clocks (a few tries) and keeps the tightest bracket.
    pub fn measure() -> Self {
        let mut best: Option<(i128, i128)> = None; // (window, offset)
        for _ in 0..5 {
            let a = now_ns(libc::CLOCK_MONOTONIC);
            let r = now_ns(libc::CLOCK_REALTIME);
            let b = now_ns(libc::CLOCK_MONOTONIC);
            let window = b - a;
            let offset = r - (a + window / 2);
            if best.is_none_or(|(w, _)| window < w) {
                best = Some((window, offset));
            }
        }
        Self::from_offset(best.map(|(_, o)| o).unwrap_or(0))
    }

    /// A kernel monotonic timestamp as Unix nanoseconds (0 for times before the epoch,
    /// which only a broken clock produces).
    pub fn to_unix_nanos(&self, monotonic_ns: u64) -> u64 {
        let t = i128::from(monotonic_ns) + self.offset_ns;
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// One clock reading in nanoseconds.
pub fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clocks used here always exist on
    // Linux, so the call cannot fail and leaves `ts` set.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_with_the_offset() {
        let c = MonotonicToWall::from_offset(1_700_000_000_000_000_000);
        assert_eq!(c.to_unix_nanos(5), 1_700_000_000_000_000_005);
        let neg = MonotonicToWall::from_offset(-10);
        assert_eq!(neg.to_unix_nanos(5), 0, "clamped at the epoch");
    }

    #[test]
    fn measured_offset_maps_now_to_now() {
        let c = MonotonicToWall::measure();
        let mono_ns = u64::try_from(now_ns(libc::CLOCK_MONOTONIC)).expect("positive");
        let wall = crate::unix_nanos();
        let diff = c.to_unix_nanos(mono_ns).abs_diff(wall);
        // Two clock reads apart; a millisecond covers a descheduled test thread.
        assert!(diff < 1_000_000, "{diff} ns apart");
    }
}
