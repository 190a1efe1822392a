//! The rule catalog (docs/contract.md §4). Each employee rule is one small module with its compiled
//! `Params`, its per-employee `State`, and three pure functions:
//!
//! * `on_event(params, state, event, out)` — update the state; push a [`Fire`] when the pattern
//!   holds at this event,
//! * `on_timer(params, state, watermark, out)` — handle every deadline at or before the
//!   watermark (absence patterns); a fire carries the deadline as its time, not the watermark,
//! * `next_due(params, state)` — the earliest deadline still pending, if any.
//!
//! Rules never decide cooldown, consent, exit, severity or the action: the engine does, the same
//! way for every rule. `attrition_risk` is computed by the engine from the other rules' fires;
//! the team and cohort rules live in [`group`]; the follow-up ladder in [`ladder`].

pub mod checkin;
pub mod collaboration;
pub mod confusion;
pub mod feedback;
pub mod goals;
pub mod group;
pub mod ladder;
pub mod learning;
pub mod mobility;
pub mod onboarding;
pub mod performance;
pub mod population;
pub mod presence;
pub mod pulse;
pub mod recognition;
pub mod sentiment;
pub mod window;

use crate::config::{ActionCfg, ActionKind, Dur, Settings};
use crate::time::Ts;
use crate::trigger::{Reason, Severity};

pub use crate::catalog::RuleId;

/// A rule's verdict: its pattern holds at `at` (event time), for these reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    pub rule: RuleId,
    pub at: Ts,
    pub reasons: Vec<Reason>,
    /// Fills `{module_id}` in the action's `content_id`.
    pub module_id: Option<String>,
    /// Replaces the action's `content_id` altogether.
    pub content_id: Option<String>,
    /// 0 for a detection; 1 or 2 for a follow-up of the ladder.
    pub escalation: u8,
}

impl Fire {
    pub fn new(rule: RuleId, at: Ts, reasons: Vec<Reason>) -> Fire {
        Fire {
            rule,
            at,
            reasons,
            module_id: None,
            content_id: None,
            escalation: 0,
        }
    }
    pub fn module(mut self, m: String) -> Fire {
        self.module_id = Some(m);
        self
    }
    pub fn content(mut self, c: String) -> Fire {
        self.content_id = Some(c);
        self
    }
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

/// `attrition_risk`, compiled.
#[derive(Debug, Clone)]
pub struct Attrition {
    pub window: Ts,
    pub threshold: u32,
    pub high_from: u32,
    /// Per employee rule (by index): the action family its contribution points to.
    pub route: Vec<ActionKind>,
    pub skill_refresher: ActionCfg,
    pub manager_coaching: ActionCfg,
    pub micro_mentoring_invite: ActionCfg,
}

impl Attrition {
    pub fn action(&self, kind: ActionKind) -> &ActionCfg {
        match kind {
            ActionKind::SkillRefresher => &self.skill_refresher,
            ActionKind::ManagerCoaching => &self.manager_coaching,
            _ => &self.micro_mentoring_invite,
        }
    }
}

/// Every rule, compiled from the settings once.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub meta: Vec<RuleMeta>,
    pub collaboration: collaboration::Params,
    pub recognition: recognition::Params,
    pub pulse: pulse::Params,
    pub checkin: checkin::Params,
    pub feedback: feedback::Params,
    pub goals: goals::Params,
    pub learning: learning::Params,
    pub confusion: confusion::Params,
    pub onboarding: onboarding::Params,
    pub mobility: mobility::Params,
    pub performance: performance::Params,
    pub attrition: Attrition,
    pub groups: group::Params,
    pub ladder: Option<ladder::Params>,
    pub office_hours: ActionCfg,
    pub manager_follow_up: ActionCfg,
    pub deliver_within: Ts,
    pub allowed_lateness: Ts,
    pub dedup_horizon: Ts,
    /// `state.idle_ttl` in whole days (0: never evict).
    pub idle_ttl_days: i64,
    /// The experiment covering each rule, by rule index.
    pub experiments: Vec<Option<std::sync::Arc<Experiment>>>,
    /// Every experiment, in the configuration's order (`Experiment::index`).
    pub experiment_list: Vec<std::sync::Arc<Experiment>>,
    /// `calendar.non_working_days`.
    pub calendar: presence::Days,
    /// `population.gap_share`.
    pub gap_share: f64,
}

/// A compiled experiment (docs/contract.md §7).
#[derive(Debug)]
pub struct Experiment {
    /// Its place in [`RuleSet::experiment_list`] (and in an employee's cached points).
    pub index: usize,
    pub id: String,
    pub control_share: f64,
    /// (arm name, cumulative weight, action override)
    pub arms: Vec<(String, u32, Option<ActionCfg>)>,
}

impl Experiment {
    /// The arm of `subject`: a pure function of (experiment id, subject), the same on every
    /// instance and after every restart; `None` is the control (held out).
    pub fn assign(&self, subject: &str) -> Option<(&str, Option<&ActionCfg>)> {
        self.arm_at(self.point(subject))
    }

    /// Where `subject` falls in the unit interval for this experiment (SHA-256 over the
    /// length-prefixed experiment id and subject): the part of [`Experiment::assign`] that
    /// needs the subject, kept per employee so a restored state assigns without the raw id.
    pub fn point(&self, subject: &str) -> f64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [self.id.as_bytes(), subject.as_bytes()] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        let d = h.finalize();
        (u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8])) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The arm at point `x` of the unit interval; `None` is the control.
    pub fn arm_at(&self, x: f64) -> Option<(&str, Option<&ActionCfg>)> {
        if x < self.control_share {
            return None;
        }
        let total = self.arms.last().map_or(1, |a| a.1) as f64;
        let y = (x - self.control_share) / (1.0 - self.control_share) * total;
        let arm = self
            .arms
            .iter()
            .find(|a| y < a.1 as f64)
            .or(self.arms.last())?;
        Some((arm.0.as_str(), arm.2.as_ref()))
    }
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
    /// The `momentd validate-config` listing: every rule with its effective numbers.
    pub fn describe_settings(s: &Settings) -> String {
        let mut out = String::new();
        let rules = RuleSet::compile(s);
        for r in rules.describe() {
            out.push_str(&r);
            out.push('\n');
        }
        for e in &s.experiments {
            let arms: Vec<String> = e
                .arms
                .iter()
                .map(|a| match &a.action {
                    Some(act) => format!(
                        "{} (weight {}, action {})",
                        a.name,
                        a.weight,
                        act.kind.as_str()
                    ),
                    None => format!("{} (weight {})", a.name, a.weight),
                })
                .collect();
            out.push_str(&format!(
                "experiment {}: rules {:?}, control {:.0} %, arms {}\n",
                e.id,
                e.rules,
                e.control_share * 100.0,
                arms.join(", ")
            ));
        }
        out
    }

    pub fn compile(s: &Settings) -> RuleSet {
        let r = &s.rules;
        let mut meta: Vec<RuleMeta> = Vec::with_capacity(RuleId::COUNT);
        let mut push = |id: RuleId,
                        enabled: bool,
                        weight: u32,
                        severity: Severity,
                        cd: Option<Dur>,
                        action: &ActionCfg,
                        cfg: serde_json::Value| {
            let cooldown = cd.unwrap_or(r.cooldown);
            // The version covers everything that shapes the rule's output.
            let version = crate::config::version_of(&(
                id.as_str(),
                &cfg,
                cooldown.to_string(),
                s.actions.deliver_within.to_string(),
                r.severity_high_from,
                r.severity_medium_from,
                s.privacy.min_group_size,
                (&s.calendar.non_working_days, s.population.gap_share),
                (s.population.relative, s.population.min_window_share),
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
                severity,
                cooldown: cooldown.ms(),
                action: action.clone(),
                version,
                effective,
            });
        };
        macro_rules! employee {
            ($id:ident, $field:ident) => {{
                let c = &r.$field;
                push(
                    RuleId::$id,
                    c.enabled,
                    c.weight,
                    severity_for(c.weight, s),
                    c.cooldown,
                    &c.action,
                    serde_json::to_value(c).unwrap_or_default(),
                );
            }};
        }
        employee!(CollaborationDecline, collaboration_decline);
        employee!(RecognitionWithdrawal, recognition_withdrawal);
        employee!(PulseShortening, pulse_shortening);
        employee!(CheckinLapse, checkin_lapse);
        employee!(FeedbackUnacknowledged, feedback_unacknowledged);
        employee!(PassiveGoals, passive_goals);
        employee!(LearningAbandonment, learning_abandonment);
        employee!(LearningConfusion, learning_confusion);
        employee!(OnboardingFriction, onboarding_friction);
        employee!(MobilityFrustration, mobility_frustration);
        employee!(PerformanceDip, performance_dip);
        let a = &r.attrition_risk;
        push(
            RuleId::AttritionRisk,
            a.enabled,
            a.threshold,
            Severity::Medium,
            a.cooldown,
            &a.actions.micro_mentoring_invite,
            serde_json::to_value(a).unwrap_or_default(),
        );
        employee!(CohortOnboardingStall, cohort_onboarding_stall);
        employee!(TeamTrainingCompletionLow, team_training_completion_low);
        employee!(TeamCheckinDrop, team_checkin_drop);
        employee!(TeamSentimentShift, team_sentiment_shift);
        debug_assert!(meta.iter().enumerate().all(|(i, m)| m.id.index() == i));
        let route = RuleId::EMPLOYEE
            .iter()
            .map(|id| {
                a.route
                    .get(id.as_str())
                    .copied()
                    .unwrap_or(ActionKind::MicroMentoringInvite)
            })
            .collect();
        let mut experiment_list = Vec::new();
        let experiments = {
            let mut v: Vec<Option<std::sync::Arc<Experiment>>> = vec![None; RuleId::COUNT];
            for (index, e) in s.experiments.iter().enumerate() {
                let mut cum = 0;
                let c = std::sync::Arc::new(Experiment {
                    index,
                    id: e.id.clone(),
                    control_share: e.control_share,
                    arms: e
                        .arms
                        .iter()
                        .map(|a| {
                            cum += a.weight;
                            (a.name.clone(), cum, a.action.clone())
                        })
                        .collect(),
                });
                for r in RuleId::ALL
                    .iter()
                    .filter(|r| e.rules.iter().any(|x| x == r.as_str()))
                {
                    v[r.index()] = Some(std::sync::Arc::clone(&c));
                }
                experiment_list.push(c);
            }
            v
        };
        RuleSet {
            meta,
            collaboration: collaboration::Params::from(&r.collaboration_decline, &s.population),
            recognition: recognition::Params::from(&r.recognition_withdrawal),
            pulse: pulse::Params::from(&r.pulse_shortening),
            checkin: checkin::Params::from(&r.checkin_lapse),
            feedback: feedback::Params::from(&r.feedback_unacknowledged),
            goals: goals::Params::from(&r.passive_goals),
            learning: learning::Params::from(&r.learning_abandonment),
            confusion: confusion::Params::from(&r.learning_confusion),
            onboarding: onboarding::Params::from(&r.onboarding_friction),
            mobility: mobility::Params::from(&r.mobility_frustration),
            performance: performance::Params::from(&r.performance_dip, &s.population),
            attrition: Attrition {
                window: a.window.ms(),
                threshold: a.threshold,
                high_from: a.high_from,
                route,
                skill_refresher: a.actions.skill_refresher.clone(),
                manager_coaching: a.actions.manager_coaching.clone(),
                micro_mentoring_invite: a.actions.micro_mentoring_invite.clone(),
            },
            groups: group::Params::from(s),
            ladder: r
                .follow_up
                .enabled
                .then(|| ladder::Params::from(&r.follow_up)),
            office_hours: r.follow_up.office_hours.clone(),
            manager_follow_up: r.follow_up.manager.clone(),
            deliver_within: s.actions.deliver_within.ms(),
            allowed_lateness: s.time.allowed_lateness.ms(),
            dedup_horizon: s.time.dedup_horizon.ms(),
            idle_ttl_days: s.state.idle_ttl.ms() / crate::time::DAY,
            experiments,
            experiment_list,
            // (Checked by `Settings::validate`.)
            calendar: s.calendar.days().unwrap_or_default(),
            gap_share: s.population.gap_share,
        }
    }

    pub fn experiment(&self, id: RuleId) -> Option<&Experiment> {
        self.experiments[id.index()].as_deref()
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
                let weight = if m.id == RuleId::AttritionRisk {
                    String::new()
                } else {
                    format!("weight={} ", m.weight)
                };
                let mut s = format!(
                    "{}  [{}]  {}severity={} rule_version={}\n",
                    m.id.as_str(),
                    if m.enabled { "enabled" } else { "disabled" },
                    weight,
                    if m.id == RuleId::AttritionRisk {
                        "by score"
                    } else {
                        m.severity.as_str()
                    },
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
