//! The pure engine: no rdkafka, no tokio, no clock, no I/O. `apply(event)` and
//! `advance(watermark)` return triggers (and audit decisions) in a caller-owned buffer, so the
//! same input always gives the same output — in `replay`, in tests, in benches and in `run`.
//!
//! One engine holds the state of the employees of one input partition, with that partition's
//! watermark (CONTRACT §3): the largest `occurred_at` seen minus `time.allowed_lateness`. Timers
//! (absence rules) fire when the watermark passes their due time. The I/O shell may also advance
//! the watermark itself (idle partitions, end of a replay).

pub mod state;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::event::{Event, Kind};
use crate::rules::{checkin, collaboration, fingerprint, learning, Fire, RuleId, RuleSet};
use crate::time::{format_rfc3339, Ts};
use crate::trigger::{Action, Reason, Scope, Trigger};
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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::AfterExit => "after_exit",
            Outcome::Erased => "erased",
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
    id: Arc<str>,
    due: Option<Ts>,
    state: EmployeeState,
}

/// The parts of the engine that turning a [`Fire`] into outputs needs.
#[derive(Debug)]
struct Ctx {
    rules: Arc<RuleSet>,
    opts: EngineOptions,
}

impl Ctx {
    fn subject(&self, employee_id: &str) -> String {
        match &self.opts.pseudonymizer {
            Some(p) => p.pseudonym(employee_id),
            None => employee_id.to_string(),
        }
    }

    /// Cooldown and consent, the same for every employee rule; then the trigger.
    fn finalize(&self, employee_id: &str, st: &mut EmployeeState, f: Fire, out: &mut Vec<Output>) {
        let m = self.rules.meta(f.rule);
        let decision = if st.has(CONSENT_WITHDRAWN) {
            Decision::SuppressedConsent
        } else if st
            .last_fired(f.rule)
            .is_some_and(|last| (f.at - last).abs() < m.cooldown)
        {
            Decision::SuppressedCooldown
        } else {
            Decision::Fired
        };
        let subject = self.subject(employee_id);
        let mut trigger_id_out = None;
        if decision == Decision::Fired {
            st.set_fired(f.rule, f.at);
            let id = trigger_id(m.id.as_str(), &subject, f.at, 0, "");
            trigger_id_out = Some(id.clone());
            let content_id = m.action.content_id.as_ref().map(|c| match &f.module_id {
                Some(mid) => c.replace("{module_id}", mid),
                None => c.clone(),
            });
            out.push(Output::Trigger(Trigger {
                trigger_id: id,
                rule: m.id.as_str().to_string(),
                scope: Scope::Employee,
                subject: subject.clone(),
                severity: m.severity,
                risk_score: m.weight as f64,
                detected_at: format_rfc3339(f.at),
                deliver_by: format_rfc3339(f.at.saturating_add(self.rules.deliver_within)),
                reasons: f.reasons.clone(),
                action: Action {
                    kind: m.action.kind.as_str().to_string(),
                    content_id,
                    max_minutes: m.action.max_minutes,
                    audience: m.action.audience.as_str().to_string(),
                },
                escalation: 0,
                experiment: None,
                rule_version: m.version.clone(),
            }));
        }
        if self.opts.audit {
            out.push(Output::Audit(AuditRecord {
                decision,
                rule: m.id.as_str().to_string(),
                rule_version: m.version.clone(),
                subject,
                reasons: f.reasons,
                detected_at: format_rfc3339(f.at),
                trigger_id: trigger_id_out,
            }));
        }
    }
}

/// Per-employee state for the employees of one partition, that partition's watermark, and the
/// timers derived from the state.
#[derive(Debug)]
pub struct Engine {
    ctx: Ctx,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<Arc<str>, u32, ahash::RandomState>,
    /// (due, slot): each employee with a pending deadline appears once, at its earliest.
    timers: BTreeSet<(Ts, u32)>,
    /// Fingerprints of erased employee ids: later events about them are dropped.
    erased: HashSet<u64, ahash::RandomState>,
    max_event_time: Option<Ts>,
    watermark: Ts,
    fires: Vec<Fire>,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>, opts: EngineOptions) -> Engine {
        Engine {
            ctx: Ctx { rules, opts },
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            timers: BTreeSet::new(),
            erased: HashSet::default(),
            max_event_time: None,
            watermark: Ts::MIN,
            fires: Vec::new(),
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
        self.timers.len()
    }

    pub fn state_of(&self, employee_id: &str) -> Option<&EmployeeState> {
        self.index
            .get(employee_id)
            .map(|&s| &self.slots[s as usize].state)
    }

    /// Serialized bytes of every employee's state, added up (the `state bytes` figure).
    pub fn state_bytes(&self) -> usize {
        self.index
            .values()
            .map(|&s| self.slots[s as usize].state.to_bytes().len())
            .sum()
    }

    /// Applies one validated event; outputs go to `out`. Timers due before the event's time are
    /// fired first, so an absence that ended after its deadline still counts.
    pub fn apply(&mut self, ev: &Event<'_>, out: &mut Vec<Output>) -> Outcome {
        let t = ev.occurred_at;
        if self.max_event_time.is_none_or(|m| t > m) {
            self.max_event_time = Some(t);
            self.advance(t.saturating_sub(self.ctx.rules.allowed_lateness), out);
        }
        let employee_fp = fingerprint(&ev.employee_id);
        if !self.erased.is_empty() && self.erased.contains(&employee_fp) {
            return Outcome::Erased;
        }
        let slot = match self.index.get(ev.employee_id.as_ref()) {
            Some(&s) => s,
            None => {
                if matches!(ev.kind, Kind::Erased) {
                    self.erased.insert(employee_fp);
                    return Outcome::Applied;
                }
                self.alloc(&ev.employee_id)
            }
        };
        let rules = Arc::clone(&self.ctx.rules);
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
                self.erase(slot);
                self.erased.insert(employee_fp);
                return Outcome::Applied;
            }
            Kind::Exited { .. } => {
                st.flags |= EXITED;
                st.clear_rules();
                st.dedup = Default::default();
            }
            _ => {
                let mut fires = std::mem::take(&mut self.fires);
                if rules.enabled(RuleId::CollaborationDecline) {
                    collaboration::on_event(
                        &rules.collaboration,
                        &mut st.collaboration,
                        ev,
                        &mut fires,
                    );
                }
                if rules.enabled(RuleId::CheckinLapse) {
                    checkin::on_event(&rules.checkin, &mut st.checkin, ev, &mut fires);
                }
                if rules.enabled(RuleId::LearningAbandonment) {
                    learning::on_event(&rules.learning, &mut st.learning, ev, &mut fires);
                }
                for f in fires.drain(..) {
                    self.ctx.finalize(&sl.id, st, f, out);
                }
                self.fires = fires;
            }
        }
        self.reschedule(slot, None);
        self.fire_due(out);
        Outcome::Applied
    }

    /// Moves the watermark forward (never back) and fires every timer now due.
    pub fn advance(&mut self, watermark: Ts, out: &mut Vec<Output>) {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire_due(out);
        }
    }

    fn fire_due(&mut self, out: &mut Vec<Output>) {
        while let Some(&(due, slot)) = self.timers.first() {
            if due > self.watermark {
                break;
            }
            self.timers.pop_first();
            self.slots[slot as usize].due = None;
            self.fire_slot(slot, out);
        }
    }

    fn fire_slot(&mut self, slot: u32, out: &mut Vec<Output>) {
        let now = self.watermark;
        let rules = Arc::clone(&self.ctx.rules);
        let sl = &mut self.slots[slot as usize];
        let st = &mut sl.state;
        let mut fires = std::mem::take(&mut self.fires);
        if rules.enabled(RuleId::CollaborationDecline) {
            collaboration::on_timer(&rules.collaboration, &mut st.collaboration, now, &mut fires);
        }
        if rules.enabled(RuleId::CheckinLapse) {
            checkin::on_timer(&rules.checkin, &mut st.checkin, now, &mut fires);
        }
        if rules.enabled(RuleId::LearningAbandonment) {
            learning::on_timer(&rules.learning, &mut st.learning, now, &mut fires);
        }
        // Rules hand their fires over in deadline order within each rule; across rules, order
        // by time so cooldown sees them as they happened.
        fires.sort_by_key(|f| (f.at, f.rule));
        for f in fires.drain(..) {
            self.ctx.finalize(&sl.id, st, f, out);
        }
        self.fires = fires;
        // Every deadline at or before `now` was handled; never schedule one there again.
        self.reschedule(slot, Some(now.saturating_add(1)));
    }

    fn next_due(rules: &RuleSet, st: &EmployeeState) -> Option<Ts> {
        let mut due: Option<Ts> = None;
        let mut take = |d: Option<Ts>| {
            if let Some(d) = d {
                due = Some(due.map_or(d, |x| x.min(d)));
            }
        };
        if rules.enabled(RuleId::CollaborationDecline) {
            take(collaboration::next_due(
                &rules.collaboration,
                &st.collaboration,
            ));
        }
        if rules.enabled(RuleId::CheckinLapse) {
            take(checkin::next_due(&rules.checkin, &st.checkin));
        }
        if rules.enabled(RuleId::LearningAbandonment) {
            take(learning::next_due(&rules.learning, &st.learning));
        }
        due
    }

    fn reschedule(&mut self, slot: u32, not_before: Option<Ts>) {
        let sl = &mut self.slots[slot as usize];
        let mut due = Self::next_due(&self.ctx.rules, &sl.state);
        if let (Some(d), Some(nb)) = (due, not_before) {
            due = Some(d.max(nb));
        }
        if due != sl.due {
            if let Some(old) = sl.due {
                self.timers.remove(&(old, slot));
            }
            if let Some(d) = due {
                self.timers.insert((d, slot));
            }
            sl.due = due;
        }
    }

    fn alloc(&mut self, employee_id: &str) -> u32 {
        let id: Arc<str> = Arc::from(employee_id);
        let slot = Slot {
            id: Arc::clone(&id),
            due: None,
            state: EmployeeState::default(),
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
        self.index.insert(id, n);
        n
    }

    /// Deletes every piece of state about the employee in this slot.
    fn erase(&mut self, slot: u32) {
        let sl = &mut self.slots[slot as usize];
        if let Some(d) = sl.due.take() {
            self.timers.remove(&(d, slot));
        }
        let id = std::mem::replace(&mut sl.id, Arc::from(""));
        sl.state = EmployeeState::default();
        self.index.remove(&id);
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests;
