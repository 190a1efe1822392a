//! `checkin_lapse`: N check-ins in a row missed, where a miss is a `checkin.skipped` or a
//! scheduled check-in not completed `grace` after its `due_at` (a timer). A completion breaks
//! the run.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::{fingerprint, Fire, RuleId};
use crate::config::CheckinLapse;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, Ts, HOUR};
use crate::trigger::Reason;

/// Scheduled check-ins kept per employee; beyond it the oldest is dropped (a runaway producer
/// must not grow state without bound).
const MAX_PENDING: usize = 32;

#[derive(Debug, Clone)]
pub struct Params {
    pub misses: u32,
    pub grace: Ts,
}

impl Params {
    pub fn from(c: &CheckinLapse) -> Params {
        Params {
            misses: c.consecutive_misses,
            grace: c.grace.ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Pending {
    id: u64,
    due_at: Ts,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum MissKind {
    Skipped,
    NotCompleted { due_at: Ts },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Miss {
    at: Ts,
    kind: MissKind,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pending: Vec<Pending>,
    /// The current run of misses, oldest first.
    run: Vec<Miss>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.run.is_empty()
    }
}

fn record_miss(p: &Params, s: &mut State, miss: Miss, out: &mut Vec<Fire>) {
    s.run.push(miss);
    if s.run.len() as u32 >= p.misses {
        let detail = s
            .run
            .iter()
            .map(|m| match m.kind {
                MissKind::Skipped => format!("skipped at {}", format_rfc3339(m.at)),
                MissKind::NotCompleted { due_at } => format!(
                    "due {} and not completed within {} h",
                    format_rfc3339(due_at),
                    p.grace / HOUR
                ),
            })
            .collect::<Vec<_>>()
            .join("; ");
        out.push(Fire::new(
            RuleId::CheckinLapse,
            miss.at,
            vec![Reason::new(
                "consecutive_missed_checkins",
                s.run.len() as f64,
                p.misses as f64,
            )
            .detail(detail)],
        ));
        // One fire per run: the next lapse needs a new run of misses.
        s.run.clear();
    }
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::CheckinScheduled { .. } | Kind::CheckinCompleted { .. } | Kind::CheckinSkipped { .. }
    )
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    match &ev.kind {
        Kind::CheckinScheduled { checkin_id, due_at } => {
            let s = st.get_or_insert_with(Default::default);
            let id = fingerprint(checkin_id);
            match s.pending.iter_mut().find(|x| x.id == id) {
                Some(x) => x.due_at = *due_at,
                None => {
                    if s.pending.len() >= MAX_PENDING {
                        s.pending.remove(0);
                    }
                    s.pending.push(Pending {
                        id,
                        due_at: *due_at,
                    });
                }
            }
        }
        Kind::CheckinCompleted { checkin_id } => {
            if let Some(s) = st.as_deref_mut() {
                let id = fingerprint(checkin_id);
                s.pending.retain(|x| x.id != id);
                s.run.clear();
                if s.is_empty() {
                    *st = None;
                }
            }
        }
        Kind::CheckinSkipped { checkin_id } => {
            let s = st.get_or_insert_with(Default::default);
            let id = fingerprint(checkin_id);
            s.pending.retain(|x| x.id != id);
            if pres.off_at(ev.occurred_at) {
                // Skipped on a day off: not a miss.
                return;
            }
            record_miss(
                p,
                s,
                Miss {
                    at: ev.occurred_at,
                    kind: MissKind::Skipped,
                },
                out,
            );
        }
        _ => {}
    }
}

/// When a scheduled check-in becomes a miss: `grace` of present time after it was due.
fn deadline(p: &Params, x: &Pending, pres: &Presence<'_>) -> Ts {
    pres.after(x.due_at, p.grace)
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    st.as_deref()?
        .pending
        .iter()
        .map(|x| deadline(p, x, pres))
        .min()
}

pub fn on_timer(
    p: &Params,
    st: &mut Option<Box<State>>,
    now: Ts,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Some(s) = st.as_deref_mut() else { return };
    loop {
        let next = s
            .pending
            .iter()
            .enumerate()
            .filter(|(_, x)| deadline(p, x, pres) <= now)
            .min_by_key(|(_, x)| x.due_at);
        let Some((i, x)) = next.map(|(i, x)| (i, *x)) else {
            break;
        };
        s.pending.remove(i);
        if pres.off_at(x.due_at) {
            // Due during time off (or on a non-working day): not a miss.
            continue;
        }
        let miss = Miss {
            at: deadline(p, &x, pres),
            kind: MissKind::NotCompleted { due_at: x.due_at },
        };
        record_miss(p, s, miss, out);
    }
}
