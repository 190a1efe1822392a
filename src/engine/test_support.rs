//! The engine tests' harness: an engine with audit on, a sequence of event ids, and readers of
//! what came out.

use std::borrow::Cow;

use super::*;
use crate::config::Settings;
use crate::time::{parse_rfc3339, DAY};

/// 2026-01-05T00:00:00Z (a Monday) plus `days`.
pub fn day(days: i64) -> Ts {
    parse_rfc3339("2026-01-05T00:00:00Z").unwrap() + days * DAY
}

pub fn s(v: &str) -> Cow<'static, str> {
    Cow::Owned(v.to_string())
}

pub struct H {
    pub engine: Engine,
    pub out: Vec<Output>,
    seq: u64,
}

impl H {
    /// Default settings.
    pub fn new() -> H {
        H::with(Settings::default(), None)
    }
    /// Default settings without the follow-up ladder: detections only.
    pub fn detections_only() -> H {
        let mut st = Settings::default();
        st.rules.follow_up.enabled = false;
        H::with(st, None)
    }
    pub fn with(mut st: Settings, pseudo: Option<Pseudonymizer>) -> H {
        st.audit.enabled = true;
        H {
            engine: Engine::from_settings(&st, pseudo),
            out: Vec::new(),
            seq: 0,
        }
    }
    pub fn event_in(
        &mut self,
        emp: &str,
        team: Option<&str>,
        cohort: Option<&str>,
        at: Ts,
        kind: Kind<'static>,
    ) -> Event<'static> {
        self.seq += 1;
        Event {
            event_id: Cow::Owned(format!("e{}", self.seq)),
            employee_id: s(emp),
            occurred_at: at,
            team_id: team.map(s),
            cohort_id: cohort.map(s),
            manager_id: None,
            kind,
        }
    }
    pub fn event(&mut self, emp: &str, at: Ts, kind: Kind<'static>) -> Event<'static> {
        self.event_in(emp, None, None, at, kind)
    }
    pub fn send_in(
        &mut self,
        emp: &str,
        team: Option<&str>,
        cohort: Option<&str>,
        at: Ts,
        kind: Kind<'static>,
    ) -> Outcome {
        let ev = self.event_in(emp, team, cohort, at, kind);
        self.engine.apply(&ev, &mut self.out)
    }
    pub fn send(&mut self, emp: &str, at: Ts, kind: Kind<'static>) -> Outcome {
        self.send_in(emp, None, None, at, kind)
    }
    pub fn send_event(&mut self, ev: &Event<'_>) -> Outcome {
        self.engine.apply(ev, &mut self.out)
    }
    pub fn advance(&mut self, to: Ts) {
        self.engine.advance(to, &mut self.out);
    }
    pub fn triggers(&self) -> Vec<&Trigger> {
        self.out
            .iter()
            .filter_map(|o| {
                if let Output::Trigger(t) = o {
                    Some(t)
                } else {
                    None
                }
            })
            .collect()
    }
    /// Detections only (escalation 0), without the ladder's follow-ups.
    pub fn detections(&self) -> Vec<&Trigger> {
        self.triggers()
            .into_iter()
            .filter(|t| t.escalation == 0)
            .collect()
    }
    pub fn fired(&self, rule: &str) -> Vec<&Trigger> {
        self.triggers()
            .into_iter()
            .filter(|t| t.rule == rule)
            .collect()
    }
    pub fn decisions(&self, rule: &str) -> Vec<Decision> {
        self.out
            .iter()
            .filter_map(|o| {
                if let Output::Audit(a) = o {
                    (a.rule == rule).then_some(a.decision)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// A tiny deterministic generator (schedules of checkpoints, crashes and deliveries).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The events of a simulation (its malformed records left out), in the order simulated.
pub fn sim_events(opts: &crate::sim::SimOptions) -> Vec<Event<'static>> {
    crate::sim::simulate(opts)
        .records
        .into_iter()
        .filter_map(|r| match r {
            crate::sim::Record::Event(e) => Some(e),
            crate::sim::Record::Malformed(_) => None,
        })
        .collect()
}

/// Asserts two sets of triggers (by id) are the same, naming the rules of what one has and
/// the other lacks.
pub fn same_triggers(
    want: &std::collections::BTreeMap<String, Trigger>,
    got: &std::collections::BTreeMap<String, Trigger>,
    what: &str,
) {
    let rules = |a: &std::collections::BTreeMap<String, Trigger>,
                 b: &std::collections::BTreeMap<String, Trigger>| {
        a.iter()
            .filter(|(k, _)| !b.contains_key(*k))
            .map(|(_, t)| format!("{} {}", t.rule, t.subject))
            .collect::<Vec<_>>()
    };
    let (missing, extra) = (rules(want, got), rules(got, want));
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got, want, "{what}: trigger content");
}
