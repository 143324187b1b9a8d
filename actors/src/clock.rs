//! Time as a value. Records store [`Timestamp`] (µs since the Unix epoch, bincode-safe);
//! the JSON layer renders it as RFC 3339 with microseconds, as GoTrue does. [`Clock`] lets tests
//! pin "now" (GoTrue's `SetTimeFunc`), so expiry is tested without sleeping.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Whole seconds, as JWT claims want them.
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }
    /// RFC 3339 with six fractional digits and `Z`, e.g. `2026-05-01T10:11:12.123456Z`.
    pub fn rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            ),
            Err(_) => "1970-01-01T00:00:00.000000Z".to_owned(),
        }
    }
}

/// Where "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A settable clock for tests; shared by every clone.
    Fixed(Arc<AtomicI64>),
}

impl Clock {
    /// A fixed clock starting at `at`.
    pub fn fixed(at: Timestamp) -> Clock {
        Clock::Fixed(Arc::new(AtomicI64::new(at.0)))
    }
    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
                Timestamp(i64::try_from(now).unwrap_or(i64::MAX))
            }
            Clock::Fixed(t) => Timestamp(t.load(Ordering::SeqCst)),
        }
    }
    /// Moves a fixed clock forward; no-op on the system clock.
    pub fn advance(&self, d: Duration) {
        if let Clock::Fixed(t) = self {
            let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            t.fetch_add(micros, Ordering::SeqCst);
        }
    }
}

/// Go's `time.ParseDuration`: `300ms`, `1.5h`, `1h30m`, `10s`; a bare `0` is zero.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = v;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest.get(..num_len)?.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match rest.get(..unit_len)? {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_microsecond_rfc3339() {
        assert_eq!(Timestamp(1_777_777_777_123_456).rfc3339(), "2026-05-03T03:09:37.123456Z");
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn fixed_clock_advances() {
        let clock = Clock::fixed(Timestamp(10));
        clock.advance(Duration::from_micros(5));
        assert_eq!(clock.now(), Timestamp(15));
    }
}
