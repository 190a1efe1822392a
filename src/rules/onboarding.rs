//! `onboarding_friction`: within `onboarding_window` of the employee's first onboarding event, a
//! task started and not completed within `task_open_for` (a timer), or at least
//! `min_clarifications` clarification requests within `clarification_window`.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::window::insert_sorted;
use super::{fingerprint, Fire, RuleId};
use crate::config::OnboardingFriction;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, whole_days, Ts, HOUR};
use crate::trigger::Reason;

const MAX_OPEN: usize = 32;

#[derive(Debug, Clone)]
pub struct Params {
    pub window: Ts,
    pub open_for: Ts,
    pub min_clarifications: usize,
    pub clarification_window: Ts,
}

impl Params {
    pub fn from(c: &OnboardingFriction) -> Params {
        Params {
            window: c.onboarding_window.ms(),
            open_for: c.task_open_for.ms(),
            min_clarifications: c.min_clarifications as usize,
            clarification_window: c.clarification_window.ms(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The first onboarding event: the window is measured from it, for good.
    first: Ts,
    /// (task fingerprint, started at), not yet completed.
    open: Vec<(u64, Ts)>,
    clarifications: Vec<Ts>,
}

fn in_window(p: &Params, s: &State, t: Ts, pres: &Presence<'_>) -> bool {
    t >= s.first && t <= pres.after(s.first, p.window)
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::TaskStarted { .. } | Kind::TaskCompleted { .. } | Kind::ClarificationRequested { .. }
    )
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let t = ev.occurred_at;
    if !matches!(
        ev.kind,
        Kind::TaskStarted { .. } | Kind::TaskCompleted { .. } | Kind::ClarificationRequested
    ) {
        return;
    }
    let s = st.get_or_insert_with(|| {
        Box::new(State {
            first: t,
            ..Default::default()
        })
    });
    s.first = s.first.min(t);
    match &ev.kind {
        Kind::TaskStarted { task_id } => {
            let id = fingerprint(task_id);
            if in_window(p, s, t, pres) && !s.open.iter().any(|x| x.0 == id) {
                if s.open.len() >= MAX_OPEN {
                    s.open.remove(0);
                }
                s.open.push((id, t));
            }
        }
        Kind::TaskCompleted { task_id } => {
            let id = fingerprint(task_id);
            s.open.retain(|x| x.0 != id);
        }
        Kind::ClarificationRequested => {
            if in_window(p, s, t, pres) {
                // Kept even on a day off (not counted): a cancelled time off gives it back.
                insert_sorted(&mut s.clarifications, t, 16);
                let since = pres.before(t, p.clarification_window);
                let n = pres.count_present(&s.clarifications, since, t);
                if n >= p.min_clarifications && !pres.off_at(t) {
                    out.push(Fire::new(
                        RuleId::OnboardingFriction,
                        t,
                        vec![Reason::new(
                            "hr_clarification_requests",
                            n as f64,
                            p.min_clarifications as f64,
                        )
                        .window_days(whole_days(p.clarification_window))
                        .detail(format!("onboarding started {}", format_rfc3339(s.first)))],
                    ));
                    s.clarifications.clear();
                }
            }
        }
        _ => {}
    }
    if t > pres.after(s.first, p.window + p.open_for) {
        // Past the window: nothing more can fire; keep only when it began.
        s.open.clear();
        s.clarifications.clear();
    }
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    st.as_deref()?
        .open
        .iter()
        .map(|x| pres.after(x.1, p.open_for))
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
        .open
        .iter()
        .filter(|x| pres.after(x.1, p.open_for) <= now)
        .map(|x| x.1)
        .collect();
    s.open.retain(|x| pres.after(x.1, p.open_for) > now);
    due.sort_unstable();
    for started in due {
        out.push(Fire::new(
            RuleId::OnboardingFriction,
            pres.after(started, p.open_for),
            vec![Reason::new(
                "onboarding_task_open_hours",
                (p.open_for / HOUR) as f64,
                (p.open_for / HOUR) as f64,
            )
            .detail(format!(
                "a task started {} is not completed; onboarding started {}",
                format_rfc3339(started),
                format_rfc3339(s.first)
            ))],
        ));
    }
}
