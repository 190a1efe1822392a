//! One employee's state: compact, serializable (a changelog record), self-contained — every
//! deadline the engine schedules can be derived from it again.

use serde::{Deserialize, Serialize};

use crate::rules::presence::{Leave, MAX_LEAVES};
use crate::rules::{
    checkin, collaboration, confusion, feedback, goals, ladder, learning, mobility, onboarding,
    performance, pulse, recognition, RuleId,
};
use crate::time::{day_of, Ts, DAY};

pub const CONSENT_WITHDRAWN: u8 = 1;
pub const EXITED: u8 = 2;

/// Event ids seen within the dedup horizon. Each entry packs a 48-bit fingerprint of the id
/// with the low 16 bits of the UTC day it occurred on, in one vector: one allocation, one cache
/// line or two per lookup. (A false match needs two ids of one employee within a week to share
/// 48 bits: about 1 in 10^13 per event.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dedup {
    /// The newest day held: ages are counted from it.
    newest: i32,
    entries: Vec<u64>,
}

const DAY_BITS: u64 = 0xFFFF;

fn day_tag(day: i64) -> u64 {
    (day as u64) & DAY_BITS
}

impl Dedup {
    fn age(&self, entry: u64) -> i64 {
        (day_tag(self.newest as i64).wrapping_sub(entry & DAY_BITS) & DAY_BITS) as i64
    }

    pub fn contains(&self, id: u64) -> bool {
        let fp = id & !DAY_BITS;
        // Every entry compared, no early exit: the loop vectorizes (a week of an employee's
        // ids is some sixty entries, and a hit is the rare case).
        self.entries
            .iter()
            .fold(false, |hit, e| hit | (e & !DAY_BITS == fp))
    }

    /// Records an id, forgetting ids more than `horizon` (rounded up to days) older than the
    /// newest day held. A late id older than that is not kept.
    pub fn insert(&mut self, id: u64, at: Ts, horizon: Ts) {
        let day = day_of(at);
        let keep_days = (horizon + DAY - 1) / DAY;
        if self.entries.is_empty() {
            self.newest = day as i32;
        }
        let moved = day > self.newest as i64;
        if moved {
            self.newest = day as i32;
        }
        if self.newest as i64 - day > keep_days {
            return;
        }
        if moved {
            let mut entries = std::mem::take(&mut self.entries);
            entries.retain(|&e| self.age(e) <= keep_days);
            self.entries = entries;
        }
        self.entries.push((id & !DAY_BITS) | day_tag(day));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// Fixed 8 bytes per entry on the wire (a varint of a random 64-bit value takes 10).
impl Serialize for Dedup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut b = Vec::with_capacity(self.entries.len() * 8 + 4);
        b.extend_from_slice(&self.newest.to_le_bytes());
        for e in &self.entries {
            b.extend_from_slice(&e.to_le_bytes());
        }
        s.serialize_bytes(&b)
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dedup, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Dedup;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dedup bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Dedup, E> {
                if b.len() < 4 || (b.len() - 4) % 8 != 0 {
                    return Err(E::custom("dedup bytes are not 4 + a multiple of 8"));
                }
                let (head, rest) = b.split_at(4);
                Ok(Dedup {
                    newest: i32::from_le_bytes(head.try_into().unwrap_or([0; 4])),
                    entries: rest
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Dedup, A::Error> {
                let mut b = Vec::new();
                while let Some(x) = seq.next_element::<u8>()? {
                    b.push(x);
                }
                self.visit_bytes(&b)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmployeeState {
    pub flags: u8,
    pub dedup: Dedup,
    /// When each rule last fired for this employee (cooldown).
    pub fired: Vec<(RuleId, Ts)>,
    /// The UTC day of the last event (group memberships are refreshed once a day).
    pub seen_day: i32,
    pub collaboration: Option<Box<collaboration::State>>,
    pub recognition: Option<Box<recognition::State>>,
    pub pulse: Option<Box<pulse::State>>,
    pub checkin: Option<Box<checkin::State>>,
    pub feedback: Option<Box<feedback::State>>,
    pub goals: Option<Box<goals::State>>,
    pub learning: Option<Box<learning::State>>,
    pub confusion: Option<Box<confusion::State>>,
    pub onboarding: Option<Box<onboarding::State>>,
    pub mobility: Option<Box<mobility::State>>,
    pub performance: Option<Box<performance::State>>,
    pub ladder: Option<Box<ladder::State>>,
    /// Recorded time off (docs/contract.md §8): days only, never a kind of leave. The last field, so
    /// a state written before it existed decodes with an empty list appended (see
    /// [`EmployeeState::upgrade`]).
    pub time_off: Vec<Leave>,
    /// Per rollup source, the UTC day of the employee's last rollup (0: none): the first
    /// of a day counts them among the day's reporters (docs/contract.md §8). Appended in format 4.
    pub rollup_days: [i32; 2],
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

    /// Hints the CPU to load the heap parts of this state (see `Engine::apply_batch`).
    pub(crate) fn prefetch(&self) {
        use super::prefetch_lines;
        fn boxed<T>(b: &Option<Box<T>>) {
            if let Some(b) = b {
                prefetch_lines(
                    &**b as *const T as *const u8,
                    std::mem::size_of::<T>().min(64),
                );
            }
        }
        prefetch_lines(
            self.dedup.entries.as_ptr() as *const u8,
            self.dedup.entries.len() * 8,
        );
        prefetch_lines(self.fired.as_ptr() as *const u8, 1);
        boxed(&self.collaboration);
        boxed(&self.recognition);
        boxed(&self.pulse);
        boxed(&self.checkin);
        boxed(&self.feedback);
        boxed(&self.goals);
        boxed(&self.learning);
        boxed(&self.confusion);
        boxed(&self.onboarding);
        boxed(&self.mobility);
        boxed(&self.performance);
        boxed(&self.ladder);
    }

    /// Hints the CPU to load what lies behind the rule state an event of this kind updates:
    /// the day rings of the two window rules (one more pointer away than [`Self::prefetch`]
    /// reaches; they take an event every working day).
    pub(crate) fn prefetch_for(&self, kind: &crate::event::Kind<'_>) {
        use crate::event::Kind;
        match kind {
            Kind::CollabActivity { .. } => collaboration::prefetch(&self.collaboration),
            Kind::WorkTasks { .. } => performance::prefetch(&self.performance),
            _ => {}
        }
    }

    /// Whether anything beyond the flags (and the last day seen) is held: history, dedup,
    /// cooldowns.
    pub fn has_history(&self) -> bool {
        *self
            != EmployeeState {
                flags: self.flags,
                seen_day: self.seen_day,
                ..Default::default()
            }
    }

    /// Everything but the flags and dedup: what an exit discards.
    pub fn clear_rules(&mut self) {
        let flags = self.flags;
        *self = EmployeeState {
            flags,
            ..Default::default()
        };
    }

    /// The serialized form (postcard): what a changelog record would hold.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write_bytes(Vec::new())
    }

    /// [`to_bytes`](Self::to_bytes) appended to `buf` (a checkpoint reuses one buffer, cleared
    /// before each state).
    pub fn write_bytes(&self, buf: Vec<u8>) -> Vec<u8> {
        // Serializing owned, finite values into a vector cannot fail (were it to, the result is
        // empty, as `to_bytes`'s always was).
        postcard::to_extend(self, buf).unwrap_or_default()
    }

    /// A state from its bytes; `None` when they do not decode, or decode to a state outside
    /// the bounds input keeps state in ([`EmployeeState::within_bounds`]).
    pub fn from_bytes(b: &[u8]) -> Option<EmployeeState> {
        postcard::from_bytes(b)
            .ok()
            .filter(EmployeeState::within_bounds)
    }

    /// Whether the state keeps the bounds its input does: at most [`MAX_LEAVES`] spans of time
    /// off, each in order and at most `MAX_TIME_OFF_DAYS` long. (Bytes read back from a
    /// changelog that break them — a span of millions of days, found by fuzzing — would have
    /// every deadline and window walk it a day at a time: a minute for one record.)
    pub fn within_bounds(&self) -> bool {
        self.time_off.len() <= MAX_LEAVES
            && self.time_off.iter().all(|l| {
                l.from <= l.to
                    && (l.to as i64 - l.from as i64) < crate::event::MAX_TIME_OFF_DAYS as i64
            })
    }

    /// A state written by changelog format `format` (1 to 3): postcard writes a struct as
    /// its fields one after the other, so those bytes and the encoding of the fields added
    /// since, empty (`time_off` in format 3: an empty list, one zero byte; `rollup_days` in
    /// format 4: two zeros), are this version's encoding of the same state.
    pub fn upgrade(b: &[u8], format: u8) -> Vec<u8> {
        let added: &[u8] = match format {
            ..=2 => &[0, 0, 0],
            3 => &[0, 0],
            _ => &[],
        };
        let mut v = Vec::with_capacity(b.len() + added.len());
        v.extend_from_slice(b);
        v.extend_from_slice(added);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR;

    fn fp(n: u64) -> u64 {
        crate::rules::fingerprint(&n.to_string())
    }

    #[test]
    fn dedup_forgets_ids_older_than_the_horizon() {
        let mut d = Dedup::default();
        let t0 = 20_000 * DAY;
        d.insert(fp(1), t0, 7 * DAY);
        d.insert(fp(2), t0 + 3 * DAY, 7 * DAY);
        assert!(d.contains(fp(1)) && d.contains(fp(2)));
        for i in 10..20 {
            d.insert(fp(i), t0 + 7 * DAY + HOUR, 7 * DAY);
        }
        assert!(
            d.contains(fp(1)),
            "exactly 7 days back is still inside the horizon"
        );
        d.insert(fp(4), t0 + 8 * DAY, 7 * DAY);
        assert!(!d.contains(fp(1)));
        assert!(d.contains(fp(2)) && d.contains(fp(4)) && d.contains(fp(15)));
        assert!(!d.contains(fp(3)));
    }

    #[test]
    fn dedup_late_ids_do_not_expire_newer_ones() {
        let mut d = Dedup::default();
        let t0 = 20_000 * DAY;
        for i in 0..10 {
            d.insert(fp(i), t0 + 10 * DAY, 7 * DAY);
        }
        d.insert(fp(100), t0 + 5 * DAY, 7 * DAY);
        assert!(
            d.contains(fp(100)),
            "late but within the horizon of the newest day"
        );
        assert!((0..10).all(|i| d.contains(fp(i))));
        d.insert(fp(101), t0, 7 * DAY);
        assert!(!d.contains(fp(101)), "older than the horizon: not kept");
    }

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = EmployeeState::default();
        s.flags = CONSENT_WITHDRAWN;
        s.dedup.insert(fp(42), 20_000 * DAY, 7 * DAY);
        s.set_fired(RuleId::CheckinLapse, 5);
        let b = s.to_bytes();
        assert_eq!(EmployeeState::from_bytes(&b), Some(s));
    }

    /// Bytes that decode to time off input could not have made are refused like bytes that do
    /// not decode; the longest spans and the most of them input allows are read back.
    #[test]
    fn time_off_outside_the_inputs_bounds_does_not_read_back() {
        let max = crate::event::MAX_TIME_OFF_DAYS;
        let leave = |id, from, to| Leave { id, from, to };
        let with = |time_off: Vec<Leave>| {
            let s = EmployeeState {
                time_off,
                ..Default::default()
            };
            EmployeeState::from_bytes(&s.to_bytes())
        };
        let most: Vec<Leave> = (0..MAX_LEAVES as i32)
            .map(|i| leave(i as u64, i * max, i * max + max - 1))
            .collect();
        assert!(with(most.clone()).is_some());
        assert!(
            with(vec![leave(1, 20_000, 20_000 + max)]).is_none(),
            "a day too long"
        );
        assert!(
            with(vec![leave(1, 20_001, 20_000)]).is_none(),
            "ends before it starts"
        );
        assert!(with(vec![leave(1, i32::MIN, i32::MAX)]).is_none());
        let mut too_many = most;
        too_many.push(leave(99, -max, -1));
        assert!(with(too_many).is_none(), "more spans than kept");
    }
}
