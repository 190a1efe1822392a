//! `collaboration_decline`: mean daily `messages + meetings` over the recent window below
//! `ratio` × the mean over the baseline window just before it. Evaluated as each UTC day closes
//! (a timer), because a day without a rollup counts as 0: the decline of someone who has gone
//! quiet shows only as time passes.

use serde::{Deserialize, Serialize};

use super::{Fire, RuleId};
use crate::config::CollaborationDecline;
use crate::event::{Event, Kind};
use crate::time::{day_of, day_start, Ts, DAY};
use crate::trigger::Reason;

/// The longest recent + baseline span the day ring supports.
pub const MAX_DAYS: usize = 366;

#[derive(Debug, Clone)]
pub struct Params {
    pub recent_days: i64,
    pub baseline_days: i64,
    pub ratio: f64,
    pub min_history_days: i64,
    pub min_baseline_mean: f64,
}

impl Params {
    pub fn from(c: &CollaborationDecline) -> Params {
        Params {
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
}

/// Daily totals for the last `span` days in a ring, plus the days that bound it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    first_day: i32,
    last_day: i32,
    evaluated_through: i32,
    counts: Vec<u16>,
}

impl State {
    fn new(day: i64, span: i64) -> State {
        State {
            first_day: day as i32,
            last_day: day as i32,
            evaluated_through: day as i32 - 1,
            counts: vec![0; span as usize],
        }
    }

    fn len(&self) -> i64 {
        self.counts.len() as i64
    }

    fn get(&self, day: i64) -> u32 {
        let last = self.last_day as i64;
        if day > last || day <= last - self.len() {
            0
        } else {
            self.counts[day.rem_euclid(self.len()) as usize] as u32
        }
    }

    fn add(&mut self, day: i64, v: u32) {
        let len = self.len();
        let last = self.last_day as i64;
        if day > last {
            // Clear the slots of the days the ring moves over.
            let from = (last + 1).max(day - len + 1);
            for d in from..=day {
                self.counts[d.rem_euclid(len) as usize] = 0;
            }
            self.last_day = day as i32;
        } else if day <= last - len {
            return; // older than anything the windows look at
        }
        let slot = &mut self.counts[day.rem_euclid(len) as usize];
        *slot = slot.saturating_add(v.min(u16::MAX as u32) as u16);
        if (day as i32) < self.first_day {
            self.first_day = day as i32;
        }
    }

    fn sum(&self, from: i64, to: i64) -> u64 {
        (from..=to).map(|d| self.get(d) as u64).sum()
    }
}

pub fn on_event(p: &Params, st: &mut Option<Box<State>>, ev: &Event<'_>, _out: &mut Vec<Fire>) {
    if let Kind::CollabActivity { messages, meetings } = ev.kind {
        let day = day_of(ev.occurred_at);
        let s = st.get_or_insert_with(|| Box::new(State::new(day, p.span())));
        if s.len() != p.span() {
            // The windows were reconfigured since this state was written: start again.
            **s = State::new(day, p.span());
        }
        s.add(day, messages.saturating_add(meetings));
    }
}

/// The first day whose close is worth evaluating, or `None` when nothing can fire any more.
fn next_day(p: &Params, s: &State) -> Option<i64> {
    let first_eligible = s.first_day as i64 + p.min_history_days - 1;
    let d = (s.evaluated_through as i64 + 1).max(first_eligible);
    // Once neither window holds a day with activity, the baseline mean is 0: silent for good.
    if d - p.span() + 1 > s.last_day as i64 {
        return None;
    }
    Some(d)
}

pub fn next_due(p: &Params, st: &Option<Box<State>>) -> Option<Ts> {
    let s = st.as_deref()?;
    next_day(p, s).map(|d| day_start(d + 1))
}

pub fn on_timer(p: &Params, st: &mut Option<Box<State>>, now: Ts, out: &mut Vec<Fire>) {
    let Some(s) = st.as_deref_mut() else { return };
    let closed = day_of(now) - 1; // the last day that has ended at `now`
    while let Some(d) = next_day(p, s) {
        if d > closed {
            break;
        }
        if let Some(f) = evaluate(p, s, d) {
            out.push(f);
        }
        s.evaluated_through = d as i32;
    }
    if next_day(p, s).is_none() && s.last_day as i64 + p.span() < closed {
        // Nothing left in the windows: drop the state entirely.
        *st = None;
    }
}

fn evaluate(p: &Params, s: &State, day: i64) -> Option<Fire> {
    if day - s.first_day as i64 + 1 < p.min_history_days {
        return None;
    }
    let recent_from = day - p.recent_days + 1;
    let recent = s.sum(recent_from, day) as f64 / p.recent_days as f64;
    let baseline =
        s.sum(recent_from - p.baseline_days, recent_from - 1) as f64 / p.baseline_days as f64;
    if baseline < p.min_baseline_mean || baseline <= 0.0 || recent >= p.ratio * baseline {
        return None;
    }
    let pct = |v: f64| (v * 100.0).round();
    Some(Fire {
        rule: RuleId::CollaborationDecline,
        at: day_start(day + 1),
        reasons: vec![Reason::new("mean_daily_collaboration", recent, p.ratio * baseline)
            .baseline(baseline)
            .window_days(p.recent_days as u32)
            .detail(format!(
                "messages + meetings per day over the last {} days are {}% of the mean over the {} days before (fires below {}%)",
                p.recent_days,
                pct(recent / baseline),
                p.baseline_days,
                pct(p.ratio)
            ))],
        module_id: None,
    })
}
