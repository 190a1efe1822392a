//! The one decision path (docs/contract.md §5, §7): every detection — an employee rule's, a
//! follow-up of the ladder, the attrition risk, a team's or cohort's — goes through
//! [`Ctx::decide`]: the verdict (consent, cooldown), then the experiment arm (the control
//! arm's detection is held out, not published), then the trigger, then the audit record of the
//! decision. What differs between them — how the verdict is reached, the action, the severity,
//! what the state remembers after — is the callers' ([`Ctx::finalize`], [`Ctx::attrition`],
//! [`Ctx::finalize_group`]).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::state::{EmployeeState, CONSENT_WITHDRAWN};
use super::{Ctx, Output};
use crate::config::{ActionCfg, ActionKind};
use crate::rules::group::GroupFire;
use crate::rules::{self as rules_mod, ladder, Fire, RuleId};
use crate::time::{format_rfc3339, Ts};
use crate::trigger::{Action, ExperimentArm, Reason, Scope, Severity, Trigger};

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

/// One decision, for the audit topic (docs/contract.md §7). Never holds free text from the input.
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

/// Consent first, then (for detections) the rule's cooldown, symmetric in event time: the same
/// verdict for every employee rule and for the attrition risk.
fn verdict(
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

/// Where a subject stands in the experiment covering a rule (docs/contract.md §7).
enum Assignment<'a> {
    /// The control arm: the detection is audited as held out, not published.
    Control,
    /// Published: with its arm and the arm's action, if an experiment covers the rule.
    Published(Option<ExperimentArm>, Option<&'a ActionCfg>),
}

/// The deterministic trigger id (docs/contract.md §5).
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

/// A detection on its way to a decision: what it is about, and why.
struct Detection<'a> {
    rule: RuleId,
    scope: Scope,
    subject: &'a str,
    at: Ts,
    /// 0 for a detection; 1 or 2 for a follow-up of the ladder.
    escalation: u8,
    /// The task or theme of a group rule that fires once per task or theme ("" otherwise):
    /// part of the trigger id.
    group_key: &'a str,
    reasons: Vec<Reason>,
}

impl<'a> Detection<'a> {
    /// An employee rule's detection (or follow-up) about `subject`.
    fn employee(
        rule: RuleId,
        subject: &'a str,
        at: Ts,
        escalation: u8,
        reasons: Vec<Reason>,
    ) -> Self {
        Detection {
            rule,
            scope: Scope::Employee,
            subject,
            at,
            escalation,
            group_key: "",
            reasons,
        }
    }
}

/// What a published detection's trigger says.
struct Publication<'a> {
    severity: Severity,
    risk_score: f64,
    action: &'a ActionCfg,
    content_id: Option<String>,
}

/// What became of a detection.
enum Decided {
    /// Consent or cooldown: audited, nothing published.
    Suppressed,
    /// The experiment's control arm: audited as held out.
    HeldOut,
    /// Published with this trigger id.
    Published(String),
}

impl Ctx {
    /// The decision path (see the module's comment). `arm` is asked only for a detection the
    /// verdict lets through; `publication` gets the arm's own action, if it has one.
    fn decide<'a>(
        &'a self,
        d: Detection<'_>,
        verdict: Decision,
        arm: impl FnOnce() -> Assignment<'a>,
        publication: impl FnOnce(Option<&'a ActionCfg>) -> Publication<'a>,
        out: &mut Vec<Output>,
    ) -> Decided {
        if verdict != Decision::Fired {
            self.audit(verdict, &d, None, out);
            return Decided::Suppressed;
        }
        let (experiment, arm_action) = match arm() {
            Assignment::Published(e, a) => (e, a),
            Assignment::Control => {
                self.audit(Decision::HeldOut, &d, None, out);
                return Decided::HeldOut;
            }
        };
        let p = publication(arm_action);
        let m = self.rules.meta(d.rule);
        let id = trigger_id(
            d.rule.as_str(),
            d.subject,
            d.at,
            d.escalation as u32,
            d.group_key,
        );
        // The audit record first (it copies the reasons), then the trigger (it takes them); the
        // trigger goes out first.
        let audit = self.audit_record(Decision::Fired, &d, Some(id.clone()));
        out.push(Output::Trigger(Trigger {
            trigger_id: id.clone(),
            rule: d.rule.as_str().to_string(),
            scope: d.scope,
            subject: d.subject.to_string(),
            severity: p.severity,
            risk_score: p.risk_score,
            detected_at: format_rfc3339(d.at),
            deliver_by: format_rfc3339(d.at.saturating_add(self.rules.deliver_within)),
            reasons: d.reasons,
            action: Action {
                kind: p.action.kind.as_str().to_string(),
                content_id: p.content_id,
                max_minutes: p.action.max_minutes,
                audience: p.action.audience.as_str().to_string(),
            },
            escalation: d.escalation as u32,
            experiment,
            rule_version: m.version.clone(),
        }));
        out.extend(audit.map(Output::Audit));
        Decided::Published(id)
    }

    /// The audit record of a decision, when auditing is on.
    fn audit_record(
        &self,
        decision: Decision,
        d: &Detection<'_>,
        trigger_id: Option<String>,
    ) -> Option<AuditRecord> {
        self.opts.audit.then(|| AuditRecord {
            decision,
            rule: d.rule.as_str().to_string(),
            rule_version: self.rules.meta(d.rule).version.clone(),
            subject: d.subject.to_string(),
            reasons: d.reasons.clone(),
            detected_at: format_rfc3339(d.at),
            trigger_id,
        })
    }

    fn audit(
        &self,
        decision: Decision,
        d: &Detection<'_>,
        trigger_id: Option<String>,
        out: &mut Vec<Output>,
    ) {
        out.extend(
            self.audit_record(decision, d, trigger_id)
                .map(Output::Audit),
        );
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

    /// An employee rule's fire (a detection or a follow-up): decided, then the state
    /// remembers it (the cooldown, the ladder entry), and the attrition risk it may complete.
    /// Returns whether a trigger went out.
    pub(super) fn finalize(
        &self,
        subject: &str,
        points: &[f64],
        st: &mut EmployeeState,
        f: Fire,
        out: &mut Vec<Output>,
    ) -> bool {
        let Fire {
            rule,
            at,
            reasons,
            module_id,
            content_id,
            escalation,
        } = f;
        let m = self.rules.meta(rule);
        let d = Detection::employee(rule, subject, at, escalation, reasons);
        // An experiment covering the rule: the control arm's detection counts (cooldown, the
        // risk score) but is held out; the other arms are published with their arm.
        let decided = self.decide(
            d,
            verdict(st, rule, at, m.cooldown, escalation == 0),
            || self.assign_employee(rule, points, subject),
            |arm_action| {
                let action = match escalation {
                    0 => arm_action.unwrap_or(&m.action),
                    1 => &self.rules.office_hours,
                    _ => &self.rules.manager_follow_up,
                };
                let content_id =
                    content_id.or_else(|| match (&action.content_id, &module_id, escalation) {
                        (Some(c), Some(mid), 0) => Some(c.replace("{module_id}", mid)),
                        (c, _, _) => c.clone(),
                    });
                Publication {
                    severity: m.severity,
                    risk_score: m.weight as f64,
                    action,
                    content_id,
                }
            },
            out,
        );
        if let Decided::Suppressed = decided {
            return false;
        }
        if escalation == 0 {
            st.set_fired(rule, at);
        }
        let published = match &decided {
            Decided::Published(id) => {
                if self.rules.ladder.is_some() {
                    ladder::issued(
                        &mut st.ladder,
                        id,
                        rule,
                        escalation,
                        at.saturating_add(self.rules.deliver_within),
                    );
                }
                true
            }
            _ => false,
        };
        if escalation == 0 && rule != RuleId::AttritionRisk {
            self.attrition(subject, points, st, at, out);
        }
        published
    }

    /// `attrition_risk`: the weights of the distinct employee rules that fired within the window
    /// up to `at`, added up (capped at 100); fires once the score reaches the threshold.
    pub(super) fn attrition(
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
        debug_assert!(matches!(
            kind,
            ActionKind::SkillRefresher
                | ActionKind::ManagerCoaching
                | ActionKind::MicroMentoringInvite
        ));
        let route: &ActionCfg = a.action(kind);
        let rule = RuleId::AttritionRisk;
        let m = self.rules.meta(rule);
        let d = Detection::employee(rule, subject, at, 0, reasons);
        let decided = self.decide(
            d,
            verdict(st, rule, at, m.cooldown, true),
            || self.assign_employee(rule, points, subject),
            |arm_action| {
                let action = arm_action.unwrap_or(route);
                Publication {
                    severity: if score >= a.high_from {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    risk_score: score as f64,
                    action,
                    content_id: action.content_id.clone(),
                }
            },
            out,
        );
        if let Decided::Suppressed = decided {
            return;
        }
        // Held out or published, the risk's cooldown runs.
        st.set_fired(rule, at);
        if let (Decided::Published(id), Some(_)) = (&decided, &self.rules.ladder) {
            ladder::issued(
                &mut st.ladder,
                id,
                rule,
                0,
                at.saturating_add(self.rules.deliver_within),
            );
        }
    }

    /// A team or cohort rule's verdict (cooldown already applied by the group state).
    pub(super) fn finalize_group(&self, g: GroupFire, out: &mut Vec<Output>) {
        let m = self.rules.meta(g.rule);
        let d = Detection {
            rule: g.rule,
            scope: g.scope,
            subject: &g.subject,
            at: g.at,
            escalation: 0,
            group_key: &g.key,
            reasons: g.reasons,
        };
        let verdict = if g.suppressed {
            Decision::SuppressedCooldown
        } else {
            Decision::Fired
        };
        self.decide(
            d,
            verdict,
            || self.assign(g.rule, &g.subject),
            |arm_action| {
                let action = arm_action.unwrap_or(&m.action);
                Publication {
                    severity: m.severity,
                    risk_score: m.weight as f64,
                    action,
                    content_id: action.content_id.clone(),
                }
            },
            out,
        );
    }
}
