//! Event time as a plain value: milliseconds since the Unix epoch, UTC. The engine never reads a
//! clock; every instant it sees was passed in.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Ts = i64;

pub const SECOND: Ts = 1_000;
pub const HOUR: Ts = 3_600 * SECOND;
pub const DAY: Ts = 24 * HOUR;

/// 2000-01-01T00:00:00Z: events before it are `timestamp_out_of_range` (CONTRACT §2).
pub const MIN_EVENT_TIME: Ts = 946_684_800_000;

/// Parses an RFC 3339 timestamp that carries an offset (`Z` or `±hh:mm`).
pub fn parse_rfc3339(s: &str) -> Option<Ts> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Formats as RFC 3339 in UTC (`Z`), with milliseconds only when there are any.
pub fn format_rfc3339(ts: Ts) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ts) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("@{ts}ms"),
    }
}

/// The UTC day number (days since the epoch) an instant falls in.
pub fn day_of(ts: Ts) -> i64 {
    ts.div_euclid(DAY)
}

/// The first instant of a UTC day.
pub fn day_start(day: i64) -> Ts {
    day * DAY
}

/// Whole days in a duration, rounded down, for `window_days` in reasons.
pub fn whole_days(d: Ts) -> u32 {
    (d / DAY).max(0) as u32
}

/// Wall-clock now, for the I/O shell only (never the engine).
pub fn wall_clock_now() -> Ts {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_formats_in_utc() {
        let t = parse_rfc3339("2026-03-02T10:00:00+02:00").unwrap();
        assert_eq!(format_rfc3339(t), "2026-03-02T08:00:00Z");
        let t = parse_rfc3339("2026-03-02T08:00:00.250Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-03-02T08:00:00.250Z");
        assert!(
            parse_rfc3339("2026-03-02T08:00:00").is_none(),
            "offset is required"
        );
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn days_are_utc_and_floor_before_the_epoch() {
        let t = parse_rfc3339("2026-03-02T23:59:59Z").unwrap();
        assert_eq!(day_of(t) + 1, day_of(t + SECOND));
        assert_eq!(day_of(-1), -1);
        assert_eq!(
            day_start(day_of(t)),
            parse_rfc3339("2026-03-02T00:00:00Z").unwrap()
        );
    }
}
