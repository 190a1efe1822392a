//! `momentd simulate` -> `momentd replay` -> `momentd evaluate`: every rule finds what the
//! simulation injected, and nothing else.

use std::path::Path;
use std::process::Command;

fn momentd(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MOMENTD_PSEUDONYM_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "momentd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn simulate(dir: &Path, employees: u32, days: u32, seed: u64, format: &str) {
    momentd(&[
        "simulate",
        "--employees",
        &employees.to_string(),
        "--days",
        &days.to_string(),
        "--seed",
        &seed.to_string(),
        "--format",
        format,
        "--out",
        dir.to_str().unwrap(),
    ]);
}

#[test]
fn every_rule_finds_what_was_injected_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate(d, 700, 130, 11, "json");
    let triggers = d.join("triggers.jsonl");
    replay(&d.join("events.jsonl"), &triggers);
    let rules = &evaluate(d, &triggers);
    assert_eq!(rules.len(), 16, "every rule of the catalog is scored");
    for r in rules {
        let name = r["rule"].as_str().unwrap();
        assert!(
            r["expected"].as_u64().unwrap() > 0,
            "the simulation injects {name}"
        );
        assert_eq!(r["recall"], 1.0, "{name}: {r}");
        assert_eq!(r["precision"], 1.0, "{name}: {r}");
        for k in ["found", "delay_median_hours", "delay_max_hours"] {
            assert!(!r[k].is_null(), "{name}.{k}");
        }
    }
    // The evaluation itself can fail: drop the triggers of one rule and recall falls.
    let kept: String = std::fs::read_to_string(&triggers)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"rule\":\"checkin_lapse\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let partial = d.join("partial.jsonl");
    std::fs::write(&partial, kept).unwrap();
    let lapse = evaluate(d, &partial)
        .into_iter()
        .find(|r| r["rule"] == "checkin_lapse")
        .unwrap();
    assert_eq!(lapse["found"], 0);
    assert_eq!(lapse["recall"], 0.0);
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_another_workforce() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    simulate(a.path(), 200, 110, 5, "json");
    simulate(b.path(), 200, 110, 5, "json");
    simulate(c.path(), 200, 110, 6, "json");
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(
        read(a.path(), "events.jsonl"),
        read(b.path(), "events.jsonl")
    );
    assert_eq!(read(a.path(), "truth.json"), read(b.path(), "truth.json"));
    assert_ne!(
        read(a.path(), "events.jsonl"),
        read(c.path(), "events.jsonl")
    );
}

#[test]
fn protobuf_output_holds_the_same_events_length_delimited() {
    let (j, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate(j.path(), 100, 30, 3, "json");
    simulate(p.path(), 100, 30, 3, "protobuf");
    let lines = std::fs::read_to_string(j.path().join("events.jsonl")).unwrap();
    let bytes = std::fs::read(p.path().join("events.pb")).unwrap();
    let limits = momentd::Limits::default();
    let mut rest = bytes.as_slice();
    let mut n = 0;
    for line in lines.lines() {
        let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        let (msg, tail) = rest.split_at(len);
        rest = tail;
        match momentd::event::decode_json(line.as_bytes(), &limits) {
            Ok(ev) => assert_eq!(
                momentd::event::decode_protobuf(msg, &limits).unwrap(),
                ev,
                "record {n}"
            ),
            Err(_) => assert!(
                momentd::event::decode_protobuf(msg, &limits).is_err(),
                "a malformed record stays malformed"
            ),
        }
        n += 1;
    }
    assert!(rest.is_empty() && n > 1000);
}

fn replay(events: &Path, triggers: &Path) {
    momentd(&[
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--output",
        triggers.to_str().unwrap(),
    ]);
}

/// `evaluate --json` of `triggers` against the simulation's truth in `d`: its rules.
fn evaluate(d: &Path, triggers: &Path) -> Vec<serde_json::Value> {
    let out = momentd(&[
        "evaluate",
        "--json",
        "--truth",
        d.join("truth.json").to_str().unwrap(),
        "--triggers",
        triggers.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["rules"].as_array().unwrap().clone()
}

/// Scores of `replay` over `events` against the truth in `d`.
fn scores(d: &Path, events: &Path) -> Vec<serde_json::Value> {
    let triggers = d.join("scored.jsonl");
    replay(events, &triggers);
    evaluate(d, &triggers)
}

#[test]
fn recorded_time_off_raises_no_trigger_and_hides_no_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    momentd(&[
        "simulate",
        "--employees",
        "700",
        "--days",
        "130",
        "--seed",
        "3",
        "--time-off",
        "0.05",
        "--out",
        d.to_str().unwrap(),
    ]);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("truth.json")).unwrap()).unwrap();
    let off = truth["shifts"].as_array().unwrap().len();
    assert!(off >= 10, "{off} employees on recorded leave");
    for r in scores(d, &d.join("events.jsonl")) {
        assert_eq!(r["recall"], 1.0, "{r}");
        assert_eq!(r["false_positives"], 0, "{r}");
    }
    // The same absences unrecorded: the people away look disengaged.
    let unrecorded: String = std::fs::read_to_string(d.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"type\":\"time_off.recorded\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("unrecorded.jsonl"), unrecorded).unwrap();
    let fp: u64 = scores(d, &d.join("unrecorded.jsonl"))
        .iter()
        .map(|r| r["false_positives"].as_u64().unwrap())
        .sum();
    assert!(
        fp >= off as u64,
        "{fp} false positives without the time off"
    );
}

#[test]
fn a_declared_company_holiday_raises_no_trigger_and_hides_no_pattern_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cal = d.join("calendar.toml");
    momentd(&[
        "simulate",
        "--employees",
        "400",
        "--days",
        "150",
        "--seed",
        "4",
        "--holiday",
        "70:16",
        "--declare-holiday",
        cal.to_str().unwrap(),
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&cal)
        .unwrap()
        .contains("non_working_days"));
    let triggers = d.join("triggers.jsonl");
    momentd(&[
        "replay",
        "--config",
        cal.to_str().unwrap(),
        "--input",
        d.join("events.jsonl").to_str().unwrap(),
        "--output",
        triggers.to_str().unwrap(),
    ]);
    let rules = evaluate(d, &triggers);
    let expected: u64 = rules.iter().map(|r| r["expected"].as_u64().unwrap()).sum();
    assert!(expected >= 12, "patterns after the holiday: {expected}");
    for r in rules {
        assert_eq!(r["recall"], 1.0, "{r}");
        assert_eq!(r["false_positives"], 0, "{r}");
    }
}
