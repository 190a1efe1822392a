//! Event time as a plain value: milliseconds since the Unix epoch, UTC. The engine never reads a
//! clock; every instant it sees was passed in.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Ts = i64;

pub const SECOND: Ts = 1_000;
pub const HOUR: Ts = 3_600 * SECOND;
pub const DAY: Ts = 24 * HOUR;

/// 2000-01-01T00:00:00Z: events before it are `timestamp_out_of_range` (docs/contract.md §2).
pub const MIN_EVENT_TIME: Ts = 946_684_800_000;

/// Parses an RFC 3339 timestamp that carries an offset (`Z` or `±hh:mm`).
pub fn parse_rfc3339(s: &str) -> Option<Ts> {
    if let Some(t) = parse_canonical(s.as_bytes()) {
        return Some(t);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The shape producers send, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, read without chrono's
/// general parser (it is most of an event's time-stamp cost). Anything else — other
/// separators, leap seconds, a date that does not exist — is `None` here and left to chrono,
/// so what is accepted and what it means do not change (a property test compares the two).
fn parse_canonical(b: &[u8]) -> Option<Ts> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64)
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > month_days || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        // Milliseconds, truncated as chrono's `timestamp_millis` does.
        let first3 = &frac[..n.min(3)];
        ms = digits(first3)? * 10i64.pow(3 - first3.len() as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 60 + om) * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm), proleptic Gregorian.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + mi * 60 + sec - offset;
    Some(secs * 1_000 + ms)
}

/// A `YYYY-MM-DD` date as its UTC day number (days since 1970-01-01), within years 1970–9999.
pub fn parse_date(s: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    // `%Y` accepts a sign and any width; the contract's form is exactly ten characters.
    if s.len() != 10 {
        return None;
    }
    let days = d
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    (days >= 0).then_some(days)
}

/// A UTC day number as `YYYY-MM-DD`.
pub fn format_date(day: i64) -> String {
    format_rfc3339(day_start(day))[..10].to_string()
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

    fn chrono(s: &str) -> Option<Ts> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    proptest::proptest! {
        /// Wherever the fast path answers, chrono gives the same instant; and the shape
        /// producers send is always taken by the fast path.
        #[test]
        fn canonical_fast_path_agrees_with_chrono(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61,
            sec in 0u32..61, frac in proptest::option::of("[0-9]{0,10}"),
            off in proptest::option::of((proptest::bool::ANY, 0u32..25, 0u32..61)),
        ) {
            let mut s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}");
            if let Some(f) = &frac {
                s.push('.');
                s.push_str(f);
            }
            match off {
                None => s.push('Z'),
                Some((neg, oh, om)) => s.push_str(&format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' })),
            }
            let fast = parse_canonical(s.as_bytes());
            if let Some(t) = fast {
                proptest::prop_assert_eq!(Some(t), chrono(&s), "{}", s);
            }
            if chrono(&s).is_some() && sec < 60 && frac.as_ref().is_none_or(|f| (1..=9).contains(&f.len())) {
                proptest::prop_assert_eq!(fast, chrono(&s), "{}", s);
            }
        }

        #[test]
        fn any_string_parses_as_chrono_says(s in "[0-9T:Z.+ tz-]{0,32}") {
            proptest::prop_assert_eq!(parse_rfc3339(&s), chrono(&s));
        }
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
