//! The server clock, as the wire formats need it.
//!
//! Owns "now" in Unix milliseconds (the unit of every timestamp on the wire), with sub-ms
//! precision for clock-sync probes, and Unix milliseconds to an RFC 3339 string (the seed's
//! `created_at`/`timestamp`).
//!
//! The clock is anchored once to the system's wall clock and then advances with the
//! monotonic clock: it never steps backwards or jumps when the wall clock is stepped, while
//! it still follows NTP's frequency corrections (Linux slews `CLOCK_MONOTONIC` too). With
//! several instances, each uses its own NTP-disciplined clock: on one network that agrees
//! to well under a millisecond, needs no round trip, and works while Redis is down.

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock (Unix ms) at the anchor instant.
static ANCHOR: LazyLock<(Instant, f64)> = LazyLock::new(|| {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    (Instant::now(), unix)
});

/// Milliseconds since the Unix epoch, with sub-millisecond precision.
pub fn precise_ms() -> f64 {
    at(Instant::now())
}

/// The server clock's reading (Unix ms) at a monotonic instant.
pub fn at(instant: Instant) -> f64 {
    let (anchor, unix) = *ANCHOR;
    match instant.checked_duration_since(anchor) {
        Some(since) => unix + since.as_secs_f64() * 1000.0,
        None => unix - anchor.duration_since(instant).as_secs_f64() * 1000.0,
    }
}

/// Whole milliseconds since the Unix epoch; 0 if the system clock is before 1970.
pub fn now_ms() -> u64 {
    precise_ms().max(0.0) as u64
}

/// Formats Unix milliseconds as RFC 3339 in UTC, e.g. `2026-11-22T05:04:00.123Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in 400-year
/// eras of 146 097 days so no table or loop is needed.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01, so leap days fall at the end
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_738_234_567_890), "2025-01-30T10:56:07.890Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_round_trips_through_month_boundaries() {
        // Walk 1970..2100 day by day: the date must advance by exactly one calendar day.
        let mut prev = civil_from_days(0);
        for d in 1..(130 * 366) {
            let cur = civil_from_days(d);
            let next_day = cur.2 == prev.2 + 1 && cur.1 == prev.1 && cur.0 == prev.0;
            let next_month = cur.2 == 1 && cur.1 == prev.1 + 1 && cur.0 == prev.0;
            let next_year = cur == (prev.0 + 1, 1, 1) && prev.1 == 12 && prev.2 == 31;
            assert!(next_day || next_month || next_year, "{prev:?} -> {cur:?}");
            prev = cur;
        }
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_ms() > 1_704_067_200_000);
    }

    #[test]
    fn the_clock_follows_the_monotonic_clock_and_the_wall_clock() {
        let start = Instant::now();
        let later = start + std::time::Duration::from_millis(1500);
        assert!((at(later) - at(start) - 1500.0).abs() < 1e-6);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0;
        assert!((precise_ms() - wall).abs() < 1000.0);
        assert!(precise_ms() >= at(start));
    }
}
