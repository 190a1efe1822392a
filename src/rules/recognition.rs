//! `recognition_withdrawal`: no `recognition.*` for `quiet_window` while the `prior_window`
//! before it had at least `min_prior`. A timer at the last recognition + `quiet_window`.

use serde::{Deserialize, Serialize};

use super::presence::excluded_note;
use super::presence::Presence;
use super::window::{insert_sorted, prune};
use super::{Fire, RuleId};
use crate::config::RecognitionWithdrawal;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, whole_days, Ts};
use crate::trigger::Reason;

const MAX_KEPT: usize = 128;

#[derive(Debug, Clone)]
pub struct Params {
    pub quiet: Ts,
    pub prior: Ts,
    pub min_prior: usize,
}

impl Params {
    pub fn from(c: &RecognitionWithdrawal) -> Params {
        Params {
            quiet: c.quiet_window.ms(),
            prior: c.prior_window.ms(),
            min_prior: c.min_prior as usize,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    times: Vec<Ts>,
    /// The last recognition whose quiet deadline was already handled.
    handled: Option<Ts>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::RecognitionGiven { .. } | Kind::RecognitionReceived { .. }
    )
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    _out: &mut Vec<Fire>,
) {
    if matches!(ev.kind, Kind::RecognitionGiven | Kind::RecognitionReceived) {
        let s = st.get_or_insert_with(Default::default);
        // Kept even on a day off (read past, not counted): a cancelled time off gives it back.
        insert_sorted(&mut s.times, ev.occurred_at, MAX_KEPT);
        let last = *s.times.last().unwrap_or(&ev.occurred_at);
        prune(&mut s.times, pres.before(last, p.quiet + p.prior));
    }
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    let s = st.as_deref()?;
    let last = *s.times.iter().rev().find(|&&t| !pres.off_at(t))?;
    (s.handled.is_none_or(|h| h < last) && prior(p, s, last, pres) >= p.min_prior)
        .then(|| pres.after(last, p.quiet))
}

/// Recognition events present in the prior window before `last` (itself included).
fn prior(p: &Params, s: &State, last: Ts, pres: &Presence<'_>) -> usize {
    pres.count_present(&s.times, pres.before(last, p.prior), last)
}

pub fn on_timer(
    p: &Params,
    st: &mut Option<Box<State>>,
    now: Ts,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Some(due) = next_due(p, st, pres) else {
        return;
    };
    if due > now {
        return;
    }
    let Some(s) = st.as_deref_mut() else { return };
    let Some(&last) = s.times.iter().rev().find(|&&t| !pres.off_at(t)) else {
        return;
    };
    s.handled = Some(last);
    let prior = prior(p, s, last, pres);
    let excluded = pres.off_days(last, due - 1);
    out.push(Fire::new(
        RuleId::RecognitionWithdrawal,
        due,
        vec![
            Reason::new("recognition_events", 0.0, 0.0)
                .window_days(whole_days(p.quiet))
                .detail(format!(
                    "none since {}{}",
                    format_rfc3339(last),
                    excluded_note(excluded)
                )),
            Reason::new(
                "recognition_events_before",
                prior as f64,
                p.min_prior as f64,
            )
            .window_days(whole_days(p.prior))
            .detail(format!(
                "in the {} days before the quiet period",
                whole_days(p.prior)
            )),
        ],
    ));
}
