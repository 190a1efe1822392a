//! The rule catalog (CONTRACT §4). Each rule is one small module with its compiled `Params`, its
//! per-employee `State`, and three pure functions:
//!
//! * `on_event(params, state, event, out)` — update the state; push a [`Fire`] when the pattern
//!   holds at this event,
//! * `on_timer(params, state, watermark, out)` — handle every deadline at or before the
//!   watermark (absence patterns); a fire carries the deadline as its time, not the watermark,
//! * `next_due(params, state)` — the earliest deadline still pending, if any.
//!
//! Rules never decide cooldown, consent, exit, severity or the action: the engine does, the same
//! way for every rule.

pub mod checkin;
pub mod collaboration;
pub mod learning;

use serde::Serialize;

use crate::config::{ActionCfg, Settings};
use crate::time::Ts;
use crate::trigger::{Reason, Severity};

/// Rule ids, in catalog order. The discriminant indexes per-rule tables.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum RuleId {
    CollaborationDecline = 0,
    CheckinLapse = 1,
    LearningAbandonment = 2,
}

impl RuleId {
    pub const ALL: [RuleId; 3] = [
        RuleId::CollaborationDecline,
        RuleId::CheckinLapse,
        RuleId::LearningAbandonment,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::CollaborationDecline => "collaboration_decline",
            RuleId::CheckinLapse => "checkin_lapse",
            RuleId::LearningAbandonment => "learning_abandonment",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A rule's verdict: its pattern holds at `at` (event time), for these reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub rule: RuleId,
    pub at: Ts,
    pub reasons: Vec<Reason>,
    /// Fills `{module_id}` in the action's `content_id`.
    pub module_id: Option<String>,
}

/// What the engine needs of every rule, whatever its family.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    pub id: RuleId,
    pub enabled: bool,
    pub weight: u32,
    pub severity: Severity,
    pub cooldown: Ts,
    pub action: ActionCfg,
    pub version: String,
    /// The effective settings, as `validate-config` prints them.
    pub effective: serde_json::Value,
}

/// Every rule, compiled from the settings once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub meta: Vec<RuleMeta>,
    pub collaboration: collaboration::Params,
    pub checkin: checkin::Params,
    pub learning: learning::Params,
    pub deliver_within: Ts,
    pub allowed_lateness: Ts,
    pub dedup_horizon: Ts,
}

fn severity_for(weight: u32, s: &Settings) -> Severity {
    if weight >= s.rules.severity_high_from {
        Severity::High
    } else if weight >= s.rules.severity_medium_from {
        Severity::Medium
    } else {
        Severity::Low
    }
}

impl RuleSet {
    pub fn compile(s: &Settings) -> RuleSet {
        let r = &s.rules;
        let default_cd = r.cooldown;
        let mut meta = Vec::with_capacity(RuleId::COUNT);
        let mut push = |id: RuleId,
                        enabled: bool,
                        weight: u32,
                        cd: Option<crate::config::Dur>,
                        action: &ActionCfg,
                        cfg: serde_json::Value| {
            let cooldown = cd.unwrap_or(default_cd);
            // The version covers everything that shapes the rule's output.
            let version = crate::config::version_of(&(
                id.as_str(),
                &cfg,
                cooldown.to_string(),
                s.actions.deliver_within.to_string(),
                r.severity_high_from,
                r.severity_medium_from,
            ));
            let mut effective = cfg;
            if let Some(obj) = effective.as_object_mut() {
                obj.insert(
                    "cooldown".into(),
                    serde_json::Value::from(cooldown.to_string()),
                );
            }
            meta.push(RuleMeta {
                id,
                enabled,
                weight,
                severity: severity_for(weight, s),
                cooldown: cooldown.ms(),
                action: action.clone(),
                version,
                effective,
            });
        };
        let c = &r.collaboration_decline;
        push(
            RuleId::CollaborationDecline,
            c.enabled,
            c.weight,
            c.cooldown,
            &c.action,
            serde_json::to_value(c).unwrap_or_default(),
        );
        let c = &r.checkin_lapse;
        push(
            RuleId::CheckinLapse,
            c.enabled,
            c.weight,
            c.cooldown,
            &c.action,
            serde_json::to_value(c).unwrap_or_default(),
        );
        let c = &r.learning_abandonment;
        push(
            RuleId::LearningAbandonment,
            c.enabled,
            c.weight,
            c.cooldown,
            &c.action,
            serde_json::to_value(c).unwrap_or_default(),
        );
        debug_assert!(meta.iter().enumerate().all(|(i, m)| m.id.index() == i));
        RuleSet {
            meta,
            collaboration: collaboration::Params::from(&r.collaboration_decline),
            checkin: checkin::Params::from(&r.checkin_lapse),
            learning: learning::Params::from(&r.learning_abandonment),
            deliver_within: s.actions.deliver_within.ms(),
            allowed_lateness: s.time.allowed_lateness.ms(),
            dedup_horizon: s.time.dedup_horizon.ms(),
        }
    }

    pub fn meta(&self, id: RuleId) -> &RuleMeta {
        &self.meta[id.index()]
    }

    pub fn enabled(&self, id: RuleId) -> bool {
        self.meta[id.index()].enabled
    }

    /// One block per rule: id, state, weight, severity, version, then every effective number.
    pub fn describe(&self) -> Vec<String> {
        self.meta
            .iter()
            .map(|m| {
                let mut s = format!(
                    "{}  [{}]  weight={} severity={} rule_version={}\n",
                    m.id.as_str(),
                    if m.enabled { "enabled" } else { "disabled" },
                    m.weight,
                    m.severity.as_str(),
                    m.version
                );
                if let Some(obj) = m.effective.as_object() {
                    for (k, v) in obj {
                        if k == "enabled" || k == "weight" {
                            continue;
                        }
                        s.push_str(&format!("    {k} = {v}\n"));
                    }
                }
                s
            })
            .collect()
    }
}

/// A stable 64-bit fingerprint of an id (dedup, open items): the same on every instance.
pub fn fingerprint(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}
