//! Profiling aid for the engine bench: `profile_decode [decode|apply|both|serde] [employees]`
//! runs one part of the JSON path over the bench stream (a `perf record` target).
use std::sync::Arc;

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct Baseline {
    event_id: String,
    employee_id: String,
    occurred_at: String,
    #[serde(rename = "type")]
    kind: String,
    team_id: Option<String>,
    attrs: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let events = momentd::synth::everyday(n, 7, 42);
    let json: Vec<String> = events.iter().map(momentd::event::encode_json).collect();
    let rules = Arc::new(momentd::rules::RuleSet::compile(
        &momentd::config::Settings::default(),
    ));
    let limits = momentd::Limits::default();
    let t = std::time::Instant::now();
    let mut sink = 0usize;
    for _ in 0..3 {
        let mut e = momentd::Engine::new(Arc::clone(&rules), Default::default());
        let mut out = Vec::new();
        match mode.as_str() {
            "decode" => json.iter().for_each(|l| {
                sink += momentd::event::decode_json(l.as_bytes(), &limits)
                    .unwrap()
                    .occurred_at as usize
            }),
            "serde" => json
                .iter()
                .for_each(|l| sink += serde_json::from_str::<Baseline>(l).unwrap().event_id.len()),
            "apply" => events.iter().for_each(|ev| {
                e.apply(ev, &mut out);
                out.clear();
            }),
            _ => json.iter().for_each(|l| {
                let ev = momentd::event::decode_json(l.as_bytes(), &limits).unwrap();
                e.apply(&ev, &mut out);
                out.clear();
            }),
        }
    }
    eprintln!(
        "{mode}: {:.0} ns/event ({sink})",
        t.elapsed().as_nanos() as f64 / (3 * json.len()) as f64
    );
}
