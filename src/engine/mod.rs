//! The pure engine: no rdkafka, no tokio, no clock, no I/O. `apply(event)` and
//! `advance(watermark)` return triggers (and audit decisions) in a caller-owned buffer, so the
//! same input always gives the same output — in `replay`, in tests, in benches and in `run`.
//!
//! One engine holds the state of the employees of one input partition, with that partition's
//! watermark (docs/contract.md §3): the largest `occurred_at` seen minus `time.allowed_lateness`. Timers
//! (absence rules) fire when the watermark passes their due time. The I/O shell may also advance
//! the watermark itself (idle partitions, end of a replay).

pub mod changelog;
mod decision;
mod pseudonym;
pub mod stage;
pub mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use crate::config::Settings;
use crate::event::{Event, Kind};
pub(crate) use crate::index::prefetch_lines;
use crate::index::Index;
use crate::rules::group::{GroupFire, Groups};
use crate::rules::population::Population;
use crate::rules::presence::{cancel_leave, record_leave, Leave, Presence, Source};
use crate::rules::{self as rules_mod, fingerprint, ladder, Fire, RuleId, RuleSet};
use crate::time::Ts;
use crate::trigger::Trigger;
pub use decision::{trigger_id, AuditRecord, Decision};
pub use prefetch::PREFETCH_BATCH;
pub use pseudonym::Pseudonymizer;
use slots::Slot;
pub use state::EmployeeState;
use timers::{Dues, LADDER};

use state::{CONSENT_WITHDRAWN, EXITED};

/// What the engine asks the shell to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Trigger(Trigger),
    Audit(AuditRecord),
}

/// What became of one applied event (the `outcome` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    /// For an employee who has exited: no trigger about them any more.
    AfterExit,
    /// For an employee whose data was erased.
    Erased,
    /// Already held by the state restored from the changelog (read again after a restart).
    Restored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::AfterExit => "after_exit",
            Outcome::Erased => "erased",
            Outcome::Restored => "restored",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Emit [`Output::Audit`] records.
    pub audit: bool,
    pub pseudonymizer: Option<Pseudonymizer>,
}

/// Calls `$m!` with every employee rule: its id, its module, and the name shared by its
/// parameters in [`RuleSet`] and its state in [`EmployeeState`].
macro_rules! for_each_employee_rule {
    ($m:ident) => {
        $m! {
            CollaborationDecline => collaboration, collaboration;
            RecognitionWithdrawal => recognition, recognition;
            PulseShortening => pulse, pulse;
            CheckinLapse => checkin, checkin;
            FeedbackUnacknowledged => feedback, feedback;
            PassiveGoals => goals, goals;
            LearningAbandonment => learning, learning;
            LearningConfusion => confusion, confusion;
            OnboardingFriction => onboarding, onboarding;
            MobilityFrustration => mobility, mobility;
            PerformanceDip => performance, performance;
        }
    };
}

// Declared after the macro, which they use.
mod barrier;
mod prefetch;
mod slots;
mod timers;

/// The parts of the engine that turning a [`Fire`] into outputs needs.
#[derive(Debug)]
struct Ctx {
    rules: Arc<RuleSet>,
    opts: EngineOptions,
    /// With pseudonymization: the secret of the keyed employee fingerprints.
    fp_secret: Option<Box<[u8; 192]>>,
}

impl Ctx {
    /// The 128-bit index key of an employee id (keyed when pseudonymizing).
    fn employee_key(&self, id: &str) -> u128 {
        match &self.fp_secret {
            Some(s) => xxhash_rust::xxh3::xxh3_128_with_secret(id.as_bytes(), &s[..]),
            None => xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
        }
    }

    /// The 64-bit key of a `time_off_id` in the state: keyed when pseudonymizing (an id such
    /// as "sick-2026-03-01" would otherwise be found again from the changelog by guessing).
    fn leave_key(&self, id: &str) -> u64 {
        match &self.fp_secret {
            Some(s) => xxhash_rust::xxh3::xxh3_64_with_secret(id.as_bytes(), &s[..]),
            None => fingerprint(id),
        }
    }

    /// The id triggers name an employee by: pseudonymized when `privacy.pseudonymize` is on.
    fn subject(&self, employee_id: &str) -> String {
        match &self.opts.pseudonymizer {
            Some(p) => p.pseudonym(employee_id),
            None => employee_id.to_string(),
        }
    }

    /// The employee's point in every experiment.
    fn points(&self, employee_id: &str) -> Box<[f64]> {
        self.rules
            .experiment_list
            .iter()
            .map(|e| e.point(employee_id))
            .collect()
    }
}

/// The 64-bit fingerprint the group rules and the erasure list know an employee by: half of the
/// index key, so an event hashes its employee id once.
fn employee_fp(key: u128) -> u64 {
    key as u64
}

/// Which parts of the state an event still has to reach (after a restore, the restored state
/// may already hold it for the employee, for its groups, or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub employee: bool,
    /// The task's population share (its accumulator may be restored ahead of the employee).
    pub population: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        employee: true,
        population: true,
    };
    pub const NONE: Parts = Parts {
        employee: false,
        population: false,
    };
}

/// What an event is looked up by, hashed once: [`Engine::prefetch`] hands them to
/// [`Engine::apply_keyed`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys {
    employee: u128,
    /// The team's key, when a team rule will read the event.
    team: Option<u128>,
}

/// Per-employee state for the employees of one partition, that partition's watermark, and the
/// timers derived from the state.
#[derive(Debug)]
pub struct Engine {
    ctx: Ctx,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// By a 128-bit fingerprint of the employee id: looked up without touching the id itself.
    index: Index,
    /// (due, slot), earliest first, for each employee with a pending deadline: a min-heap with
    /// lazy deletion. When a deadline moves, the new entry is pushed and the old one stays
    /// until it surfaces, when it is skipped because the slot's `due` no longer matches. (A
    /// balanced tree with remove + insert costs several cache misses per event at 100k
    /// employees; a push of a later deadline usually stops at the heap's bottom.)
    timers: BinaryHeap<Reverse<(Ts, u32)>>,
    /// Slots with a pending deadline.
    pending: usize,
    /// Fingerprints of erased employee ids: later events about them are dropped.
    erased: HashSet<u64, ahash::RandomState>,
    groups: Groups,
    /// The population's figures and feed gaps, and this engine's share (docs/contract.md §8).
    pop: Population,
    max_event_time: Option<Ts>,
    watermark: Ts,
    fires: Vec<Fire>,
    group_fires: Vec<GroupFire>,
    /// Slots changed since the last checkpoint ([`Engine::checkpoint`]).
    dirty: Vec<u32>,
    /// Employee keys erased since the last checkpoint (their records become erasure marks).
    dirty_erased: Vec<u128>,
    /// Employee keys evicted since the last checkpoint (their records become tombstones).
    dirty_evicted: Vec<u128>,
    /// Employee keys whose eviction mark the last checkpoint wrote (tombstoned at the next).
    evicted_marks: Vec<u128>,
    /// The UTC day of the watermark when idle employees were last looked for.
    idle_checked: i64,
    /// What a restore found ahead of its checkpoint: input to skip (see `changelog`).
    ahead: Option<Box<changelog::Ahead>>,
    /// The clock of the last checkpoint (an unchanged clock is not written again).
    last_clock: Option<changelog::Clock>,
    /// [`Dues::version`] of the rules.
    dues_version: u64,
    /// The group stage (see [`stage`]).
    stage: stage::Stage,
    /// Publish mode: this engine's partition (its contributions go out, see
    /// [`Engine::publish_contributions`]).
    publish: Option<u32>,
    published: Vec<(crate::rules::group::Contribution, stage::From)>,
    /// An event's contributions, before they go to the stage or out.
    contributions: Vec<crate::rules::group::Contribution>,
    /// Restored states that turned out not to decode when needed (see `Slot::packed`).
    corrupt_states: u64,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>, opts: EngineOptions) -> Engine {
        let fp_secret = opts
            .pseudonymizer
            .as_ref()
            .map(Pseudonymizer::fingerprint_secret);
        let dues_version = Dues::version(&rules);
        let gap_share = rules.gap_share;
        let calendar = rules.calendar.clone();
        Engine {
            ctx: Ctx {
                rules,
                opts,
                fp_secret,
            },
            slots: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            timers: BinaryHeap::new(),
            pending: 0,
            erased: HashSet::default(),
            groups: Groups::default(),
            pop: Population::new(gap_share, &calendar),
            max_event_time: None,
            watermark: Ts::MIN,
            fires: Vec::new(),
            group_fires: Vec::new(),
            dirty: Vec::new(),
            dirty_erased: Vec::new(),
            dirty_evicted: Vec::new(),
            evicted_marks: Vec::new(),
            idle_checked: i64::MIN,
            ahead: None,
            last_clock: None,
            dues_version,
            corrupt_states: 0,
            stage: stage::Stage::with_sources(1),
            publish: None,
            published: Vec::new(),
            contributions: Vec::new(),
        }
    }

    /// An engine for the settings, with options taken from them (audit, pseudonymization key).
    pub fn from_settings(s: &Settings, pseudonymizer: Option<Pseudonymizer>) -> Engine {
        Engine::new(
            Arc::new(RuleSet::compile(s)),
            EngineOptions {
                audit: s.audit.enabled,
                pseudonymizer,
            },
        )
    }

    pub fn rules(&self) -> &RuleSet {
        &self.ctx.rules
    }

    /// The current watermark, once there is one.
    pub fn watermark(&self) -> Option<Ts> {
        (self.watermark != Ts::MIN).then_some(self.watermark)
    }

    /// The largest event time applied so far.
    pub fn max_event_time(&self) -> Option<Ts> {
        self.max_event_time
    }

    /// Employees with state (including exit tombstones).
    pub fn employees(&self) -> usize {
        self.index.len()
    }

    pub fn pending_timers(&self) -> usize {
        self.pending
    }

    pub fn state_of(&self, employee_id: &str) -> Option<std::borrow::Cow<'_, EmployeeState>> {
        use std::borrow::Cow;
        let sl = &self.slots[self.index.get(self.ctx.employee_key(employee_id))? as usize];
        Some(match &sl.packed {
            Some(b) => Cow::Owned(EmployeeState::from_bytes(b)?),
            None => Cow::Borrowed(&sl.state),
        })
    }

    /// Serialized bytes of every employee's state, added up (the `state bytes` figure).
    pub fn state_bytes(&self) -> usize {
        self.index
            .slots()
            .map(|s| {
                let sl = &self.slots[s as usize];
                sl.packed
                    .as_ref()
                    .map_or_else(|| sl.state.to_bytes().len(), |b| b.len())
            })
            .sum()
    }

    /// Applies one validated event; outputs go to `out`. Timers due before the event's time are
    /// fired first, so an absence that ended after its deadline still counts.
    pub fn apply(&mut self, ev: &Event<'_>, out: &mut Vec<Output>) -> Outcome {
        let keys = self.keys(ev);
        self.apply_keyed(ev, keys, out)
    }

    /// [`Engine::apply`] of an event whose keys [`Engine::prefetch`] returned.
    pub fn apply_keyed(&mut self, ev: &Event<'_>, keys: Keys, out: &mut Vec<Output>) -> Outcome {
        self.apply_parts(ev, keys, Parts::ALL, None, out)
    }

    /// [`Engine::apply_keyed`] of the event at input position `pos` (the index of its topic
    /// among the task's input topics, and its offset): after a restore, what the restored
    /// state already holds of it is skipped (see [`changelog`]).
    pub fn apply_at(
        &mut self,
        ev: &Event<'_>,
        keys: Keys,
        pos: (usize, i64),
        out: &mut Vec<Output>,
    ) -> Outcome {
        let parts = match &mut self.ahead {
            None => Parts::ALL,
            Some(a) => {
                let parts = a.parts(&keys, ev, pos);
                if a.passed(pos) {
                    // Past everything the restored records held: nothing more to skip.
                    self.ahead = None;
                    self.groups.end_restore();
                }
                parts
            }
        };
        self.apply_parts(ev, keys, parts, Some(pos), out)
    }

    fn apply_parts(
        &mut self,
        ev: &Event<'_>,
        keys: Keys,
        parts: Parts,
        pos: Option<(usize, i64)>,
        out: &mut Vec<Output>,
    ) -> Outcome {
        let t = ev.occurred_at;
        if self.max_event_time.is_none_or(|m| t > m) {
            self.max_event_time = Some(t);
            self.advance(t.saturating_sub(self.ctx.rules.allowed_lateness), out);
        }
        if !parts.employee {
            // The restored state holds this event already: its time is all there is to take.
            return Outcome::Restored;
        }
        let key = keys.employee;
        let employee_fp = || employee_fp(key);
        if !self.erased.is_empty() && self.erased.contains(&employee_fp()) {
            return Outcome::Erased;
        }
        let slot = match self.index.get(key) {
            Some(s) => {
                self.unpack(s);
                s
            }
            None => {
                if matches!(ev.kind, Kind::Erased) {
                    self.erased.insert(employee_fp());
                    self.dirty_erased.push(key);
                    self.contribute_erasure(employee_fp(), ev, pos, out);
                    return Outcome::Applied;
                }
                self.alloc(key, &ev.employee_id)
            }
        };
        let rules: &RuleSet = &self.ctx.rules;
        let sl = &mut self.slots[slot as usize];
        let st = &mut sl.state;
        if st.has(EXITED) {
            return Outcome::AfterExit;
        }
        let eid = fingerprint(&ev.event_id);
        if st.dedup.contains(eid) {
            return Outcome::Duplicate;
        }
        st.dedup.insert(eid, t, rules.dedup_horizon);
        if !sl.dirty {
            sl.dirty = true;
            self.dirty.push(slot);
        }
        if sl.points.iter().any(|p| p.is_nan()) {
            sl.points = self.ctx.points(&ev.employee_id);
        }
        match &ev.kind {
            Kind::ConsentUpdated {
                individual_processing,
            } => {
                if *individual_processing {
                    st.flags &= !CONSENT_WITHDRAWN;
                } else {
                    st.flags |= CONSENT_WITHDRAWN;
                }
            }
            Kind::Erased => {
                self.release(slot);
                self.erased.insert(employee_fp());
                self.dirty_erased.push(key);
                self.contribute_erasure(employee_fp(), ev, pos, out);
                return Outcome::Applied;
            }
            Kind::Exited { .. } => {
                st.flags |= EXITED;
                st.clear_rules();
                st.dedup = Default::default();
                sl.dues = Dues::default();
                self.reschedule(slot, None);
            }
            _ => {
                let day = crate::time::day_of(t) as i32;
                let new_day = st.seen_day != day;
                if parts.population && !st.has(CONSENT_WITHDRAWN) {
                    // (An employee who withdrew consent is not counted.)
                    count_in_population(&mut self.pop.acc, st, &ev.kind, day, new_day);
                    self.pop.dirty = true;
                }
                st.seen_day = day;
                if !st.has(CONSENT_WITHDRAWN) && (ev.team_id.is_some() || ev.cohort_id.is_some()) {
                    rules.groups.contributions(
                        employee_fp(),
                        eid,
                        ev,
                        new_day,
                        &mut self.contributions,
                    );
                }
                let mut fires = std::mem::take(&mut self.fires);
                let dues = &mut sl.dues;
                // Time off recorded or cancelled: every deadline may move.
                let mut moved = record_time_off(&self.ctx, st, dues, &ev.kind, day);
                moved |= run_rules(rules, &self.pop, st, dues, ev, &mut fires);
                let mut published = false;
                for f in fires.drain(..) {
                    published |= self.ctx.finalize(&sl.subject, &sl.points, st, f, out);
                }
                self.fires = fires;
                if published {
                    // Publishing can open a follow-up or feed the attrition score.
                    sl.dues = Dues::of(rules, st);
                }
                if moved || published {
                    self.reschedule(slot, None);
                }
            }
        }
        if !self.contributions.is_empty() {
            let mut c = std::mem::take(&mut self.contributions);
            self.contribute(&mut c, pos, out);
            self.contributions = c;
        }
        self.debug_check_dues(slot);
        self.fire_due(out);
        Outcome::Applied
    }
}

/// An event's part of the task's population share of its day: the employee seen (and present,
/// on a new day), a rollup's totals and whether it is the first of its source that day, a
/// completed check-in. (One call site, on every event: inlined, as it was written there.)
#[inline(always)]
fn count_in_population(
    acc: &mut crate::rules::population::Accumulator,
    st: &mut EmployeeState,
    kind: &Kind<'_>,
    day: i32,
    new_day: bool,
) {
    let prev = (st.seen_day != 0).then_some(st.seen_day as i64);
    acc.seen(prev, day as i64);
    if new_day {
        acc.present(day as i64);
    }
    let mut rollup = |s: Source, a: u32, b: u32| {
        let first = st.rollup_days[s as usize] != day;
        st.rollup_days[s as usize] = day;
        acc.rollup(s, day as i64, first, a as u64, b as u64);
    };
    match *kind {
        Kind::CollabActivity { messages, meetings } => {
            rollup(Source::Collab, messages.saturating_add(meetings), 0)
        }
        Kind::WorkTasks { completed, planned } => rollup(Source::Tasks, completed, planned),
        Kind::CheckinCompleted { .. } => acc.checkin_completed(day as i64),
        _ => {}
    }
}

/// Time off recorded or cancelled (on `day`): the employee's spans change and every deadline
/// is derived again. Whether the deadlines may have moved.
#[inline(always)]
fn record_time_off(
    ctx: &Ctx,
    st: &mut EmployeeState,
    dues: &mut Dues,
    kind: &Kind<'_>,
    day: i32,
) -> bool {
    match kind {
        Kind::TimeOffRecorded {
            time_off_id,
            starts_on,
            ends_on,
        } => {
            let l = Leave {
                id: ctx.leave_key(time_off_id),
                from: *starts_on,
                to: *ends_on,
            };
            record_leave(&mut st.time_off, l, day as i64);
            *dues = Dues::of(&ctx.rules, st);
            true
        }
        Kind::TimeOffCancelled { time_off_id } => {
            let cancelled = cancel_leave(&mut st.time_off, ctx.leave_key(time_off_id));
            if cancelled {
                *dues = Dues::of(&ctx.rules, st);
            }
            cancelled
        }
        _ => false,
    }
}

/// Every enabled employee rule that reads the event, then the follow-up ladder: its state
/// updated, what it fires in `fires`, its next deadline in `dues` — each judged on the days
/// the employee's windows keep (the calendar, their time off, the feed gaps, the
/// population's figures). Whether any read it.
#[inline(always)]
fn run_rules(
    rules: &RuleSet,
    pop: &Population,
    st: &mut EmployeeState,
    dues: &mut Dues,
    ev: &Event<'_>,
    fires: &mut Vec<Fire>,
) -> bool {
    let pres =
        Presence::new(&rules.calendar, &st.time_off, &pop.gaps).with_figures(Some(&pop.figures));
    let pres = &pres;
    let mut moved = false;
    macro_rules! on_event {
        ($($id:ident => $module:ident, $params:ident;)*) => {$(
            if rules.enabled(RuleId::$id) && rules_mod::$module::handles(&ev.kind) {
                rules_mod::$module::on_event(&rules.$params, &mut st.$params, ev, pres, fires);
                dues.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, pres));
                moved = true;
            }
        )*};
    }
    for_each_employee_rule!(on_event);
    if let Some(lp) = &rules.ladder {
        if ladder::handles(&ev.kind) {
            ladder::on_event(lp, &mut st.ladder, ev, pres, fires);
            dues.set(LADDER, ladder::next_due(lp, &st.ladder, pres));
            moved = true;
        }
    }
    moved
}

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod changelog_tests;
#[cfg(test)]
mod population_tests;
#[cfg(test)]
mod presence_tests;
#[cfg(test)]
mod stage_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
