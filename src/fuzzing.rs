//! The fuzz harnesses (issue 16): each takes arbitrary bytes the way momentd meets them — an
//! input topic's message, the configuration, a changelog partition, an internal topic's
//! record — and must return without panicking, whatever the bytes. `fuzz/` drives them with
//! libFuzzer (`cargo fuzz`); `tests/fuzz_corpus.rs` runs every committed corpus and crash
//! input through them on the stable toolchain, so each input libFuzzer ever found stays a
//! regression test.
//!
//! Clock advances are kept realistic: the engine closes days one by one, so an event dated
//! decades away from the others would cost minutes of day closes per input and teach the
//! fuzzer nothing. Events are judged against [`NOW`] (the input guard refuses more than a day
//! ahead, as `run` does) and those older than [`HORIZON`] before it are not applied.

use std::sync::{Arc, OnceLock};

use crate::config::{self, Settings};
use crate::engine::changelog::{Record, Restorer};
use crate::engine::{Engine, EngineOptions, Output};
use crate::event::{self, Encoding, Event, Limits};
use crate::rules::population::Table;
use crate::rules::RuleSet;
use crate::time::{Ts, DAY};

/// The harnesses' wall clock: 2026-06-01T00:00:00Z.
pub const NOW: Ts = 1_780_272_000_000;
/// How far before [`NOW`] an event is still applied to an engine.
pub const HORIZON: Ts = 400 * DAY;

fn rules() -> Arc<RuleSet> {
    static RULES: OnceLock<Arc<RuleSet>> = OnceLock::new();
    Arc::clone(RULES.get_or_init(|| {
        let mut s = Settings::default();
        s.audit.enabled = true;
        Arc::new(RuleSet::compile(&s))
    }))
}

fn engine() -> Engine {
    Engine::new(
        rules(),
        EngineOptions {
            audit: true,
            pseudonymizer: None,
        },
    )
}

fn limits() -> Limits {
    Limits {
        now: Some(NOW),
        ..Limits::default()
    }
}

/// Applies `evs` (those within the horizon) to `e` — at input positions from `from` on, past
/// any restored clock's — then moves its clock three days past the last, so timers and day
/// closes run too. Checks what the engine gives out; returns how many
/// events it applied and how many triggers came out.
fn apply_all<'a>(
    e: &mut Engine,
    evs: impl IntoIterator<Item = Event<'a>>,
    from: i64,
) -> (usize, usize) {
    let mut out = Vec::new();
    let mut last = None;
    let mut applied = 0;
    for ev in evs {
        if ev.occurred_at < NOW - HORIZON {
            continue;
        }
        let keys = e.keys(&ev);
        e.apply_at(&ev, keys, (0, from + applied as i64), &mut out);
        applied += 1;
        last = last.max(Some(ev.occurred_at));
    }
    if let Some(t) = last {
        e.advance(t + 3 * DAY, &mut out);
    }
    let mut triggers = 0;
    for o in &out {
        if let Output::Trigger(t) = o {
            // A trigger is JSON that reads back: what delivery services read.
            let v: serde_json::Value =
                serde_json::from_str(&t.to_json()).expect("a trigger is JSON");
            assert_eq!(v["trigger_id"].as_str(), Some(t.trigger_id.as_str()));
            let _ = t.to_protobuf();
            triggers += 1;
        }
    }
    (applied, triggers)
}

/// One decoded event must encode to JSON that decodes to the same event.
fn round_trip(ev: &Event<'_>) {
    let json = event::encode_json(ev);
    // (Re-encoding may make it larger — escapes, field names — than the limit it met.)
    let unlimited = Limits {
        max_event_bytes: usize::MAX,
        ..limits()
    };
    let back = event::decode(json.as_bytes(), Encoding::Json, None, &unlimited)
        .unwrap_or_else(|r| panic!("{json} re-encoded is refused: {r:?}"));
    assert_eq!(&back, ev, "{json}");
}

/// An input topic's messages: JSON Lines (one message a line), or length-delimited protobuf
/// (as `momentd simulate --format protobuf` writes; bytes that do not frame are one message).
/// Each is decoded as `run` decodes it (keyed by its employee when it has one), and what
/// decodes is applied to a fresh engine in order. Returns what [`apply_all`] counted.
pub fn input_messages(data: &[u8], encoding: Encoding) -> (usize, usize) {
    let messages: Vec<&[u8]> = match encoding {
        Encoding::Json => data.split(|&b| b == b'\n').collect(),
        Encoding::Protobuf => frames(data).unwrap_or_else(|| vec![data]),
    };
    let mut evs = Vec::new();
    for m in messages {
        if let Ok(ev) = event::decode(m, encoding, None, &limits()) {
            round_trip(&ev);
            // The same message keyed by its employee decodes the same.
            let keyed = event::decode(m, encoding, Some(ev.employee_id.as_bytes()), &limits());
            assert_eq!(keyed.as_ref(), Ok(&ev));
            evs.push(ev);
        }
    }
    apply_all(&mut engine(), evs, 0)
}

/// Length-delimited frames (a varint length before each), if `data` is exactly that.
fn frames(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let len = prost::encoding::decode_varint(&mut data).ok()? as usize;
        if len > data.len() {
            return None;
        }
        let (m, rest) = data.split_at(len);
        out.push(m);
        data = rest;
    }
    Some(out)
}

/// The configuration: the text before a line `%%` is a file's TOML; each line after it is a
/// `MOMENTD__…=value` variable, read on top of the shipped `config/momentd.toml`. Both loads
/// must end in settings or an error, and loaded settings must build an engine.
pub fn configuration(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (file, env) = text.split_once("\n%%\n").unwrap_or((&text, ""));
    if let Ok(s) = config::from_toml_str(file) {
        let _ = RuleSet::compile(&s);
    }
    let vars = env.lines().filter_map(|l| {
        let (k, v) = l.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    });
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/momentd.toml");
    if let Ok(s) = config::load_with_env(Some(&shipped), vars) {
        let _ = RuleSet::compile(&s);
    }
}

/// The events a restored engine meets in [`changelog`]: the first hours of the format-4
/// fixture's continuation, about the employees its records hold.
const CONTINUATION: &str = include_str!("../tests/fixtures/changelog-v4/rest.jsonl");
const CONTINUATION_EVENTS: usize = 300;

/// Changelog records framed as the fixtures are (`u32` key length, the key, `i32` value
/// length with -1 for a tombstone, the value; little-endian), as a restore reads them: every
/// record that reads is taken, the others are refused with an error (the runtime counts and
/// skips them). The restored engine then goes on through the fixture's continuation, is
/// checkpointed, and what it writes must restore without an error. Returns the records
/// taken, the employees restored, and what [`apply_all`] counted.
pub fn changelog(data: &[u8]) -> (usize, usize, (usize, usize)) {
    let mut r = Restorer::default();
    let taken = records(data)
        .into_iter()
        .filter(|(key, value)| r.add(key, *value).is_ok())
        .count();
    let employees = r.employees();
    let topics = vec!["in".to_string()];
    let mut e = engine();
    r.finish(&mut e, &topics);
    let evs = CONTINUATION
        .lines()
        .take(CONTINUATION_EVENTS)
        .filter_map(|l| event::decode(l.as_bytes(), Encoding::Json, None, &limits()).ok());
    let applied = apply_all(&mut e, evs, 1_000_000_000);
    let mut log: Vec<Record> = Vec::new();
    e.checkpoint(&topics, &[1_000_000_000 + applied.0 as i64], &mut log);
    let mut again = Restorer::default();
    for rec in &log {
        again
            .add(&rec.key, rec.value.as_deref())
            .unwrap_or_else(|err| panic!("a record momentd wrote does not read back: {err}"));
    }
    again.finish(&mut engine(), &topics);
    (taken, employees, applied)
}

/// The records of [`changelog`]'s framing; a cut-short tail is left out.
pub fn records(mut data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    fn take<'a>(n: usize, data: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (head, tail) = data.split_at_checked(n)?;
        *data = tail;
        Some(head)
    }
    let mut out = Vec::new();
    loop {
        let Some(kl) = take(4, &mut data) else { break };
        let kl = u32::from_le_bytes(kl.try_into().unwrap_or_default()) as usize;
        let Some(key) = take(kl, &mut data) else {
            break;
        };
        let Some(vl) = take(4, &mut data) else { break };
        let vl = i32::from_le_bytes(vl.try_into().unwrap_or_default());
        let value = if vl < 0 {
            None
        } else {
            match take(vl as usize, &mut data) {
                Some(v) => Some(v),
                None => break,
            }
        };
        out.push((key, value));
    }
    out
}

/// Records of the internal topics, framed as [`changelog`]'s: a key starting `s` or `c` is a
/// population topic record (read into a table of three tasks, as an instance's reader does);
/// any other is a repartition record (decoded). Neither may panic.
pub fn internal_topics(data: &[u8]) {
    use crate::runtime::population::Message as Pop;
    use crate::runtime::repartition::Message as Rep;
    let mut table = Table::new(3);
    for (key, value) in records(data) {
        let Some(value) = value else { continue };
        match key.first() {
            Some(b's' | b'c') => match Pop::decode(key, value) {
                Ok(Pop::Share { task, day, f }) => table.share(task as usize, day, f),
                Ok(Pop::Closed { task, day }) => {
                    table.closed(task as usize, day);
                }
                Err(_) => {}
            },
            _ => {
                let _ = Rep::decode(value);
            }
        }
    }
}

/// Frames `records` as [`changelog`] and [`internal_topics`] read them.
pub fn frame<'a>(records: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut b = Vec::new();
    for (key, value) in records {
        b.extend((key.len() as u32).to_le_bytes());
        b.extend(key);
        match value {
            Some(v) => {
                b.extend((v.len() as i32).to_le_bytes());
                b.extend(v);
            }
            None => b.extend((-1i32).to_le_bytes()),
        }
    }
    b
}

/// Seed inputs for each target (`target`, bytes), made from what momentd itself writes: a
/// simulated workforce's messages in both encodings, the shipped configuration with variables,
/// the changelog fixtures cut into runs of records, and internal-topic records of a task in
/// publish mode. `cargo run --example fuzz_seeds` writes them under `fuzz/seeds/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::runtime::population::Message as Pop;
    use crate::runtime::repartition::Repartition;
    let mut out = Vec::new();
    let sim = crate::sim::simulate(&crate::sim::SimOptions {
        employees: 10,
        days: 100,
        seed: 7,
        pattern_share: 1.0,
        malformed_share: 0.02,
        time_off_share: 0.2,
        ..Default::default()
    });
    for chunk in sim.records.chunks(sim.records.len().div_ceil(8)) {
        out.push(("event_json", crate::sim::to_json_lines(chunk)));
        out.push(("event_protobuf", crate::sim::to_protobuf(chunk)));
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read(root.join("config/momentd.toml")).unwrap_or_default();
    out.push(("config", shipped.clone()));
    let mut with_env = shipped;
    with_env.extend_from_slice(
        b"\n%%\nMOMENTD__KAFKA__BROKERS=a:9092,b:9092\nMOMENTD__CALENDAR__NON_WORKING_DAYS=2026-12-24..2026-12-26,2027-01-01\nMOMENTD__POPULATION__GAP_SHARE=0.3\nMOMENTD__TIME__ALLOWED_LATENESS=5m\n",
    );
    out.push(("config", with_env));
    if let Ok(deployed) = std::fs::read(root.join("deploy/k8s/base/momentd.toml")) {
        out.push(("config", deployed));
    }
    out.push((
        "config",
        b"[kafka]\nbrokers = \"k:9092\"\ninput_topics = [\"a\", \"b\"]\n[state]\nidle_ttl = \"30d\"\n[calendar]\nnon_working_days = [\"2026-12-25\"]\n%%\nMOMENTD__RULES__FOLLOW_UP__ENABLED=false\n"
            .to_vec(),
    ));
    for format in 1..=4 {
        let Ok(b) =
            std::fs::read(root.join(format!("tests/fixtures/changelog-v{format}/records.bin")))
        else {
            continue;
        };
        let recs = records(&b);
        for chunk in recs.chunks(recs.len().div_ceil(8)) {
            out.push(("changelog", frame(chunk.iter().copied())));
        }
    }
    // A task in publish mode: its contributions as repartition records; its population share.
    let mut e = engine();
    e.publish_contributions(0, 3);
    let mut sink = Vec::new();
    for l in CONTINUATION.lines().take(400) {
        if let Ok(ev) = event::decode(l.as_bytes(), Encoding::Json, None, &limits()) {
            e.apply(&ev, &mut sink);
        }
    }
    let rep = Repartition {
        topic: Arc::from("r"),
        partitions: 3,
    };
    let mut recs = rep.contributions(0, e.take_contributions());
    recs.extend(rep.watermark(0, e.watermark()));
    recs.extend(rep.watermark(1, None));
    let topic: Arc<str> = Arc::from("p");
    for (task, day) in [(0u32, 20_530i32), (1, 20_530), (2, 20_531)] {
        let f = crate::rules::population::DayFigures {
            active: 40,
            present: 31,
            reported: [30, 28],
            collab: 900,
            tasks_completed: 50,
            tasks_planned: 60,
            checkins_completed: 4,
        };
        recs.push(Pop::Share { task, day, f }.record(&topic));
        recs.push(
            Pop::Closed {
                task,
                day: day as i64,
            }
            .record(&topic),
        );
    }
    for r in &recs {
        out.push((
            "internal_topics",
            frame([(r.key.as_deref().unwrap_or_default(), r.payload.as_deref())]),
        ));
    }
    out.push((
        "internal_topics",
        frame(
            recs.iter()
                .map(|r| (r.key.as_deref().unwrap_or_default(), r.payload.as_deref())),
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harnesses reach the engine: a simulated chunk's messages are applied in both
    /// encodings, and the format-4 fixture's records restore employees who go on to fire.
    #[test]
    fn the_harnesses_reach_the_engine() {
        let seeds = seeds();
        let most = |target: &str| {
            seeds
                .iter()
                .filter(|(t, _)| *t == target)
                .map(|(_, b)| {
                    if target == "changelog" {
                        changelog(b).2
                    } else {
                        let enc = if target == "event_json" {
                            Encoding::Json
                        } else {
                            Encoding::Protobuf
                        };
                        input_messages(b, enc)
                    }
                })
                .max()
                .unwrap()
        };
        for target in ["event_json", "event_protobuf"] {
            let (applied, triggers) = most(target);
            assert!(applied > 100, "{target}: {applied} {triggers}");
        }
        let b = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/changelog-v4/records.bin"),
        )
        .unwrap();
        let (taken, employees, (applied, _)) = changelog(&b);
        assert_eq!(taken, records(&b).len());
        assert!(
            employees >= 30 && applied == CONTINUATION_EVENTS.min(1902),
            "{employees} {applied} {:?}",
            changelog(&b)
        );
        assert!(
            most("changelog").1 > 0,
            "restored employees fire: {:?}",
            changelog(&b)
        );
    }

    #[test]
    fn a_cut_short_record_is_left_out() {
        let b = frame([(&b"c"[..], Some(&b"xyz"[..])), (&b"k"[..], None)]);
        assert_eq!(records(&b).len(), 2);
        assert_eq!(records(&b[..b.len() - 1]).len(), 1);
    }
}
