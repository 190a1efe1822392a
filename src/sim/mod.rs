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

mod evaluate;
mod patterns;
mod workforce;

pub use evaluate::{evaluate, table, RuleScore};
use patterns::{inject, inject_cohort_stall, inject_team};
use workforce::{away, everyday, onboarding};

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

/// The calendar `--declare-holiday` writes: a configuration file of just that section.
pub fn holiday_calendar(first: i64, len: i64) -> String {
    let day = |d: i64| crate::time::format_date(crate::time::day_of(EPOCH) + d);
    format!(
        "# The simulated company holiday, declared (momentd simulate --declare-holiday).\n[calendar]\nnon_working_days = [\"{}..{}\"]\n",
        day(first),
        day(first + len - 1)
    )
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
