//! The span rate limit: a token bucket, so a DNS outage that fails every lookup cannot
//! flood the collector. Pure: the caller passes the time.

use std::time::Duration;

/// Allows `rate` spans a second on average and bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens scaled by `SCALE`, so refills of a fraction of a token are not lost to
    /// rounding at high tick rates.
    tokens: u64,
    capacity: u64,
    per_second: u64,
    last: Option<Duration>,
    denied: u64,
}

const SCALE: u64 = 1_000_000;

impl TokenBucket {
    /// `per_second` = 0 denies everything (spans switched off by their rate).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let capacity = u64::from(burst.max(1)) * SCALE;
        Self {
            tokens: if per_second == 0 { 0 } else { capacity },
            capacity,
            per_second: u64::from(per_second),
            last: None,
            denied: 0,
        }
    }

    /// Takes one token at time `now` (any monotonic clock); false when the bucket is
    /// empty. A clock that goes backwards refills nothing.
    pub fn try_take(&mut self, now: Duration) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_sub(last);
            // tokens/s * s, in SCALE units: per_second * elapsed_ns * SCALE / 1e9.
            let refill = (u128::from(self.per_second) * elapsed.as_nanos() * u128::from(SCALE)
                / 1_000_000_000) as u64;
            self.tokens = self.tokens.saturating_add(refill).min(self.capacity);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            self.denied += 1;
            false
        }
    }

    /// Spans refused since start (for `sonde.export.spans{outcome=dropped}`).
    pub fn denied(&self) -> u64 {
        self.denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            rate: u32,
            burst: u32,
            /// (time, expected outcome) in order.
            takes: &'static [(u64, bool)],
        }
        let cases = [
            Case {
                name: "a full bucket allows the burst, then refuses",
                rate: 10,
                burst: 3,
                takes: &[(0, true), (0, true), (0, true), (0, false)],
            },
            Case {
                name: "one token comes back after 1/rate seconds",
                rate: 10,
                burst: 1,
                takes: &[(0, true), (50, false), (100, true), (150, false)],
            },
            Case {
                name: "refill never exceeds the burst",
                rate: 10,
                burst: 2,
                takes: &[(0, true), (10_000, true), (10_000, true), (10_000, false)],
            },
            Case {
                name: "a clock going backwards refills nothing",
                rate: 10,
                burst: 1,
                takes: &[(1000, true), (500, false), (1050, false), (1100, true)],
            },
            Case {
                name: "rate zero refuses everything",
                rate: 0,
                burst: 5,
                takes: &[(0, false), (10_000, false)],
            },
        ];
        for c in cases {
            let mut b = TokenBucket::new(c.rate, c.burst);
            for (i, (t, want)) in c.takes.iter().enumerate() {
                assert_eq!(b.try_take(ms(*t)), *want, "{}: take {i} at {t} ms", c.name);
            }
        }
    }

    #[test]
    fn a_flood_is_held_to_the_rate_and_the_excess_counted() {
        // 10 000 attempts spread over 2 s at 100/s with a burst of 100: 100 + 200 pass.
        let mut b = TokenBucket::new(100, 100);
        let passed = (0..10_000u64)
            .filter(|i| b.try_take(Duration::from_micros(i * 200)))
            .count() as u64;
        assert!((299..=301).contains(&passed), "{passed}");
        assert_eq!(b.denied(), 10_000 - passed);
    }
}
