//! `momentd evaluate`: recall, precision and detection delay per rule, of triggers against a
//! simulation's truth.

use super::*;

/// One rule's figures in an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleScore {
    pub rule: String,
    pub expected: usize,
    pub found: usize,
    pub recall: f64,
    pub precision: f64,
    pub delay_median_hours: Option<f64>,
    pub delay_max_hours: Option<f64>,
    /// Triggers of the rule matching no expected detection (including any inside a must-not
    /// window).
    pub false_positives: usize,
    /// Expected detections whose window meets a population shift (not in `expected`), and
    /// how many of them were found.
    pub in_shift_expected: usize,
    pub in_shift_found: usize,
}

/// How long after a shift a pattern's window may begin and still rest on evidence from inside
/// it (the longest lookback of the injected patterns: a month).
const SHIFT_REACH: Ts = 30 * DAY;

/// Whether an expectation's window meets one of the truth's shifts, or begins within
/// [`SHIFT_REACH`] after one.
fn in_shift(truth: &Truth, e: &Expectation) -> bool {
    use crate::time::parse_rfc3339;
    let (Some(from), Some(to)) = (parse_rfc3339(&e.from), parse_rfc3339(&e.to)) else {
        return false;
    };
    truth.shifts.iter().any(|s| {
        let (Some(a), Some(z)) = (parse_rfc3339(&s.from), parse_rfc3339(&s.to)) else {
            return false;
        };
        (s.subjects.is_empty() || s.subjects.contains(&e.subject))
            && a < to
            && from < z + SHIFT_REACH
    })
}

/// Scores triggers (JSON values as published; follow-ups with `escalation > 0` are left out)
/// against the truth, per rule: each expected detection is matched by the earliest trigger of
/// its rule and subject inside its window; every trigger left unmatched is a false positive.
pub fn evaluate(truth: &Truth, triggers: &[serde_json::Value]) -> Vec<RuleScore> {
    use crate::time::parse_rfc3339;
    let mut detections: Vec<(String, String, Ts)> = triggers
        .iter()
        .filter(|t| t["escalation"].as_u64().unwrap_or(0) == 0)
        .filter_map(|t| {
            Some((
                t["rule"].as_str()?.to_string(),
                t["subject"].as_str()?.to_string(),
                parse_rfc3339(t["detected_at"].as_str()?)?,
            ))
        })
        .collect();
    detections.sort_by(|a, b| (a.2, &a.0, &a.1).cmp(&(b.2, &b.0, &b.1)));
    let mut used = vec![false; detections.len()];
    let mut delays: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
    let mut shifted: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for e in truth.expectations.iter().filter(|e| e.fire) {
        let inside = in_shift(truth, e);
        if inside {
            shifted.entry(e.rule.clone()).or_default().0 += 1;
        } else {
            *expected.entry(e.rule.clone()).or_default() += 1;
        }
        let (Some(from), Some(to)) = (parse_rfc3339(&e.from), parse_rfc3339(&e.to)) else {
            continue;
        };
        let hit = detections.iter().enumerate().position(|(i, d)| {
            !used[i] && d.0 == e.rule && d.1 == e.subject && d.2 >= from && d.2 <= to
        });
        if let Some(i) = hit {
            used[i] = true;
            if inside {
                shifted.entry(e.rule.clone()).or_default().1 += 1;
                continue;
            }
            delays
                .entry(e.rule.clone())
                .or_default()
                .push((detections[i].2 - from) as f64 / HOUR as f64);
        }
    }
    crate::rules::RuleId::ALL
        .iter()
        .map(|r| {
            let rule = r.as_str().to_string();
            let exp = expected.get(&rule).copied().unwrap_or(0);
            let mut d = delays.remove(&rule).unwrap_or_default();
            d.sort_by(f64::total_cmp);
            let found = d.len();
            let fp = detections
                .iter()
                .zip(&used)
                .filter(|(x, u)| !**u && x.0 == rule)
                .count();
            RuleScore {
                recall: if exp == 0 {
                    1.0
                } else {
                    found as f64 / exp as f64
                },
                precision: if found + fp == 0 {
                    1.0
                } else {
                    found as f64 / (found + fp) as f64
                },
                delay_median_hours: (!d.is_empty()).then(|| crate::trigger::round2(d[d.len() / 2])),
                delay_max_hours: d.last().map(|x| crate::trigger::round2(*x)),
                in_shift_expected: shifted.get(&rule).map_or(0, |x| x.0),
                in_shift_found: shifted.get(&rule).map_or(0, |x| x.1),
                rule,
                expected: exp,
                found,
                false_positives: fp,
            }
        })
        .collect()
}

/// The evaluation as a table for the terminal.
pub fn table(scores: &[RuleScore]) -> String {
    let mut s = format!(
        "{:<30} {:>8} {:>6} {:>7} {:>9} {:>4} {:>12} {:>10} {:>9}\n",
        "rule",
        "expected",
        "found",
        "recall",
        "precision",
        "fp",
        "delay p50 h",
        "delay max h",
        "in shift"
    );
    let h = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in scores {
        let shift = if r.in_shift_expected == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", r.in_shift_found, r.in_shift_expected)
        };
        s += &format!(
            "{:<30} {:>8} {:>6} {:>7.2} {:>9.2} {:>4} {:>12} {:>10} {:>9}\n",
            r.rule,
            r.expected,
            r.found,
            r.recall,
            r.precision,
            r.false_positives,
            h(r.delay_median_hours),
            h(r.delay_max_hours),
            shift
        );
    }
    s
}
