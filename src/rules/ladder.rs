//! The follow-up ladder (docs/contract.md §4, last paragraph): a trigger at escalation 0 that is ignored
//! (`intervention.ignored`, or no `intervention.completed` `no_completion_after` after its
//! `deliver_by`) gets a follow-up of the same rule at escalation 1 (`office_hours_invite`), and
//! that one, ignored in turn, escalation 2 (`manager_coaching`). `intervention.completed` ends it.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::{fingerprint, Fire, RuleId};
use crate::config::FollowUp;
use crate::event::{Event, Kind};
use crate::time::{format_rfc3339, whole_days, Ts};
use crate::trigger::Reason;

/// Open interventions kept per employee.
const MAX_OPEN: usize = 16;
pub const MAX_ESCALATION: u8 = 2;

#[derive(Debug, Clone)]
pub struct Params {
    pub after: Ts,
}

impl Params {
    pub fn from(c: &FollowUp) -> Params {
        Params {
            after: c.no_completion_after.ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Open {
    trigger: u64,
    rule: RuleId,
    escalation: u8,
    deliver_by: Ts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    open: Vec<Open>,
}

/// Remembers a published employee trigger so that its follow-up can be judged.
pub fn issued(
    st: &mut Option<Box<State>>,
    trigger_id: &str,
    rule: RuleId,
    escalation: u8,
    deliver_by: Ts,
) {
    if escalation >= MAX_ESCALATION {
        return;
    }
    let s = st.get_or_insert_with(Default::default);
    if s.open.len() >= MAX_OPEN {
        s.open.remove(0);
    }
    s.open.push(Open {
        trigger: fingerprint(trigger_id),
        rule,
        escalation,
        deliver_by,
    });
}

fn follow_up(o: &Open, at: Ts, reason: Reason) -> Fire {
    let mut f = Fire::new(o.rule, at, vec![reason]);
    f.escalation = o.escalation + 1;
    f
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::InterventionCompleted { .. } | Kind::InterventionIgnored { .. }
    )
}

pub fn on_event(
    _p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    _pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let (tid, ignored) = match &ev.kind {
        Kind::InterventionIgnored { trigger_id } => (trigger_id, true),
        Kind::InterventionCompleted { trigger_id } => (trigger_id, false),
        _ => return,
    };
    let Some(s) = st.as_deref_mut() else { return };
    let id = fingerprint(tid);
    let Some(i) = s.open.iter().position(|o| o.trigger == id) else {
        return;
    };
    let o = s.open.remove(i);
    if ignored {
        out.push(follow_up(
            &o,
            ev.occurred_at,
            Reason::new("intervention_ignored", 1.0, 1.0).detail(format!(
                "the escalation {} intervention was ignored",
                o.escalation
            )),
        ));
    }
    if s.open.is_empty() {
        *st = None;
    }
}

/// When an open intervention with no completion escalates: `after` of present time after
/// `deliver_by` (a follow-up does not escalate for days the employee was off).
fn deadline(p: &Params, o: &Open, pres: &Presence<'_>) -> Ts {
    pres.after(o.deliver_by, p.after)
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, pres: &Presence<'_>) -> Option<Ts> {
    st.as_deref()?
        .open
        .iter()
        .map(|o| deadline(p, o, pres))
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
    let mut due: Vec<Open> = s
        .open
        .iter()
        .filter(|o| deadline(p, o, pres) <= now)
        .copied()
        .collect();
    s.open.retain(|o| deadline(p, o, pres) > now);
    due.sort_by_key(|o| o.deliver_by);
    // Deadlines that stopped over the same days off can end at one instant: one follow-up of a
    // rule and escalation then, not two of the same id.
    let mut seen: Vec<(RuleId, u8, Ts)> = Vec::new();
    for o in due {
        let key = (o.rule, o.escalation, deadline(p, &o, pres));
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        out.push(follow_up(
            &o,
            deadline(p, &o, pres),
            Reason::new(
                "days_without_completion",
                whole_days(p.after) as f64,
                whole_days(p.after) as f64,
            )
            .detail(format!(
                "no intervention.completed since deliver_by {}",
                format_rfc3339(o.deliver_by)
            )),
        ));
    }
    if s.open.is_empty() {
        *st = None;
    }
}
