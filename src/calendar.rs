//! Calendar primitives below the rules, the population figures and the configuration: sets of
//! UTC days ([`Days`]), an employee's recorded time off ([`Leave`]), the rollup sources whose
//! feed gaps are detected ([`Source`], [`Gaps`]), and what leaves a day out of a window
//! ([`Excludes`]; `rules::presence::Presence` is the one that knows an employee's).

use serde::{Deserialize, Serialize};

/// Whether a day is left out of a window of `source` (`None`: of any window).
pub trait Excludes {
    fn excluded(&self, day: i64, source: Option<Source>) -> bool;
}

/// A set of UTC days as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Days(Vec<(i32, i32)>);

impl Days {
    /// No day.
    pub const EMPTY: Days = Days(Vec::new());

    pub fn from_ranges(mut r: Vec<(i32, i32)>) -> Days {
        r.retain(|&(a, b)| a <= b);
        r.sort_unstable();
        let mut out: Vec<(i32, i32)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Days(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[(i32, i32)] {
        &self.0
    }

    /// Adds one day (kept sorted and merged).
    pub fn insert(&mut self, day: i64) {
        if self.contains(day) {
            return;
        }
        let mut r = std::mem::take(&mut self.0);
        r.push((day as i32, day as i32));
        *self = Days::from_ranges(r);
    }

    pub fn contains(&self, day: i64) -> bool {
        let i = self.0.partition_point(|&(_, b)| (b as i64) < day);
        self.0.get(i).is_some_and(|&(a, _)| a as i64 <= day)
    }

    /// How many days of `from..=to` the set holds.
    pub fn count(&self, from: i64, to: i64) -> i64 {
        if from > to || self.0.is_empty() {
            return 0;
        }
        let i = self.0.partition_point(|&(_, b)| (b as i64) < from);
        self.0[i..]
            .iter()
            .take_while(|&&(a, _)| a as i64 <= to)
            .map(|&(a, b)| (b as i64).min(to) - (a as i64).max(from) + 1)
            .sum()
    }

    /// The ranges meeting `from..=to`, clipped to it.
    pub fn clipped(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let i = self.0.partition_point(|&(_, b)| (b as i64) < from);
        self.0[i..]
            .iter()
            .take_while(move |&&(a, _)| a as i64 <= to)
            .map(move |&(a, b)| ((a as i64).max(from), (b as i64).min(to)))
    }

    /// Drops the days before `day`.
    pub fn forget_before(&mut self, day: i64) {
        self.0.retain(|&(_, b)| b as i64 >= day);
        if let Some(first) = self.0.first_mut() {
            first.0 = first.0.max(day as i32);
        }
    }
}

/// One `time_off.recorded`: its id's fingerprint and its days (no kind of leave is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    pub id: u64,
    pub from: i32,
    pub to: i32,
}

/// At most this many recorded spans are kept per employee (the oldest go first).
pub const MAX_LEAVES: usize = 64;
/// Spans that ended this long before the day of the event recording another are forgotten: no window of
/// any rule reaches that far back.
pub const LEAVE_HORIZON_DAYS: i64 = 400;

/// Records (or replaces) a span of time off.
pub fn record_leave(leaves: &mut Vec<Leave>, l: Leave, today: i64) {
    leaves.retain(|x| x.id != l.id && x.to as i64 >= today - LEAVE_HORIZON_DAYS);
    leaves.push(l);
    leaves.sort_unstable_by_key(|x| (x.from, x.to, x.id));
    if leaves.len() > MAX_LEAVES {
        let oldest = leaves
            .iter()
            .enumerate()
            .min_by_key(|(_, x)| (x.to, x.from))
            .map(|(i, _)| i)
            .unwrap_or(0);
        leaves.remove(oldest);
    }
}

/// Cancels a span; whether there was one.
pub fn cancel_leave(leaves: &mut Vec<Leave>, id: u64) -> bool {
    let n = leaves.len();
    leaves.retain(|x| x.id != id);
    leaves.len() != n
}

/// The rollup sources whose feed gaps are detected (docs/contract.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    Collab = 0,
    Tasks = 1,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Collab, Source::Tasks];
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Collab => "collab.activity",
            Source::Tasks => "work.tasks",
        }
    }
}

/// Per rollup source, its gap days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gaps(pub [Days; 2]);

impl Gaps {
    pub fn of(&self, s: Source) -> &Days {
        &self.0[s as usize]
    }
}
