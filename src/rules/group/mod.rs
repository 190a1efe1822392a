//! Team and cohort rules (docs/contract.md §4, second table). They speak of groups, never of a person,
//! and stay silent for groups with fewer than `privacy.min_group_size` distinct employees.
//! Their state lives beside the employee state of one engine (one partition, or all of them in
//! `replay`); it holds employee ids only as 64-bit fingerprints, for distinct counts, and never
//! any comment text.

mod evaluate;
mod params;

pub use params::{Checkins, Params, Sentiment, Stall, Training};

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
mod tests;
