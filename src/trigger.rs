//! The output contract (docs/contract.md §5): trigger events, in JSON or protobuf.

use prost::Message;
use serde::Serialize;

use crate::event::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Employee,
    Team,
    Cohort,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Employee => "employee",
            Scope::Team => "team",
            Scope::Cohort => "cohort",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// One "why", in numbers a person can check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub signal: String,
    pub observed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Reason {
    pub fn new(signal: &str, observed: f64, threshold: f64) -> Reason {
        Reason {
            signal: signal.to_string(),
            observed: round2(observed),
            baseline: None,
            threshold: round2(threshold),
            window_days: None,
            detail: None,
        }
    }
    pub fn baseline(mut self, b: f64) -> Reason {
        self.baseline = Some(round2(b));
        self
    }
    pub fn window_days(mut self, d: u32) -> Reason {
        self.window_days = Some(d);
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Reason {
        self.detail = Some(d.into());
        self
    }
}

/// Two decimals: enough to check by hand, stable across platforms.
pub fn round2(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    pub max_minutes: u32,
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentArm {
    pub id: String,
    pub arm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub trigger_id: String,
    pub rule: String,
    pub scope: Scope,
    pub subject: String,
    pub severity: Severity,
    pub risk_score: f64,
    pub detected_at: String,
    pub deliver_by: String,
    pub reasons: Vec<Reason>,
    pub action: Action,
    pub escalation: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
    pub rule_version: String,
}

impl Trigger {
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and finite numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_pb(&self) -> pb::Trigger {
        pb::Trigger {
            trigger_id: self.trigger_id.clone(),
            rule: self.rule.clone(),
            scope: self.scope.as_str().to_string(),
            subject: self.subject.clone(),
            severity: self.severity.as_str().to_string(),
            risk_score: self.risk_score,
            detected_at: self.detected_at.clone(),
            deliver_by: self.deliver_by.clone(),
            reasons: self
                .reasons
                .iter()
                .map(|r| pb::Reason {
                    signal: r.signal.clone(),
                    observed: r.observed,
                    baseline: r.baseline,
                    threshold: r.threshold,
                    window_days: r.window_days,
                    detail: r.detail.clone(),
                })
                .collect(),
            action: Some(pb::Action {
                kind: self.action.kind.clone(),
                content_id: self.action.content_id.clone(),
                max_minutes: self.action.max_minutes,
                audience: self.action.audience.clone(),
            }),
            escalation: self.escalation,
            experiment: self.experiment.as_ref().map(|e| pb::Experiment {
                id: e.id.clone(),
                arm: e.arm.clone(),
            }),
            rule_version: self.rule_version.clone(),
        }
    }

    pub fn to_protobuf(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }
}
