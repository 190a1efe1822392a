//! Population figures (docs/contract.md §8).
//!
//! Per UTC day: how many employees are active (any event in the 28 days up to the day), per
//! rollup source how many sent one, and the sums the ratio rules use. Figures are additive:
//! each task contributes its share of a day once its watermark has passed the day's end (its
//! [`Accumulator`]), and the population is the sum of every task's share ([`Figures`]). From
//! the figures come the feed gaps (a source's day with far fewer employees reporting than
//! usual) and the population's ratios the ratio rules are scaled by.
//!
//! In `replay` one engine holds every employee and closes its own days. In `run` each task
//! publishes its shares to the population topic and reads the sums back (`runtime::population`);
//! a task does not let its watermark pass the end of a day the population has not closed, so
//! every rule sees the same figures at the same point of the stream as `replay`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::{Days, Excludes, Gaps, Source};
use crate::time::{day_start, Ts};

/// Days of figures kept: the longest window (with its margin for exclusions) and the 8 weeks
/// of history of a gap's judgement fit well inside.
pub const KEEP_DAYS: i64 = 400;

/// An employee counts as active on the days up to this many after one of their events.
pub const ACTIVE_DAYS: i64 = 28;
/// Weeks of the same weekday a gap is judged against, and the fewest needed.
pub const GAP_WEEKS: i64 = 8;
pub const GAP_MIN_WEEKS: usize = 3;
/// A gap is judged only against a median of at least this many reporters: in a smaller
/// population a day without rollups cannot be told from a few quiet people.
pub const GAP_MIN_REPORTERS: f64 = 10.0;

/// One day's figures (a task's share, or the sum of every task's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFigures {
    pub active: u32,
    /// Employees with any event that day.
    pub present: u32,
    /// Per [`Source`]: employees who sent a rollup that day.
    pub reported: [u32; 2],
    /// `collab.activity` messages + meetings.
    pub collab: u64,
    pub tasks_completed: u64,
    pub tasks_planned: u64,
    pub checkins_completed: u64,
}

impl DayFigures {
    pub fn add(&mut self, o: &DayFigures) {
        self.active += o.active;
        self.present += o.present;
        for i in 0..2 {
            self.reported[i] += o.reported[i];
        }
        self.collab += o.collab;
        self.tasks_completed += o.tasks_completed;
        self.tasks_planned += o.tasks_planned;
        self.checkins_completed += o.checkins_completed;
    }
}

/// A task's figures of the days it has not closed yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    /// The last day closed (shared); days after it are open.
    pub closed_through: Option<i32>,
    /// Changes of the active count, by day (a difference array): +1 where an employee's
    /// coverage starts, -1 the day after it ends.
    active_delta: BTreeMap<i32, i32>,
    /// The active count at the end of the last closed day.
    active: i64,
    open: BTreeMap<i32, DayFigures>,
}

impl Accumulator {
    /// Only days not closed yet take contributions (an event's effect on a closed day would
    /// depend on how far this task's watermark had got: on the partitioning).
    fn open_day(&self, day: i64) -> bool {
        self.closed_through.is_none_or(|c| day > c as i64)
    }

    /// An employee's first event of `day`, their last before it on `prev` (if any).
    pub fn seen(&mut self, prev: Option<i64>, day: i64) {
        let start = match prev {
            Some(p) if p >= day => return,
            Some(p) => (p + ACTIVE_DAYS).max(day),
            None => day,
        };
        let start = match self.closed_through {
            Some(c) => start.max(c as i64 + 1),
            None => start,
        };
        let end = day + ACTIVE_DAYS; // exclusive
        if start < end {
            *self.active_delta.entry(start as i32).or_default() += 1;
            *self.active_delta.entry(end as i32).or_default() -= 1;
        }
    }

    /// A rollup of `source` on `day`; `first` when it is the employee's first of the day.
    pub fn rollup(&mut self, source: Source, day: i64, first: bool, a: u64, b: u64) {
        if !self.open_day(day) {
            return;
        }
        let f = self.open.entry(day as i32).or_default();
        if first {
            f.reported[source as usize] += 1;
        }
        match source {
            Source::Collab => f.collab += a,
            Source::Tasks => {
                f.tasks_completed += a;
                f.tasks_planned += b;
            }
        }
    }

    /// An employee's first event of `day`.
    pub fn present(&mut self, day: i64) {
        if self.open_day(day) {
            self.open.entry(day as i32).or_default().present += 1;
        }
    }

    pub fn checkin_completed(&mut self, day: i64) {
        if self.open_day(day) {
            self.open.entry(day as i32).or_default().checkins_completed += 1;
        }
    }

    /// Closes every day up to `day`: their shares, final.
    pub fn close_through(&mut self, day: i64) -> Vec<(i32, DayFigures)> {
        let from = self.closed_through.map_or_else(
            || {
                let first = self.active_delta.keys().next().copied();
                let first_open = self.open.keys().next().copied();
                match (first, first_open) {
                    (Some(a), Some(b)) => a.min(b) as i64,
                    (a, b) => a.or(b).map_or(day + 1, |d| d as i64),
                }
            },
            |c| c as i64 + 1,
        );
        let mut out = Vec::new();
        for d in from..=day {
            if let Some(delta) = self.active_delta.remove(&(d as i32)) {
                self.active += delta as i64;
            }
            let mut f = self.open.remove(&(d as i32)).unwrap_or_default();
            f.active = self.active.max(0) as u32;
            if f != DayFigures::default() {
                out.push((d as i32, f));
            }
        }
        if from <= day || self.closed_through.is_none() {
            self.closed_through = Some(day as i32);
        }
        out
    }
}

/// The population's figures: the sum of every task's shares, by day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    days: BTreeMap<i32, DayFigures>,
}

impl Figures {
    pub fn add(&mut self, day: i32, f: &DayFigures) {
        self.days.entry(day).or_default().add(f);
    }

    pub fn first_day(&self) -> Option<i64> {
        self.days.keys().next().map(|&d| d as i64)
    }

    pub fn get(&self, day: i64) -> DayFigures {
        self.days.get(&(day as i32)).copied().unwrap_or_default()
    }

    /// Day `day` is a gap of `source`: fewer employees sent one than `share` of the median of
    /// the same weekday over the previous [`GAP_WEEKS`] weeks (with at least
    /// [`GAP_MIN_WEEKS`] of them known).
    pub fn is_gap(&self, day: i64, source: Source, share: f64) -> bool {
        self.is_low(day, share, |f| f.reported[source as usize])
    }

    /// Day `day` is one the population was away: fewer employees had any event than `share`
    /// of the median of the same weekday (as for [`Figures::is_gap`]).
    pub fn is_away(&self, day: i64, share: f64) -> bool {
        self.is_low(day, share, |f| f.present)
    }

    fn is_low(&self, day: i64, share: f64, of: impl Fn(&DayFigures) -> u32) -> bool {
        let mut prev: Vec<u32> = (1..=GAP_WEEKS)
            .filter_map(|w| self.days.get(&((day - 7 * w) as i32)))
            .map(&of)
            .collect();
        if prev.len() < GAP_MIN_WEEKS {
            return false;
        }
        prev.sort_unstable();
        let n = prev.len();
        let median = if n % 2 == 1 {
            prev[n / 2] as f64
        } else {
            (prev[n / 2 - 1] as f64 + prev[n / 2] as f64) / 2.0
        };
        median >= GAP_MIN_REPORTERS && (of(&self.get(day)) as f64) < share * median
    }

    /// Forgets the days before `day`.
    pub fn forget_before(&mut self, day: i64) {
        self.days = self.days.split_off(&(day as i32));
    }

    /// Sets a day's figures (the population's sum, read back in `run`).
    pub fn set(&mut self, day: i32, f: DayFigures) {
        self.days.insert(day, f);
    }

    /// `f` of each day of `from..=to` that `pres` does not leave out of `source`'s windows,
    /// added up.
    fn sum(
        &self,
        from: i64,
        to: i64,
        pres: &impl Excludes,
        source: Option<Source>,
        f: impl Fn(&DayFigures) -> (u64, u64),
    ) -> (u64, u64) {
        let (mut a, mut b) = (0, 0);
        for (&d, x) in self.days.range(from as i32..=to as i32) {
            if !pres.excluded(d as i64, source) {
                let (x, y) = f(x);
                a += x;
                b += y;
            }
        }
        (a, b)
    }

    /// The population's ratio of `f`'s quotient over the recent window `rf..=day` to the one
    /// over the baseline `bf..rf-1` (the subject's windows, with the subject's exclusions),
    /// leaving out the subject's own part of each sum (`subject`) — the subject is compared
    /// with everyone else — or `None` when either is not known (no figures, a zero
    /// denominator) or everyone else is fewer than [`MIN_OTHERS`] a day (employees sending
    /// the source's rollups, or active ones).
    /// `cap`: quotients above 1 count as 1 (completion ratios).
    pub fn ratio(
        &self,
        (bf, rf, day): (i64, i64, i64),
        pres: &impl Excludes,
        source: Option<Source>,
        cap: bool,
        f: impl Fn(&DayFigures) -> (u64, u64),
        subject: Subject,
    ) -> Option<f64> {
        let minus = subject.sums;
        // Everyone else: those who sent the source's rollups (for a source's ratio), or the
        // active employees.
        let (others, days) = self.sum(rf, day, pres, source, |d| {
            let n = match source {
                Some(s) => d.reported[s as usize],
                None => d.active,
            };
            (n as u64, 1)
        });
        if days == 0 || (others as f64 / days as f64) - (subject.members as f64) < MIN_OTHERS {
            return None;
        }
        let q = |(a, b): (u64, u64), (ma, mb): (u64, u64)| {
            let (a, b) = (a.saturating_sub(ma), b.saturating_sub(mb));
            (b > 0).then(|| {
                let v = a as f64 / b as f64;
                if cap {
                    v.min(1.0)
                } else {
                    v
                }
            })
        };
        let recent = q(self.sum(rf, day, pres, source, &f), minus[0])?;
        let base = q(self.sum(bf, rf - 1, pres, source, &f), minus[1])?;
        (base > 0.0).then(|| recent / base)
    }
}

/// Fewer other active employees a day than this and a population-relative threshold is not
/// applied (the subject is judged on the rule's ratio alone): a handful of colleagues is not a
/// population.
pub const MIN_OTHERS: f64 = 10.0;

/// A ratio rule's subject, as the population's sums are taken without it.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    /// Its own part of the sums: (numerator, denominator), recent window then baseline.
    pub sums: [(u64, u64); 2],
    /// How many employees it is (1, or a team's members).
    pub members: u64,
}

/// What a ratio rule compares its subject with: the population's ratio over the same windows
/// (docs/contract.md §8, `population.relative`).
pub fn scaled(rule_ratio: f64, population_ratio: Option<f64>) -> f64 {
    rule_ratio * population_ratio.map_or(1.0, |p| p.min(1.0))
}

/// A reason's words for the population's ratio.
pub fn population_detail(what: &str, ratio: f64) -> String {
    format!(
        "over the same days everyone else's {what} was {}% of before; the threshold is scaled by it when it is below 100%",
        (ratio * 100.0).round()
    )
}

/// The population side of an engine.
#[derive(Debug, Default)]
pub struct Population {
    /// This engine's share of the days not closed yet.
    pub acc: Accumulator,
    /// The population's figures, by day.
    pub figures: Figures,
    /// Per source, the days found to be feed gaps.
    pub gaps: Gaps,
    /// The last day whose population figures are final (and judged for gaps).
    pub closed: Option<i64>,
    /// `replay`, or `run` without the population topic: this engine's share is the population.
    pub local: bool,
    /// Publish mode: shares closed and not handed out yet.
    pub outbox: Vec<(i32, DayFigures)>,
    /// Gap days found since they were last taken (for the log and the metric).
    pub found: Vec<(i64, Source)>,
    /// The accumulator changed since the last checkpoint.
    pub dirty: bool,
    /// `population.gap_share`.
    pub gap_share: f64,
    /// `closed` as the last checkpoint wrote it (a task that is its own population).
    pub written_closed: Option<i64>,
    /// What the team and cohort windows leave out: the calendar, and the days the population
    /// was away (far fewer employees with any event than on the same weekday before: an
    /// undeclared holiday).
    pub group_calendar: Days,
}

impl Population {
    pub fn new(gap_share: f64, calendar: &Days) -> Population {
        Population {
            local: true,
            gap_share,
            group_calendar: calendar.clone(),
            ..Default::default()
        }
    }

    /// The latest watermark the engine may have: short of the end of the day after the last
    /// closed one (passing it would close a day whose figures are not in).
    pub fn limit(&self) -> Ts {
        match self.closed {
            _ if self.local => Ts::MAX,
            Some(c) => day_start(c + 2).saturating_sub(1),
            None => Ts::MIN,
        }
    }

    /// Restored figures (a task that is its own population): the days the population was
    /// away follow from them.
    pub fn restore(&mut self, closed: Option<i64>, figures: Figures, gaps: Gaps, calendar: &Days) {
        self.group_calendar = calendar.clone();
        if let Some(c) = closed {
            for d in figures.first_day().unwrap_or(c + 1)..=c {
                if figures.is_away(d, self.gap_share) {
                    self.group_calendar.insert(d);
                }
            }
        }
        self.closed = closed;
        self.written_closed = closed;
        self.figures = figures;
        self.gaps = gaps;
    }

    /// Closes this engine's share through `day` (the engine's watermark passed its end).
    pub fn close_share(&mut self, day: i64) {
        if self.acc.closed_through.is_some_and(|c| c as i64 >= day) {
            return;
        }
        let shares = self.acc.close_through(day);
        self.dirty = true;
        if self.local {
            // (Restored figures may hold some of these days already: see `changelog`.)
            for (d, f) in shares
                .iter()
                .filter(|s| self.closed.is_none_or(|c| s.0 as i64 > c))
            {
                self.figures.add(*d, f);
            }
            self.closed_through(day);
        } else {
            self.outbox.extend(shares);
        }
    }

    /// The population's figures are final through `day`: judges each newly closed day for
    /// gaps.
    pub fn closed_through(&mut self, day: i64) {
        let gap_share = self.gap_share;
        let from = match self.closed {
            Some(c) if c >= day => return,
            Some(c) => c + 1,
            None => self.figures.first_day().unwrap_or(day).min(day),
        };
        for d in from..=day {
            for s in Source::ALL {
                if self.figures.is_gap(d, s, gap_share) {
                    self.gaps.0[s as usize].insert(d);
                    self.found.push((d, s));
                }
            }
            if self.figures.is_away(d, gap_share) {
                self.group_calendar.insert(d);
            }
        }
        // (The task's own share closes with its own watermark, never here: a task restored
        // behind the population closes the same days again, its active count carried through
        // each of them, and sends the same shares — the table has them already.)
        self.closed = Some(day);
        self.figures.forget_before(day - KEEP_DAYS);
        for g in &mut self.gaps.0 {
            g.forget_before(day - KEEP_DAYS);
        }
    }
}

/// The population's table as every task reads it from the population topic (`run`): each
/// task's shares and the last day it closed, read in the topic's one order. The population
/// has closed a day when every task has (a task that said it is empty — no event yet, idle
/// for `time.idle_timeout`, docs/contract.md §3 — is not waited for); that only ever moves forward,
/// and a share of a day already closed is not taken (a task restarted from its changelog
/// sends its shares again; one that was empty and has events now is too late for those days
/// — the same for every reader, as they read the same order).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Per task: the last day closed (`Some(i64::MAX)`: empty), `None` until it says.
    closed: Vec<Option<i64>>,
    /// Per day, per task, its share.
    shares: BTreeMap<i32, Vec<DayFigures>>,
    /// The last day every task has closed.
    pub through: Option<i64>,
    /// The reader has read what the topic held when it started: until then no day closes (a
    /// restarted instance's own closes must not run ahead of what the others published).
    ready: bool,
}

/// A task's closed day in the table when it is empty and idle.
pub const EMPTY_TASK: i64 = i64::MAX;

impl Table {
    pub fn new(tasks: usize) -> Table {
        Table {
            closed: vec![None; tasks],
            ready: true,
            ..Table::default()
        }
    }

    /// A table that closes no day until [`Table::caught_up`].
    pub fn reading(tasks: usize) -> Table {
        Table {
            ready: false,
            ..Table::new(tasks)
        }
    }

    /// The topic's records up to its end at the start are read: days may close. True when
    /// the population's closed day moved.
    pub fn caught_up(&mut self) -> bool {
        if self.ready {
            return false;
        }
        self.ready = true;
        self.recompute()
    }

    pub fn tasks(&self) -> usize {
        self.closed.len()
    }

    /// Task `task`'s share of `day`.
    pub fn share(&mut self, task: usize, day: i32, f: DayFigures) {
        let n = self.closed.len();
        if task >= n || self.through.is_some_and(|t| day as i64 <= t) {
            return;
        }
        self.shares
            .entry(day)
            .or_insert_with(|| vec![DayFigures::default(); n])[task] = f;
    }

    /// Task `task` closed every day through `day` (`EMPTY_TASK`: it is empty); true when
    /// the population's closed day moved.
    pub fn closed(&mut self, task: usize, day: i64) -> bool {
        let Some(c) = self.closed.get_mut(task) else {
            return false;
        };
        // An empty task that has events now: its closes count from here on.
        *c = Some(match *c {
            Some(EMPTY_TASK) => day,
            Some(old) if day != EMPTY_TASK => old.max(day),
            Some(old) => old,
            None => day,
        });
        self.recompute()
    }

    fn recompute(&mut self) -> bool {
        if !self.ready {
            return false;
        }
        let Some(known) = self.closed.iter().copied().collect::<Option<Vec<i64>>>() else {
            return false;
        };
        let Some(least) = known.into_iter().filter(|&d| d != EMPTY_TASK).min() else {
            return false;
        };
        if self.through.is_some_and(|t| least <= t) {
            return false;
        }
        self.through = Some(least);
        // Days long closed are not read again.
        let keep = (least - KEEP_DAYS) as i32;
        self.shares = self.shares.split_off(&keep);
        true
    }

    /// Each day's figures after `after` through `through`: the sum of every task's share.
    pub fn figures(&self, after: Option<i64>, through: i64) -> Vec<(i32, DayFigures)> {
        let from = after.map_or(i32::MIN, |a| (a + 1) as i32);
        self.shares
            .range(from..=through as i32)
            .map(|(&d, v)| {
                let mut f = DayFigures::default();
                for x in v {
                    f.add(x);
                }
                (d, f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_counts_an_employee_for_28_days_after_each_event_once() {
        let mut a = Accumulator::default();
        a.seen(None, 10);
        a.seen(Some(10), 20); // coverage 10..=37 then extends to 47
        a.seen(None, 12);
        let days = a.close_through(60);
        let active = |d: i32| days.iter().find(|x| x.0 == d).map_or(0, |x| x.1.active);
        assert_eq!(
            (active(9), active(10), active(12), active(39)),
            (0, 1, 2, 2)
        );
        assert_eq!((active(40), active(47), active(48)), (1, 1, 0));
    }

    #[test]
    fn closed_days_take_no_more_and_shares_add_up() {
        let mut a = Accumulator::default();
        a.rollup(Source::Collab, 5, true, 10, 0);
        let first = a.close_through(5);
        a.rollup(Source::Collab, 5, true, 99, 0); // late: day 5 is closed
        a.rollup(Source::Collab, 6, true, 7, 0);
        let second = a.close_through(6);
        assert_eq!(
            first,
            vec![(
                5,
                DayFigures {
                    reported: [1, 0],
                    collab: 10,
                    ..Default::default()
                }
            )]
        );
        assert_eq!(second[0].1.collab, 7);
        let mut f = Figures::default();
        for (d, x) in first.iter().chain(&second) {
            f.add(*d, x);
            f.add(*d, x);
        }
        assert_eq!(f.get(5).collab, 20);
    }

    #[test]
    fn a_day_far_below_its_weekday_median_is_a_gap() {
        let mut f = Figures::default();
        for w in 1..=8 {
            f.add(
                100 - 7 * w,
                &DayFigures {
                    reported: [100, 90],
                    ..Default::default()
                },
            );
        }
        f.add(
            100,
            &DayFigures {
                reported: [40, 90],
                ..Default::default()
            },
        );
        assert!(f.is_gap(100, Source::Collab, 0.5));
        assert!(!f.is_gap(100, Source::Tasks, 0.5));
        assert!(!f.is_gap(30, Source::Collab, 0.5), "too little history");
    }
}
