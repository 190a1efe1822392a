//! `feedback_unacknowledged`: enough pieces of feedback, received within `window` of each other,
//! each left unacknowledged `ack_within` after receipt (a timer per piece).

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::window::{insert_sorted, prune};
use super::{fingerprint, Fire, RuleId};
use crate::config::FeedbackUnacknowledged;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, whole_days, Ts};
use crate::trigger::Reason;

const MAX_PENDING: usize = 32;

#[derive(Debug, Clone)]
pub struct Params {
    pub ack_within: Ts,
    pub window: Ts,
    pub min: usize,
}

impl Params {
    pub fn from(c: &FeedbackUnacknowledged) -> Params {
        Params {
            ack_within: c.ack_within.ms(),
            window: c.window.ms(),
            min: c.min_unacknowledged as usize,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// (feedback id fingerprint, received at), waiting for an acknowledgement.
    pending: Vec<(u64, Ts)>,
    /// Receipt times of feedback left unacknowledged, in the current run.
    unacked: Vec<Ts>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::FeedbackReceived { .. } | Kind::FeedbackAcknowledged { .. }
    )
}

pub fn on_event(
    _p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    _pres: &Presence<'_>,
    _out: &mut Vec<Fire>,
) {
    match &ev.kind {
        Kind::FeedbackReceived { feedback_id } => {
            let s = st.get_or_insert_with(Default::default);
            let id = fingerprint(feedback_id);
            if !s.pending.iter().any(|x| x.0 == id) {
                if s.pending.len() >= MAX_PENDING {
                    s.pending.remove(0);
                }
                s.pending.push((id, ev.occurred_at));
            }
        }
        Kind::FeedbackAcknowledged { feedback_id } => {
            if let Some(s) = st.as_deref_mut() {
                let id = fingerprint(feedback_id);
                s.pending.retain(|x| x.0 != id);
                if s.pending.is_empty() && s.unacked.is_empty() {
                    *st = None;
                }
            }
        }
        _ => {}
    }
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    st.as_deref()?
        .pending
        .iter()
        .map(|x| pres.after(x.1, p.ack_within))
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
    let mut due: Vec<Ts> = s
        .pending
        .iter()
        .filter(|x| pres.after(x.1, p.ack_within) <= now)
        .map(|x| x.1)
        .collect();
    s.pending.retain(|x| pres.after(x.1, p.ack_within) > now);
    due.sort_unstable();
    for received in due {
        insert_sorted(&mut s.unacked, received, 64);
        let since = pres.before(received, p.window);
        prune(&mut s.unacked, since);
        let n = pres.count_present(&s.unacked, since, received);
        if n >= p.min {
            out.push(Fire::new(
                RuleId::FeedbackUnacknowledged,
                pres.after(received, p.ack_within),
                vec![
                    Reason::new("unacknowledged_feedback", n as f64, p.min as f64)
                        .window_days(whole_days(p.window))
                        .detail(format!(
                        "each left unacknowledged {} days after receipt; the latest received {}",
                        whole_days(p.ack_within),
                        format_rfc3339(received)
                    )),
                ],
            ));
            s.unacked.clear();
        }
    }
}
