//! `learning_abandonment`: a module abandoned just before its assessment (an event), or a
//! started module with neither completion nor abandonment within `open_for` (a timer).

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::{fingerprint, Fire, RuleId};
use crate::config::LearningAbandonment;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, Ts, DAY};
use crate::trigger::Reason;

/// Open modules kept per employee; beyond it the oldest is dropped.
const MAX_OPEN: usize = 16;

#[derive(Debug, Clone)]
pub struct Params {
    pub open_for: Ts,
}

impl Params {
    pub fn from(c: &LearningAbandonment) -> Params {
        Params {
            open_for: c.open_for.ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    id: u64,
    started_at: Ts,
    /// Kept for the remediation content of the trigger.
    module_id: Box<str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    open: Vec<Open>,
}

fn close(st: &mut Option<Box<State>>, module_id: &str) {
    if let Some(s) = st.as_deref_mut() {
        let id = fingerprint(module_id);
        s.open.retain(|o| o.id != id);
        if s.open.is_empty() {
            *st = None;
        }
    }
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::ModuleStarted { .. } | Kind::ModuleCompleted { .. } | Kind::ModuleAbandoned { .. }
    )
}

pub fn on_event(
    _p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    _pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    match &ev.kind {
        Kind::ModuleStarted { module_id } => {
            let s = st.get_or_insert_with(Default::default);
            let id = fingerprint(module_id);
            // A restart of a module already open keeps the first start: it is still open.
            if !s.open.iter().any(|o| o.id == id) {
                if s.open.len() >= MAX_OPEN {
                    s.open.remove(0);
                }
                s.open.push(Open {
                    id,
                    started_at: ev.occurred_at,
                    module_id: module_id.as_ref().into(),
                });
            }
        }
        Kind::ModuleCompleted { module_id } => close(st, module_id),
        Kind::ModuleAbandoned {
            module_id,
            progress_pct,
            before_assessment,
        } => {
            close(st, module_id);
            if *before_assessment {
                out.push(
                    Fire::new(
                        RuleId::LearningAbandonment,
                        ev.occurred_at,
                        vec![
                            Reason::new("abandoned_before_assessment", 1.0, 1.0).detail(format!(
                        "module {module_id} abandoned at {}% progress, just before its assessment",
                        crate::trigger::round2(*progress_pct)
                    )),
                        ],
                    )
                    .module(module_id.to_string()),
                );
            }
        }
        _ => {}
    }
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    st.as_deref()?
        .open
        .iter()
        .map(|o| pres.after(o.started_at, p.open_for))
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
    let mut due: Vec<Open> = Vec::new();
    s.open.retain(|o| {
        let expired = pres.after(o.started_at, p.open_for) <= now;
        if expired {
            due.push(o.clone());
        }
        !expired
    });
    due.sort_by_key(|o| o.started_at);
    let days = (p.open_for / DAY) as u32;
    for o in due {
        out.push(
            Fire::new(
                RuleId::LearningAbandonment,
                pres.after(o.started_at, p.open_for),
                vec![Reason::new(
                    "days_open_without_completion",
                    p.open_for as f64 / DAY as f64,
                    p.open_for as f64 / DAY as f64,
                )
                .window_days(days)
                .detail(format!(
                    "module {} started {} with neither completion nor abandonment since",
                    o.module_id,
                    format_rfc3339(o.started_at)
                ))],
            )
            .module(o.module_id.to_string()),
        );
    }
    if s.open.is_empty() {
        *st = None;
    }
}
