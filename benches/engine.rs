//! Engine throughput over a synthetic stream of 100,000 employees, single-threaded. Each
//! iteration starts from an engine that already holds the employees' state (week one, applied
//! untimed in the setup), and times week two — what a running daemon does:
//!
//! * `apply` — validated events into the engine, in batches of 256 (`Engine::apply_batch`, as a
//!   partition task of the daemon does),
//! * `serde_json_typed` — the baseline: serde_json alone parsing the same lines into an owned
//!   typed struct (no validation, no engine),
//! * `json_decode_apply` — momentd's JSON decode + validation + apply,
//! * `protobuf_decode_apply` — the same from protobuf.
//!
//! `apply_cold` times week one into an empty engine (creating every employee's state) for
//! comparison. Before the benches it prints the serialized state bytes per employee; after them,
//! five paired rounds of the baseline and JSON decode + apply timed back to back, and the median
//! of their ratios (the target's figure, less exposed to the machine's drift).
//! Run: `cargo bench --bench engine` (EMPLOYEES and DAYS environment variables change the stream).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput};

use momentd::config::Settings;
use momentd::event::{decode_json, decode_protobuf, encode_json, encode_protobuf, Limits};
use momentd::rules::RuleSet;
use momentd::{Engine, EngineOptions, Event};

/// The baseline: the typed struct serde_json parses the same lines into (shared with
/// `examples/profile_decode.rs`, so both measure against the same thing).
#[path = "support/baseline.rs"]
mod baseline;
use baseline::Baseline;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn engine(rules: &Arc<RuleSet>) -> Engine {
    Engine::new(Arc::clone(rules), EngineOptions::default())
}

/// Events per batch, as the daemon hands a partition what one poll round brought.
const BATCH: usize = 256;

/// Applies every event, a batch at a time (`Engine::apply_batch`, which prefetches the state
/// the batch touches); the outputs are dropped as they come.
fn apply_all(mut e: Engine, events: &[Event<'static>]) -> Engine {
    let mut out = Vec::new();
    let mut outcomes = Vec::with_capacity(BATCH);
    for chunk in events.chunks(BATCH) {
        e.apply_batch(chunk, &mut out, &mut outcomes);
        out.clear();
        outcomes.clear();
    }
    e
}

/// Decodes a batch of records and applies it, like a partition task of the daemon.
fn decode_apply<T>(
    mut e: Engine,
    records: &[T],
    decode: impl for<'a> Fn(&'a T) -> Event<'a>,
) -> Engine {
    let mut out = Vec::new();
    let mut outcomes = Vec::with_capacity(BATCH);
    let mut evs = Vec::with_capacity(BATCH);
    for chunk in records.chunks(BATCH) {
        evs.extend(chunk.iter().map(&decode));
        e.apply_batch(&evs, &mut out, &mut outcomes);
        evs.clear();
        out.clear();
        outcomes.clear();
    }
    e
}

/// The baseline: every line parsed into the typed struct; returns how many (all of them).
fn serde_typed(json: &[String]) -> usize {
    let ok = json
        .iter()
        .filter(|l| serde_json::from_str::<Baseline>(l).is_ok())
        .count();
    assert_eq!(ok, json.len());
    ok
}

/// An engine holding the state that `warmup` leaves.
fn warm(rules: &Arc<RuleSet>, warmup: &[Event<'static>]) -> Engine {
    apply_all(engine(rules), warmup)
}

fn main() {
    let employees = env_u32("EMPLOYEES", 100_000);
    let days = env_u32("DAYS", 7);
    let all: Vec<Event<'static>> = momentd::synth::everyday(employees, 2 * days, 42);
    let split = momentd::synth::EPOCH + days as i64 * momentd::time::DAY;
    let (warmup, events): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e.occurred_at < split);
    let json: Vec<String> = events.iter().map(encode_json).collect();
    let proto: Vec<Vec<u8>> = events.iter().map(encode_protobuf).collect();
    let rules = Arc::new(RuleSet::compile(&Settings::default()));
    // The foundation's engine: only the first three rules on, for the catalog's cost ratio.
    let three = {
        let mut s = Settings::default();
        let r = &mut s.rules;
        for enabled in [
            &mut r.recognition_withdrawal.enabled,
            &mut r.pulse_shortening.enabled,
            &mut r.feedback_unacknowledged.enabled,
            &mut r.passive_goals.enabled,
            &mut r.learning_confusion.enabled,
            &mut r.onboarding_friction.enabled,
            &mut r.mobility_frustration.enabled,
            &mut r.performance_dip.enabled,
            &mut r.attrition_risk.enabled,
            &mut r.cohort_onboarding_stall.enabled,
            &mut r.team_training_completion_low.enabled,
            &mut r.team_checkin_drop.enabled,
            &mut r.team_sentiment_shift.enabled,
            &mut r.follow_up.enabled,
        ] {
            *enabled = false;
        }
        Arc::new(RuleSet::compile(&s))
    };
    let limits = Limits::default();
    let n = events.len() as u64;

    // State size after the stream (serialized, postcard), and after a longer history.
    for d in [days, 90] {
        let mut e = engine(&rules);
        let mut out = Vec::new();
        let stream = if d == days {
            warmup.clone()
        } else {
            momentd::synth::everyday(10_000, d, 43)
        };
        for ev in &stream {
            e.apply(ev, &mut out);
        }
        eprintln!(
            "state: {} employees after {} days, {} events: {:.0} bytes per employee (serialized), {} triggers",
            e.employees(),
            d,
            stream.len(),
            e.state_bytes() as f64 / e.employees() as f64,
            out.len()
        );
    }
    eprintln!(
        "stream: {employees} employees, {days} days, {n} events, {:.0} bytes per JSON line",
        json.iter().map(|l| l.len()).sum::<usize>() as f64 / n as f64
    );

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n));
    g.bench_function("apply", |b| {
        b.iter_batched(
            || warm(&rules, &warmup),
            |e| apply_all(e, &events),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("apply_three_rules", |b| {
        b.iter_batched(
            || warm(&three, &warmup),
            |e| apply_all(e, &events),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("serde_json_typed", |b| b.iter(|| serde_typed(&json)));
    g.bench_function("json_decode_apply", |b| {
        b.iter_batched(
            || warm(&rules, &warmup),
            |e| {
                decode_apply(e, &json, |l| {
                    decode_json(l.as_bytes(), &limits).expect("valid")
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("protobuf_decode_apply", |b| {
        b.iter_batched(
            || warm(&rules, &warmup),
            |e| decode_apply(e, &proto, |p| decode_protobuf(p, &limits).expect("valid")),
            BatchSize::PerIteration,
        )
    });
    g.throughput(Throughput::Elements(warmup.len() as u64));
    g.bench_function("apply_cold", |b| {
        b.iter_batched(
            || engine(&rules),
            |e| apply_all(e, &warmup),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    c.final_summary();

    // The target is a ratio, and on a shared machine the rate of everything drifts between
    // criterion's groups (seconds apart). So also: five rounds, each timing the baseline and
    // JSON decode + apply back to back, one ratio per round and their median.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let mut ratios = Vec::new();
    for round in 0..5 {
        let t = std::time::Instant::now();
        let base = serde_typed(&json) as f64 / t.elapsed().as_secs_f64();
        let e = warm(&rules, &warmup);
        let t = std::time::Instant::now();
        let e = decode_apply(e, &json, |l| {
            decode_json(l.as_bytes(), &limits).expect("valid")
        });
        let ours = n as f64 / t.elapsed().as_secs_f64();
        drop(e);
        ratios.push(ours / base);
        eprintln!(
            "paired round {round}: serde_json typed {:.2} M/s, JSON decode + apply {:.2} M/s = {:.3}",
            base / 1e6,
            ours / 1e6,
            ours / base
        );
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "paired: JSON decode + apply / serde_json typed, median of 5 rounds = {:.3} (range {:.3}-{:.3})",
        ratios[2], ratios[0], ratios[4]
    );
}
