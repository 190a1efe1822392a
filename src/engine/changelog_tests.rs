//! The changelog's promise, without a broker: an engine checkpointed, crashed (its last
//! checkpoint cut short, its commit lost) and restored any number of times gives the triggers
//! an uninterrupted engine gives.

use std::collections::BTreeMap;

use super::changelog::{Record, Restorer, FORMAT};
use super::*;
use crate::config::Settings;
use crate::sim::SimOptions;

/// A simulation whose state includes recorded time off (a tenth of the ordinary employees).
fn events(employees: u32, days: u32, seed: u64) -> Vec<Event<'static>> {
    events_of(&SimOptions {
        employees,
        days,
        seed,
        time_off_share: 0.1,
        ..Default::default()
    })
}

/// The events of a simulation (its malformed records left out).
fn events_of(opts: &SimOptions) -> Vec<Event<'static>> {
    super::test_support::sim_events(opts)
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.audit.enabled = true;
    s
}

fn engine(s: &Settings, p: Option<Pseudonymizer>) -> Engine {
    Engine::from_settings(s, p)
}

/// Triggers by id; a trigger seen twice must be the same trigger.
fn by_id(outputs: &[Output], into: &mut BTreeMap<String, Trigger>) {
    for o in outputs {
        if let Output::Trigger(t) = o {
            if let Some(prev) = into.insert(t.trigger_id.clone(), t.clone()) {
                assert_eq!(&prev, t, "a redelivered trigger id with other content");
            }
        }
    }
}

fn uninterrupted(
    s: &Settings,
    p: Option<Pseudonymizer>,
    evs: &[Event<'_>],
) -> BTreeMap<String, Trigger> {
    let mut e = engine(s, p);
    let mut out = Vec::new();
    for ev in evs {
        e.apply(ev, &mut out);
    }
    let mut m = BTreeMap::new();
    by_id(&out, &mut m);
    m
}

use super::test_support::{same_triggers, Lcg};

fn restore(s: &Settings, p: Option<Pseudonymizer>, log: &[Record], topics: &[String]) -> Engine {
    let mut r = Restorer::default();
    for rec in log {
        r.add(&rec.key, rec.value.as_deref())
            .expect("every record decodes");
    }
    let mut e = engine(s, p);
    assert!(r.finish(&mut e, topics));
    e
}

/// Runs `evs` as a daemon would, with a checkpoint every few hundred events and `crashes`
/// crashes: at each, the last checkpoint is cut to a prefix of its records, and the commit of
/// its offset may be lost; the next instance restores from the whole log and reads the input
/// again from the committed offset. Returns the union of every instance's triggers.
fn with_crashes(
    s: &Settings,
    p: Option<Pseudonymizer>,
    evs: &[Event<'_>],
    crashes: usize,
    seed: u64,
) -> (BTreeMap<String, Trigger>, Vec<Record>) {
    let topics = vec!["in".to_string()];
    let mut rng = Lcg(seed);
    let n = evs.len() as u64;
    let mut crash_at: Vec<u64> = (0..crashes).map(|_| rng.next(n)).collect();
    crash_at.sort_unstable();
    let mut log: Vec<Record> = Vec::new();
    let mut committed: i64 = 0;
    let mut all = BTreeMap::new();
    let mut e = engine(s, p.clone());
    let mut out = Vec::new();
    let mut pos = 0i64;
    let mut next_checkpoint = 1 + rng.next(400) as i64;
    let mut crash = crash_at.into_iter().peekable();
    while (pos as usize) < evs.len() {
        let ev = &evs[pos as usize];
        let keys = e.keys(ev);
        e.apply_at(ev, keys, (0, pos), &mut out);
        pos += 1;
        if pos >= next_checkpoint || pos as usize == evs.len() {
            // Outputs are acknowledged before the checkpoint is written.
            by_id(&out, &mut all);
            out.clear();
            let start = log.len();
            e.checkpoint(&topics, &[pos], &mut log);
            let previous = committed;
            committed = pos;
            // Mostly short intervals; some longer than the dedup horizon in event time, so
            // that only the positions (not the event ids) can tell what the state holds.
            let span = if rng.next(3) == 0 { 40_000 } else { 400 };
            next_checkpoint = pos + 1 + rng.next(span) as i64;
            if crash.peek().is_some_and(|&c| c < pos as u64) {
                crash.next();
                // Cut the checkpoint short, maybe to nothing; lose the commit unless the
                // whole checkpoint got through (the commit follows the checkpoint).
                let written = log.len() - start;
                let keep = rng.next(written as u64 + 1) as usize;
                log.truncate(start + keep);
                if keep < written || rng.next(2) == 0 {
                    committed = previous;
                }
                // Triggers after the commit, before the crash, were published: they stay in
                // `all`. The next instance starts from the log and the committed offset.
                e = restore(s, p.clone(), &log, &topics);
                pos = committed;
            }
        }
    }
    by_id(&out, &mut all);
    (all, log)
}

#[test]
fn crashes_and_restores_give_the_uninterrupted_triggers() {
    let s = settings();
    let evs = events(240, 100, 11);
    let want = uninterrupted(&s, None, &evs);
    assert!(want.len() > 30, "the stream fires: {}", want.len());
    for (crashes, seed) in [(1, 1), (2, 2), (5, 3), (12, 4)] {
        let (got, _) = with_crashes(&s, None, &evs, crashes, seed);
        same_triggers(&want, &got, &format!("{crashes} crashes (seed {seed})"));
    }
}

/// The population's figures (a task that is its own population, as `replay`) survive crashes:
/// the share of the open days and the figures of the closed ones are restored, whatever
/// prefix of a checkpoint got through — with an undeclared holiday and a feed outage, found
/// from those figures. (And they matter: without them other triggers fire.)
#[test]
fn population_figures_survive_restores() {
    let s = settings();
    let evs = events_of(&SimOptions {
        employees: 200,
        days: 110,
        seed: 12,
        pattern_share: 1.0,
        holiday: Some((80, 12)),
        outages: vec![(crate::rules::presence::Source::Collab, 66, 4)],
        ..Default::default()
    });
    let want = uninterrupted(&s, None, &evs);
    let mut off = s.clone();
    off.population.relative = false;
    off.population.gap_share = 0.0;
    assert!(
        uninterrupted(&off, None, &evs).len() > want.len() + 10,
        "the population changes the triggers"
    );
    for (crashes, seed) in [(3, 5), (10, 6)] {
        let (got, log) = with_crashes(&s, None, &evs, crashes, seed);
        assert!(log.iter().any(|r| r.key == b"f") && log.iter().any(|r| r.key == b"p"));
        same_triggers(&want, &got, &format!("{crashes} crashes (seed {seed})"));
    }
}

#[test]
fn group_rules_survive_restores_too() {
    let s = settings();
    let evs = events(160, 120, 3);
    let want = uninterrupted(&s, None, &evs);
    let groups = want
        .values()
        .filter(|t| t.scope != crate::trigger::Scope::Employee)
        .count();
    assert!(groups > 0, "the stream has group triggers");
    let (got, _) = with_crashes(&s, None, &evs, 6, 9);
    assert_eq!(got, want);
}

#[test]
fn a_restore_without_skipping_would_count_twice() {
    // The test above can fail: restoring and reading again from the committed offset without
    // the skip (a fresh engine from the records, its positions forgotten) gives other triggers.
    let s = settings();
    let evs = events(120, 100, 11);
    let want = uninterrupted(&s, None, &evs);
    let topics = vec!["in".to_string()];
    let mut e = engine(&s, None);
    let mut out = Vec::new();
    let mut log = Vec::new();
    let half = evs.len() / 2;
    for ev in &evs[..half] {
        e.apply(ev, &mut out);
    }
    e.checkpoint(&topics, &[half as i64], &mut log);
    let mut r = Restorer::default();
    for rec in &log {
        r.add(&rec.key, rec.value.as_deref()).unwrap();
    }
    let mut e2 = engine(&s, None);
    // Positions under other topics: nothing is skipped.
    assert!(!r.finish(&mut e2, &["other".to_string()]));
    // Read again from well before the checkpoint (a commit lost twenty days back).
    let from = half - half / 3;
    for ev in &evs[from..] {
        e2.apply(ev, &mut out);
    }
    let mut got = BTreeMap::new();
    by_id(&out, &mut got);
    assert_ne!(
        got, want,
        "re-applying events the state holds changes the outcome"
    );
}

#[test]
fn pseudonymized_changelog_holds_no_employee_id() {
    let s = settings();
    let evs = events(60, 40, 5);
    let p = Pseudonymizer::new(b"test key");
    let want = uninterrupted(&s, Some(p.clone()), &evs);
    let (got, log) = with_crashes(&s, Some(p), &evs, 3, 7);
    assert_eq!(got, want);
    let mut ids: Vec<String> = evs.iter().map(|e| e.employee_id.to_string()).collect();
    ids.sort();
    ids.dedup();
    assert!(!log.is_empty());
    for rec in &log {
        let bytes = [rec.key.as_slice(), rec.value.as_deref().unwrap_or_default()].concat();
        for id in &ids {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "a changelog record holds {id}"
            );
        }
    }
    // Without pseudonymization the subject is the id (the check above can fail).
    let (_, plain) = with_crashes(&s, None, &evs, 0, 7);
    assert!(plain.iter().any(|r| {
        let v = r.value.as_deref().unwrap_or_default();
        v.windows(ids[0].len()).any(|w| w == ids[0].as_bytes())
    }));
}

#[test]
fn only_changed_state_is_written_once_per_checkpoint() {
    let s = settings();
    let mut h = super::test_support::H::with(s.clone(), None);
    let topics = vec!["in".to_string()];
    let t0 = super::test_support::day(0);
    for i in 0..50 {
        h.send("a", t0 + i * 1000, Kind::RecognitionGiven);
    }
    h.send("b", t0 + 60_000, Kind::RecognitionGiven);
    let mut log = Vec::new();
    let w = h.engine.checkpoint(&topics, &[51], &mut log);
    assert_eq!(
        (w.employees, w.clock),
        (2, 1),
        "one record per changed employee"
    );
    let w = h.engine.checkpoint(&topics, &[51], &mut log);
    assert_eq!(
        w.total(),
        0,
        "nothing changed, clock unchanged: nothing written"
    );
    h.send("b", t0 + 70_000, Kind::RecognitionGiven);
    let w = h.engine.checkpoint(&topics, &[52], &mut log);
    assert_eq!((w.employees, w.clock), (1, 1));
    assert!(log.iter().all(|r| r.value.as_ref().unwrap()[0] == FORMAT));
}

#[test]
fn erased_employee_stays_erased_after_a_restore() {
    let s = settings();
    let topics = vec!["in".to_string()];
    let mut h = super::test_support::H::with(s.clone(), None);
    let t0 = super::test_support::day(0);
    for d in 0..3 {
        h.send_in(
            "gone",
            Some("t1"),
            Some("c1"),
            t0 + d * crate::time::DAY,
            Kind::TaskStarted {
                task_id: s_("forms"),
            },
        );
    }
    let erased_at = t0 + 3 * crate::time::DAY;
    h.send("gone", erased_at, Kind::Erased);
    // The group stage takes the erasure in event-time order: a restore before its time has
    // come holds it waiting, and it still forgets them when it comes.
    let mut log = Vec::new();
    h.engine.checkpoint(&topics, &[4], &mut log);
    let mut early = restore(&s, None, &log, &topics);
    assert_eq!(early.employees(), 0, "nothing about them is restored");
    assert_eq!(early.buffered_contributions(), 1, "the erasure waits");
    let mut out = Vec::new();
    early.advance(erased_at + 2 * crate::time::HOUR, &mut out);
    assert!(early.groups.fingerprints().is_empty());
    // Once the stage's time has passed it, the groups' records no longer hold them.
    h.advance(erased_at + 2 * crate::time::HOUR);
    assert!(h.engine.groups.fingerprints().is_empty());
    h.engine.checkpoint(&topics, &[5], &mut log);
    let mut e = restore(&s, None, &log, &topics);
    assert_eq!(e.employees(), 0);
    assert!(
        e.groups.fingerprints().is_empty(),
        "no fingerprint left in group state"
    );
    assert_eq!(e.buffered_contributions(), 0);
    let late = h.event_in(
        "gone",
        Some("t1"),
        None,
        t0 + 4 * crate::time::DAY,
        Kind::RecognitionGiven,
    );
    let mut out = Vec::new();
    let k = e.keys(&late);
    assert_eq!(e.apply_at(&late, k, (0, 5), &mut out), Outcome::Erased);
    assert!(out.is_empty());
    assert!(e.state_of("gone").is_none());
}

fn s_(v: &str) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Owned(v.to_string())
}

#[test]
fn bad_records_are_refused_not_panicked_on() {
    let mut r = Restorer::default();
    assert!(r.add(b"zzz", Some(&[FORMAT, 1, 2])).is_err());
    assert!(r.add(b"c", Some(&[])).is_err());
    assert!(r.add(b"c", Some(&[FORMAT + 1, 0])).is_err());
    assert!(r.add(b"c", Some(&[FORMAT, 0xff, 0xff, 0xff])).is_err());
    let mut k = vec![b'e'];
    k.extend([7u8; 16]);
    assert!(r.add(&k, Some(&[FORMAT, 9, 9, 9, 9])).is_err());
    assert!(r.add(&k, None).is_ok(), "a tombstone for an unknown key");
    let mut e = engine(&settings(), None);
    r.finish(&mut e, &["in".to_string()]);
    assert_eq!(e.employees(), 0);
}

/// The fixtures of each format's records (`tests/fixtures/changelog-v{format}/`), written by
/// the version that introduced the format from a simulated stream checkpointed at day 70, with
/// the rest of the stream and the triggers the uninterrupted engine gave for it. Every later
/// momentd must restore them and, given the rest of the stream, give those triggers. (A change
/// to a rule's behaviour regenerates the current format's with `MOMENTD_WRITE_FIXTURE=1`; a
/// change to the format adds a fixture and must not stop the earlier ones from restoring.)
fn fixture(format: u8) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/changelog-v{format}"))
}

/// The fixtures' framing is the fuzz targets' (`crate::fuzzing::frame`).
fn write_records(path: &std::path::Path, log: &[Record]) {
    let b = crate::fuzzing::frame(log.iter().map(|r| (r.key.as_slice(), r.value.as_deref())));
    std::fs::write(path, b).unwrap();
}

fn read_records(path: &std::path::Path) -> Vec<Record> {
    let b = std::fs::read(path).expect("the fixture exists");
    crate::fuzzing::records(&b)
        .into_iter()
        .map(|(key, value)| Record {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        })
        .collect()
}

#[test]
fn records_of_format_1_restore_and_continue_as_they_did() {
    restores_fixture(1);
}

#[test]
fn records_of_format_2_restore_and_continue_as_they_did() {
    restores_fixture(2);
}

#[test]
fn records_of_format_3_restore_and_continue_as_they_did() {
    restores_fixture(3);
}

#[test]
fn records_of_format_4_restore_and_continue_as_they_did() {
    restores_fixture(4);
}

fn restores_fixture(format: u8) {
    let s = settings();
    let topics = vec!["in".to_string()];
    let dir = &fixture(format);
    if format == super::changelog::FORMAT && std::env::var_os("MOMENTD_WRITE_FIXTURE").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        let evs = events_of(&SimOptions {
            employees: 40,
            days: 90,
            seed: 21,
            pattern_share: 1.0,
            // (Format 3 adds recorded time off to the state: the fixture holds some.)
            time_off_share: if format >= 3 { 0.3 } else { 0.0 },
            // (Format 4 adds the population's figures: a feed outage among them.)
            outages: if format >= 4 {
                vec![(crate::rules::presence::Source::Tasks, 60, 3)]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        let cut = evs
            .iter()
            .position(|e| e.occurred_at >= evs[0].occurred_at + 70 * crate::time::DAY)
            .unwrap();
        let mut e = engine(&s, None);
        let mut out = Vec::new();
        for ev in &evs[..cut] {
            e.apply(ev, &mut out);
        }
        let mut log = Vec::new();
        e.checkpoint(&topics, &[cut as i64], &mut log);
        write_records(&dir.join("records.bin"), &log);
        out.clear();
        let mut rest = String::new();
        for ev in &evs[cut..] {
            rest.push_str(&crate::event::encode_json(ev));
            rest.push('\n');
            e.apply(ev, &mut out);
        }
        std::fs::write(dir.join("rest.jsonl"), rest).unwrap();
        let triggers: String = out
            .iter()
            .filter_map(|o| match o {
                Output::Trigger(t) => Some(t.to_json() + "\n"),
                _ => None,
            })
            .collect();
        std::fs::write(dir.join("triggers.jsonl"), triggers).unwrap();
    }
    let log = read_records(&dir.join("records.bin"));
    assert!(log
        .iter()
        .all(|r| r.value.as_ref().is_some_and(|v| v[0] == format)));
    let mut e = restore(&s, None, &log, &topics);
    assert_eq!(e.employees(), 40);
    let rest = std::fs::read_to_string(dir.join("rest.jsonl")).unwrap();
    let limits = crate::event::Limits {
        max_event_bytes: 65536,
        now: None,
        max_future: crate::time::DAY,
    };
    let mut out = Vec::new();
    for (n, line) in rest.lines().enumerate() {
        let ev = crate::event::decode(line.as_bytes(), crate::event::Encoding::Json, None, &limits)
            .expect("the fixture's events decode");
        let k = e.keys(&ev);
        e.apply_at(&ev, k, (0, (log.len() + n) as i64 + 1_000_000), &mut out);
    }
    // (`rule_version` hashes the configuration's schema too: a version that added settings
    // has other hashes for the same rules. What the restore must keep is everything else.)
    let unversioned = |json: &str| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("rule_version");
        v
    };
    let got: Vec<serde_json::Value> = out
        .iter()
        .filter_map(|o| match o {
            Output::Trigger(t) => Some(unversioned(&t.to_json())),
            _ => None,
        })
        .collect();
    let want: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("triggers.jsonl"))
        .unwrap()
        .lines()
        .map(unversioned)
        .collect();
    assert!(!want.is_empty(), "the fixture's continuation fires");
    assert_eq!(got, want);
}

#[test]
fn idle_employees_are_evicted_with_a_tombstone_and_flags_stay() {
    let mut s = settings();
    s.state.idle_ttl = crate::config::Dur(std::time::Duration::from_secs(30 * 86_400));
    let topics = vec!["in".to_string()];
    let mut h = super::test_support::H::with(s.clone(), None);
    let day = super::test_support::day;
    h.send("quiet", day(0), Kind::RecognitionGiven);
    h.send("private", day(0), Kind::RecognitionGiven);
    h.send(
        "private",
        day(1),
        Kind::ConsentUpdated {
            individual_processing: false,
        },
    );
    let mut log = Vec::new();
    h.engine.checkpoint(&topics, &[3], &mut log);
    h.send("busy", day(31), Kind::RecognitionGiven);
    assert!(h.engine.state_of("quiet").is_some(), "30 days idle: kept");
    h.send("busy", day(32), Kind::RecognitionGiven);
    assert!(
        h.engine.state_of("quiet").is_none(),
        "31 days idle: evicted"
    );
    let private = h
        .engine
        .state_of("private")
        .expect("the consent flag is kept");
    assert!(private.has(CONSENT_WITHDRAWN) && !private.has_history());
    let start = log.len();
    let w = h.engine.checkpoint(&topics, &[5], &mut log);
    assert_eq!(w.evicted, 1);
    let key = changelog::employee_record_key("quiet", None);
    // First a mark with the position (a checkpoint cut after it must not make the input read
    // again rebuild them from nothing), then, once that checkpoint's clock is out, a tombstone.
    let mark = log[start..].iter().find(|r| r.key == key).expect("a mark");
    assert_eq!(changelog::record_kind(mark.value.as_deref()), Ok("evicted"));
    let start = log.len();
    let w = h.engine.checkpoint(&topics, &[6], &mut log);
    assert_eq!(w.evicted, 1);
    assert!(
        log[start..]
            .iter()
            .any(|r| r.key == key && r.value.is_none()),
        "a tombstone"
    );
    // Restored, the evicted employee is gone and the private one still private.
    let e = restore(&s, None, &log, &topics);
    assert!(e.state_of("quiet").is_none());
    assert!(e
        .state_of("private")
        .is_some_and(|p| p.has(CONSENT_WITHDRAWN)));
}

#[test]
fn evictions_survive_crashes_too() {
    let mut s = settings();
    // Two days: the weekend evicts most of the workforce, Monday brings them back.
    s.state.idle_ttl = crate::config::Dur(std::time::Duration::from_secs(2 * 86_400));
    let evs = events(160, 100, 13);
    let want = uninterrupted(&s, None, &evs);
    let (got, log) = with_crashes(&s, None, &evs, 5, 21);
    assert!(
        log.iter().any(|r| r.value.is_none()),
        "some employee was evicted"
    );
    assert_eq!(got, want);
}

/// Format 2: a restore keeps each employee's state as bytes until the employee's next event or
/// deadline needs it. Bytes that turn out not to decode then are counted, and the employee
/// goes on from the flags its record held beside them — a withdrawn consent stays withdrawn.
#[test]
fn restored_states_stay_packed_until_needed_and_a_corrupt_one_keeps_its_flags() {
    let s = settings();
    let topics = vec!["in".to_string()];
    let mut h = super::test_support::H::with(s.clone(), None);
    let day = super::test_support::day;
    for who in ["ana", "ben", "private"] {
        h.send(who, day(0), Kind::RecognitionGiven);
    }
    h.send(
        "private",
        day(1),
        Kind::ConsentUpdated {
            individual_processing: false,
        },
    );
    let mut log = Vec::new();
    h.engine.checkpoint(&topics, &[4], &mut log);
    let e = restore(&s, None, &log, &topics);
    assert_eq!((e.employees(), e.packed()), (3, 3), "all held as bytes");
    // The last bytes of an employee value are its state's: make them undecodable (an
    // `Option` tag of 0xff), leaving the record itself readable.
    let key = changelog::employee_record_key("private", None);
    let mut bad = log.clone();
    let rec = bad.iter_mut().find(|r| r.key == key).unwrap();
    let v = rec.value.as_mut().unwrap();
    let n = v.len();
    v[n - 8..].fill(0xff);
    let mut h2 = super::test_support::H::with(s.clone(), None);
    h2.engine = restore(&s, None, &bad, &topics);
    assert_eq!(h2.engine.packed(), 3);
    h2.send("ana", day(2), Kind::RecognitionGiven);
    assert_eq!(h2.engine.packed(), 2, "ana's state decoded at her event");
    assert_eq!(h2.engine.corrupt_states(), 0);
    h2.send("private", day(2), Kind::RecognitionGiven);
    assert_eq!(h2.engine.corrupt_states(), 1);
    let private = h2.engine.state_of("private").expect("kept from its flags");
    assert!(private.has(CONSENT_WITHDRAWN));
    // The next checkpoint writes a readable record for them again.
    let mut again = Vec::new();
    h2.engine.checkpoint(&topics, &[6], &mut again);
    assert!(again.iter().any(|r| r.key == key));
    let e3 = restore(&s, None, &[bad, again].concat(), &topics);
    assert!(e3
        .state_of("private")
        .is_some_and(|p| p.has(CONSENT_WITHDRAWN)));
}

/// Deadlines are taken from the records only under the rules they were written under: with a
/// rule's parameters changed, the restore decodes every state and derives the deadlines anew
/// (debug builds check each slot's deadlines against its state's when it fires).
#[test]
fn a_restore_under_changed_rules_decodes_and_derives_the_deadlines() {
    let s = settings();
    let topics = vec!["in".to_string()];
    let evs = events(30, 40, 9);
    let mut e = engine(&s, None);
    let mut out = Vec::new();
    for ev in &evs {
        e.apply(ev, &mut out);
    }
    let mut log = Vec::new();
    e.checkpoint(&topics, &[evs.len() as i64], &mut log);
    let same = restore(&s, None, &log, &topics);
    assert_eq!(same.packed(), same.employees());
    let mut changed = s.clone();
    changed.rules.recognition_withdrawal.quiet_window = crate::config::Dur::days(25);
    let other = restore(&changed, None, &log, &topics);
    assert_eq!(other.packed(), 0, "decoded at once");
    assert_eq!(other.employees(), same.employees());
    let not_before = other.watermark.saturating_add(1);
    let mut moved = 0;
    let hinted: BTreeMap<u128, Option<Ts>> = same.slots.iter().map(|a| (a.key, a.due)).collect();
    for b in &other.slots {
        let want = Dues::of(&other.ctx.rules, &b.state)
            .min()
            .map(|d| d.max(not_before));
        assert_eq!(b.due, want, "deadlines derived under the rules now");
        moved += usize::from(hinted[&b.key] != b.due);
    }
    assert!(
        moved > 0,
        "the change moves some deadline (else this shows nothing)"
    );
}
