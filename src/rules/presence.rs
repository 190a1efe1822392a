//! Days that do not count (docs/contract.md §8): the company calendar's non-working days, an employee's
//! recorded time off, and the days a rollup source delivered nothing (feed gaps). Rules measure
//! their windows in what remains:
//!
//! * a **window of daily totals** (`collaboration_decline`, the task ratio of `performance_dip`,
//!   the team rules) keeps its calendar span, leaves the excluded days out of its means, and is
//!   not judged when fewer than `population.min_window_share` of its days remain;
//! * a **window of events or a deadline** ("no recognition in 30 days", "not acknowledged within
//!   7 days") is measured in days present: the clock stops on excluded days, so a window reaching
//!   back over them grows by as many days, a deadline moves by as many, and an event on an
//!   excluded day counts neither way.
//!
//! Days are UTC day numbers (`time::day_of`).

use crate::time::{day_of, day_start, Ts, DAY};

pub use crate::calendar::{
    cancel_leave, record_leave, Days, Gaps, Leave, Source, LEAVE_HORIZON_DAYS, MAX_LEAVES,
};

/// What one employee's windows leave out: the calendar, their time off, and (for the windows
/// of a rollup source) that source's gaps.
#[derive(Debug, Clone, Copy)]
pub struct Presence<'a> {
    calendar: &'a Days,
    leave: &'a [Leave],
    gaps: &'a Gaps,
    /// The population's figures, for population-relative thresholds (`None`: not relative).
    figures: Option<&'a super::population::Figures>,
}

static NO_DAYS: Days = Days::EMPTY;
static NO_GAPS: Gaps = Gaps([Days::EMPTY, Days::EMPTY]);

impl<'a> Presence<'a> {
    pub fn new(calendar: &'a Days, leave: &'a [Leave], gaps: &'a Gaps) -> Presence<'a> {
        Presence {
            calendar,
            leave,
            gaps,
            figures: None,
        }
    }

    /// With the population's figures: the ratio rules scale their thresholds by them.
    pub fn with_figures(self, figures: Option<&'a super::population::Figures>) -> Presence<'a> {
        Presence { figures, ..self }
    }

    pub fn figures(&self) -> Option<&'a super::population::Figures> {
        self.figures
    }

    /// Every day counts.
    pub fn everyday() -> Presence<'static> {
        Presence::new(&NO_DAYS, &[], &NO_GAPS)
    }

    /// No gap days.
    pub fn no_gaps() -> &'static Gaps {
        &NO_GAPS
    }

    /// Nothing is left out of event windows and deadlines.
    fn all_present(&self) -> bool {
        self.calendar.is_empty() && self.leave.is_empty()
    }

    /// The employee is off on `day` (calendar or time off).
    pub fn off(&self, day: i64) -> bool {
        self.calendar.contains(day)
            || self
                .leave
                .iter()
                .any(|l| l.from as i64 <= day && day <= l.to as i64)
    }

    /// The event at `t` falls on a day that does not count.
    pub fn off_at(&self, t: Ts) -> bool {
        !self.all_present() && self.off(day_of(t))
    }

    /// `day` is left out of the windows of `source` (off, or a gap of the source).
    pub fn excluded(&self, day: i64, source: Option<Source>) -> bool {
        self.off(day) || source.is_some_and(|s| self.gaps.of(s).contains(day))
    }

    /// How many days of `from..=to` are left out of `source`'s windows (or, with `None`, of
    /// any window: calendar and time off).
    pub fn excluded_days(&self, from: i64, to: i64, source: Option<Source>) -> i64 {
        if from > to {
            return 0;
        }
        let gaps = source.map(|s| self.gaps.of(s)).filter(|g| !g.is_empty());
        if self.leave.is_empty() && gaps.is_none() {
            return self.calendar.count(from, to);
        }
        let mut r: Vec<(i64, i64)> = self.calendar.clipped(from, to).collect();
        if let Some(g) = gaps {
            r.extend(g.clipped(from, to));
        }
        r.extend(
            self.leave
                .iter()
                .map(|l| ((l.from as i64).max(from), (l.to as i64).min(to)))
                .filter(|(a, b)| a <= b),
        );
        r.sort_unstable();
        let (mut n, mut end) = (0i64, i64::MIN);
        for (a, b) in r {
            let a = a.max(end.saturating_add(1));
            if a <= b {
                n += b - a + 1;
            }
            end = end.max(b);
        }
        n
    }

    /// The time of `a..b` that falls on days off.
    fn off_within(&self, a: Ts, b: Ts) -> Ts {
        if b <= a {
            return 0;
        }
        let (da, db) = (day_of(a), day_of(b - 1));
        let mut off = self.excluded_days(da, db, None) * DAY;
        // The first and last days only partly lie in `a..b`.
        if self.off(da) {
            off -= a - day_start(da);
        }
        if self.off(db) {
            off -= day_start(db + 1) - b;
        }
        off
    }

    /// The time present in `a..b`.
    pub fn present_between(&self, a: Ts, b: Ts) -> Ts {
        if b <= a {
            return 0;
        }
        (b - a)
            - if self.all_present() {
                0
            } else {
                self.off_within(a, b)
            }
    }

    /// The instant `d` of present time after `t`: a deadline that does not run on days off.
    pub fn after(&self, t: Ts, d: Ts) -> Ts {
        let end = t.saturating_add(d);
        if self.all_present() || d <= 0 {
            return end;
        }
        // Each round adds the time off found so far: a lower bound of the answer, which never
        // lies inside a day off (present time does not grow there), so a bound that does moves
        // to the end of those days off.
        let mut e = end;
        loop {
            let mut next = end.saturating_add(self.off_within(t, e));
            if next != Ts::MAX && self.off(day_of(next)) && next != day_start(day_of(next)) {
                let mut day = day_of(next);
                while self.off(day) {
                    day += 1;
                }
                next = day_start(day);
            }
            if next <= e || next == Ts::MAX {
                return next.max(e);
            }
            e = next;
        }
    }

    /// The start of the window that holds `d` of present time before `t` (the latest such).
    pub fn before(&self, t: Ts, d: Ts) -> Ts {
        let start = t.saturating_sub(d);
        if self.all_present() || d <= 0 {
            return start;
        }
        // As in `after`, from above: a bound inside days off moves to their start.
        let mut s = start;
        loop {
            let mut next = start.saturating_sub(self.off_within(s, t));
            if next != Ts::MIN && self.off(day_of(next)) {
                let mut day = day_of(next);
                while self.off(day - 1) {
                    day -= 1;
                }
                next = day_start(day);
            }
            if next >= s || next == Ts::MIN {
                return next.min(s);
            }
            s = next;
        }
    }

    /// How many of `times` fall in `from..=to` on days present.
    pub fn count_present(&self, times: &[Ts], from: Ts, to: Ts) -> usize {
        times
            .iter()
            .filter(|&&t| t >= from && t <= to && !self.off_at(t))
            .count()
    }

    /// Days of `from..=to` that are excluded from every window (calendar and time off), for a
    /// reason's "N days excluded".
    pub fn off_days(&self, from: Ts, to: Ts) -> i64 {
        if self.all_present() || to < from {
            0
        } else {
            self.excluded_days(day_of(from), day_of(to), None)
        }
    }
}

/// "N days excluded" for a reason's detail, or nothing when none were.
impl crate::calendar::Excludes for Presence<'_> {
    fn excluded(&self, day: i64, source: Option<Source>) -> bool {
        Presence::excluded(self, day, source)
    }
}

pub fn excluded_note(n: i64) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 day excluded".to_string(),
        n => format!("; {n} days excluded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn days_merge_and_count() {
        let d = Days::from_ranges(vec![(10, 12), (13, 13), (20, 25), (5, 5)]);
        assert_eq!(d.ranges(), &[(5, 5), (10, 13), (20, 25)]);
        assert_eq!(d.count(0, 100), 11);
        assert_eq!(d.count(12, 21), 4);
        assert!(d.contains(13) && !d.contains(14));
    }

    #[test]
    fn a_deadline_stops_on_days_off() {
        let cal = Days::from_ranges(vec![(1, 2)]);
        let leave = [Leave {
            id: 1,
            from: 4,
            to: 4,
        }];
        let p = Presence::new(&cal, &leave, &NO_GAPS);
        // From noon of day 0, three days present: the rest of day 0, days 3 and 5, day 6
        // until noon.
        let t = DAY / 2;
        assert_eq!(p.after(t, 3 * DAY), 6 * DAY + DAY / 2);
        assert_eq!(p.present_between(t, 6 * DAY + DAY / 2), 3 * DAY);
        assert_eq!(p.before(6 * DAY + DAY / 2, 3 * DAY), t);
        // Starting on a day off, the clock starts when it ends.
        assert_eq!(p.after(DAY + 5, DAY), 4 * DAY);
        assert_eq!(Presence::everyday().after(t, DAY), t + DAY);
    }

    proptest! {
        /// `after` and `before` agree with `present_between`, and with a day-by-day count.
        #[test]
        fn present_time_is_consistent(
            ranges in prop::collection::vec((0i32..60, 0i32..5), 0..6),
            leaves in prop::collection::vec((0i32..60, 0i32..8), 0..3),
            t in 0i64..(40 * DAY),
            d in 1i64..(20 * DAY),
        ) {
            let cal = Days::from_ranges(ranges.iter().map(|&(a, n)| (a, a + n)).collect());
            let leave: Vec<Leave> = leaves.iter().enumerate()
                .map(|(i, &(a, n))| Leave { id: i as u64, from: a, to: a + n }).collect();
            let p = Presence::new(&cal, &leave, &NO_GAPS);
            let e = p.after(t, d);
            prop_assert_eq!(p.present_between(t, e), d);
            prop_assert!(e == t + d || p.present_between(t, e - 1) < d);
            let s = p.before(e, d);
            // The latest start: `t` itself, or later over time off that `t` fell in.
            prop_assert_eq!(p.present_between(t.min(s), t.max(s)), 0);
            prop_assert_eq!(p.present_between(s, e), d);
            let naive: i64 = (0..80).filter(|&day| p.off(day)).count() as i64;
            prop_assert_eq!(p.excluded_days(0, 79, None), naive);
        }
    }
}
