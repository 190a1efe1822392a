//! Team and cohort rules (docs/contract.md §4, second table). They speak of groups, never of a person,
//! and stay silent for groups with fewer than `privacy.min_group_size` distinct employees.
//! Their state lives beside the employee state of one engine (one partition, or all of them in
//! `replay`); it holds employee ids only as 64-bit fingerprints, for distinct counts, and never
//! any comment text.

use super::population::{population_detail, scaled, Population, Subject};
use std::collections::BTreeSet;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::presence::{Days, Presence};
use super::sentiment::{self, Lexicon};
use super::window::{enough_days, present_window, DayRing, EXCLUSION_MARGIN_DAYS};
use super::RuleId;
use crate::config::Settings;
use crate::event::{Event, Kind};
use crate::index::Index;
use crate::time::{day_of, day_start, Ts, DAY, HOUR};
use crate::trigger::{round2, Reason, Scope};

/// Distinct members are those seen in the group within this many days.
const MEMBER_DAYS: i64 = 90;

#[derive(Debug, Clone)]
pub struct Params {
    pub min_group: usize,
    pub stall: Option<Stall>,
    pub training: Option<Training>,
    pub checkins: Option<Checkins>,
    pub sentiment: Option<Sentiment>,
    pub cooldown: [Ts; 4],
    /// `calendar.non_working_days`: left out of every group window too.
    pub calendar: Days,
    /// `population.min_window_share`.
    pub min_share: f64,
    /// `population.relative`.
    pub relative: bool,
}

impl Params {
    /// The days the team rings hold (training, check-ins, each theme): their windows, and room
    /// to reach back over excluded days.
    fn ring_lens(&self) -> (usize, usize, usize) {
        let len = |d: i64| (d.max(1) + EXCLUSION_MARGIN_DAYS) as usize;
        (
            len(self.training.as_ref().map_or(1, |t| t.days)),
            len(self.checkins.as_ref().map_or(1, |c| c.recent + c.baseline)),
            len(self.sentiment.as_ref().map_or(1, |s| s.recent + s.baseline)),
        )
    }

    /// What the group windows leave out: the calendar (a member's own time off is theirs).
    fn presence(&self) -> Presence<'_> {
        Presence::new(&self.calendar, &[], Presence::no_gaps())
    }
}

#[derive(Debug, Clone)]
pub struct Stall {
    pub open_for: Ts,
    pub share: f64,
}

#[derive(Debug, Clone)]
pub struct Training {
    pub days: i64,
    pub ratio: f64,
    pub min_started: u64,
}

#[derive(Debug, Clone)]
pub struct Checkins {
    pub recent: i64,
    pub baseline: i64,
    pub ratio: f64,
    pub min_baseline: u64,
}

#[derive(Debug, Clone)]
pub struct Sentiment {
    pub recent: i64,
    pub baseline: i64,
    pub points: f64,
    pub min_comments: u64,
    pub themes: Vec<(String, Vec<String>)>,
    pub lexicon: Lexicon,
}

impl Params {
    pub fn from(s: &Settings) -> Params {
        let r = &s.rules;
        let cd = |c: Option<crate::config::Dur>| c.unwrap_or(r.cooldown).ms();
        let c = &r.cohort_onboarding_stall;
        let stall = c.enabled.then(|| Stall {
            open_for: c.open_for.ms(),
            share: c.share,
        });
        let t = &r.team_training_completion_low;
        let training = t.enabled.then(|| Training {
            days: t.window.ms() / DAY,
            ratio: t.ratio,
            min_started: t.min_started as u64,
        });
        let k = &r.team_checkin_drop;
        let checkins = k.enabled.then(|| Checkins {
            recent: k.recent_window.ms() / DAY,
            baseline: k.baseline_window.ms() / DAY,
            ratio: k.ratio,
            min_baseline: k.min_baseline_completed as u64,
        });
        let m = &r.team_sentiment_shift;
        let sentiment = m.enabled.then(|| Sentiment {
            recent: m.recent_window.ms() / DAY,
            baseline: m.baseline_window.ms() / DAY,
            points: m.points,
            min_comments: m.min_comments as u64,
            themes: m
                .themes
                .iter()
                // Keywords lower-cased once here: comments' words are.
                .map(|(k, v)| (k.clone(), v.iter().map(|w| w.to_lowercase()).collect()))
                .collect(),
            // validate() has loaded it once already; a file that vanished since reads as built-in.
            lexicon: Lexicon::load(&m.lexicon).unwrap_or_else(|_| Lexicon::builtin()),
        });
        Params {
            min_group: s.privacy.min_group_size as usize,
            stall,
            training,
            checkins,
            sentiment,
            cooldown: [
                cd(c.cooldown),
                cd(t.cooldown),
                cd(k.cooldown),
                cd(m.cooldown),
            ],
            // (Checked by `Settings::validate`.)
            calendar: s.calendar.days().unwrap_or_default(),
            min_share: s.population.min_window_share,
            relative: s.population.relative,
        }
    }

    fn cooldown(&self, rule: RuleId) -> Ts {
        match rule {
            RuleId::CohortOnboardingStall => self.cooldown[0],
            RuleId::TeamTrainingCompletionLow => self.cooldown[1],
            RuleId::TeamCheckinDrop => self.cooldown[2],
            _ => self.cooldown[3],
        }
    }

    /// The key of the team an event will update: `None` when the event has no team or no team
    /// rule is on.
    pub fn team_key(&self, ev: &Event<'_>) -> Option<u128> {
        if !self.any_team_rule() {
            return None;
        }
        Some(group_key(ev.team_id.as_deref()?))
    }

    fn any_team_rule(&self) -> bool {
        self.training.is_some() || self.checkins.is_some() || self.sentiment.is_some()
    }
}

/// Which group a contribution is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRef {
    /// (Ids are kept inline up to 24 bytes: a contribution is made, sent, read back and
    /// buffered without allocating for its group.)
    Team(CompactString),
    Cohort(CompactString),
    /// Every group (an erasure: each group task forgets the member).
    All,
}

/// What an event contributes to a group: what the group rules read and nothing else — counts
/// and the member's fingerprint, never a comment's text (docs/contract.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum What {
    /// The member was active (their first event of the day in the group).
    Seen,
    ModuleStarted,
    ModuleCompleted,
    CheckinCompleted,
    /// A comment: the themes it mentions (by index in the configuration) and whether it reads
    /// negative.
    Comment {
        themes: Vec<u16>,
        negative: bool,
    },
    TaskStarted(CompactString),
    TaskCompleted(CompactString),
    /// Forget the member everywhere.
    Erased,
}

/// One contribution of an employee's event to a group's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    pub group: GroupRef,
    /// The member's fingerprint (keyed when pseudonymizing, like every fingerprint).
    pub emp: u64,
    /// The event's time.
    pub at: Ts,
    /// A fingerprint of the event id: orders contributions of one instant.
    pub eid: u64,
    pub what: What,
}

impl Contribution {
    /// The order the group stage applies contributions in: by time, then member, event and
    /// kind — the same whatever partition or arrival order they came by.
    pub fn order(&self) -> (Ts, u64, u64, u8) {
        let k = match self.group {
            GroupRef::Team(_) => 0,
            GroupRef::Cohort(_) => 1,
            GroupRef::All => 2,
        };
        (self.at, self.emp, self.eid, k)
    }

    /// The key of its group (`None`: every group).
    pub fn group_key(&self) -> Option<u128> {
        match &self.group {
            GroupRef::Team(id) | GroupRef::Cohort(id) => Some(group_key(id)),
            GroupRef::All => None,
        }
    }
}

impl Params {
    /// What an event of an employee who allows processing contributes to their team and
    /// cohort: `new_day` says whether it is the employee's first event of its UTC day
    /// (membership is refreshed once a day). Appends to `out` (at most two).
    pub fn contributions(
        &self,
        emp: u64,
        eid: u64,
        ev: &Event<'_>,
        new_day: bool,
        out: &mut Vec<Contribution>,
    ) {
        let c = |group, what| Contribution {
            group,
            emp,
            at: ev.occurred_at,
            eid,
            what,
        };
        if let (Some(team), true) = (ev.team_id.as_deref(), self.any_team_rule()) {
            let what = match &ev.kind {
                Kind::ModuleStarted { .. } => Some(What::ModuleStarted),
                Kind::ModuleCompleted { .. } => Some(What::ModuleCompleted),
                Kind::CheckinCompleted { .. } => Some(What::CheckinCompleted),
                Kind::FeedbackComment { text } => Some(match &self.sentiment {
                    Some(s) => {
                        let words = sentiment::words(text);
                        let joined = words.join(" ");
                        What::Comment {
                            themes: (0..s.themes.len() as u16)
                                .filter(|&i| {
                                    sentiment::mentions(&words, &joined, &s.themes[i as usize].1)
                                })
                                .collect(),
                            negative: s.lexicon.score(&words) < 0,
                        }
                    }
                    None => What::Seen,
                }),
                _ => new_day.then_some(What::Seen),
            };
            if let Some(w) = what {
                out.push(c(GroupRef::Team(team.into()), w));
            }
        }
        if let (Some(cohort), Some(_)) = (ev.cohort_id.as_deref(), &self.stall) {
            let what = match &ev.kind {
                Kind::TaskStarted { task_id } => Some(What::TaskStarted(task_id.as_ref().into())),
                Kind::TaskCompleted { task_id } => {
                    Some(What::TaskCompleted(task_id.as_ref().into()))
                }
                _ => new_day.then_some(What::Seen),
            };
            if let Some(w) = what {
                out.push(c(GroupRef::Cohort(cohort.into()), w));
            }
        }
    }
}

/// A group rule's verdict, cooldown already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFire {
    pub rule: RuleId,
    pub scope: Scope,
    pub subject: String,
    /// The task or theme, for rules that fire once per task or theme.
    pub key: String,
    pub at: Ts,
    pub reasons: Vec<Reason>,
    pub suppressed: bool,
}

/// Distinct members by fingerprint, with the last day each was seen: a vector sorted by
/// fingerprint (a team's members sit in a cache line or two, found by binary search; a new
/// member, the rare case, shifts the tail).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Members(Vec<(u64, i32)>);

impl Members {
    fn saw(&mut self, emp: u64, day: i64) {
        match self.0.binary_search_by_key(&emp, |&(e, _)| e) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(day as i32),
            Err(i) => self.0.insert(i, (emp, day as i32)),
        }
    }
    fn contains(&self, emp: u64) -> bool {
        self.0.binary_search_by_key(&emp, |&(e, _)| e).is_ok()
    }
    fn remove(&mut self, emp: u64) {
        if let Ok(i) = self.0.binary_search_by_key(&emp, |&(e, _)| e) {
            self.0.remove(i);
        }
    }
    fn count(&self, day: i64) -> usize {
        self.0
            .iter()
            .filter(|&&(_, d)| d as i64 > day - MEMBER_DAYS)
            .count()
    }
    /// Forgets members not seen within the window; true when any was.
    fn prune(&mut self, day: i64) -> bool {
        let before = self.0.len();
        self.0.retain(|&(_, d)| d as i64 > day - MEMBER_DAYS);
        self.0.len() != before
    }
    fn prefetch(&self) {
        crate::index::prefetch_lines(
            self.0.as_ptr() as *const u8,
            std::mem::size_of_val(self.0.as_slice()),
        );
    }
}

/// A team's state: what its changelog record holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Team {
    id: Box<str>,
    members: Members,
    first_day: i32,
    started: DayRing,
    completed: DayRing,
    checkins: DayRing,
    /// Per theme: comments on the theme that read negative, and all comments on it.
    themes: Vec<(DayRing, DayRing)>,
    fired: Vec<(RuleId, String, Ts)>,
    /// Changed since the last checkpoint (not part of the record).
    #[serde(skip)]
    dirty: bool,
    /// Restored from a record written ahead of its checkpoint: the days through this one were
    /// evaluated already (not part of the record).
    #[serde(skip)]
    evaluated_through: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Start {
    emp: u64,
    started: Ts,
    completed: Option<Ts>,
}

/// A cohort's state: what its changelog record holds (with its pending stall deadlines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cohort {
    id: Box<str>,
    members: Members,
    tasks: std::collections::BTreeMap<String, Vec<Start>>,
    fired: Vec<(RuleId, String, Ts)>,
    #[serde(skip)]
    dirty: bool,
}

fn cooled(
    fired: &mut Vec<(RuleId, String, Ts)>,
    rule: RuleId,
    key: &str,
    at: Ts,
    cooldown: Ts,
) -> bool {
    if let Some(e) = fired.iter_mut().find(|(r, k, _)| *r == rule && k == key) {
        if (at - e.2).abs() < cooldown {
            return true;
        }
        e.2 = e.2.max(at);
        return false;
    }
    fired.push((rule, key.to_string(), at));
    false
}

#[derive(Debug, Default)]
pub struct Groups {
    teams: Vec<Team>,
    /// By a 128-bit fingerprint of the id (no string compare on the per-event path).
    team_index: Index,
    cohorts: Vec<Cohort>,
    cohort_index: Index,
    /// (due, cohort, task): a start whose `open_for` deadline is pending.
    stall_timers: BTreeSet<(Ts, u32, String)>,
    /// The last UTC day whose close the team rules have evaluated.
    evaluated_through: Option<i64>,
    /// Team positions ordered by id, the order a day's close evaluates them in: kept across
    /// days (teams are only ever added), so a day does not sort every team again.
    by_id: Vec<u32>,
    /// Teams and cohorts changed since the last checkpoint.
    dirty_teams: Vec<u32>,
    dirty_cohorts: Vec<u32>,
}

impl Groups {
    pub fn teams(&self) -> usize {
        self.teams.len()
    }

    pub fn cohorts(&self) -> usize {
        self.cohorts.len()
    }

    fn team(&mut self, p: &Params, key: u128, id: &str, day: i64) -> &mut Team {
        let n = match self.team_index.get(key) {
            Some(n) => n,
            None => {
                let ring = |d: usize| DayRing::new(d, day);
                let (tw, cw, sw) = p.ring_lens();
                let themes = p.sentiment.as_ref().map_or(0, |s| s.themes.len());
                self.teams.push(Team {
                    id: id.into(),
                    members: Members::default(),
                    first_day: day as i32,
                    started: ring(tw),
                    completed: ring(tw),
                    checkins: ring(cw),
                    themes: (0..themes).map(|_| (ring(sw), ring(sw))).collect(),
                    fired: Vec::new(),
                    dirty: false,
                    evaluated_through: None,
                });
                let n = (self.teams.len() - 1) as u32;
                self.team_index.insert(key, n);
                n
            }
        };
        let tm = &mut self.teams[n as usize];
        if !tm.dirty {
            tm.dirty = true;
            self.dirty_teams.push(n);
        }
        tm
    }

    /// Hints the CPU to load the index entry of a team key.
    pub fn prefetch_team_entry(&self, key: u128) {
        self.team_index.prefetch(key);
    }

    /// The team of a key, its record hinted to the CPU.
    pub fn prefetch_team(&self, key: u128) -> Option<u32> {
        let n = self.team_index.get(key)?;
        let t = self.teams.get(n as usize)?;
        crate::index::prefetch_lines(t as *const Team as *const u8, std::mem::size_of::<Team>());
        Some(n)
    }

    /// Hints the members of a team found by [`Groups::prefetch_team`].
    pub fn prefetch_members(&self, team: u32) {
        if let Some(t) = self.teams.get(team as usize) {
            t.members.prefetch();
        }
    }

    fn cohort(&mut self, id: &str) -> (u32, &mut Cohort) {
        let key = group_key(id);
        let n = match self.cohort_index.get(key) {
            Some(n) => n,
            None => {
                self.cohorts.push(Cohort {
                    id: id.into(),
                    members: Members::default(),
                    tasks: Default::default(),
                    fired: Vec::new(),
                    dirty: false,
                });
                let n = (self.cohorts.len() - 1) as u32;
                self.cohort_index.insert(key, n);
                n
            }
        };
        let c = &mut self.cohorts[n as usize];
        if !c.dirty {
            c.dirty = true;
            self.dirty_cohorts.push(n);
        }
        (n, c)
    }

    /// Applies one contribution (the group stage orders them; see `engine`).
    pub fn apply(&mut self, p: &Params, c: &Contribution) {
        let (t, emp) = (c.at, c.emp);
        let day = day_of(t);
        let group = match &c.group {
            GroupRef::All => {
                if c.what == What::Erased {
                    self.erase(emp);
                }
                return;
            }
            g => g,
        };
        if self.evaluated_through.is_none() {
            self.evaluated_through = Some(day - 1);
        }
        match group {
            GroupRef::Team(team) => {
                if !p.any_team_rule() {
                    return;
                }
                let tm = self.team(p, group_key(team), team, day);
                tm.first_day = tm.first_day.min(day as i32);
                tm.members.saw(emp, day);
                match &c.what {
                    What::ModuleStarted => tm.started.add(day, 1),
                    What::ModuleCompleted => tm.completed.add(day, 1),
                    What::CheckinCompleted => tm.checkins.add(day, 1),
                    What::Comment { themes, negative } => {
                        for &i in themes {
                            if let Some((neg, all)) = tm.themes.get_mut(i as usize) {
                                all.add(day, 1);
                                if *negative {
                                    neg.add(day, 1);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            GroupRef::Cohort(cohort) => {
                let Some(stall) = p.stall.as_ref() else {
                    return;
                };
                let open_for = stall.open_for;
                let (n, co) = self.cohort(cohort);
                co.members.saw(emp, day);
                match &c.what {
                    What::TaskStarted(task_id) => {
                        if !co.tasks.contains_key(task_id.as_str()) {
                            co.tasks.insert(task_id.to_string(), Vec::new());
                        }
                        let Some(starts) = co.tasks.get_mut(task_id.as_str()) else {
                            return;
                        };
                        if !starts.iter().any(|s| s.emp == emp) {
                            starts.push(Start {
                                emp,
                                started: t,
                                completed: None,
                            });
                            self.stall_timers.insert((
                                p.presence().after(t, open_for),
                                n,
                                task_id.to_string(),
                            ));
                        }
                    }
                    What::TaskCompleted(task_id) => {
                        if let Some(s) = co
                            .tasks
                            .get_mut(task_id.as_str())
                            .and_then(|v| v.iter_mut().find(|s| s.emp == emp))
                        {
                            s.completed = Some(s.completed.map_or(t, |c| c.min(t)));
                        }
                    }
                    _ => {}
                }
            }
            GroupRef::All => {}
        }
    }

    /// Forgets an employee everywhere (erasure): memberships and task starts. Day totals are
    /// anonymous counts and stay.
    pub fn erase(&mut self, emp: u64) {
        for (n, t) in self.teams.iter_mut().enumerate() {
            if t.members.contains(emp) {
                t.members.remove(emp);
                if !t.dirty {
                    t.dirty = true;
                    self.dirty_teams.push(n as u32);
                }
            }
        }
        for (n, c) in self.cohorts.iter_mut().enumerate() {
            let had =
                c.members.contains(emp) || c.tasks.values().any(|v| v.iter().any(|s| s.emp == emp));
            if !had {
                continue;
            }
            c.members.remove(emp);
            for starts in c.tasks.values_mut() {
                starts.retain(|s| s.emp != emp);
            }
            if !c.dirty {
                c.dirty = true;
                self.dirty_cohorts.push(n as u32);
            }
        }
    }

    pub fn next_due(&self, p: &Params) -> Option<Ts> {
        let stall = self.stall_timers.first().map(|x| x.0);
        let day = (p.any_team_rule() && !self.teams.is_empty())
            .then(|| self.evaluated_through.map(|d| day_start(d + 2)))
            .flatten();
        match (stall, day) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every group deadline at or before `now`, in time order.
    /// `pop`: the population's figures (for population-relative thresholds) and the days
    /// it was away.
    pub fn on_timer(
        &mut self,
        p: &Params,
        now: Ts,
        pop: Option<&Population>,
        out: &mut Vec<GroupFire>,
    ) {
        let closed = day_of(now) - 1;
        loop {
            let stall_due = self.stall_timers.first().map(|x| x.0).filter(|&d| d <= now);
            let day_due = self
                .evaluated_through
                .filter(|&d| d < closed && p.any_team_rule())
                .map(|d| day_start(d + 2));
            match (stall_due, day_due) {
                (None, None) => break,
                (Some(s), d) if d.is_none_or(|d| s <= d) => {
                    if let Some((due, n, task)) = self.stall_timers.pop_first() {
                        self.evaluate_stall(p, due, n, &task, out);
                    }
                }
                _ => {
                    let d = self.evaluated_through.unwrap_or(closed) + 1;
                    // After a long gap only the days the windows can still see matter.
                    let d = d.max(closed - 400);
                    self.evaluate_day(p, d, pop, out);
                    self.evaluated_through = Some(d);
                }
            }
        }
    }

    fn evaluate_stall(
        &mut self,
        p: &Params,
        due: Ts,
        n: u32,
        task: &str,
        out: &mut Vec<GroupFire>,
    ) {
        let Some(stall) = p.stall.as_ref() else {
            return;
        };
        let Some(c) = self.cohorts.get_mut(n as usize) else {
            return;
        };
        let Some(starts) = c.tasks.get(task) else {
            return;
        };
        let size = c.members.count(day_of(due));
        let starters = starts.len();
        let stalled = starts
            .iter()
            .filter(|s| {
                p.presence().after(s.started, stall.open_for) <= due
                    && s.completed.is_none_or(|c| c > due)
            })
            .count();
        if size < p.min_group
            || starters < p.min_group
            || (stalled as f64) < stall.share * starters as f64
        {
            return;
        }
        let suppressed = cooled(
            &mut c.fired,
            RuleId::CohortOnboardingStall,
            task,
            due,
            p.cooldown(RuleId::CohortOnboardingStall),
        );
        if !c.dirty {
            c.dirty = true;
            self.dirty_cohorts.push(n);
        }
        out.push(GroupFire {
            rule: RuleId::CohortOnboardingStall,
            scope: Scope::Cohort,
            subject: c.id.to_string(),
            key: task.to_string(),
            at: due,
            reasons: vec![Reason::new("share_with_task_open", stalled as f64 / starters as f64, stall.share).detail(format!(
                "task {task}: {stalled} of the {starters} employees of the cohort who started it have had it open more than {} h",
                stall.open_for / HOUR
            ))],
            suppressed,
        });
    }

    fn evaluate_day(
        &mut self,
        p: &Params,
        day: i64,
        pop: Option<&Population>,
        out: &mut Vec<GroupFire>,
    ) {
        let at = day_start(day + 1);
        let calendar = pop.map_or(&p.calendar, |x| &x.group_calendar);
        let pres = Presence::new(calendar, &[], Presence::no_gaps())
            .with_figures(pop.map(|x| &x.figures).filter(|_| p.relative));
        // A non-working day adds nothing to judge (its members are still pruned, below).
        let judged = !pres.off(day);
        let enough = |present: i64, len: i64| enough_days(present, len, p.min_share);
        if self.by_id.len() != self.teams.len() {
            // New teams since the last close: appended, then a stable sort (which finds the
            // sorted run already there), the order a full sort by id would give.
            self.by_id
                .extend(self.by_id.len() as u32..self.teams.len() as u32);
            let teams = &self.teams;
            self.by_id
                .sort_by(|&a, &b| teams[a as usize].id.cmp(&teams[b as usize].id));
        }
        for k in 0..self.by_id.len() {
            let n = self.by_id[k];
            let tm = &mut self.teams[n as usize];
            if tm.evaluated_through.is_some_and(|e| day <= e) {
                // Restored from a record written after this day's close: evaluated already.
                continue;
            }
            if day % 7 == 0 && tm.members.prune(day) && !tm.dirty {
                tm.dirty = true;
                self.dirty_teams.push(n);
            }
            let size = tm.members.count(day);
            if !judged || size < p.min_group {
                continue;
            }
            let (tw, cw, sw) = p.ring_lens();
            let lens = |tm: &Team| {
                (
                    tm.started.len(),
                    tm.checkins.len(),
                    tm.themes.first().map(|t| t.0.len()),
                )
            };
            if lens(tm) != (tw as i64, cw as i64, tm.themes.first().map(|_| sw as i64)) {
                // Restored from a version with other windows (or without the margin).
                tm.started.set_len(tw);
                tm.completed.set_len(tw);
                tm.checkins.set_len(cw);
                for (neg, all) in &mut tm.themes {
                    neg.set_len(sw);
                    all.set_len(sw);
                }
                if !tm.dirty {
                    tm.dirty = true;
                    self.dirty_teams.push(n);
                }
            }
            let mut fires: Vec<(RuleId, String, Vec<Reason>)> = Vec::new();
            if let Some(t) = &p.training {
                let (from, _) = present_window(day, t.days, tm.started.horizon(), &pres, None);
                let ((started, days), (completed, _)) = (
                    tm.started.sum_present(from, day, &pres, None),
                    tm.completed.sum_present(from, day, &pres, None),
                );
                if enough(days, t.days)
                    && started >= t.min_started
                    && (completed as f64) < t.ratio * started as f64
                {
                    fires.push((
                        RuleId::TeamTrainingCompletionLow,
                        String::new(),
                        vec![Reason::new("module_completion_ratio", completed as f64 / started as f64, t.ratio)
                            .window_days(t.days as u32)
                            .detail(format!("{completed} modules completed, {started} started by the team ({size} people)"))],
                    ));
                }
            }
            if let Some(c) = &p.checkins {
                let floor = tm.checkins.horizon().max(tm.first_day as i64);
                let (rf, _) = present_window(day, c.recent, floor, &pres, None);
                let (bf, _) = present_window(rf - 1, c.baseline, floor, &pres, None);
                let history = day - tm.first_day as i64 + 1 >= c.recent + c.baseline;
                let ((recent, rdays), (base, bdays)) = (
                    tm.checkins.sum_present(rf, day, &pres, None),
                    tm.checkins.sum_present(bf, rf - 1, &pres, None),
                );
                let (rr, br) = (
                    recent as f64 / rdays.max(1) as f64,
                    base as f64 / bdays.max(1) as f64,
                );
                if history
                    && enough(rdays, c.recent)
                    && enough(bdays, c.baseline)
                    && base >= c.min_baseline
                    && rr < c.ratio * br
                {
                    // Population-relative: completed check-ins per active employee over the
                    // same days, recent against before.
                    let population = pres.figures().and_then(|f| {
                        // (Without the team's own: its check-ins, its members' days.)
                        f.ratio(
                            (bf, rf, day),
                            &pres,
                            None,
                            false,
                            |d| (d.checkins_completed, d.active as u64),
                            Subject {
                                sums: [
                                    (recent, size as u64 * rdays as u64),
                                    (base, size as u64 * bdays as u64),
                                ],
                                members: size as u64,
                            },
                        )
                    });
                    let ratio = scaled(c.ratio, population);
                    if rr < ratio * br {
                        let mut reasons =
                            vec![Reason::new("completed_checkins_per_day", rr, ratio * br)
                                .baseline(br)
                                .window_days(c.recent as u32)
                                .detail(format!(
                            "{recent} completed in the last {} days, {base} in the {} days before",
                            c.recent, c.baseline
                        ))];
                        if let Some(r) = population {
                            reasons.push(
                                Reason::new("population_checkin_ratio", r, 1.0)
                                    .window_days(c.recent as u32)
                                    .detail(population_detail(
                                        "completed check-ins per active employee",
                                        r,
                                    )),
                            );
                        }
                        fires.push((RuleId::TeamCheckinDrop, String::new(), reasons));
                    }
                }
            }
            if let Some(s) = &p.sentiment {
                let floor = tm.themes.first().map_or(day, |(n, _)| n.horizon());
                let (rf, _) = present_window(day, s.recent, floor, &pres, None);
                let (bf, _) = present_window(rf - 1, s.baseline, floor, &pres, None);
                for (ti, (theme, _)) in s.themes.iter().enumerate() {
                    let Some((neg, all)) = tm.themes.get(ti) else {
                        continue;
                    };
                    let ((rn, rdays), (ra, _)) = (
                        neg.sum_present(rf, day, &pres, None),
                        all.sum_present(rf, day, &pres, None),
                    );
                    let ((bn, bdays), (ba, _)) = (
                        neg.sum_present(bf, rf - 1, &pres, None),
                        all.sum_present(bf, rf - 1, &pres, None),
                    );
                    if !enough(rdays, s.recent)
                        || !enough(bdays, s.baseline)
                        || ra < s.min_comments
                        || ba < s.min_comments
                    {
                        continue;
                    }
                    let (rs, bs) = (100.0 * rn as f64 / ra as f64, 100.0 * bn as f64 / ba as f64);
                    if rs - bs >= s.points {
                        fires.push((
                            RuleId::TeamSentimentShift,
                            theme.clone(),
                            vec![Reason::new("negative_comment_share_pct", rs, bs + s.points)
                                .baseline(round2(bs))
                                .window_days(s.recent as u32)
                                .detail(format!(
                                    "theme {theme}: {rn} of {ra} comments negative in the last {} days, {bn} of {ba} in the {} days before",
                                    s.recent, s.baseline
                                ))],
                        ));
                    }
                }
            }
            if !fires.is_empty() && !tm.dirty {
                tm.dirty = true;
                self.dirty_teams.push(n);
            }
            for (rule, key, reasons) in fires {
                let suppressed = cooled(&mut tm.fired, rule, &key, at, p.cooldown(rule));
                out.push(GroupFire {
                    rule,
                    scope: Scope::Team,
                    subject: tm.id.to_string(),
                    key,
                    at,
                    reasons,
                    suppressed,
                });
            }
        }
    }
}

/// A group's record for the changelog (see `engine::changelog`).
pub(crate) enum GroupRecord<'a> {
    Team {
        key: u128,
        team: &'a Team,
    },
    Cohort {
        key: u128,
        cohort: &'a Cohort,
        /// Its pending stall deadlines: (due, task).
        timers: Vec<(Ts, &'a str)>,
    },
}

impl Groups {
    /// The last UTC day whose close the team rules have evaluated.
    pub(crate) fn evaluated_through(&self) -> Option<i64> {
        self.evaluated_through
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty_teams.is_empty() || !self.dirty_cohorts.is_empty()
    }

    /// Hands every team and cohort changed since the last call to `f`, and forgets that they
    /// were.
    pub(crate) fn drain_dirty(&mut self, mut f: impl FnMut(GroupRecord<'_>)) {
        let dirty_cohorts = std::mem::take(&mut self.dirty_cohorts);
        let mut timers: std::collections::HashMap<u32, Vec<(Ts, &str)>> = Default::default();
        if !dirty_cohorts.is_empty() {
            for (due, n, task) in &self.stall_timers {
                if self.cohorts.get(*n as usize).is_some_and(|c| c.dirty) {
                    timers.entry(*n).or_default().push((*due, task.as_str()));
                }
            }
        }
        for n in dirty_cohorts {
            let Some(c) = self.cohorts.get_mut(n as usize) else {
                continue;
            };
            if !std::mem::take(&mut c.dirty) {
                continue;
            }
            f(GroupRecord::Cohort {
                key: group_key(&c.id),
                cohort: c,
                timers: timers.remove(&n).unwrap_or_default(),
            });
        }
        for n in std::mem::take(&mut self.dirty_teams) {
            let Some(t) = self.teams.get_mut(n as usize) else {
                continue;
            };
            if !std::mem::take(&mut t.dirty) {
                continue;
            }
            f(GroupRecord::Team {
                key: group_key(&t.id),
                team: t,
            });
        }
    }

    /// Restoring: the day evaluation had reached at the checkpoint.
    pub(crate) fn restore_clock(&mut self, evaluated_through: Option<i64>) {
        self.evaluated_through = evaluated_through;
    }

    /// Restoring: a team as its record held it; `evaluated_through` when the record was
    /// written after the checkpoint (its days through that one are not evaluated again).
    pub(crate) fn restore_team(&mut self, mut team: Team, evaluated_through: Option<i64>) {
        team.dirty = false;
        team.evaluated_through = evaluated_through;
        let key = group_key(&team.id);
        self.teams.push(team);
        self.team_index.insert(key, (self.teams.len() - 1) as u32);
    }

    /// Restoring: a cohort as its record held it, with its stall deadlines after `watermark`
    /// (those at or before it were handled before the checkpoint).
    pub(crate) fn restore_cohort(
        &mut self,
        mut cohort: Cohort,
        timers: Vec<(Ts, String)>,
        watermark: Ts,
    ) {
        cohort.dirty = false;
        let key = group_key(&cohort.id);
        self.cohorts.push(cohort);
        let n = (self.cohorts.len() - 1) as u32;
        self.cohort_index.insert(key, n);
        for (due, task) in timers {
            if due > watermark {
                self.stall_timers.insert((due, n, task));
            }
        }
    }

    /// The input has passed everything restored records held ahead of their checkpoint.
    pub(crate) fn end_restore(&mut self) {
        for t in &mut self.teams {
            t.evaluated_through = None;
        }
    }

    /// The fingerprints of every member and starter held (for tests of erasure).
    pub fn fingerprints(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .teams
            .iter()
            .flat_map(|t| t.members.0.iter().map(|m| m.0))
            .chain(self.cohorts.iter().flat_map(|c| {
                c.members
                    .0
                    .iter()
                    .map(|m| m.0)
                    .chain(c.tasks.values().flat_map(|v| v.iter().map(|s| s.emp)))
            }))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The key a team or cohort id is known by (not an employee's: group ids are not personal).
pub fn group_key(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contribution's bytes are what they were when ids were boxed strings: a length and
    /// the bytes (postcard's str), so the repartition topic and changelogs written before read
    /// the same.
    #[test]
    fn group_and_task_ids_encode_as_plain_strings() {
        let c = Contribution {
            group: GroupRef::Cohort("cohort-with-a-name-longer-than-24".into()),
            emp: 1,
            at: 2,
            eid: 3,
            what: What::TaskStarted("t1".into()),
        };
        let b = postcard::to_allocvec(&c).unwrap();
        let mut want = vec![1u8, 33];
        want.extend_from_slice(b"cohort-with-a-name-longer-than-24");
        want.extend_from_slice(&[1, 4, 3, 5, 2]);
        want.extend_from_slice(b"t1");
        assert_eq!(b, want);
        assert_eq!(postcard::from_bytes::<Contribution>(&b).unwrap(), c);
        // The same as a boxed string's encoding.
        assert_eq!(
            postcard::to_allocvec(&"t1".to_string().into_boxed_str()).unwrap(),
            [2, b't', b'1']
        );
    }

    /// Comments' words are lower-cased; so are the configured keywords, once, at start.
    #[test]
    fn theme_keywords_match_whatever_their_case_in_the_settings() {
        let mut s = Settings::default();
        s.rules.team_sentiment_shift.themes = [(
            "workload".to_string(),
            vec!["OverLoad".to_string(), "Too Much Work".to_string()],
        )]
        .into_iter()
        .collect();
        let p = Params::from(&s);
        let themes = &p.sentiment.as_ref().expect("enabled by default").themes;
        let keywords = &themes[0].1;
        for text in ["We are overloaded", "there is too much work here"] {
            let w = sentiment::words(text);
            assert!(sentiment::mentions(&w, &w.join(" "), keywords), "{text}");
        }
    }
}
