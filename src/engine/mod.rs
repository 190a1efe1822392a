//! The pure engine: no rdkafka, no tokio, no clock, no I/O. `apply(event)` and
//! `advance(watermark)` return triggers (and audit decisions) in a caller-owned buffer, so the
//! same input always gives the same output — in `replay`, in tests, in benches and in `run`.
//!
//! One engine holds the state of the employees of one input partition, with that partition's
//! watermark (CONTRACT §3): the largest `occurred_at` seen minus `time.allowed_lateness`. Timers
//! (absence rules) fire when the watermark passes their due time. The I/O shell may also advance
//! the watermark itself (idle partitions, end of a replay).

pub mod changelog;
pub(crate) mod index;
pub mod stage;
pub mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::config::{ActionCfg, ActionKind};
use crate::event::{Event, Kind};
use crate::rules::group::{GroupFire, Groups};
use crate::rules::population::Population;
use crate::rules::presence::{cancel_leave, record_leave, Leave, Presence, Source};
use crate::rules::{self as rules_mod, fingerprint, ladder, Fire, RuleId, RuleSet};
use crate::time::{format_rfc3339, Ts};
use crate::trigger::{Action, ExperimentArm, Reason, Scope, Severity, Trigger};
use index::Index;
pub use state::EmployeeState;

use state::{CONSENT_WITHDRAWN, EXITED};

/// What the engine asks the shell to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Trigger(Trigger),
    Audit(AuditRecord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Fired,
    SuppressedCooldown,
    SuppressedConsent,
    HeldOut,
}

impl Decision {
    /// The name on the audit topic and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Fired => "fired",
            Decision::SuppressedCooldown => "suppressed_cooldown",
            Decision::SuppressedConsent => "suppressed_consent",
            Decision::HeldOut => "held_out",
        }
    }
}

/// One decision, for the audit topic (CONTRACT §7). Never holds free text from the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub decision: Decision,
    pub rule: String,
    pub rule_version: String,
    pub subject: String,
    pub reasons: Vec<Reason>,
    pub detected_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
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

/// Replaces employee ids in outputs by `HMAC-SHA256(key, id)`, first 32 hex digits.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer {
            // HMAC takes keys of any length.
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length"),
        }
    }

    /// A 192-byte secret for keyed fingerprints of employee ids (xxh3 with a custom secret):
    /// with pseudonymization on, the fingerprints in state and in internal topics cannot be
    /// matched against a roster without the key.
    pub fn fingerprint_secret(&self) -> Box<[u8; 192]> {
        let mut out = Box::new([0u8; 192]);
        for (i, chunk) in out.chunks_mut(32).enumerate() {
            let mut m = self.mac.clone();
            m.update(b"momentd fingerprint secret ");
            m.update(&[i as u8]);
            chunk.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    pub fn pseudonym(&self, id: &str) -> String {
        let mut m = self.mac.clone();
        m.update(id.as_bytes());
        let out = m.finalize().into_bytes();
        hex::encode(&out[..16])
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
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

/// Consent first, then (for detections) the rule's cooldown, symmetric in event time: the same
/// decision for every employee rule and for the attrition risk.
fn decide(
    st: &EmployeeState,
    rule: RuleId,
    at: Ts,
    cooldown: Ts,
    check_cooldown: bool,
) -> Decision {
    if st.has(CONSENT_WITHDRAWN) {
        Decision::SuppressedConsent
    } else if check_cooldown
        && st
            .last_fired(rule)
            .is_some_and(|last| (at - last).abs() < cooldown)
    {
        Decision::SuppressedCooldown
    } else {
        Decision::Fired
    }
}

/// Where a subject stands in the experiment covering a rule (CONTRACT §7).
enum Assignment<'a> {
    /// The control arm: the detection is audited as held out, not published.
    Control,
    /// Published: with its arm and the arm's action, if an experiment covers the rule.
    Published(Option<ExperimentArm>, Option<&'a ActionCfg>),
}

/// The deterministic trigger id (CONTRACT §5).
pub fn trigger_id(
    rule: &str,
    subject: &str,
    detected_at: Ts,
    escalation: u32,
    group_key: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        rule.as_bytes(),
        subject.as_bytes(),
        &detected_at.to_be_bytes(),
        &escalation.to_be_bytes(),
        group_key.as_bytes(),
    ] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

#[derive(Debug)]
struct Slot {
    /// The index key (a fingerprint of the employee id).
    key: u128,
    /// The employee as outputs name them: the id, or its pseudonym — with pseudonymization on,
    /// the raw id is not kept (nor written to the changelog). Empty: a free slot.
    subject: Box<str>,
    /// The employee's point in each experiment (`RuleSet::experiment_list` order), computed
    /// from the raw id when the slot was made: NaN where unknown (restored state written under
    /// a configuration without that experiment; filled in at the employee's next event).
    points: Box<[f64]>,
    /// Changed since the last checkpoint (listed in `Engine::dirty`).
    dirty: bool,
    /// The earliest of `dues`, clamped by the last firing: the entry in the timer heap.
    due: Option<Ts>,
    /// Each rule's next deadline, as its `next_due` gives for the state (derived, not part of
    /// the state): an event recomputes only its rule's, a firing only the due rules'.
    dues: Dues,
    state: EmployeeState,
    /// Restored and not needed since: the state's serialized bytes, decoded at the employee's
    /// next event or deadline (`Engine::unpack`). Meanwhile `state` holds only the flags and
    /// the last day seen, `dues` is empty, and `due` is the deadline the record gave.
    packed: Option<Box<[u8]>>,
}

/// Where the follow-up ladder's deadline sits in [`Dues`] (the employee rules use their
/// [`RuleId`] index, which is below it).
const LADDER: usize = RuleId::AttritionRisk as usize;

/// Per-rule deadlines of one employee, `Ts::MAX` for none.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dues([Ts; LADDER + 1]);

impl Default for Dues {
    fn default() -> Dues {
        Dues([Ts::MAX; LADDER + 1])
    }
}

impl Dues {
    fn set(&mut self, i: usize, due: Option<Ts>) {
        self.0[i] = due.unwrap_or(Ts::MAX);
    }
    fn due(&self, i: usize, now: Ts) -> bool {
        self.0[i] <= now
    }
    fn min(&self) -> Option<Ts> {
        let m = self.0.iter().copied().min().unwrap_or(Ts::MAX);
        (m != Ts::MAX).then_some(m)
    }
    /// What the deadlines [`Dues::of`] gives depend on besides the state: every enabled
    /// employee rule's parameters and the ladder's, hashed. A restore takes the deadlines its
    /// records give only when the checkpoint was written under the same.
    fn version(rules: &RuleSet) -> u64 {
        let mut parts = String::new();
        macro_rules! params {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) {
                    parts.push_str(&format!("{}:{:?};", stringify!($id), rules.$params));
                }
            )*};
        }
        for_each_employee_rule!(params);
        parts.push_str(&format!("ladder:{:?}", rules.ladder));
        // Deadlines do not run on the calendar's non-working days.
        parts.push_str(&format!("calendar:{:?}", rules.calendar));
        // The rules' code too: a new version may compute deadlines otherwise.
        parts.push_str(env!("CARGO_PKG_VERSION"));
        xxhash_rust::xxh3::xxh3_64(parts.as_bytes())
    }

    /// Every rule's deadline, recomputed from the state.
    fn of(rules: &RuleSet, st: &EmployeeState) -> Dues {
        let mut d = Dues::default();
        // (Deadlines stop on days off; feed gaps move none: they only leave days out of the
        // day-close windows.)
        let pres = Presence::new(&rules.calendar, &st.time_off, Presence::no_gaps());
        macro_rules! next_due {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) {
                    d.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, &pres));
                }
            )*};
        }
        for_each_employee_rule!(next_due);
        if let Some(lp) = &rules.ladder {
            d.set(LADDER, ladder::next_due(lp, &st.ladder, &pres));
        }
        d
    }
}

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

    /// The employee's point in every experiment.
    fn points(&self, employee_id: &str) -> Box<[f64]> {
        self.rules
            .experiment_list
            .iter()
            .map(|e| e.point(employee_id))
            .collect()
    }

    /// The arm of an employee for `rule`, from the points kept in the slot.
    fn assign_employee(&self, rule: RuleId, points: &[f64], subject: &str) -> Assignment<'_> {
        let Some(e) = self.rules.experiment(rule) else {
            return Assignment::Published(None, None);
        };
        let x = points
            .get(e.index)
            .copied()
            .filter(|x| !x.is_nan())
            .unwrap_or_else(|| e.point(subject));
        Self::assignment(e, e.arm_at(x))
    }

    fn assignment<'a>(
        e: &crate::rules::Experiment,
        arm: Option<(&str, Option<&'a ActionCfg>)>,
    ) -> Assignment<'a> {
        match arm {
            None => Assignment::Control,
            Some((arm, action)) => Assignment::Published(
                Some(ExperimentArm {
                    id: e.id.clone(),
                    arm: arm.to_string(),
                }),
                action,
            ),
        }
    }

    /// The arm of `subject` (the raw employee id, or the team or cohort id) for `rule`.
    fn assign(&self, rule: RuleId, subject: &str) -> Assignment<'_> {
        let Some(e) = self.rules.experiment(rule) else {
            return Assignment::Published(None, None);
        };
        Self::assignment(e, e.assign(subject))
    }

    fn subject(&self, employee_id: &str) -> String {
        match &self.opts.pseudonymizer {
            Some(p) => p.pseudonym(employee_id),
            None => employee_id.to_string(),
        }
    }

    /// Cooldown and consent, the same for every employee rule; then the trigger, the ladder
    /// entry, and the attrition risk the fire may complete. Returns whether a trigger went out.
    fn finalize(
        &self,
        subject: &str,
        points: &[f64],
        st: &mut EmployeeState,
        f: Fire,
        out: &mut Vec<Output>,
    ) -> bool {
        let m = self.rules.meta(f.rule);
        let decision = decide(st, f.rule, f.at, m.cooldown, f.escalation == 0);
        if decision != Decision::Fired {
            self.audit(decision, f.rule, subject, &f.reasons, f.at, None, out);
            return false;
        }
        // An experiment covering the rule: the control arm's detection counts (cooldown, the
        // risk score) but is held out; the other arms are published with their arm.
        let (experiment, arm_action) = match self.assign_employee(f.rule, points, subject) {
            Assignment::Published(e, a) => (e, a),
            Assignment::Control => {
                if f.escalation == 0 {
                    st.set_fired(f.rule, f.at);
                }
                self.audit(
                    Decision::HeldOut,
                    f.rule,
                    subject,
                    &f.reasons,
                    f.at,
                    None,
                    out,
                );
                if f.escalation == 0 && f.rule != RuleId::AttritionRisk {
                    self.attrition(subject, points, st, f.at, out);
                }
                return false;
            }
        };
        let (action, severity, risk) = match f.escalation {
            0 => (arm_action.unwrap_or(&m.action), m.severity, m.weight as f64),
            1 => (&self.rules.office_hours, m.severity, m.weight as f64),
            _ => (&self.rules.manager_follow_up, m.severity, m.weight as f64),
        };
        let content = f.content_id.clone().or_else(|| {
            match (&action.content_id, &f.module_id, f.escalation) {
                (Some(c), Some(mid), 0) => Some(c.replace("{module_id}", mid)),
                (c, _, _) => c.clone(),
            }
        });
        if f.escalation == 0 {
            st.set_fired(f.rule, f.at);
        }
        let id = self.publish(
            f.rule,
            Scope::Employee,
            subject,
            f.at,
            f.escalation,
            "",
            severity,
            risk,
            f.reasons.clone(),
            action,
            content,
            experiment,
            out,
        );
        self.audit(
            Decision::Fired,
            f.rule,
            subject,
            &f.reasons,
            f.at,
            Some(id.clone()),
            out,
        );
        if self.rules.ladder.is_some() {
            ladder::issued(
                &mut st.ladder,
                &id,
                f.rule,
                f.escalation,
                f.at.saturating_add(self.rules.deliver_within),
            );
        }
        if f.escalation == 0 && f.rule != RuleId::AttritionRisk {
            self.attrition(subject, points, st, f.at, out);
        }
        true
    }

    /// `attrition_risk`: the weights of the distinct employee rules that fired within the window
    /// up to `at`, added up (capped at 100); fires once the score reaches the threshold.
    fn attrition(
        &self,
        subject: &str,
        points: &[f64],
        st: &mut EmployeeState,
        at: Ts,
        out: &mut Vec<Output>,
    ) {
        if !self.rules.enabled(RuleId::AttritionRisk) {
            return;
        }
        let a = &self.rules.attrition;
        let mut parts: Vec<(RuleId, u32, Ts)> = rules_mod::RuleId::EMPLOYEE
            .iter()
            .filter(|r| self.rules.enabled(**r))
            .filter_map(|&r| {
                st.last_fired(r)
                    .filter(|&t| t <= at && t > at - a.window)
                    .map(|t| (r, self.rules.meta(r).weight, t))
            })
            .filter(|p| p.1 > 0)
            .collect();
        let score = parts.iter().map(|p| p.1).sum::<u32>().min(100);
        if score < a.threshold {
            return;
        }
        parts.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        let reasons = parts
            .iter()
            .map(|(r, w, t)| {
                Reason::new(r.as_str(), *w as f64, a.threshold as f64)
                    .window_days(crate::time::whole_days(a.window))
                    .detail(format!(
                        "fired {}; weight {w} of a score of {score}",
                        format_rfc3339(*t)
                    ))
            })
            .collect::<Vec<_>>();
        let kind = a.route[parts[0].0.index()];
        let action: &ActionCfg = a.action(kind);
        let m = self.rules.meta(RuleId::AttritionRisk);
        let decision = decide(st, RuleId::AttritionRisk, at, m.cooldown, true);
        if decision != Decision::Fired {
            self.audit(
                decision,
                RuleId::AttritionRisk,
                subject,
                &reasons,
                at,
                None,
                out,
            );
            return;
        }
        st.set_fired(RuleId::AttritionRisk, at);
        let (experiment, arm_action) =
            match self.assign_employee(RuleId::AttritionRisk, points, subject) {
                Assignment::Published(e, a) => (e, a),
                Assignment::Control => {
                    self.audit(
                        Decision::HeldOut,
                        RuleId::AttritionRisk,
                        subject,
                        &reasons,
                        at,
                        None,
                        out,
                    );
                    return;
                }
            };
        let action = arm_action.unwrap_or(action);
        let severity = if score >= a.high_from {
            Severity::High
        } else {
            Severity::Medium
        };
        debug_assert!(matches!(
            kind,
            ActionKind::SkillRefresher
                | ActionKind::ManagerCoaching
                | ActionKind::MicroMentoringInvite
        ));
        let id = self.publish(
            RuleId::AttritionRisk,
            Scope::Employee,
            subject,
            at,
            0,
            "",
            severity,
            score as f64,
            reasons.clone(),
            action,
            action.content_id.clone(),
            experiment,
            out,
        );
        self.audit(
            Decision::Fired,
            RuleId::AttritionRisk,
            subject,
            &reasons,
            at,
            Some(id.clone()),
            out,
        );
        if self.rules.ladder.is_some() {
            ladder::issued(
                &mut st.ladder,
                &id,
                RuleId::AttritionRisk,
                0,
                at.saturating_add(self.rules.deliver_within),
            );
        }
    }

    /// A team or cohort rule's verdict (cooldown already applied by the group state).
    fn finalize_group(&self, g: GroupFire, out: &mut Vec<Output>) {
        let m = self.rules.meta(g.rule);
        if g.suppressed {
            self.audit(
                Decision::SuppressedCooldown,
                g.rule,
                &g.subject,
                &g.reasons,
                g.at,
                None,
                out,
            );
            return;
        }
        let (experiment, arm_action) = match self.assign(g.rule, &g.subject) {
            Assignment::Published(e, a) => (e, a),
            Assignment::Control => {
                self.audit(
                    Decision::HeldOut,
                    g.rule,
                    &g.subject,
                    &g.reasons,
                    g.at,
                    None,
                    out,
                );
                return;
            }
        };
        let action = arm_action.unwrap_or(&m.action);
        let id = self.publish(
            g.rule,
            g.scope,
            &g.subject,
            g.at,
            0,
            &g.key,
            m.severity,
            m.weight as f64,
            g.reasons.clone(),
            action,
            action.content_id.clone(),
            experiment,
            out,
        );
        self.audit(
            Decision::Fired,
            g.rule,
            &g.subject,
            &g.reasons,
            g.at,
            Some(id),
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        rule: RuleId,
        scope: Scope,
        subject: &str,
        at: Ts,
        escalation: u8,
        group_key: &str,
        severity: Severity,
        risk_score: f64,
        reasons: Vec<Reason>,
        action: &ActionCfg,
        content_id: Option<String>,
        experiment: Option<ExperimentArm>,
        out: &mut Vec<Output>,
    ) -> String {
        let m = self.rules.meta(rule);
        let id = trigger_id(rule.as_str(), subject, at, escalation as u32, group_key);
        out.push(Output::Trigger(Trigger {
            trigger_id: id.clone(),
            rule: rule.as_str().to_string(),
            scope,
            subject: subject.to_string(),
            severity,
            risk_score,
            detected_at: format_rfc3339(at),
            deliver_by: format_rfc3339(at.saturating_add(self.rules.deliver_within)),
            reasons,
            action: Action {
                kind: action.kind.as_str().to_string(),
                content_id,
                max_minutes: action.max_minutes,
                audience: action.audience.as_str().to_string(),
            },
            escalation: escalation as u32,
            experiment,
            rule_version: m.version.clone(),
        }));
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        decision: Decision,
        rule: RuleId,
        subject: &str,
        reasons: &[Reason],
        at: Ts,
        trigger_id: Option<String>,
        out: &mut Vec<Output>,
    ) {
        if self.opts.audit {
            out.push(Output::Audit(AuditRecord {
                decision,
                rule: rule.as_str().to_string(),
                rule_version: self.rules.meta(rule).version.clone(),
                subject: subject.to_string(),
                reasons: reasons.to_vec(),
                detected_at: format_rfc3339(at),
                trigger_id,
            }));
        }
    }
}

/// Events per prefetch pass of [`Engine::apply_batch`]: enough to overlap many misses, few
/// enough that what they bring in stays in the L1/L2 cache until it is used.
pub const PREFETCH_BATCH: usize = 32;

/// Asks the CPU to bring the cache lines of `len` bytes at `p` closer (a hint: no fault, no
/// effect on results).
#[inline(always)]
pub(crate) fn prefetch_lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < len {
            // SAFETY: prefetch never faults and has no architectural effect, whatever the
            // address.
            unsafe { _mm_prefetch(p.wrapping_add(off) as *const i8, _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
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
    /// The population's figures and feed gaps, and this engine's share (CONTRACT §8).
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

    /// Restored states still held as bytes (not needed since the restore).
    pub fn packed(&self) -> usize {
        self.slots.iter().filter(|s| s.packed.is_some()).count()
    }

    /// Restored states that could not be decoded when their employee was next needed: each
    /// went on from its flags alone (see `changelog`).
    pub fn corrupt_states(&self) -> u64 {
        self.corrupt_states
    }

    /// Decodes a slot's state restored packed (a no-op otherwise) and derives its deadlines.
    /// Bytes that do not decode leave the flags and the last day seen (read with the record):
    /// the history is lost, the employee's exit or consent is not.
    fn unpack(&mut self, slot: u32) {
        let Some(sl) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(bytes) = sl.packed.take() else {
            return;
        };
        match EmployeeState::from_bytes(&bytes) {
            Some(st) => sl.state = st,
            None => {
                self.corrupt_states += 1;
                sl.state = EmployeeState {
                    flags: sl.state.flags,
                    seen_day: sl.state.seen_day,
                    ..Default::default()
                };
                if !sl.dirty {
                    sl.dirty = true;
                    self.dirty.push(slot);
                }
            }
        }
        sl.dues = Dues::of(&self.ctx.rules, &sl.state);
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

    /// Applies validated events in order, as [`Engine::apply`] does one by one, returning each
    /// event's outcome in `outcomes`. Before applying, it asks the CPU to fetch the state the
    /// events will touch, all at once: with many employees the state lives in main memory, and
    /// overlapping those misses instead of taking them one after another is most of the cost
    /// of an event (see `benches/engine.rs`). The prefetch is only a hint; the result is the
    /// same as `apply` on each event.
    pub fn apply_batch(
        &mut self,
        events: &[Event<'_>],
        out: &mut Vec<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        // A pipeline over chunks: while chunk k is applied, chunk k+1's records and chunk
        // k+2's index entries are already on their way, so each stage finds what the one
        // before it asked for in the cache instead of waiting for it. (What the stages find is
        // only ever a hint: applying uses the keys alone.)
        let n = events.len();
        let chunks = n.div_ceil(PREFETCH_BATCH);
        let chunk = |c: usize| &events[c * PREFETCH_BATCH..((c + 1) * PREFETCH_BATCH).min(n)];
        let mut keys: Vec<[Keys; PREFETCH_BATCH]> = Vec::with_capacity(chunks);
        let mut found: Vec<[(u32, u32); PREFETCH_BATCH]> = Vec::with_capacity(chunks);
        for k in 0..chunks + 2 {
            if k < chunks {
                keys.push(self.prefetch_entries(chunk(k).iter()));
            }
            if let Some(c) = k.checked_sub(1).filter(|&c| c < chunks) {
                found.push(self.prefetch_records(&keys[c][..chunk(c).len()]));
            }
            if let Some(c) = k.checked_sub(2).filter(|&c| c < chunks) {
                self.prefetch_state(chunk(c).iter(), &found[c]);
                for (ev, key) in chunk(c).iter().zip(keys[c]) {
                    let o = self.apply_keyed(ev, key, out);
                    outcomes.push(o);
                }
            }
        }
    }

    /// Hints the CPU to load what applying the (up to [`PREFETCH_BATCH`]) `events` will read:
    /// the index entries, then the slots, then the state behind the slots' pointers. Each pass
    /// has independent iterations, so the loads overlap. Call it just before applying them.
    ///
    /// Returns the events' keys, in order, for [`Engine::apply_keyed`] (which then does not hash
    /// the ids again).
    pub fn prefetch<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>> + Clone,
    ) -> [Keys; PREFETCH_BATCH] {
        let events = events.take(PREFETCH_BATCH);
        let keys = self.prefetch_entries(events.clone());
        let found = self.prefetch_records(&keys[..events.clone().count()]);
        self.prefetch_state(events, &found);
        keys
    }

    /// An event's keys: its employee's, and its team's when a team rule will read it.
    pub fn keys(&self, ev: &Event<'_>) -> Keys {
        Keys {
            employee: self.ctx.employee_key(&ev.employee_id),
            team: self.ctx.rules.groups.team_key(ev),
        }
    }

    /// Prefetch, stage one: hashes the events' ids and hints the index entries they will be
    /// found in. Each stage's iterations are independent, so their cache misses overlap.
    fn prefetch_entries<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>>,
    ) -> [Keys; PREFETCH_BATCH] {
        let mut keys = [Keys::default(); PREFETCH_BATCH];
        for (k, ev) in keys.iter_mut().zip(events) {
            *k = self.keys(ev);
            self.index.prefetch(k.employee);
            if let Some(t) = k.team {
                self.groups.prefetch_team_entry(t);
            }
        }
        keys
    }

    /// Stage two: looks the keys up and hints the slots and team records; returns (slot, team)
    /// per event, `u32::MAX` where there is none.
    fn prefetch_records(&self, keys: &[Keys]) -> [(u32, u32); PREFETCH_BATCH] {
        let mut found = [(u32::MAX, u32::MAX); PREFETCH_BATCH];
        for (f, k) in found.iter_mut().zip(keys) {
            if let Some(i) = self.index.get(k.employee) {
                f.0 = i;
                if let Some(sl) = self.slots.get(i as usize) {
                    prefetch_lines(sl as *const Slot as *const u8, std::mem::size_of::<Slot>());
                }
            }
        }
        for (f, k) in found.iter_mut().zip(keys) {
            if let Some(t) = k.team {
                f.1 = self.groups.prefetch_team(t).unwrap_or(u32::MAX);
            }
        }
        found
    }

    /// Stage three: hints the rule state behind the slots, the teams' member lists, and the
    /// day rings the events will add to.
    fn prefetch_state<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>> + Clone,
        found: &[(u32, u32); PREFETCH_BATCH],
    ) {
        // Three passes, not one: the rings sit behind the rule state the first pass hints,
        // so reading it at once would wait for each event's load in turn.
        for (&(s, _), _) in found.iter().zip(events.clone()) {
            if let Some(sl) = self.slots.get(s as usize) {
                sl.state.prefetch();
            }
        }
        for (&(_, t), _) in found.iter().zip(events.clone()) {
            self.groups.prefetch_members(t);
        }
        for (&(s, _), ev) in found.iter().zip(events) {
            if let Some(sl) = self.slots.get(s as usize) {
                sl.state.prefetch_for(&ev.kind);
            }
        }
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
                    // The task's share of the population's figures (an employee who withdrew
                    // consent is not counted).
                    let acc = &mut self.pop.acc;
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
                    match ev.kind {
                        Kind::CollabActivity { messages, meetings } => {
                            rollup(Source::Collab, messages.saturating_add(meetings), 0)
                        }
                        Kind::WorkTasks { completed, planned } => {
                            rollup(Source::Tasks, completed, planned)
                        }
                        Kind::CheckinCompleted { .. } => acc.checkin_completed(day as i64),
                        _ => {}
                    }
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
                let mut moved = false;
                match &ev.kind {
                    Kind::TimeOffRecorded {
                        time_off_id,
                        starts_on,
                        ends_on,
                    } => {
                        let l = Leave {
                            id: self.ctx.leave_key(time_off_id),
                            from: *starts_on,
                            to: *ends_on,
                        };
                        record_leave(&mut st.time_off, l, day as i64);
                        // Every deadline may move.
                        *dues = Dues::of(rules, st);
                        moved = true;
                    }
                    Kind::TimeOffCancelled { time_off_id } => {
                        if cancel_leave(&mut st.time_off, self.ctx.leave_key(time_off_id)) {
                            *dues = Dues::of(rules, st);
                            moved = true;
                        }
                    }
                    _ => {}
                }
                let pres = Presence::new(&rules.calendar, &st.time_off, &self.pop.gaps)
                    .with_figures(Some(&self.pop.figures));
                macro_rules! on_event {
                    ($($id:ident => $module:ident, $params:ident;)*) => {$(
                        if rules.enabled(RuleId::$id) && rules_mod::$module::handles(&ev.kind) {
                            rules_mod::$module::on_event(&rules.$params, &mut st.$params, ev, &pres, &mut fires);
                            dues.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, &pres));
                            moved = true;
                        }
                    )*};
                }
                for_each_employee_rule!(on_event);
                if let Some(lp) = &rules.ladder {
                    if ladder::handles(&ev.kind) {
                        ladder::on_event(lp, &mut st.ladder, ev, &pres, &mut fires);
                        dues.set(LADDER, ladder::next_due(lp, &st.ladder, &pres));
                        moved = true;
                    }
                }
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

    /// Moves the watermark forward (never back) and fires every timer now due.
    pub fn advance(&mut self, watermark: Ts, out: &mut Vec<Output>) {
        // Never past the end of a day the population has not closed (in `run`, the task
        // waits for it before it applies the event that would: see [`Engine::blocked_at`]).
        let watermark = watermark.min(self.pop.limit());
        if watermark > self.watermark {
            self.pop.close_share(crate::time::day_of(watermark) - 1);
            self.watermark = watermark;
            self.fire_due(out);
            self.evict_idle();
            if self.publish.is_none() {
                // The group stage's one source of time is this engine.
                self.source_watermark(0, watermark, out);
            }
        }
    }

    /// Publish mode for the population (`run` with the population topic): this engine's
    /// shares go out ([`Engine::take_shares`]) and the population's figures come back
    /// ([`Engine::population_closed`]).
    pub fn publish_population(&mut self) {
        self.pop.local = false;
    }

    /// In `run` with the population topic: the day the population must have closed before a
    /// watermark `w` may be reached (`None`: it may now).
    pub fn blocked_at(&self, w: Ts) -> Option<i64> {
        (!self.pop.local && w > self.watermark && w > self.pop.limit())
            .then(|| crate::time::day_of(w) - 1)
    }

    /// [`Engine::blocked_at`] for an event at `t` (its watermark, if it moves it).
    pub fn blocked_by(&self, t: Ts) -> Option<i64> {
        if self.max_event_time.is_some_and(|m| t <= m) {
            return None;
        }
        self.blocked_at(t.saturating_sub(self.ctx.rules.allowed_lateness))
    }

    /// Closes this engine's population share through `day` (its watermark is about to pass
    /// the day's end); the shares to publish are then in [`Engine::take_shares`].
    pub fn close_share(&mut self, day: i64) {
        self.pop.close_share(day);
    }

    /// This engine's closed shares not handed out yet, and the last day closed.
    pub fn take_shares(
        &mut self,
    ) -> (
        Vec<(i32, crate::rules::population::DayFigures)>,
        Option<i64>,
    ) {
        (
            std::mem::take(&mut self.pop.outbox),
            self.pop.acc.closed_through.map(i64::from),
        )
    }

    /// The population closed every day through `through`, with these figures (each day's sum
    /// over every task): the engine's time may move on to the end of the next day.
    pub fn population_closed(
        &mut self,
        through: i64,
        days: impl IntoIterator<Item = (i32, crate::rules::population::DayFigures)>,
        out: &mut Vec<Output>,
    ) {
        if self.pop.closed.is_some_and(|c| c >= through) {
            return;
        }
        let after = self.pop.closed;
        for (d, f) in days {
            if after.is_none_or(|c| d as i64 > c) && d as i64 <= through {
                self.pop.figures.set(d, f);
            }
        }
        self.pop.closed_through(through);
        // Resume what the barrier held: the time of the events applied, and the stage's.
        if let Some(t) = self.max_event_time {
            self.advance(t.saturating_sub(self.ctx.rules.allowed_lateness), out);
        }
        self.release_contributions(out);
    }

    /// The last day the population's figures are final for.
    pub fn population_closed_through(&self) -> Option<i64> {
        self.pop.closed
    }

    /// Feed gaps found since the last call: (UTC day, source).
    pub fn take_gaps(&mut self) -> Vec<(i64, Source)> {
        std::mem::take(&mut self.pop.found)
    }

    /// `state.idle_ttl`: once per UTC day of the watermark, employees whose last event is older
    /// than the TTL are evicted (a tombstone at the next checkpoint). An exited employee, or one
    /// who withdrew consent, keeps the flag (only the history goes): a late event must still not
    /// fire about them.
    fn evict_idle(&mut self) {
        let ttl = self.ctx.rules.idle_ttl_days;
        let today = crate::time::day_of(self.watermark);
        if ttl <= 0 || today <= self.idle_checked {
            return;
        }
        self.idle_checked = today;
        for slot in 0..self.slots.len() as u32 {
            let sl = &mut self.slots[slot as usize];
            if sl.subject.is_empty() || today - sl.state.seen_day as i64 <= ttl {
                continue;
            }
            if sl.state.flags == 0 {
                let key = sl.key;
                self.release(slot);
                self.dirty_evicted.push(key);
            } else if sl.packed.take().is_some() || sl.state.has_history() {
                let flags = sl.state.flags;
                sl.state = EmployeeState {
                    flags,
                    seen_day: sl.state.seen_day,
                    ..Default::default()
                };
                sl.dues = Dues::default();
                if !sl.dirty {
                    sl.dirty = true;
                    self.dirty.push(slot);
                }
                self.reschedule(slot, None);
            }
        }
    }

    fn fire_due(&mut self, out: &mut Vec<Output>) {
        loop {
            // Skip entries whose deadline has moved since they were pushed.
            while let Some(&Reverse((due, slot))) = self.timers.peek() {
                if self
                    .slots
                    .get(slot as usize)
                    .is_some_and(|s| s.due == Some(due))
                {
                    break;
                }
                self.timers.pop();
            }
            // (Group deadlines run on the group stage's clock: see `stage`.)
            let Some((_, slot)) = self
                .timers
                .peek()
                .map(|r| r.0)
                .filter(|&(due, _)| due <= self.watermark)
            else {
                break;
            };
            self.timers.pop();
            self.slots[slot as usize].due = None;
            self.pending -= 1;
            self.fire_slot(slot, out);
        }
    }

    fn fire_slot(&mut self, slot: u32, out: &mut Vec<Output>) {
        self.unpack(slot);
        let now = self.watermark;
        let rules: &RuleSet = &self.ctx.rules;
        let sl = &mut self.slots[slot as usize];
        if !sl.dirty {
            sl.dirty = true;
            self.dirty.push(slot);
        }
        let st = &mut sl.state;
        let mut fires = std::mem::take(&mut self.fires);
        let dues = &mut sl.dues;
        let pres = Presence::new(&rules.calendar, &st.time_off, &self.pop.gaps)
            .with_figures(Some(&self.pop.figures));
        // Only the rules whose deadline has come: the others' state is not touched.
        macro_rules! on_timer {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) && dues.due(RuleId::$id as usize, now) {
                    rules_mod::$module::on_timer(&rules.$params, &mut st.$params, now, &pres, &mut fires);
                    dues.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, &pres));
                }
            )*};
        }
        for_each_employee_rule!(on_timer);
        if let Some(lp) = &rules.ladder {
            if dues.due(LADDER, now) {
                ladder::on_timer(lp, &mut st.ladder, now, &pres, &mut fires);
                dues.set(LADDER, ladder::next_due(lp, &st.ladder, &pres));
            }
        }
        // Rules hand their fires over in deadline order within each rule; across rules, order
        // by time so cooldown and the risk score see them as they happened.
        fires.sort_by_key(|f| (f.at, f.rule, f.escalation));
        let mut published = false;
        for f in fires.drain(..) {
            published |= self.ctx.finalize(&sl.subject, &sl.points, st, f, out);
        }
        self.fires = fires;
        if published {
            sl.dues = Dues::of(rules, st);
        }
        // Every deadline at or before `now` was handled; never schedule one there again.
        self.reschedule(slot, Some(now.saturating_add(1)));
        self.debug_check_dues(slot);
    }

    /// Tests and debug builds check that each rule's cached deadline is the one its state
    /// gives: a rule whose `handles` misses a kind it reads would show here.
    fn debug_check_dues(&self, slot: u32) {
        if cfg!(debug_assertions) {
            if let Some(sl) = self.slots.get(slot as usize) {
                if !sl.subject.is_empty() && sl.packed.is_none() {
                    assert_eq!(
                        sl.dues,
                        Dues::of(&self.ctx.rules, &sl.state),
                        "cached deadlines differ from the state's"
                    );
                }
            }
        }
    }

    fn reschedule(&mut self, slot: u32, not_before: Option<Ts>) {
        let mut due = self.slots[slot as usize].dues.min();
        if let (Some(d), Some(nb)) = (due, not_before) {
            due = Some(d.max(nb));
        }
        self.schedule(slot, due);
    }

    /// Sets the slot's timer to `due`.
    fn schedule(&mut self, slot: u32, due: Option<Ts>) {
        let sl = &mut self.slots[slot as usize];
        if due != sl.due {
            match (sl.due, due) {
                (None, Some(_)) => self.pending += 1,
                (Some(_), None) => self.pending -= 1,
                _ => {}
            }
            sl.due = due;
            if let Some(d) = due {
                self.timers.push(Reverse((d, slot)));
                if self.timers.len() > 2 * self.pending + 1024 {
                    self.compact_timers();
                }
            }
        }
    }

    /// Drops the heap's stale entries: rebuilt from the slots' deadlines, in the heap's own
    /// allocation (a fresh one each time would be a large allocation, and fresh pages, per
    /// compaction).
    fn compact_timers(&mut self) {
        let mut live = std::mem::take(&mut self.timers).into_vec();
        live.clear();
        live.extend(
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(n, s)| s.due.map(|d| Reverse((d, n as u32)))),
        );
        self.timers = BinaryHeap::from(live);
    }

    fn alloc(&mut self, key: u128, employee_id: &str) -> u32 {
        let subject = self.ctx.subject(employee_id).into_boxed_str();
        let points = self.ctx.points(employee_id);
        self.alloc_slot(key, subject, points, EmployeeState::default())
    }

    fn alloc_slot(
        &mut self,
        key: u128,
        subject: Box<str>,
        points: Box<[f64]>,
        state: EmployeeState,
    ) -> u32 {
        let slot = Slot {
            key,
            subject,
            points,
            dirty: false,
            due: None,
            dues: Dues::default(),
            state,
            packed: None,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = slot;
                n
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, n);
        n
    }

    /// An erasure, for every group: the group stage forgets the member.
    fn contribute_erasure(
        &mut self,
        emp: u64,
        ev: &Event<'_>,
        pos: Option<(usize, i64)>,
        out: &mut Vec<Output>,
    ) {
        let mut c = std::mem::take(&mut self.contributions);
        c.push(crate::rules::group::Contribution {
            group: crate::rules::group::GroupRef::All,
            emp,
            at: ev.occurred_at,
            eid: fingerprint(&ev.event_id),
            what: crate::rules::group::What::Erased,
        });
        self.contribute(&mut c, pos, out);
        self.contributions = c;
    }

    /// Frees the slot: the employee's state, timers and index entry go. Returns its key.
    fn release(&mut self, slot: u32) -> u128 {
        let sl = &mut self.slots[slot as usize];
        if sl.due.take().is_some() {
            self.pending -= 1;
        }
        sl.subject = Box::default();
        sl.points = Box::default();
        sl.state = EmployeeState::default();
        sl.packed = None;
        sl.dues = Dues::default();
        // A dirty slot stays listed: the checkpoint skips free slots (the erasure mark is
        // written for its key instead).
        let key = sl.key;
        self.index.remove(key);
        self.free.push(slot);
        key
    }
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
mod test_support;
#[cfg(test)]
mod tests;
