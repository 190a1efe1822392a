//! `passive_goals`: at least `min_passive` goal updates with a zero delta within `window`, and
//! none with a positive delta.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::{Fire, RuleId};
use crate::config::PassiveGoals;
use crate::event::{Event, Kind};
use crate::time::{whole_days, Ts};
use crate::trigger::Reason;

#[derive(Debug, Clone)]
pub struct Params {
    pub window: Ts,
    pub min: usize,
}

impl Params {
    pub fn from(c: &PassiveGoals) -> Params {
        Params {
            window: c.window.ms(),
            min: c.min_passive as usize,
        }
    }
}

/// Goal updates within the window: (time, sign of the delta: -1, 0, 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    updates: Vec<(Ts, i8)>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(kind, Kind::GoalUpdated { .. })
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Kind::GoalUpdated {
        progress_delta_pct, ..
    } = ev.kind
    else {
        return;
    };
    let s = st.get_or_insert_with(Default::default);
    let sign = if progress_delta_pct > 0.0 {
        1
    } else if progress_delta_pct < 0.0 {
        -1
    } else {
        0
    };
    let t = ev.occurred_at;
    // Kept even on a day off (not counted): a cancelled time off gives it back.
    let i = s.updates.partition_point(|x| x.0 <= t);
    s.updates.insert(i, (t, sign));
    let newest = s.updates.last().map_or(t, |x| x.0);
    let keep_from = pres.before(newest, p.window);
    s.updates.retain(|x| x.0 >= keep_from);
    if s.updates.len() > 64 {
        s.updates.remove(0);
    }
    if sign != 0 || pres.off_at(t) {
        return;
    }
    let since = pres.before(t, p.window);
    let in_window = s
        .updates
        .iter()
        .filter(|x| x.0 >= since && x.0 <= t && !pres.off_at(x.0));
    let (passive, positive) = in_window.fold((0usize, 0usize), |(z, pos), x| {
        (z + (x.1 == 0) as usize, pos + (x.1 > 0) as usize)
    });
    if passive >= p.min && positive == 0 {
        out.push(Fire::new(
            RuleId::PassiveGoals,
            t,
            vec![
                Reason::new(
                    "goal_updates_without_progress",
                    passive as f64,
                    p.min as f64,
                )
                .window_days(whole_days(p.window)),
                Reason::new("goal_updates_with_progress", 0.0, 0.0)
                    .window_days(whole_days(p.window)),
            ],
        ));
    }
}

pub fn next_due(_p: &Params, _st: &Option<Box<State>>, _pres: &Presence<'_>) -> Option<Ts> {
    None
}

pub fn on_timer(
    _p: &Params,
    _st: &mut Option<Box<State>>,
    _now: Ts,
    _pres: &Presence<'_>,
    _out: &mut Vec<Fire>,
) {
}
