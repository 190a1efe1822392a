//! One employee's state: compact, serializable (a changelog record), self-contained — every
//! deadline the engine schedules can be derived from it again.

use serde::{Deserialize, Serialize};

use crate::rules::{checkin, collaboration, learning, RuleId};
use crate::time::{day_of, Ts, DAY};

pub const CONSENT_WITHDRAWN: u8 = 1;
pub const EXITED: u8 = 2;

/// Event ids seen within the dedup horizon, as 64-bit fingerprints with the UTC day they
/// occurred on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    days: Vec<(i32, u16)>,
    ids: Vec<u64>,
}

impl Dedup {
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Records an id, forgetting days older than `horizon` before the newest day held.
    pub fn insert(&mut self, id: u64, at: Ts, horizon: Ts) {
        let day = day_of(at) as i32;
        // Groups are kept in day order; late events go in their place.
        let pos = self.days.iter().rposition(|&(d, _)| d <= day);
        let start: usize = match pos {
            Some(i) => self.days[..=i].iter().map(|&(_, n)| n as usize).sum(),
            None => 0,
        };
        match pos {
            Some(i) if self.days[i].0 == day && self.days[i].1 < u16::MAX => {
                self.ids.insert(start, id);
                self.days[i].1 += 1;
            }
            _ => {
                let i = pos.map_or(0, |i| i + 1);
                self.days.insert(i, (day, 1));
                self.ids.insert(start, id);
            }
        }
        let newest = self.days.last().map_or(day, |&(d, _)| d) as i64;
        let cutoff = newest - (horizon + DAY - 1) / DAY;
        let mut drop_ids = 0usize;
        let mut drop_days = 0usize;
        for &(d, n) in &self.days {
            if (d as i64) < cutoff {
                drop_ids += n as usize;
                drop_days += 1;
            } else {
                break;
            }
        }
        if drop_days > 0 {
            self.days.drain(..drop_days);
            self.ids.drain(..drop_ids);
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmployeeState {
    pub flags: u8,
    pub dedup: Dedup,
    /// When each rule last fired for this employee (cooldown).
    pub fired: Vec<(RuleId, Ts)>,
    pub collaboration: Option<Box<collaboration::State>>,
    pub checkin: Option<Box<checkin::State>>,
    pub learning: Option<Box<learning::State>>,
}

impl EmployeeState {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn last_fired(&self, rule: RuleId) -> Option<Ts> {
        self.fired.iter().find(|(r, _)| *r == rule).map(|&(_, t)| t)
    }

    pub fn set_fired(&mut self, rule: RuleId, at: Ts) {
        match self.fired.iter_mut().find(|(r, _)| *r == rule) {
            Some(e) => e.1 = e.1.max(at),
            None => self.fired.push((rule, at)),
        }
    }

    /// Everything but the flags and dedup: what an exit discards.
    pub fn clear_rules(&mut self) {
        self.fired.clear();
        self.collaboration = None;
        self.checkin = None;
        self.learning = None;
    }

    /// The serialized form (postcard): what a changelog record would hold.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Option<EmployeeState> {
        postcard::from_bytes(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;

    #[test]
    fn dedup_forgets_ids_older_than_the_horizon() {
        let mut d = Dedup::default();
        let t0 = 20_000 * DAY;
        d.insert(1, t0, 7 * DAY);
        d.insert(2, t0 + 3 * DAY, 7 * DAY);
        assert!(d.contains(1) && d.contains(2));
        d.insert(3, t0 + 7 * DAY + HOUR, 7 * DAY);
        assert!(
            d.contains(1),
            "exactly 7 days back is still inside the horizon"
        );
        d.insert(4, t0 + 8 * DAY, 7 * DAY);
        assert!(!d.contains(1));
        assert!(d.contains(2) && d.contains(3) && d.contains(4));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn dedup_keeps_late_ids_in_day_order() {
        let mut d = Dedup::default();
        let t0 = 20_000 * DAY;
        d.insert(10, t0 + 5 * DAY, 7 * DAY);
        d.insert(11, t0 + 2 * DAY, 7 * DAY);
        d.insert(12, t0 + 5 * DAY, 7 * DAY);
        d.insert(13, t0 + 3 * DAY, 7 * DAY);
        assert_eq!(d.days, vec![(20_002, 1), (20_003, 1), (20_005, 2)]);
        assert_eq!(d.ids, vec![11, 13, 10, 12]);
        d.insert(14, t0 + 11 * DAY, 7 * DAY);
        assert_eq!(d.ids, vec![10, 12, 14]);
    }

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = EmployeeState::default();
        s.flags = CONSENT_WITHDRAWN;
        s.dedup.insert(42, 20_000 * DAY, 7 * DAY);
        s.set_fired(RuleId::CheckinLapse, 5);
        let b = s.to_bytes();
        assert_eq!(EmployeeState::from_bytes(&b), Some(s));
    }
}
