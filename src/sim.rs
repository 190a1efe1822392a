//! The workforce simulator: a seeded, deterministic synthetic workforce — employees in teams of
//! eight, new hires in cohorts — with the everyday behaviour of engaged people across the whole
//! catalog, and, for a share of them, injected patterns for every rule of docs/contract.md §4 at known
//! times, near misses that must stay quiet, consent withdrawals, exits and erasures, duplicate
//! deliveries and malformed records. Alongside the events it writes the ground truth: for each
//! injected pattern, the rule, the subject and the event-time window in which the rule must fire
//! (or must not).
//!
//! Everyday behaviour is shaped so that no rule fires on it with the default configuration
//! (weekday collaboration with noise but no trend, check-ins completed before they are due,
//! modules completed, feedback acknowledged, …); every detection in a replay of the simulation
//! is therefore either expected by the truth or a false positive.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Kind};
use crate::synth::{Rng, EPOCH};
use crate::time::{format_rfc3339, Ts, DAY, HOUR};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub employees: u32,
    pub days: u32,
    pub seed: u64,
    /// Share of ordinary teams (not new hires, not given a team pattern) in which one employee
    /// gets an injected pattern, near miss or governance event (one per team, so that a team's
    /// figures move by one member at most).
    pub pattern_share: f64,
    /// Share of records replaced by malformed ones (in addition to the events).
    pub malformed_share: f64,
    /// Share of events delivered twice.
    pub duplicate_share: f64,
    /// A company holiday: (first day, days). Each employee works a day of it with the
    /// probability `holiday_activity` (a whole day's behaviour, or none of it).
    pub holiday: Option<(i64, i64)>,
    pub holiday_activity: f64,
    /// The holiday is declared in the calendar the replay uses: a detection whose window ends
    /// after the holiday starts may come as many days later (its deadline stops over them).
    pub declare_holiday: bool,
    /// Feed outages: (source, first day, days) — the source delivers nothing.
    pub outages: Vec<(crate::rules::presence::Source, i64, i64)>,
    /// Share of ordinary employees (no injected pattern) who take recorded time off of 1–3
    /// weeks, recorded a week ahead; while off they do nothing (a check-in scheduled for
    /// them still is, and stays open).
    pub time_off_share: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            employees: 2_000,
            days: 180,
            seed: 1,
            pattern_share: 0.6,
            malformed_share: 0.001,
            duplicate_share: 0.01,
            holiday: None,
            holiday_activity: 0.15,
            declare_holiday: false,
            outages: Vec::new(),
            time_off_share: 0.0,
        }
    }
}

/// One entry of the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub rule: String,
    pub subject: String,
    /// Whether the rule must fire (true) or must stay quiet (false) in the window.
    pub fire: bool,
    pub from: String,
    pub to: String,
    /// What was injected, for a person reading the file.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub seed: u64,
    pub employees: u32,
    pub days: u32,
    pub start: String,
    pub end: String,
    pub expectations: Vec<Expectation>,
    /// Population shifts simulated: an expectation whose window meets one is scored apart.
    #[serde(default)]
    pub shifts: Vec<Shift>,
}

/// A population shift of the simulation, as the truth records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// `holiday`, `outage` or `time_off`.
    pub kind: String,
    pub from: String,
    pub to: String,
    /// The source of an outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Time off: the employees off (a shift only for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

/// One output record: a valid event, or a malformed line.
pub enum Record {
    Event(Event<'static>),
    Malformed(String),
}

/// The simulation: records in event-time order, and the truth.
pub struct Simulation {
    pub records: Vec<Record>,
    pub truth: Truth,
}

const TEAM: u32 = 8;
const COHORT: u32 = 6;

fn day_at(d: i64, hour: i64, offset: Ts) -> Ts {
    EPOCH + d * DAY + hour * HOUR + offset
}

/// The pattern an employee (or their team or cohort) is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    None,
    CollabDecline,
    RecognitionWithdrawal,
    PulseShortening,
    CheckinLapse,
    FeedbackUnacknowledged,
    PassiveGoals,
    LearningAbandonment,
    LearningConfusion,
    MobilityFrustration,
    PerformanceDip,
    Attrition,
    // Near misses: must stay quiet.
    NearCollabDip,
    NearSingleSkip,
    NearOneUnacknowledged,
    NearTwoPassiveGoals,
    NearTwoFailedSearches,
    NearTwoPostingViews,
    NearOneLowSprint,
    NearOneShortPulse,
    // Governance: a pattern that must not fire.
    ConsentWithdrawn,
    Exited,
    Erased,
}

const EMPLOYEE_PATTERNS: &[Pattern] = &[
    Pattern::CollabDecline,
    Pattern::RecognitionWithdrawal,
    Pattern::PulseShortening,
    Pattern::CheckinLapse,
    Pattern::FeedbackUnacknowledged,
    Pattern::PassiveGoals,
    Pattern::LearningAbandonment,
    Pattern::LearningConfusion,
    Pattern::MobilityFrustration,
    Pattern::PerformanceDip,
    Pattern::Attrition,
    Pattern::NearCollabDip,
    Pattern::NearSingleSkip,
    Pattern::NearOneUnacknowledged,
    Pattern::NearTwoPassiveGoals,
    Pattern::NearTwoFailedSearches,
    Pattern::NearTwoPostingViews,
    Pattern::NearOneLowSprint,
    Pattern::NearOneShortPulse,
    Pattern::ConsentWithdrawn,
    Pattern::Exited,
    Pattern::Erased,
];

/// What happens to a team as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeamPattern {
    None,
    CheckinDrop,
    TrainingLow,
    SentimentShift,
}

struct Builder {
    opts: SimOptions,
    rng: Rng,
    events: Vec<Event<'static>>,
    truth: Vec<Expectation>,
    seq: u64,
}

impl Builder {
    fn emit(&mut self, emp: u32, at: Ts, kind: Kind<'static>, cohort: Option<u32>) {
        self.seq += 1;
        self.events.push(Event {
            event_id: Cow::Owned(format!("s{}-{}", self.opts.seed, self.seq)),
            employee_id: Cow::Owned(employee_id(emp)),
            occurred_at: at,
            team_id: Some(Cow::Owned(format!("team-{:05}", emp / TEAM))),
            cohort_id: cohort.map(|c| Cow::Owned(format!("cohort-{c:04}"))),
            manager_id: Some(Cow::Owned(format!("mgr-{:05}", emp / TEAM))),
            kind,
        });
    }

    fn expect(&mut self, rule: &str, subject: String, fire: bool, from: Ts, to: Ts, note: &str) {
        self.truth.push(Expectation {
            rule: rule.to_string(),
            subject,
            fire,
            from: format_rfc3339(from),
            to: format_rfc3339(to),
            note: note.to_string(),
        });
    }
}

pub fn employee_id(emp: u32) -> String {
    format!("emp-{emp:06}")
}

fn s(v: String) -> Cow<'static, str> {
    Cow::Owned(v)
}

/// Which days an employee's everyday behaviour leaves out, by kind of behaviour.
#[derive(Default, Clone)]
struct Quiet {
    collab_low: Option<(i64, i64, f64)>,
    checkins_from: Option<i64>,
    skip_cycles: Vec<i64>,
    recognition_from: Option<i64>,
    pulse_from: Option<i64>,
    feedback_from: Option<i64>,
    goals_from: Option<i64>,
    postings_from: Option<i64>,
    low_sprints: Vec<i64>,
    stop_at: Option<i64>,
    /// Recorded time off: first day and days.
    leave: Option<(i64, i64)>,
}

/// The check-in cycle: a check-in is scheduled on the days `d % 14 == cycle(emp)`.
fn checkin_cycle(emp: u32) -> i64 {
    (emp as i64 + 3) % 14
}

fn sprint_cycle(emp: u32) -> i64 {
    emp as i64 % 14
}

/// The first day >= `from` with `d % 14 == cycle`.
fn next_cycle_day(from: i64, cycle: i64) -> i64 {
    from + (cycle - from).rem_euclid(14)
}

pub fn simulate(opts: &SimOptions) -> Simulation {
    let mut b = Builder {
        opts: opts.clone(),
        rng: Rng::new(opts.seed),
        events: Vec::new(),
        truth: Vec::new(),
        seq: 0,
    };
    let days = opts.days as i64;
    let n = opts.employees;
    let teams = n.div_ceil(TEAM);
    // New hires: the last team-aligned tenth of the workforce, in cohorts of six.
    let hires_from = (n - n / 10) / TEAM * TEAM;
    // Team patterns: every 9th team (never a team of new hires), rotating over the three.
    let team_pattern = |t: u32| -> TeamPattern {
        if t * TEAM >= hires_from || t % 9 != 4 {
            return TeamPattern::None;
        }
        match (t / 9) % 3 {
            0 => TeamPattern::CheckinDrop,
            1 => TeamPattern::TrainingLow,
            _ => TeamPattern::SentimentShift,
        }
    };
    // Employee patterns: a share of the employees of ordinary teams, one pattern each, at most
    // one per team (so a team's figures move by one member at most).
    let mut pattern = vec![Pattern::None; n as usize];
    let mut leaves: Vec<(String, i64, i64)> = Vec::new();
    let mut k = 0usize;
    for t in 0..teams {
        if team_pattern(t) != TeamPattern::None || t * TEAM >= hires_from {
            continue;
        }
        if !b.rng.chance(opts.pattern_share) {
            continue;
        }
        let emp = t * TEAM + (b.rng.below(TEAM as u64) as u32);
        if emp < n {
            pattern[emp as usize] = EMPLOYEE_PATTERNS[k % EMPLOYEE_PATTERNS.len()];
            k += 1;
        }
    }

    for emp in 0..n {
        let team = emp / TEAM;
        let tp = team_pattern(team);
        let new_hire = emp >= hires_from;
        let cohort = new_hire.then(|| (emp - hires_from) / COHORT);
        let offset = (emp as i64 % 3000) * 1000;
        let mut quiet = Quiet::default();
        let p = pattern[emp as usize];
        inject(&mut b, emp, p, days, offset, &mut quiet);
        if opts.time_off_share > 0.0
            && p == Pattern::None
            && !new_hire
            && tp == TeamPattern::None
            && days > 60
            && b.rng.chance(opts.time_off_share)
        {
            let len = 7 + b.rng.below(15) as i64;
            let start = 30 + b.rng.below((days - 30 - len - 5).max(1) as u64) as i64;
            quiet.leave = Some((start, len));
            b.emit(
                emp,
                day_at(start - 7, 9, offset),
                Kind::TimeOffRecorded {
                    time_off_id: s(format!("to-{emp}-{start}")),
                    starts_on: (crate::time::day_of(EPOCH) + start) as i32,
                    ends_on: (crate::time::day_of(EPOCH) + start + len - 1) as i32,
                },
                None,
            );
            leaves.push((employee_id(emp), start, len));
        }
        match tp {
            TeamPattern::None => {}
            TeamPattern::CheckinDrop => quiet.checkins_from = Some(days - 16),
            TeamPattern::TrainingLow | TeamPattern::SentimentShift => {}
        }
        // New hires start on their cohort's day, everyone else was there before day 0.
        let hired = cohort.map(|c| 7 + (c as i64 * 11) % (days / 2).max(1));
        let first = hired.unwrap_or(0);
        let last = quiet.stop_at.unwrap_or(days);
        for d in first..last {
            if let Some((from, len)) = quiet.leave {
                if d >= from && d < from + len {
                    away(&mut b, emp, d, days, offset);
                    continue;
                }
            }
            if let Some((from, len)) = opts.holiday {
                if d >= from && d < from + len && !b.rng.chance(opts.holiday_activity) {
                    continue;
                }
            }
            everyday(&mut b, emp, d, days, offset, &quiet, cohort);
        }
        if let (Some(h), Some(c)) = (hired, cohort) {
            onboarding(&mut b, emp, h, c, days, offset);
        }
    }
    for t in 0..teams {
        let tp = team_pattern(t);
        if tp != TeamPattern::None {
            inject_team(&mut b, t, tp, days, n);
        }
    }
    // Cohort stalls: every third cohort, two of six starters leave a task open.
    let cohorts = (n - hires_from).div_ceil(COHORT);
    for c in 0..cohorts {
        if c % 3 == 1 {
            inject_cohort_stall(&mut b, c, hires_from, n, days);
        }
    }

    // Outages: the source delivers nothing on those days.
    for &(source, from, len) in &opts.outages {
        let (a, z) = (EPOCH + from * DAY, EPOCH + (from + len) * DAY);
        b.events.retain(|e| {
            let hit = match source {
                crate::rules::presence::Source::Collab => {
                    matches!(e.kind, Kind::CollabActivity { .. })
                }
                crate::rules::presence::Source::Tasks => matches!(e.kind, Kind::WorkTasks { .. }),
            };
            !(hit && e.occurred_at >= a && e.occurred_at < z)
        });
    }
    let span = |from: i64, len: i64| {
        (
            format_rfc3339(EPOCH + from * DAY),
            format_rfc3339(EPOCH + (from + len) * DAY),
        )
    };
    let mut shifts = Vec::new();
    if let Some((from, len)) = opts.holiday {
        let (from, to) = span(from, len);
        shifts.push(Shift {
            kind: "holiday".into(),
            from,
            to,
            source: None,
            subjects: Vec::new(),
        });
    }
    for &(source, from, len) in &opts.outages {
        let (from, to) = span(from, len);
        shifts.push(Shift {
            kind: "outage".into(),
            from,
            to,
            source: Some(source.as_str().into()),
            subjects: Vec::new(),
        });
    }
    for (emp, from, len) in leaves {
        let (from, to) = span(from, len);
        shifts.push(Shift {
            kind: "time_off".into(),
            from,
            to,
            source: None,
            subjects: vec![emp],
        });
    }
    b.events.sort_by_key(|e| e.occurred_at);
    // Duplicate deliveries (the same event_id again, right after) and malformed records.
    let mut records = Vec::with_capacity(b.events.len() + b.events.len() / 50);
    let mut rng = Rng::new(opts.seed ^ 0xD0B1E);
    for (i, ev) in b.events.into_iter().enumerate() {
        if rng.chance(opts.malformed_share) {
            records.push(Record::Malformed(malformed(i, &mut rng)));
        }
        if rng.chance(opts.duplicate_share) {
            records.push(Record::Event(ev.clone()));
        }
        records.push(Record::Event(ev));
    }
    if let (Some((from, len)), true) = (opts.holiday, opts.declare_holiday) {
        let start = EPOCH + from * DAY;
        for e in b.truth.iter_mut().filter(|e| e.fire) {
            if let Some(to) = crate::time::parse_rfc3339(&e.to).filter(|&t| t > start) {
                e.to = format_rfc3339(to + len * DAY);
            }
        }
    }
    b.truth
        .sort_by(|x, y| (&x.rule, &x.subject, &x.from).cmp(&(&y.rule, &y.subject, &y.from)));
    Simulation {
        records,
        truth: Truth {
            seed: opts.seed,
            employees: n,
            days: opts.days,
            start: format_rfc3339(EPOCH),
            end: format_rfc3339(EPOCH + days * DAY),
            expectations: b.truth,
            shifts,
        },
    }
}

fn malformed(i: usize, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("{{\"event_id\": \"bad-{i}\", \"employee_id\": "),
        1 => format!(
            "{{\"event_id\":\"bad-{i}\",\"employee_id\":\"emp-x\",\"occurred_at\":\"2026-02-30T10:00:00Z\",\"type\":\"collab.activity\",\"attrs\":{{\"messages\":1,\"meetings\":1}}}}"
        ),
        2 => format!(
            "{{\"event_id\":\"bad-{i}\",\"employee_id\":\"emp-x\",\"occurred_at\":\"2026-02-03T10:00:00Z\",\"type\":\"hr.unheard_of\"}}"
        ),
        _ => format!(
            "{{\"event_id\":\"bad-{i}\",\"employee_id\":\"emp-x\",\"occurred_at\":\"2026-02-03T10:00:00Z\",\"type\":\"work.tasks\",\"attrs\":{{\"completed\":-1,\"planned\":2}}}}"
        ),
    }
}

/// One engaged day of one employee.
fn everyday(b: &mut Builder, emp: u32, d: i64, days: i64, off: Ts, q: &Quiet, cohort: Option<u32>) {
    let weekday = d % 7 < 5;
    let r = |b: &mut Builder, n: u64| b.rng.below(n) as u32;
    if weekday {
        let (mut m, mut mt) = (15 + r(b, 10), 3 + r(b, 3));
        if let Some((from, to, f)) = q.collab_low {
            if d >= from && d < to {
                m = (m as f64 * f) as u32;
                mt = (mt as f64 * f) as u32;
            }
        }
        b.emit(
            emp,
            day_at(d, 17, off),
            Kind::CollabActivity {
                messages: m,
                meetings: mt,
            },
            None,
        );
        let planned = 5 + r(b, 3);
        let completed = planned - u32::from(b.rng.chance(0.3));
        b.emit(
            emp,
            day_at(d, 17, off + 60_000),
            Kind::WorkTasks { completed, planned },
            None,
        );
    }
    if d % 14 == sprint_cycle(emp) {
        let target = 20.0;
        let done = if q.low_sprints.contains(&d) {
            10.0
        } else {
            18.0 + r(b, 5) as f64
        };
        b.emit(
            emp,
            day_at(d, 16, off),
            Kind::SprintClosed {
                points_done: done,
                points_target: target,
            },
            None,
        );
    }
    if d % 14 == checkin_cycle(emp) && d + 2 < days && q.checkins_from.is_none_or(|f| d < f) {
        let id = format!("ci-{emp}-{d}");
        b.emit(
            emp,
            day_at(d, 10, off),
            Kind::CheckinScheduled {
                checkin_id: s(id.clone()),
                due_at: day_at(d + 2, 10, off),
            },
            None,
        );
        let kind = if q.skip_cycles.contains(&d) {
            Kind::CheckinSkipped { checkin_id: s(id) }
        } else {
            Kind::CheckinCompleted { checkin_id: s(id) }
        };
        b.emit(emp, day_at(d + 1, 11, off), kind, None);
    }
    if d % 30 == emp as i64 % 30 && q.pulse_from.is_none_or(|f| d < f) {
        let score = 7.0 + r(b, 3) as f64;
        let words = 25 + r(b, 16);
        b.emit(
            emp,
            day_at(d, 12, off),
            Kind::PulseResponse {
                survey_id: s(format!("pulse-{}", d / 30)),
                score: Some(score),
                word_count: Some(words),
            },
            None,
        );
    }
    if d % 7 == emp as i64 % 7 && q.recognition_from.is_none_or(|f| d <= f) {
        b.emit(emp, day_at(d, 14, off), Kind::RecognitionReceived, None);
    }
    if d % 20 == emp as i64 % 20 && d + 1 < days && q.feedback_from.is_none_or(|f| d < f) {
        let id = format!("fb-{emp}-{d}");
        b.emit(
            emp,
            day_at(d, 13, off),
            Kind::FeedbackReceived {
                feedback_id: s(id.clone()),
            },
            None,
        );
        b.emit(
            emp,
            day_at(d + 1, 9, off),
            Kind::FeedbackAcknowledged { feedback_id: s(id) },
            None,
        );
    }
    if d % 10 == emp as i64 % 10 && q.goals_from.is_none_or(|f| d < f) {
        let delta = 5.0 + r(b, 10) as f64;
        b.emit(
            emp,
            day_at(d, 15, off),
            Kind::GoalUpdated {
                goal_id: s(format!("goal-{emp}")),
                progress_delta_pct: delta,
            },
            None,
        );
    }
    if d % 21 == emp as i64 % 21 {
        // A five-minute module, finished the day it is started.
        let module = format!("mod-{}", (emp as i64 + d) % 40);
        b.emit(
            emp,
            day_at(d, 10, off + 1000),
            Kind::ModuleStarted {
                module_id: s(module.clone()),
            },
            None,
        );
        b.emit(
            emp,
            day_at(d, 16, off),
            Kind::ModuleCompleted {
                module_id: s(module),
            },
            None,
        );
    }
    if d % 5 == emp as i64 % 5 {
        let clicked = 1 + r(b, 3);
        b.emit(
            emp,
            day_at(d, 11, off),
            Kind::ContentSearched {
                results_clicked: clicked,
            },
            None,
        );
    }
    if d % 15 == emp as i64 % 15 {
        const NEUTRAL: [&str; 4] = [
            "sprint planning went as usual this week",
            "the workload feels manageable this month",
            "our standups moved to ten in the morning",
            "the team offsite agenda is out",
        ];
        let text = NEUTRAL[b.rng.below(4) as usize];
        b.emit(
            emp,
            day_at(d, 16, off + 2000),
            Kind::FeedbackComment {
                text: Cow::Borrowed(text),
            },
            None,
        );
    }
    if d % 60 == emp as i64 % 60 && q.postings_from.is_none_or(|f| d < f) {
        b.emit(
            emp,
            day_at(d, 18, off),
            Kind::PostingViewed {
                posting_id: s(format!("post-{}", (emp as i64 + d) % 97)),
            },
            None,
        );
    }
    let _ = cohort;
}

/// A day of recorded time off: nothing but the check-in the calendar schedules anyway.
fn away(b: &mut Builder, emp: u32, d: i64, days: i64, off: Ts) {
    if d % 14 == checkin_cycle(emp) && d + 2 < days {
        b.emit(
            emp,
            day_at(d, 10, off),
            Kind::CheckinScheduled {
                checkin_id: s(format!("ci-{emp}-{d}")),
                due_at: day_at(d + 2, 10, off),
            },
            None,
        );
    }
}

/// The calendar `--declare-holiday` writes: a configuration file of just that section.
pub fn holiday_calendar(first: i64, len: i64) -> String {
    let day = |d: i64| crate::time::format_date(crate::time::day_of(EPOCH) + d);
    format!(
        "# The simulated company holiday, declared (momentd simulate --declare-holiday).\n[calendar]\nnon_working_days = [\"{}..{}\"]\n",
        day(first),
        day(first + len - 1)
    )
}

/// A new hire's first week: four onboarding tasks, each completed the day it starts, and one
/// question to HR.
fn onboarding(b: &mut Builder, emp: u32, hired: i64, cohort: u32, days: i64, off: Ts) {
    for t in 0..4 {
        let d = hired + t;
        if d + 1 >= days {
            break;
        }
        let task = format!("onb-task-{t}");
        b.emit(
            emp,
            day_at(d, 9, off),
            Kind::TaskStarted {
                task_id: s(task.clone()),
            },
            Some(cohort),
        );
        b.emit(
            emp,
            day_at(d, 15, off),
            Kind::TaskCompleted { task_id: s(task) },
            Some(cohort),
        );
    }
    b.emit(
        emp,
        day_at(hired, 11, off),
        Kind::ClarificationRequested,
        Some(cohort),
    );
}

fn rule_window(b: &mut Builder, rule: &str, emp: u32, fire: bool, from: Ts, to: Ts, note: &str) {
    b.expect(rule, employee_id(emp), fire, from, to, note);
}

/// Injects an employee pattern: events, everyday behaviour left out, and the truth.
fn inject(b: &mut Builder, emp: u32, p: Pattern, days: i64, off: Ts, q: &mut Quiet) {
    let late = days - 20;
    match p {
        Pattern::None => {}
        Pattern::CollabDecline | Pattern::NearCollabDip => {
            let from = days - 22;
            let factor = if p == Pattern::CollabDecline {
                0.2
            } else {
                0.7
            };
            q.collab_low = Some((from, from + 14, factor));
            rule_window(
                b,
                "collaboration_decline",
                emp,
                p == Pattern::CollabDecline,
                EPOCH + from * DAY,
                EPOCH + (from + 15) * DAY,
                if factor < 0.5 {
                    "collaboration at 20 % for 14 days"
                } else {
                    "collaboration at 70 % for 14 days"
                },
            );
        }
        Pattern::RecognitionWithdrawal => {
            let last_day = days - 40;
            // The last recognition on or before `last_day` (weekly on d % 7 == emp % 7).
            let last = last_day - (last_day - emp as i64 % 7).rem_euclid(7);
            q.recognition_from = Some(last);
            let t = day_at(last, 14, off) + 30 * DAY;
            rule_window(
                b,
                "recognition_withdrawal",
                emp,
                true,
                t,
                t + HOUR,
                "no recognition after a weekly rhythm",
            );
        }
        Pattern::PulseShortening | Pattern::NearOneShortPulse => {
            let d = late - 10;
            q.pulse_from = Some(d);
            // Everyday answers have 25-40 words. The pattern: 5 and 5 (the rule may fire on the
            // first, when its mean with the answer before is already under half); the near miss:
            // 20 then 30, never under half of a mean of at most 40.
            let (first, second) = if p == Pattern::PulseShortening {
                (5, 5)
            } else {
                (20, 30)
            };
            b.emit(
                emp,
                day_at(d, 12, off),
                Kind::PulseResponse {
                    survey_id: s(format!("pulse-x-{d}")),
                    score: Some(8.0),
                    word_count: Some(first),
                },
                None,
            );
            b.emit(
                emp,
                day_at(d + 7, 12, off),
                Kind::PulseResponse {
                    survey_id: s(format!("pulse-x-{}", d + 7)),
                    score: Some(8.0),
                    word_count: Some(second),
                },
                None,
            );
            let t = day_at(d + 7, 12, off);
            rule_window(
                b,
                "pulse_shortening",
                emp,
                p == Pattern::PulseShortening,
                day_at(d, 12, off),
                t + HOUR,
                "two short pulse answers",
            );
        }
        Pattern::CheckinLapse
        | Pattern::NearSingleSkip
        | Pattern::ConsentWithdrawn
        | Pattern::Exited
        | Pattern::Erased => {
            let c1 = next_cycle_day(late - 14, checkin_cycle(emp));
            q.skip_cycles.push(c1);
            if p != Pattern::NearSingleSkip {
                q.skip_cycles.push(c1 + 14);
            }
            let t = day_at(c1 + 14 + 1, 11, off);
            let fire = p == Pattern::CheckinLapse;
            let note = match p {
                Pattern::CheckinLapse => "two check-ins skipped in a row",
                Pattern::NearSingleSkip => "one check-in skipped",
                Pattern::ConsentWithdrawn => "two check-ins skipped after consent was withdrawn",
                Pattern::Exited => "two check-ins skipped, but the employee exited before",
                _ => "two check-ins skipped, but the employee's data was erased before",
            };
            let before = day_at(c1 - 1, 8, off);
            match p {
                Pattern::ConsentWithdrawn => b.emit(
                    emp,
                    before,
                    Kind::ConsentUpdated {
                        individual_processing: false,
                    },
                    None,
                ),
                Pattern::Exited => {
                    b.emit(
                        emp,
                        day_at(c1 + 14, 8, off),
                        Kind::Exited { voluntary: true },
                        None,
                    );
                }
                Pattern::Erased => {
                    b.emit(emp, day_at(c1 + 14, 8, off), Kind::Erased, None);
                }
                _ => {}
            }
            // Everyday events keep arriving after an exit or erasure (late producers), the
            // second skip among them: none of it may count.
            rule_window(
                b,
                "checkin_lapse",
                emp,
                fire,
                day_at(c1, 0, 0),
                t + HOUR,
                note,
            );
            if !fire {
                // Nothing else about them may fire either.
                rule_window(
                    b,
                    "attrition_risk",
                    emp,
                    false,
                    day_at(c1, 0, 0),
                    t + HOUR,
                    note,
                );
            }
        }
        Pattern::FeedbackUnacknowledged | Pattern::NearOneUnacknowledged => {
            let d = late - 8;
            q.feedback_from = Some(d - 8);
            b.emit(
                emp,
                day_at(d, 13, off),
                Kind::FeedbackReceived {
                    feedback_id: s(format!("fbx-{emp}-1")),
                },
                None,
            );
            b.emit(
                emp,
                day_at(d + 3, 13, off),
                Kind::FeedbackReceived {
                    feedback_id: s(format!("fbx-{emp}-2")),
                },
                None,
            );
            if p == Pattern::NearOneUnacknowledged {
                b.emit(
                    emp,
                    day_at(d + 4, 9, off),
                    Kind::FeedbackAcknowledged {
                        feedback_id: s(format!("fbx-{emp}-2")),
                    },
                    None,
                );
            }
            let t = day_at(d + 3, 13, off) + 7 * DAY;
            rule_window(
                b,
                "feedback_unacknowledged",
                emp,
                p == Pattern::FeedbackUnacknowledged,
                day_at(d, 13, off),
                t + HOUR,
                "feedback left unacknowledged",
            );
        }
        Pattern::PassiveGoals | Pattern::NearTwoPassiveGoals => {
            let d = late - 6;
            q.goals_from = Some(d - 31);
            let count = if p == Pattern::PassiveGoals { 3 } else { 2 };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + 3 * i, 15, off),
                    Kind::GoalUpdated {
                        goal_id: s(format!("goal-{emp}")),
                        progress_delta_pct: 0.0,
                    },
                    None,
                );
            }
            let t = day_at(d + 6, 15, off);
            rule_window(
                b,
                "passive_goals",
                emp,
                p == Pattern::PassiveGoals,
                day_at(d, 15, off),
                t + HOUR,
                "goal updates without progress",
            );
        }
        Pattern::LearningAbandonment => {
            let d = late;
            b.emit(
                emp,
                day_at(d, 15, off + 3000),
                Kind::ModuleStarted {
                    module_id: s("mod-pat".into()),
                },
                None,
            );
            let t = day_at(d + 1, 16, off);
            b.emit(
                emp,
                t,
                Kind::ModuleAbandoned {
                    module_id: s("mod-pat".into()),
                    progress_pct: 85.0,
                    before_assessment: true,
                },
                None,
            );
            rule_window(
                b,
                "learning_abandonment",
                emp,
                true,
                t,
                t + HOUR,
                "abandoned just before the assessment",
            );
        }
        Pattern::LearningConfusion | Pattern::NearTwoFailedSearches => {
            let d = late;
            let count = if p == Pattern::LearningConfusion {
                3
            } else {
                2
            };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + i, 19, off),
                    Kind::ContentSearched { results_clicked: 0 },
                    None,
                );
            }
            let t = day_at(d + 2, 19, off);
            rule_window(
                b,
                "learning_confusion",
                emp,
                p == Pattern::LearningConfusion,
                day_at(d, 19, off),
                t + HOUR,
                "searches without a click",
            );
        }
        Pattern::MobilityFrustration | Pattern::NearTwoPostingViews => {
            let d = late;
            q.postings_from = Some(d - 31);
            let count = if p == Pattern::MobilityFrustration {
                3
            } else {
                2
            };
            for i in 0..count {
                b.emit(
                    emp,
                    day_at(d + 2 * i, 20, off),
                    Kind::PostingViewed {
                        posting_id: s(format!("post-x-{i}")),
                    },
                    None,
                );
            }
            let t = day_at(d + 4, 20, off);
            rule_window(
                b,
                "mobility_frustration",
                emp,
                p == Pattern::MobilityFrustration,
                day_at(d, 20, off),
                t + HOUR,
                "postings viewed, no application",
            );
        }
        Pattern::PerformanceDip | Pattern::NearOneLowSprint => {
            let s1 = next_cycle_day(late - 14, sprint_cycle(emp));
            q.low_sprints.push(s1);
            if p == Pattern::PerformanceDip {
                q.low_sprints.push(s1 + 14);
            }
            let t = day_at(s1 + 14, 16, off);
            rule_window(
                b,
                "performance_dip",
                emp,
                p == Pattern::PerformanceDip,
                day_at(s1, 16, off),
                t + HOUR,
                "sprints below target",
            );
        }
        Pattern::Attrition => {
            // Mobility (20) + check-in lapse (15) + performance dip (20) within 30 days: 55.
            let c1 = next_cycle_day(late - 14, checkin_cycle(emp));
            q.skip_cycles.extend([c1, c1 + 14]);
            let lapse = day_at(c1 + 15, 11, off);
            let s1 = next_cycle_day(late - 14, sprint_cycle(emp));
            q.low_sprints.extend([s1, s1 + 14]);
            let dip = day_at(s1 + 14, 16, off);
            let v = late - 8;
            q.postings_from = Some(v - 31);
            for i in 0..3 {
                b.emit(
                    emp,
                    day_at(v + 2 * i, 20, off),
                    Kind::PostingViewed {
                        posting_id: s(format!("post-y-{i}")),
                    },
                    None,
                );
            }
            let mob = day_at(v + 4, 20, off);
            rule_window(
                b,
                "checkin_lapse",
                emp,
                true,
                lapse,
                lapse + HOUR,
                "attrition: check-in lapse",
            );
            rule_window(
                b,
                "performance_dip",
                emp,
                true,
                dip,
                dip + HOUR,
                "attrition: sprints below target",
            );
            rule_window(
                b,
                "mobility_frustration",
                emp,
                true,
                mob,
                mob + HOUR,
                "attrition: postings viewed",
            );
            let t = lapse.max(dip).max(mob);
            rule_window(
                b,
                "attrition_risk",
                emp,
                true,
                t,
                t + HOUR,
                "check-in lapse + performance dip + mobility = 55",
            );
        }
    }
}

fn team_members(team: u32, n: u32) -> impl Iterator<Item = u32> {
    (team * TEAM..((team + 1) * TEAM).min(n)).filter(move |&e| e < n)
}

fn inject_team(b: &mut Builder, team: u32, tp: TeamPattern, days: i64, n: u32) {
    let subject = format!("team-{team:05}");
    match tp {
        TeamPattern::None => {}
        TeamPattern::CheckinDrop => {
            // Everyday check-ins stop for the whole team 16 days before the end (see simulate).
            let from = EPOCH + (days - 16) * DAY;
            b.expect(
                "team_checkin_drop",
                subject,
                true,
                from,
                from + 16 * DAY,
                "the team's check-ins stop",
            );
        }
        TeamPattern::TrainingLow => {
            let d = days - 12;
            for e in team_members(team, n) {
                let off = (e as i64 % 3000) * 1000;
                for i in 0..2 {
                    let m = format!("mod-low-{i}");
                    b.emit(
                        e,
                        day_at(d + i, 10, off),
                        Kind::ModuleStarted {
                            module_id: s(m.clone()),
                        },
                        None,
                    );
                    b.emit(
                        e,
                        day_at(d + i, 12, off),
                        Kind::ModuleAbandoned {
                            module_id: s(m),
                            progress_pct: 20.0,
                            before_assessment: false,
                        },
                        None,
                    );
                }
            }
            let from = EPOCH + d * DAY;
            b.expect(
                "team_training_completion_low",
                subject,
                true,
                from,
                from + 4 * DAY,
                "modules started and dropped across the team",
            );
        }
        TeamPattern::SentimentShift => {
            let d = days - 12;
            for e in team_members(team, n) {
                let off = (e as i64 % 3000) * 1000;
                for i in 0..2 {
                    b.emit(
                        e,
                        day_at(d + i, 17, off + 3000),
                        Kind::FeedbackComment {
                            text: Cow::Borrowed("the workload is crushing and I am exhausted"),
                        },
                        None,
                    );
                }
            }
            let from = EPOCH + d * DAY;
            b.expect(
                "team_sentiment_shift",
                subject,
                true,
                from,
                from + 4 * DAY,
                "negative comments about workload",
            );
        }
    }
}

/// Two of a cohort's six new hires start a task and leave it open: the cohort stalls (2 of 6 is
/// over 30 %), and each of the two has onboarding friction.
fn inject_cohort_stall(b: &mut Builder, cohort: u32, hires_from: u32, n: u32, days: i64) {
    let first = hires_from + cohort * COHORT;
    let members: Vec<u32> = (first..(first + COHORT).min(n)).collect();
    if members.len() < COHORT as usize {
        return;
    }
    let hired = 7 + (cohort as i64 * 11) % (days / 2).max(1);
    let d = hired + 5;
    if d + 4 >= days {
        return;
    }
    // Every member starts the task (a cohort task needs min_group_size starters); four finish
    // it the same day, two leave it open.
    for (i, &e) in members.iter().enumerate() {
        let off = (e as i64 % 3000) * 1000;
        let t = day_at(d, 9, off);
        b.emit(
            e,
            t,
            Kind::TaskStarted {
                task_id: s("onb-task-open".into()),
            },
            Some(cohort),
        );
        if i >= 2 {
            b.emit(
                e,
                t + 4 * HOUR,
                Kind::TaskCompleted {
                    task_id: s("onb-task-open".into()),
                },
                Some(cohort),
            );
        } else {
            rule_window(
                b,
                "onboarding_friction",
                e,
                true,
                t + 72 * HOUR,
                t + 72 * HOUR + HOUR,
                "onboarding task left open",
            );
        }
    }
    let t0 = day_at(d, 9, (members[0] as i64 % 3000) * 1000);
    let t1 = day_at(d, 9, (members[1] as i64 % 3000) * 1000);
    let at = t0.max(t1) + 72 * HOUR;
    b.expect(
        "cohort_onboarding_stall",
        format!("cohort-{cohort:04}"),
        true,
        at,
        at + DAY,
        "two of six new hires left a task open",
    );
}

/// One rule's figures in an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleScore {
    pub rule: String,
    pub expected: usize,
    pub found: usize,
    pub recall: f64,
    pub precision: f64,
    pub delay_median_hours: Option<f64>,
    pub delay_max_hours: Option<f64>,
    /// Triggers of the rule matching no expected detection (including any inside a must-not
    /// window).
    pub false_positives: usize,
    /// Expected detections whose window meets a population shift (not in `expected`), and
    /// how many of them were found.
    pub in_shift_expected: usize,
    pub in_shift_found: usize,
}

/// How long after a shift a pattern's window may begin and still rest on evidence from inside
/// it (the longest lookback of the injected patterns: a month).
const SHIFT_REACH: Ts = 30 * DAY;

/// Whether an expectation's window meets one of the truth's shifts, or begins within
/// [`SHIFT_REACH`] after one.
fn in_shift(truth: &Truth, e: &Expectation) -> bool {
    use crate::time::parse_rfc3339;
    let (Some(from), Some(to)) = (parse_rfc3339(&e.from), parse_rfc3339(&e.to)) else {
        return false;
    };
    truth.shifts.iter().any(|s| {
        let (Some(a), Some(z)) = (parse_rfc3339(&s.from), parse_rfc3339(&s.to)) else {
            return false;
        };
        (s.subjects.is_empty() || s.subjects.contains(&e.subject))
            && a < to
            && from < z + SHIFT_REACH
    })
}

/// Scores triggers (JSON values as published; follow-ups with `escalation > 0` are left out)
/// against the truth, per rule: each expected detection is matched by the earliest trigger of
/// its rule and subject inside its window; every trigger left unmatched is a false positive.
pub fn evaluate(truth: &Truth, triggers: &[serde_json::Value]) -> Vec<RuleScore> {
    use crate::time::parse_rfc3339;
    let mut detections: Vec<(String, String, Ts)> = triggers
        .iter()
        .filter(|t| t["escalation"].as_u64().unwrap_or(0) == 0)
        .filter_map(|t| {
            Some((
                t["rule"].as_str()?.to_string(),
                t["subject"].as_str()?.to_string(),
                parse_rfc3339(t["detected_at"].as_str()?)?,
            ))
        })
        .collect();
    detections.sort_by(|a, b| (a.2, &a.0, &a.1).cmp(&(b.2, &b.0, &b.1)));
    let mut used = vec![false; detections.len()];
    let mut delays: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
    let mut shifted: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for e in truth.expectations.iter().filter(|e| e.fire) {
        let inside = in_shift(truth, e);
        if inside {
            shifted.entry(e.rule.clone()).or_default().0 += 1;
        } else {
            *expected.entry(e.rule.clone()).or_default() += 1;
        }
        let (Some(from), Some(to)) = (parse_rfc3339(&e.from), parse_rfc3339(&e.to)) else {
            continue;
        };
        let hit = detections.iter().enumerate().position(|(i, d)| {
            !used[i] && d.0 == e.rule && d.1 == e.subject && d.2 >= from && d.2 <= to
        });
        if let Some(i) = hit {
            used[i] = true;
            if inside {
                shifted.entry(e.rule.clone()).or_default().1 += 1;
                continue;
            }
            delays
                .entry(e.rule.clone())
                .or_default()
                .push((detections[i].2 - from) as f64 / HOUR as f64);
        }
    }
    crate::rules::RuleId::ALL
        .iter()
        .map(|r| {
            let rule = r.as_str().to_string();
            let exp = expected.get(&rule).copied().unwrap_or(0);
            let mut d = delays.remove(&rule).unwrap_or_default();
            d.sort_by(f64::total_cmp);
            let found = d.len();
            let fp = detections
                .iter()
                .zip(&used)
                .filter(|(x, u)| !**u && x.0 == rule)
                .count();
            RuleScore {
                recall: if exp == 0 {
                    1.0
                } else {
                    found as f64 / exp as f64
                },
                precision: if found + fp == 0 {
                    1.0
                } else {
                    found as f64 / (found + fp) as f64
                },
                delay_median_hours: (!d.is_empty()).then(|| crate::trigger::round2(d[d.len() / 2])),
                delay_max_hours: d.last().map(|x| crate::trigger::round2(*x)),
                in_shift_expected: shifted.get(&rule).map_or(0, |x| x.0),
                in_shift_found: shifted.get(&rule).map_or(0, |x| x.1),
                rule,
                expected: exp,
                found,
                false_positives: fp,
            }
        })
        .collect()
}

/// The evaluation as a table for the terminal.
pub fn table(scores: &[RuleScore]) -> String {
    let mut s = format!(
        "{:<30} {:>8} {:>6} {:>7} {:>9} {:>4} {:>12} {:>10} {:>9}\n",
        "rule",
        "expected",
        "found",
        "recall",
        "precision",
        "fp",
        "delay p50 h",
        "delay max h",
        "in shift"
    );
    let h = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in scores {
        let shift = if r.in_shift_expected == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", r.in_shift_found, r.in_shift_expected)
        };
        s += &format!(
            "{:<30} {:>8} {:>6} {:>7.2} {:>9.2} {:>4} {:>12} {:>10} {:>9}\n",
            r.rule,
            r.expected,
            r.found,
            r.recall,
            r.precision,
            r.false_positives,
            h(r.delay_median_hours),
            h(r.delay_max_hours),
            shift
        );
    }
    s
}

/// The records as JSON Lines.
pub fn to_json_lines(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        match r {
            Record::Event(e) => out.extend_from_slice(crate::event::encode_json(e).as_bytes()),
            Record::Malformed(m) => out.extend_from_slice(m.as_bytes()),
        }
        out.push(b'\n');
    }
    out
}

/// The records as length-delimited protobuf (`momentd.v1.InteractionEvent`, each preceded by
/// its length as a varint); a malformed record is its text's bytes, which do not parse.
pub fn to_protobuf(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let bytes = match r {
            Record::Event(e) => crate::event::encode_protobuf(e),
            Record::Malformed(m) => m.as_bytes().to_vec(),
        };
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(&bytes);
    }
    out
}

/// A record's key and JSON value, as produced to Kafka.
pub fn key_and_value(r: &Record) -> (Option<String>, String) {
    match r {
        Record::Event(e) => (
            Some(e.employee_id.to_string()),
            crate::event::encode_json(e),
        ),
        Record::Malformed(m) => (None, m.clone()),
    }
}
