//! Shared window arithmetic: daily totals in a ring of UTC days, and time-stamped lists pruned
//! to a horizon.

use serde::{Deserialize, Serialize};

use crate::time::Ts;

/// Daily totals for the last `len` UTC days (saturating at `u16::MAX` per day). The storage
/// grows with the history actually seen, up to `len` days: an employee with a week of history
/// holds a week of counts, not the whole window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRing")]
pub struct DayRing {
    last_day: i32,
    /// The total over every day the ring holds (an empty ring answers every sum at once).
    total: u32,
    /// How many days the ring covers at most.
    len: u32,
    /// The days `last_day - counts.len() + 1 ..= last_day`, oldest first; older days inside
    /// the window count as 0.
    counts: Vec<u16>,
}

/// A ring as stored (the same fields): read back from a changelog, its invariants are made to
/// hold again — at most `len` days, at least one, and a total that is the sum of its days —
/// so corrupt bytes that still decode cannot make the arithmetic overflow (found by fuzzing
/// the changelog). A ring of more days than a `u32` total can sum is refused: the state does
/// not decode, and is counted as corrupt.
#[derive(Deserialize)]
struct StoredRing {
    last_day: i32,
    #[allow(dead_code)]
    total: u32,
    len: u32,
    counts: Vec<u16>,
}

impl TryFrom<StoredRing> for DayRing {
    type Error = String;

    fn try_from(r: StoredRing) -> Result<DayRing, String> {
        let len = r.len.max(1);
        let mut counts = r.counts;
        if counts.len() > len as usize {
            counts.drain(..counts.len() - len as usize);
        }
        if counts.len() > (u32::MAX / u16::MAX as u32) as usize {
            return Err(format!("a ring of {} days", counts.len()));
        }
        let total = counts.iter().map(|&c| c as u32).sum();
        Ok(DayRing {
            last_day: r.last_day,
            total,
            len,
            counts,
        })
    }
}

impl DayRing {
    pub fn new(len: usize, day: i64) -> DayRing {
        DayRing {
            last_day: day as i32,
            total: 0,
            len: len.clamp(1, u32::MAX as usize) as u32,
            counts: Vec::new(),
        }
    }

    pub fn len(&self) -> i64 {
        self.len as i64
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The newest day the ring has moved to.
    pub fn last_day(&self) -> i64 {
        self.last_day as i64
    }

    /// The oldest day stored.
    fn first_stored(&self) -> i64 {
        self.last_day as i64 - self.counts.len() as i64 + 1
    }

    pub fn get(&self, day: i64) -> u32 {
        let first = self.first_stored();
        if day > self.last_day as i64 || day < first {
            0
        } else {
            self.counts[(day - first) as usize] as u32
        }
    }

    /// Makes room for `extra` more days: the first day stored reserves the whole window, so the
    /// ring never reallocates. (What it holds, and its serialized form, still grow with the
    /// history seen; resident memory is the steady state's from the first day — after a window
    /// of history every ring is full anyway — which is also what a deployment must plan for.)
    fn grow(&mut self, extra: usize) {
        let need = (self.counts.len() + extra).min(self.len as usize);
        if need > self.counts.capacity() {
            self.counts
                .reserve_exact((self.len as usize).max(need) - self.counts.len());
        }
    }

    /// Adds `v` to `day`. Days older than the ring holds are dropped.
    pub fn add(&mut self, day: i64, v: u32) {
        let len = self.len();
        let last = self.last_day as i64;
        if day > last {
            let gap = day - last;
            if gap >= len {
                self.counts.clear();
                self.total = 0;
            } else {
                let keep = (len - gap) as usize;
                if self.counts.len() > keep {
                    let drop = self.counts.len() - keep;
                    let dropped: u32 = self.counts[..drop].iter().map(|&c| c as u32).sum();
                    self.total -= dropped;
                    self.counts.drain(..drop);
                }
            }
            self.last_day = day as i32;
            // The days between the old last day and `day` are zeros; `day` itself is pushed
            // below.
            let zeros = (gap.min(len) - 1) as usize;
            if !self.counts.is_empty() {
                self.grow(zeros + 1);
                self.counts.extend(std::iter::repeat_n(0, zeros));
            }
            self.grow(1);
            self.counts.push(0);
        } else if day <= last - len {
            return;
        } else if day < self.first_stored() {
            // A late day inside the window but before anything stored: prepend zeros.
            let front = (self.first_stored() - day) as usize;
            self.grow(front);
            self.counts.splice(0..0, std::iter::repeat_n(0, front));
        }
        let i = (day - self.first_stored()) as usize;
        let slot = &mut self.counts[i];
        let before = *slot;
        *slot = slot.saturating_add(v.min(u16::MAX as u32) as u16);
        self.total += (*slot - before) as u32;
    }

    /// Makes the ring cover `len` days, keeping what it holds (the oldest days go when it
    /// shrinks).
    pub fn set_len(&mut self, len: usize) {
        let len = len.clamp(1, u32::MAX as usize);
        if self.counts.len() > len {
            let drop = self.counts.len() - len;
            let dropped: u32 = self.counts[..drop].iter().map(|&c| c as u32).sum();
            self.total -= dropped;
            self.counts.drain(..drop);
        }
        self.len = len as u32;
    }

    /// The oldest day the ring can answer for (older days are forgotten).
    pub fn horizon(&self) -> i64 {
        self.last_day as i64 - self.len as i64 + 1
    }

    /// Hints the CPU to load the stored days (see `Engine::prefetch`).
    pub fn prefetch(&self) {
        crate::index::prefetch_lines(
            self.counts.as_ptr() as *const u8,
            std::mem::size_of_val(self.counts.as_slice()),
        );
    }

    /// The total over `from..=to`.
    pub fn sum(&self, from: i64, to: i64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let first = self.first_stored();
        let (from, to) = (from.max(first), to.min(self.last_day as i64));
        if from > to {
            return 0;
        }
        self.counts[(from - first) as usize..=(to - first) as usize]
            .iter()
            .map(|&c| c as u64)
            .sum()
    }
}

impl DayRing {
    /// The total and the number of days of `from..=to` that `pres` does not leave out of
    /// `source`'s windows.
    pub fn sum_present(
        &self,
        from: i64,
        to: i64,
        pres: &super::presence::Presence<'_>,
        source: Option<super::presence::Source>,
    ) -> (u64, i64) {
        if from > to {
            return (0, 0);
        }
        let excluded = pres.excluded_days(from, to, source);
        if excluded == 0 {
            return (self.sum(from, to), to - from + 1);
        }
        let sum = (from..=to)
            .filter(|&d| !pres.excluded(d, source))
            .map(|d| self.get(d) as u64)
            .sum();
        (sum, to - from + 1 - excluded)
    }
}

/// How many days a ring of daily totals holds beyond its windows' span, so that its windows can
/// reach back over excluded days (docs/contract.md §8): a holiday of up to about three weeks, with its
/// weekends, does not shorten them.
pub const EXCLUSION_MARGIN_DAYS: i64 = 28;

/// The window of `n` days present that ends on day `to`, reaching back over the days `pres`
/// leaves out of `source`'s windows but not before day `floor`: its first day and how many days
/// present it holds (fewer than `n` when it met the floor).
pub fn present_window(
    to: i64,
    n: i64,
    floor: i64,
    pres: &super::presence::Presence<'_>,
    source: Option<super::presence::Source>,
) -> (i64, i64) {
    let from = to - n + 1;
    if from >= floor && pres.excluded_days(from, to, source) == 0 {
        return (from, n);
    }
    let (mut day, mut got) = (to + 1, 0);
    while got < n && day > floor {
        day -= 1;
        if !pres.excluded(day, source) {
            got += 1;
        }
    }
    (day, got)
}

/// Whether a window of `len` days with `present` of them left is judged.
pub fn enough_days(present: i64, len: i64, min_share: f64) -> bool {
    present > 0 && present as f64 >= (len as f64 * min_share).ceil()
}

/// Keeps the instants at or after `since`; returns how many remain.
pub fn prune(times: &mut Vec<Ts>, since: Ts) -> usize {
    times.retain(|&t| t >= since);
    times.len()
}

/// Inserts keeping time order (late events land in place); drops the oldest beyond `cap`.
pub fn insert_sorted(times: &mut Vec<Ts>, t: Ts, cap: usize) {
    let i = times.partition_point(|&x| x <= t);
    times.insert(i, t);
    if times.len() > cap {
        times.remove(0);
    }
}

/// How many instants fall in `from..=to`.
pub fn count_in(times: &[Ts], from: Ts, to: Ts) -> usize {
    times.iter().filter(|&&t| t >= from && t <= to).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ring_forgets_days_it_moves_past() {
        let mut r = DayRing::new(3, 100);
        r.add(100, 5);
        r.add(101, 1);
        r.add(103, 2);
        assert_eq!(
            (r.get(100), r.get(101), r.get(102), r.get(103)),
            (0, 1, 0, 2)
        );
        r.add(100, 9); // older than the ring: dropped
        assert_eq!(r.sum(99, 103), 3);
    }

    proptest! {
        /// The ring agrees with a plain map of day totals over the days it holds.
        #[test]
        fn ring_matches_a_naive_model(len in 1usize..40, adds in prop::collection::vec((0i64..120, 0u32..50), 0..200)) {
            let mut r = DayRing::new(len, 0);
            let mut model = std::collections::BTreeMap::<i64, u64>::new();
            let mut last = 0i64;
            for (d, v) in adds {
                r.add(d, v);
                last = last.max(d);
                if d > last - len as i64 {
                    *model.entry(d).or_default() += v as u64;
                }
            }
            for d in (last - len as i64 + 1).max(0)..=last {
                let want = model.get(&d).copied().unwrap_or(0).min(u16::MAX as u64) as u32;
                prop_assert_eq!(r.get(d), want, "day {}", d);
            }
            prop_assert_eq!(r.get(last + 1), 0);
            let want_total: u64 = ((last - len as i64 + 1).max(0)..=last).map(|d| r.get(d) as u64).sum();
            prop_assert_eq!(r.sum(-1000, last + 1000), want_total);
            prop_assert_eq!(r.is_empty(), want_total == 0);
            prop_assert!(r.counts.len() <= len && r.counts.capacity() <= len.max(8), "storage stays within the window");
        }
    }
}
