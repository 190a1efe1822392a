//! `mobility_frustration`: at least `min_views` posting views within `window` and no
//! application among them, or a development plan or skills assessment abandoned.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::window::{count_in, insert_sorted};
use super::{Fire, RuleId};
use crate::config::MobilityFrustration;
use crate::event::{Event, Kind};
use crate::time::{whole_days, Ts};
use crate::trigger::Reason;

#[derive(Debug, Clone)]
pub struct Params {
    pub window: Ts,
    pub min_views: usize,
}

impl Params {
    pub fn from(c: &MobilityFrustration) -> Params {
        Params {
            window: c.window.ms(),
            min_views: c.min_views as usize,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    views: Vec<Ts>,
    applications: Vec<Ts>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::PostingViewed { .. }
            | Kind::Applied { .. }
            | Kind::PlanAbandoned { .. }
            | Kind::SkillsAssessmentAbandoned { .. }
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
    match &ev.kind {
        Kind::PostingViewed { .. } | Kind::Applied { .. } => {
            // A view on a day off is kept but not counted (a cancelled time off gives it
            // back); an application always counts.
            let s = st.get_or_insert_with(Default::default);
            let applied = matches!(ev.kind, Kind::Applied { .. });
            insert_sorted(
                if applied {
                    &mut s.applications
                } else {
                    &mut s.views
                },
                t,
                32,
            );
            let newest = s
                .views
                .last()
                .copied()
                .unwrap_or(t)
                .max(s.applications.last().copied().unwrap_or(t));
            let keep_from = pres.before(newest, p.window);
            s.views.retain(|&x| x >= keep_from);
            s.applications.retain(|&x| x >= keep_from);
            if applied || pres.off_at(t) {
                return;
            }
            let since = pres.before(t, p.window);
            let views = pres.count_present(&s.views, since, t);
            if views >= p.min_views && count_in(&s.applications, since, t) == 0 {
                out.push(Fire::new(
                    RuleId::MobilityFrustration,
                    t,
                    vec![
                        Reason::new("posting_views", views as f64, p.min_views as f64)
                            .window_days(whole_days(p.window)),
                        Reason::new("applications", 0.0, 0.0).window_days(whole_days(p.window)),
                    ],
                ));
                s.views.clear();
            }
        }
        Kind::PlanAbandoned { .. } | Kind::SkillsAssessmentAbandoned { .. } => {
            let signal = if matches!(ev.kind, Kind::PlanAbandoned { .. }) {
                "development_plan_abandoned"
            } else {
                "skills_assessment_abandoned"
            };
            out.push(Fire::new(
                RuleId::MobilityFrustration,
                t,
                vec![Reason::new(signal, 1.0, 1.0)],
            ));
        }
        _ => {}
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
