//! `collaboration_decline`: mean daily `messages + meetings` over the recent window below
//! `ratio` × the mean over the baseline window just before it. Evaluated as each UTC day closes
//! (a timer), because a day without a rollup counts as 0: the decline of someone who has gone
//! quiet shows only as time passes.

use serde::{Deserialize, Serialize};

use super::population::{population_detail, scaled, Subject};
use super::presence::Presence;
use super::presence::{excluded_note, Source};
use super::window::{enough_days, present_window, DayRing, EXCLUSION_MARGIN_DAYS};
use super::{Fire, RuleId};
use crate::config::CollaborationDecline;
use crate::event::{Event, Kind};
use crate::time::{day_of, day_start, Ts, DAY};
use crate::trigger::Reason;

#[derive(Debug, Clone)]
pub struct Params {
    pub recent_days: i64,
    pub baseline_days: i64,
    pub ratio: f64,
    pub min_history_days: i64,
    pub min_baseline_mean: f64,
    /// `population.min_window_share`.
    pub min_share: f64,
    /// `population.relative`.
    pub relative: bool,
}

impl Params {
    pub fn from(c: &CollaborationDecline, pop: &crate::config::Population) -> Params {
        Params {
            min_share: pop.min_window_share,
            relative: pop.relative,
            recent_days: c.recent_window.ms() / DAY,
            baseline_days: c.baseline_window.ms() / DAY,
            ratio: c.ratio,
            min_history_days: c.min_history.ms() / DAY,
            min_baseline_mean: c.min_baseline_mean,
        }
    }
    fn span(&self) -> i64 {
        self.recent_days + self.baseline_days
    }
    /// The days a ring holds: the span, and room to reach back over excluded days.
    fn ring_len(&self) -> usize {
        (self.span() + EXCLUSION_MARGIN_DAYS) as usize
    }
}

/// A day-close schedule over a ring of daily totals: which days have been evaluated, and since
/// when there is history. Shared with `performance_dip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Daily {
    pub first_day: i32,
    pub evaluated_through: i32,
}

impl Daily {
    pub fn new(day: i64) -> Daily {
        Daily {
            first_day: day as i32,
            evaluated_through: day as i32 - 1,
        }
    }

    pub fn saw(&mut self, day: i64) {
        self.first_day = self.first_day.min(day as i32);
    }

    /// The next day whose close is worth evaluating, given the newest day with data, or `None`
    /// when neither window can hold data any more.
    pub fn next_day(&self, min_history_days: i64, span: i64, last_data_day: i64) -> Option<i64> {
        let first_eligible = self.first_day as i64 + min_history_days - 1;
        let d = (self.evaluated_through as i64 + 1).max(first_eligible);
        (d - span + 1 <= last_data_day).then_some(d)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    daily: Daily,
    counts: DayRing,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(kind, Kind::CollabActivity { .. })
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    _pres: &Presence<'_>,
    _out: &mut Vec<Fire>,
) {
    if let Kind::CollabActivity { messages, meetings } = ev.kind {
        let day = day_of(ev.occurred_at);
        let fresh = || {
            Box::new(State {
                daily: Daily::new(day),
                counts: DayRing::new(p.ring_len(), day),
            })
        };
        let s = st.get_or_insert_with(fresh);
        if s.counts.len() != p.ring_len() as i64 {
            // Written under other windows (or before the margin): keep the days it holds, and
            // judge nothing before them (the ring did not keep those days).
            s.daily.first_day = s.daily.first_day.max(s.counts.horizon() as i32);
            s.counts.set_len(p.ring_len());
        }
        s.daily.saw(day);
        s.counts.add(day, messages.saturating_add(meetings));
    }
}

/// Hints the CPU to load the daily totals an event will add to.
pub fn prefetch(st: &Option<Box<State>>) {
    if let Some(s) = st {
        s.counts.prefetch();
    }
}

fn next_day(p: &Params, s: &State) -> Option<i64> {
    s.daily
        .next_day(p.min_history_days, p.span(), s.counts.last_day())
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, _pres: &Presence<'_>) -> Option<Ts> {
    next_day(p, st.as_deref()?).map(|d| day_start(d + 1))
}

pub fn on_timer(
    p: &Params,
    st: &mut Option<Box<State>>,
    now: Ts,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Some(s) = st.as_deref_mut() else { return };
    let closed = day_of(now) - 1; // the last day that has ended at `now`
    while let Some(d) = next_day(p, s) {
        if d > closed {
            break;
        }
        // An excluded day adds nothing to judge (and the windows would be those of the day
        // before it): only days present are evaluated.
        if !pres.excluded(d, Some(Source::Collab)) {
            out.extend(evaluate(p, s, d, pres));
        }
        s.daily.evaluated_through = d as i32;
    }
    if next_day(p, s).is_none() && s.counts.last_day() + p.span() < closed {
        // Nothing left in the windows: drop the state entirely.
        *st = None;
    }
}

fn evaluate(p: &Params, s: &State, day: i64, pres: &Presence<'_>) -> Option<Fire> {
    if day - s.daily.first_day as i64 + 1 < p.min_history_days {
        return None;
    }
    let src = Some(Source::Collab);
    // (Not before the first day seen either: there is no history to judge before it.)
    let floor = s.counts.horizon().max(s.daily.first_day as i64);
    let (recent_from, _) = present_window(day, p.recent_days, floor, pres, src);
    let (base_from, _) = present_window(recent_from - 1, p.baseline_days, floor, pres, src);
    let (recent_sum, recent_days) = s.counts.sum_present(recent_from, day, pres, src);
    let (base_sum, base_days) = s.counts.sum_present(base_from, recent_from - 1, pres, src);
    if !enough_days(recent_days, p.recent_days, p.min_share)
        || !enough_days(base_days, p.baseline_days, p.min_share)
    {
        return None;
    }
    let excluded = day - base_from + 1 - recent_days - base_days;
    let recent = recent_sum as f64 / recent_days as f64;
    let baseline = base_sum as f64 / base_days as f64;
    if baseline < p.min_baseline_mean || baseline <= 0.0 || recent >= p.ratio * baseline {
        return None;
    }
    // Population-relative: the population's messages + meetings per active employee over
    // the same days, recent against before (looked up only when the subject's own ratio
    // fires).
    let population = pres.figures().filter(|_| p.relative).and_then(|f| {
        f.ratio(
            (base_from, recent_from, day),
            pres,
            src,
            false,
            |d| (d.collab, d.active as u64),
            Subject {
                sums: [
                    (recent_sum, recent_days as u64),
                    (base_sum, base_days as u64),
                ],
                members: 1,
            },
        )
    });
    let ratio = scaled(p.ratio, population);
    if recent >= ratio * baseline {
        return None;
    }
    let pct = |v: f64| (v * 100.0).round();
    let mut reasons = vec![Reason::new("mean_daily_collaboration", recent, ratio * baseline)
            .baseline(baseline)
            .window_days(p.recent_days as u32)
            .detail(format!(
                "messages + meetings per day over the last {} days are {}% of the mean over the {} days before (fires below {}%){}",
                p.recent_days,
                pct(recent / baseline),
                p.baseline_days,
                pct(ratio),
                excluded_note(excluded)
            ))];
    if let Some(r) = population {
        reasons.push(
            Reason::new("population_collaboration_ratio", r, 1.0)
                .window_days(p.recent_days as u32)
                .detail(population_detail(
                    "messages + meetings per active employee",
                    r,
                )),
        );
    }
    Some(Fire::new(
        RuleId::CollaborationDecline,
        day_start(day + 1),
        reasons,
    ))
}
