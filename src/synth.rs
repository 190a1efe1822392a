//! A small, seeded synthetic stream of everyday behaviour: the load for benches and the state
//! size measurement. (The full workforce simulator with injected patterns and ground truth is
//! `momentd simulate`.)

use std::borrow::Cow;

use crate::event::{Event, Kind};
use crate::time::{Ts, DAY, HOUR};

/// SplitMix64: tiny, fast, and the same sequence on every platform and version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// 2026-01-05T00:00:00Z, a Monday: where synthetic time starts.
pub const EPOCH: Ts = 1_767_571_200_000;

/// Everyday events for `employees` people over `days` days, in event-time order: a
/// collaboration rollup each working day, task figures, bi-weekly check-ins, some learning.
pub fn everyday(employees: u32, days: u32, seed: u64) -> Vec<Event<'static>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(employees as usize * days as usize * 2);
    let mut seq: u64 = 0;
    let ev = |emp: u32, at: Ts, kind: Kind<'static>, seq: &mut u64| {
        *seq += 1;
        Event {
            event_id: Cow::Owned(format!("ev-{seed}-{seq}")),
            employee_id: Cow::Owned(format!("emp-{emp:07}")),
            occurred_at: at,
            team_id: Some(Cow::Owned(format!("team-{:04}", emp / 8))),
            cohort_id: None,
            manager_id: None,
            kind,
        }
    };
    for day in 0..days as i64 {
        let weekday = day % 7 < 5;
        let base = EPOCH + day * DAY;
        for emp in 0..employees {
            let at = base + 9 * HOUR + (emp as i64 % 3600) * 1000;
            if weekday {
                let m = 10 + rng.below(30) as u32;
                out.push(ev(
                    emp,
                    at,
                    Kind::CollabActivity {
                        messages: m,
                        meetings: rng.below(5) as u32,
                    },
                    &mut seq,
                ));
                if rng.chance(0.5) {
                    let planned = 3 + rng.below(5) as u32;
                    let completed = planned - rng.below(2) as u32;
                    out.push(ev(
                        emp,
                        at + HOUR,
                        Kind::WorkTasks { completed, planned },
                        &mut seq,
                    ));
                }
            }
            if (day + emp as i64) % 14 == 0 {
                let id = format!("ci-{emp}-{day}");
                out.push(ev(
                    emp,
                    at + 2 * HOUR,
                    Kind::CheckinScheduled {
                        checkin_id: Cow::Owned(id.clone()),
                        due_at: at + 2 * DAY,
                    },
                    &mut seq,
                ));
            }
            if (day + emp as i64) % 14 == 2 {
                let id = format!("ci-{emp}-{}", day - 2);
                let kind = if rng.chance(0.9) {
                    Kind::CheckinCompleted {
                        checkin_id: Cow::Owned(id),
                    }
                } else {
                    Kind::CheckinSkipped {
                        checkin_id: Cow::Owned(id),
                    }
                };
                out.push(ev(emp, at + 3 * HOUR, kind, &mut seq));
            }
            if rng.chance(0.05) {
                let module = format!("mod-{}", rng.below(40));
                out.push(ev(
                    emp,
                    at + 4 * HOUR,
                    Kind::ModuleStarted {
                        module_id: Cow::Owned(module.clone()),
                    },
                    &mut seq,
                ));
                if rng.chance(0.7) {
                    out.push(ev(
                        emp,
                        at + 5 * HOUR,
                        Kind::ModuleCompleted {
                            module_id: Cow::Owned(module),
                        },
                        &mut seq,
                    ));
                }
            }
        }
    }
    out.sort_by_key(|e| e.occurred_at);
    out
}
