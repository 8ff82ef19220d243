//! The OTLP retry rules, as pure functions: how long to wait after a failure (exponential
//! backoff with jitter, or the server's own delay when it gives one) and how to read an
//! HTTP `Retry-After` header (seconds or an HTTP date).
//!
//! What is retried at all is decided where the failure is seen (`transport`); this module
//! only says when.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

/// The first wait after a failure, doubled after each further one up to `BACKOFF_MAX`.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A server-given delay longer than this is cut to it: a bogus `Retry-After: 86400` must
/// not stop the exporter for a day while the backlog drops data. Five minutes is longer
/// than any throttling a collector asks for in practice.
pub const SERVER_DELAY_MAX: Duration = Duration::from_secs(300);
/// Each backoff wait is drawn from [1 - J, 1 + J] times the nominal interval, so agents
/// that lost the same collector at the same moment do not come back in lockstep. 0.5 is
/// the OTel Collector's default randomization factor.
const JITTER: f64 = 0.5;

/// Backoff state across consecutive failures of one exporter.
#[derive(Debug, Clone)]
pub struct Backoff {
    nominal: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            nominal: BACKOFF_INITIAL,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt. `hint` is the server's delay (gRPC RetryInfo,
    /// HTTP Retry-After), honoured as given (up to `SERVER_DELAY_MAX`): the spec says to
    /// wait at least that long, and jitter is only ever added to our own interval.
    /// `unit` is a uniform random number in [0, 1) (see `random_unit`).
    pub fn next(&mut self, hint: Option<Duration>, unit: f64) -> Duration {
        let nominal = self.nominal;
        // Later failures back off from the server's delay when it was longer (RetryInfo:
        // "increase gradually the delay between retries based on retry_delay").
        let base = hint.map_or(nominal, |h| h.min(SERVER_DELAY_MAX).max(nominal));
        self.nominal = (base * 2).min(BACKOFF_MAX);
        match hint {
            Some(h) => h.min(SERVER_DELAY_MAX),
            None => nominal.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0)),
        }
    }

    /// After a success: the next failure starts from the initial interval again.
    pub fn reset(&mut self) {
        self.nominal = BACKOFF_INITIAL;
    }
}

/// A uniform random number in [0, 1) for jitter. Not cryptographic and need not be: the
/// standard library's per-process random hash keys, fed a counter, spread the agents.
pub fn random_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = RandomState::new().hash_one(n);
    // The top 53 bits fill an f64's mantissa exactly.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// An HTTP `Retry-After` value (RFC 9110 10.2.3): delay-seconds, or an HTTP date, which is
/// turned into the time left from `now` (zero if it has passed). `None` if it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than u64 holds is still "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_with_jitter_around_it() {
        let mut b = Backoff::default();
        // unit 0.5 is the nominal interval itself.
        let waits: Vec<Duration> = (0..9).map(|_| b.next(None, 0.5)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        let mut lo = Backoff::default();
        let mut hi = Backoff::default();
        assert_eq!(lo.next(None, 0.0), Duration::from_millis(250));
        let top = hi.next(None, 0.999_999);
        assert!(top < Duration::from_millis(750) && top > Duration::from_millis(749));
        b.reset();
        assert_eq!(b.next(None, 0.5), BACKOFF_INITIAL);
    }

    #[test]
    fn a_server_delay_is_waited_exactly_and_later_backoff_grows_from_it() {
        let mut b = Backoff::default();
        // No jitter below (or above) the server's delay, whatever the random draw.
        assert_eq!(
            b.next(Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        // The next failure without a hint backs off from 2 x 7 s, jittered.
        assert_eq!(b.next(None, 0.5), Duration::from_secs(14));
        // A zero delay (RetryInfo with 0) means "retry now".
        let mut z = Backoff::default();
        assert_eq!(z.next(Some(Duration::ZERO), 0.9), Duration::ZERO);
        assert_eq!(z.next(None, 0.5), Duration::from_secs(1));
        // An absurd delay is cut.
        let mut big = Backoff::default();
        assert_eq!(
            big.next(Some(Duration::from_secs(86_400)), 0.5),
            SERVER_DELAY_MAX
        );
        assert_eq!(big.next(None, 0.5), BACKOFF_MAX);
    }

    #[test]
    fn random_units_stay_in_range_and_vary() {
        let draws: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        let low = draws.iter().filter(|u| **u < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Mon, 23 Nov 2026 19:00:00 GMT").expect("date");
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("2", Some(2)),
            (" 120 ", Some(120)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("Mon, 23 Nov 2026 19:00:03 GMT", Some(3)),
            // Obsolete forms HTTP still allows recipients to read.
            ("Monday, 23-Nov-26 19:01:00 GMT", Some(60)),
            ("Mon Nov 23 19:00:05 2026", Some(5)),
            // A date already past means "now".
            ("Mon, 23 Nov 2026 18:59:00 GMT", Some(0)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }
}
