//! `performance_dip`: sprints in a row closed below `sprint_ratio` of target (an event), or the
//! task completion ratio over the recent window below `task_ratio` × that over the baseline
//! window before it (evaluated as UTC days close, like `collaboration_decline`).

use serde::{Deserialize, Serialize};

use super::collaboration::Daily;
use super::population::{population_detail, scaled, Subject};
use super::presence::Presence;
use super::presence::{excluded_note, Source};
use super::window::{enough_days, present_window, DayRing, EXCLUSION_MARGIN_DAYS};
use super::{Fire, RuleId};
use crate::config::PerformanceDip;
use crate::event::{Event, Kind};
use crate::time::{day_of, day_start, format_rfc3339, Ts, DAY};
use crate::trigger::{round2, Reason};

#[derive(Debug, Clone)]
pub struct Params {
    pub sprint_ratio: f64,
    pub sprints: usize,
    pub recent_days: i64,
    pub baseline_days: i64,
    pub task_ratio: f64,
    pub min_history_days: i64,
    pub min_baseline_planned: u64,
    /// `population.min_window_share`.
    pub min_share: f64,
    /// `population.relative`.
    pub relative: bool,
}

impl Params {
    pub fn from(c: &PerformanceDip, pop: &crate::config::Population) -> Params {
        Params {
            min_share: pop.min_window_share,
            relative: pop.relative,
            sprint_ratio: c.sprint_ratio,
            sprints: c.consecutive_sprints as usize,
            recent_days: c.recent_window.ms() / DAY,
            baseline_days: c.baseline_window.ms() / DAY,
            task_ratio: c.task_ratio,
            min_history_days: c.min_history.ms() / DAY,
            min_baseline_planned: c.min_baseline_planned as u64,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tasks {
    daily: Daily,
    completed: DayRing,
    planned: DayRing,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The current run of sprints below target: (closed at, done / target).
    low_sprints: Vec<(Ts, f32)>,
    tasks: Option<Tasks>,
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(kind, Kind::SprintClosed { .. } | Kind::WorkTasks { .. })
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let t = ev.occurred_at;
    match ev.kind {
        Kind::SprintClosed {
            points_done,
            points_target,
        } => {
            if points_target <= 0.0 || pres.off_at(t) {
                // (A sprint closed on a day off neither breaks a run nor adds to it.)
                return;
            }
            let s = st.get_or_insert_with(Default::default);
            let r = points_done / points_target;
            if r >= p.sprint_ratio {
                s.low_sprints.clear();
                return;
            }
            s.low_sprints.push((t, r as f32));
            if s.low_sprints.len() >= p.sprints {
                let detail = s
                    .low_sprints
                    .iter()
                    .map(|(at, r)| {
                        format!(
                            "{}% of target at {}",
                            round2(*r as f64 * 100.0),
                            format_rfc3339(*at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                out.push(Fire::new(
                    RuleId::PerformanceDip,
                    t,
                    vec![Reason::new(
                        "sprints_below_target_in_a_row",
                        s.low_sprints.len() as f64,
                        p.sprints as f64,
                    )
                    .detail(format!(
                        "below {}% of target: {detail}",
                        round2(p.sprint_ratio * 100.0)
                    ))],
                ));
                s.low_sprints.clear();
            }
        }
        Kind::WorkTasks { completed, planned } => {
            let day = day_of(t);
            let s = st.get_or_insert_with(Default::default);
            let fresh = || Tasks {
                daily: Daily::new(day),
                completed: DayRing::new(p.ring_len(), day),
                planned: DayRing::new(p.ring_len(), day),
            };
            let tk = s.tasks.get_or_insert_with(fresh);
            if tk.planned.len() != p.ring_len() as i64 {
                // Written under other windows (or before the margin): keep the days held,
                // and judge nothing before them.
                tk.daily.first_day = tk.daily.first_day.max(tk.planned.horizon() as i32);
                tk.completed.set_len(p.ring_len());
                tk.planned.set_len(p.ring_len());
            }
            tk.daily.saw(day);
            tk.completed.add(day, completed);
            tk.planned.add(day, planned);
        }
        _ => {}
    }
}

/// Hints the CPU to load the daily totals an event will add to.
pub fn prefetch(st: &Option<Box<State>>) {
    if let Some(tk) = st.as_deref().and_then(|s| s.tasks.as_ref()) {
        tk.completed.prefetch();
        tk.planned.prefetch();
    }
}

fn next_day(p: &Params, tk: &Tasks) -> Option<i64> {
    tk.daily
        .next_day(p.min_history_days, p.recent_days, tk.planned.last_day())
}

pub fn next_due(p: &Params, st: &Option<Box<State>>, _pres: &Presence<'_>) -> Option<Ts> {
    next_day(p, st.as_deref()?.tasks.as_ref()?).map(|d| day_start(d + 1))
}

pub fn on_timer(
    p: &Params,
    st: &mut Option<Box<State>>,
    now: Ts,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Some(s) = st.as_deref_mut() else { return };
    let Some(tk) = s.tasks.as_mut() else { return };
    let closed = day_of(now) - 1;
    while let Some(d) = next_day(p, tk) {
        if d > closed {
            break;
        }
        // (As in `collaboration`: only days present are evaluated.)
        if !pres.excluded(d, Some(Source::Tasks)) {
            out.extend(evaluate(p, tk, d, pres));
        }
        tk.daily.evaluated_through = d as i32;
    }
    if next_day(p, tk).is_none() && tk.planned.last_day() + p.span() < closed {
        s.tasks = None;
    }
}

fn evaluate(p: &Params, tk: &Tasks, day: i64, pres: &Presence<'_>) -> Option<Fire> {
    if day - tk.daily.first_day as i64 + 1 < p.min_history_days {
        return None;
    }
    let src = Some(Source::Tasks);
    let floor = tk.planned.horizon().max(tk.daily.first_day as i64);
    let (rf, _) = present_window(day, p.recent_days, floor, pres, src);
    let (bf, _) = present_window(rf - 1, p.baseline_days, floor, pres, src);
    let ((rc, rdays), (rp, _)) = (
        tk.completed.sum_present(rf, day, pres, src),
        tk.planned.sum_present(rf, day, pres, src),
    );
    let ((bc, bdays), (bp, _)) = (
        tk.completed.sum_present(bf, rf - 1, pres, src),
        tk.planned.sum_present(bf, rf - 1, pres, src),
    );
    if !enough_days(rdays, p.recent_days, p.min_share)
        || !enough_days(bdays, p.baseline_days, p.min_share)
    {
        return None;
    }
    let excluded = day - bf + 1 - rdays - bdays;
    if rp == 0 || bp < p.min_baseline_planned || bc == 0 {
        return None;
    }
    let recent = (rc as f64 / rp as f64).min(1.0);
    let baseline = (bc as f64 / bp as f64).min(1.0);
    if recent >= p.task_ratio * baseline {
        return None;
    }
    // Population-relative (as in `collaboration`): the population's completion ratio over
    // the same days, recent against before.
    let population = pres.figures().filter(|_| p.relative).and_then(|f| {
        f.ratio(
            (bf, rf, day),
            pres,
            src,
            true,
            |d| (d.tasks_completed, d.tasks_planned),
            Subject {
                sums: [(rc, rp), (bc, bp)],
                members: 1,
            },
        )
    });
    let ratio = scaled(p.task_ratio, population);
    if recent >= ratio * baseline {
        return None;
    }
    let mut reasons = vec![Reason::new("task_completion_ratio", recent, ratio * baseline)
            .baseline(baseline)
            .window_days(p.recent_days as u32)
            .detail(format!(
                "{rc} of {rp} planned tasks completed in the last {} days; {bc} of {bp} in the {} days before{}",
                p.recent_days, p.baseline_days, excluded_note(excluded)
            ))];
    if let Some(r) = population {
        reasons.push(
            Reason::new("population_task_completion_ratio", r, 1.0)
                .window_days(p.recent_days as u32)
                .detail(population_detail("task completion ratio", r)),
        );
    }
    Some(Fire::new(
        RuleId::PerformanceDip,
        day_start(day + 1),
        reasons,
    ))
}
