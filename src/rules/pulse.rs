//! `pulse_shortening`: on a response, with enough earlier responses: the latest answers are much
//! shorter than before, or the latest score dropped well below the earlier mean.

use serde::{Deserialize, Serialize};

use super::presence::Presence;
use super::{Fire, RuleId};
use crate::config::PulseShortening;
use crate::event::{Event, Kind};
use crate::time::{whole_days, Ts};
use crate::trigger::Reason;

#[derive(Debug, Clone)]
pub struct Params {
    pub lookback: Ts,
    pub latest: usize,
    pub min_earlier: usize,
    pub max_earlier: usize,
    pub word_ratio: f64,
    pub score_drop: f64,
}

impl Params {
    pub fn from(c: &PulseShortening) -> Params {
        Params {
            lookback: c.lookback.ms(),
            latest: c.latest as usize,
            min_earlier: c.min_earlier as usize,
            max_earlier: c.max_earlier as usize,
            word_ratio: c.word_ratio,
            score_drop: c.score_drop,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Response {
    at: Ts,
    words: Option<u32>,
    /// Tenths of a point (0..=100).
    score: Option<u8>,
}

/// The last `latest + max_earlier` responses, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    responses: Vec<Response>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<(f64, usize)> {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| (sum / n as f64, n))
}

/// The event kinds [`on_event`] reads: the engine calls it, and recomputes this rule's
/// deadline, only for these.
pub fn handles(kind: &Kind<'_>) -> bool {
    matches!(kind, Kind::PulseResponse { .. })
}

pub fn on_event(
    p: &Params,
    st: &mut Option<Box<State>>,
    ev: &Event<'_>,
    pres: &Presence<'_>,
    out: &mut Vec<Fire>,
) {
    let Kind::PulseResponse {
        score, word_count, ..
    } = ev.kind
    else {
        return;
    };
    if pres.off_at(ev.occurred_at) {
        // (A response given on a day off is not compared.)
        return;
    }
    let s = st.get_or_insert_with(Default::default);
    let r = Response {
        at: ev.occurred_at,
        words: word_count,
        score: score.map(|v| (v * 10.0).round() as u8),
    };
    let i = s.responses.partition_point(|x| x.at <= r.at);
    s.responses.insert(i, r);
    let keep = p.latest + p.max_earlier;
    if s.responses.len() > keep {
        let drop = s.responses.len() - keep;
        s.responses.drain(..drop);
    }
    if s.responses.len() < p.latest + 1 {
        return;
    }
    let split = s.responses.len() - p.latest;
    let latest = &s.responses[split..];
    let since = pres.before(latest[0].at, p.lookback);
    let earlier: Vec<&Response> = s.responses[..split]
        .iter()
        .rev()
        .take(p.max_earlier)
        .filter(|x| x.at >= since)
        .collect();
    if earlier.len() < p.min_earlier {
        return;
    }
    let mut reasons = Vec::new();
    let recent_words = mean(latest.iter().filter_map(|x| x.words.map(f64::from)));
    let earlier_words = mean(earlier.iter().filter_map(|x| x.words.map(f64::from)));
    if let (Some((rw, _)), Some((ew, en))) = (recent_words, earlier_words) {
        if en >= p.min_earlier && ew > 0.0 && rw < p.word_ratio * ew {
            reasons.push(
                Reason::new("pulse_mean_word_count", rw, p.word_ratio * ew)
                    .baseline(ew)
                    .detail(format!(
                        "the latest {} responses against the {} before them",
                        latest.len(),
                        en
                    )),
            );
        }
    }
    let latest_score = latest.last().and_then(|x| x.score).map(|v| v as f64 / 10.0);
    let earlier_score = mean(
        earlier
            .iter()
            .filter_map(|x| x.score.map(|v| v as f64 / 10.0)),
    );
    if let (Some(ls), Some((es, en))) = (latest_score, earlier_score) {
        if en >= p.min_earlier && ls <= es - p.score_drop {
            reasons.push(
                Reason::new("pulse_score", ls, es - p.score_drop)
                    .baseline(es)
                    .detail(format!(
                        "the latest score against the mean of the {en} responses before"
                    )),
            );
        }
    }
    if !reasons.is_empty() {
        for r in &mut reasons {
            r.window_days = Some(whole_days(p.lookback));
        }
        out.push(Fire::new(RuleId::PulseShortening, ev.occurred_at, reasons));
    }
}

pub fn next_due(_p: &Params, _st: &Option<Box<State>>, _pres: &Presence<'_>) -> Option<Ts> {
    None
}

pub fn on_timer(
    _p: &Params,
    _st: &mut Option<Box<State>>,
    _now: Ts,
    _pres: &Presence<'_>,
    _out: &mut Vec<Fire>,
) {
}
