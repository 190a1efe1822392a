//! `learning_confusion`: at least `min_failed_searches` searches with nothing clicked within
//! `window`, or at least `min_replays` replays of one module within `window`.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::window::insert_sorted;
use super::{fingerprint, Fire, RuleId};
use crate::config::LearningConfusion;
use crate::event::{Event, Kind};
use crate::time::{whole_days, Ts};
use crate::trigger::Reason;

#[derive(Debug, Clone)]
pub struct Params {
    pub window: Ts,
    pub min_searches: usize,
    pub min_replays: usize,
    pub search_content_id: String,
}

impl Params {
    pub fn from(c: &LearningConfusion) -> Params {
        Params {
            window: c.window.ms(),
            min_searches: c.min_failed_searches as usize,
            min_replays: c.min_replays as usize,
            search_content_id: c.search_content_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    failed_searches: Vec<Ts>,
    /// (module fingerprint, replayed at).
    replays: Vec<(u64, Ts)>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(
        kind,
        Kind::ContentSearched { .. } | Kind::ContentReplayed { .. }
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
        Kind::ContentSearched { results_clicked: 0 } => {
            // Kept even on a day off (not counted): a cancelled time off gives it back.
            let s = st.get_or_insert_with(Default::default);
            insert_sorted(&mut s.failed_searches, t, 16);
            let newest = *s.failed_searches.last().unwrap_or(&t);
            let keep_from = pres.before(newest, p.window);
            s.failed_searches.retain(|&x| x >= keep_from);
            let n = pres.count_present(&s.failed_searches, pres.before(t, p.window), t);
            if n >= p.min_searches && !pres.off_at(t) {
                out.push(
                    Fire::new(
                        RuleId::LearningConfusion,
                        t,
                        vec![Reason::new(
                            "searches_without_a_click",
                            n as f64,
                            p.min_searches as f64,
                        )
                        .window_days(whole_days(p.window))],
                    )
                    .content(p.search_content_id.clone()),
                );
                s.failed_searches.clear();
            }
        }
        Kind::ContentReplayed { module_id } => {
            let s = st.get_or_insert_with(Default::default);
            let id = fingerprint(module_id);
            let i = s.replays.partition_point(|x| x.1 <= t);
            s.replays.insert(i, (id, t));
            let newest = s.replays.last().map_or(t, |x| x.1);
            let keep_from = pres.before(newest, p.window);
            s.replays.retain(|x| x.1 >= keep_from);
            if s.replays.len() > 32 {
                s.replays.remove(0);
            }
            let since = pres.before(t, p.window);
            let n = s
                .replays
                .iter()
                .filter(|x| x.0 == id && x.1 >= since && x.1 <= t && !pres.off_at(x.1))
                .count();
            if n >= p.min_replays && !pres.off_at(t) {
                out.push(
                    Fire::new(
                        RuleId::LearningConfusion,
                        t,
                        vec![
                            Reason::new("replays_of_one_module", n as f64, p.min_replays as f64)
                                .window_days(whole_days(p.window))
                                .detail(format!("module {module_id}")),
                        ],
                    )
                    .module(module_id.to_string()),
                );
                s.replays.retain(|x| x.0 != id);
            }
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
