//! `momentd replay` and `momentd validate-config` as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn momentd(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_momentd"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MOMENTD_PSEUDONYM_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("momentd runs");
    if let Some(input) = stdin {
        // A run that refuses to start (a missing key, say) may exit before reading its
        // input: a broken pipe here is part of what such a test checks, not a failure.
        if let Err(e) = child.stdin.take().unwrap().write_all(input) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn triggers(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is a JSON trigger"))
        .collect()
}

#[test]
fn replay_of_the_sample_is_byte_identical_twice() {
    let a = momentd(&["replay", "--input", "examples/sample-events.jsonl"], None);
    let b = momentd(&["replay", "--input", "examples/sample-events.jsonl"], None);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn replay_of_the_sample_finds_each_rule_with_every_contract_field() {
    let out = momentd(&["replay", "--input", "examples/sample-events.jsonl"], None);
    let ts = triggers(&out);
    let mut found: Vec<(String, String)> = ts
        .iter()
        .filter(|t| t["escalation"] == 0)
        .map(|t| {
            (
                t["rule"].as_str().unwrap().to_string(),
                t["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("attrition_risk", "emp-sol"),
            ("checkin_lapse", "emp-dee"),
            ("checkin_lapse", "emp-eli"),
            ("checkin_lapse", "emp-sol"),
            ("cohort_onboarding_stall", "cohort-feb"),
            ("collaboration_decline", "emp-ana"),
            ("feedback_unacknowledged", "emp-nia"),
            ("learning_abandonment", "emp-hal"),
            ("learning_abandonment", "emp-jo"),
            ("learning_confusion", "emp-kim"),
            ("mobility_frustration", "emp-lu"),
            ("mobility_frustration", "emp-sol"),
            ("onboarding_friction", "emp-c5"),
            ("onboarding_friction", "emp-c6"),
            ("onboarding_friction", "emp-rio"),
            ("passive_goals", "emp-max"),
            ("performance_dip", "emp-oz"),
            ("performance_dip", "emp-sol"),
            ("pulse_shortening", "emp-pia"),
            ("recognition_withdrawal", "emp-quin"),
            ("team_sentiment_shift", "team-ops"),
            ("team_training_completion_low", "team-data"),
        ]
        .map(|(r, s)| (r.to_string(), s.to_string()))
        .to_vec(),
        "the sample shows 15 of the 16 rules"
    );
    // Employee and group timers fire one deadline at a time, in time order (the sample has no
    // event that arrives within the allowed lateness after a deadline it could precede).
    let times: Vec<&str> = ts
        .iter()
        .map(|t| t["detected_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for t in &ts {
        for f in [
            "trigger_id",
            "rule",
            "scope",
            "subject",
            "severity",
            "risk_score",
            "detected_at",
            "deliver_by",
            "reasons",
            "action",
            "escalation",
            "rule_version",
        ] {
            assert!(t.get(f).is_some(), "missing {f} in {t}");
        }
        let group = t["rule"].as_str().unwrap().starts_with("team_")
            || t["rule"].as_str().unwrap().starts_with("cohort_");
        assert_eq!(t["scope"] != "employee", group, "{t}");
        if t["action"]["audience"] == "employee" {
            assert!(t["action"]["max_minutes"].as_u64().unwrap() <= 7);
        }
        let r = &t["reasons"][0];
        assert!(r["signal"].is_string() && r["observed"].is_number() && r["threshold"].is_number());
    }
    // The ladder: dee ignored her intervention (escalation 1 at once), then stayed silent
    // (escalation 2); eli never answered; hal and jo completed theirs.
    let mut ladder: Vec<(String, u64, String)> = ts
        .iter()
        .filter(|t| t["escalation"] != 0)
        .map(|t| {
            (
                t["subject"].as_str().unwrap().to_string(),
                t["escalation"].as_u64().unwrap(),
                t["action"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ladder.sort();
    assert_eq!(
        ladder,
        vec![
            ("emp-dee".into(), 1, "office_hours_invite".into()),
            ("emp-dee".into(), 2, "manager_coaching".into()),
            ("emp-eli".into(), 1, "office_hours_invite".into()),
            ("emp-eli".into(), 2, "manager_coaching".into()),
        ]
    );
}

#[test]
fn bad_lines_are_reported_with_line_numbers_counted_and_skipped() {
    let input = concat!(
        r#"{"event_id":"a1","employee_id":"e1","occurred_at":"2026-03-02T09:00:00Z","type":"learning.module_abandoned","attrs":{"module_id":"m","progress_pct":90,"before_assessment":true}}"#,
        "\n",
        "{not json\n",
        "\n",
        r#"{"event_id":"a2","employee_id":"e1","occurred_at":"2026-03-02T09:00:00Z","type":"coffee.break"}"#,
        "\n",
        r#"{"event_id":"a3","employee_id":"e2","occurred_at":"1999-03-02T09:00:00Z","type":"recognition.given"}"#,
        "\n",
        r#"{"event_id":"a4","employee_id":"e2","occurred_at":"2026-03-03T09:00:00Z","type":"learning.module_abandoned","attrs":{"module_id":"n","progress_pct":95,"before_assessment":true}}"#,
        "\n",
    );
    let out = momentd(&["replay", "--input", "-"], Some(input.as_bytes()));
    assert!(out.status.success(), "bad lines do not fail the run");
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert!(err.contains("line 2: malformed_json"), "{err}");
    assert!(err.contains("line 4: unknown_type"), "{err}");
    assert!(err.contains("line 5: timestamp_out_of_range"), "{err}");
    assert!(err.contains("3 rejected"), "{err}");
    assert_eq!(
        triggers(&out).len(),
        2,
        "the good lines around the bad ones still count"
    );

    let strict = momentd(
        &["replay", "--input", "-", "--strict"],
        Some(input.as_bytes()),
    );
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn until_advances_the_clock_so_due_timers_fire() {
    let input = r#"{"event_id":"s1","employee_id":"e1","occurred_at":"2026-03-02T09:00:00Z","type":"learning.module_started","attrs":{"module_id":"m"}}"#;
    let out = momentd(&["replay", "--input", "-"], Some(input.as_bytes()));
    assert!(
        triggers(&out).is_empty(),
        "by default the clock stops at the last event"
    );
    let out = momentd(
        &["replay", "--input", "-", "--until", "2026-03-20T00:00:00Z"],
        Some(input.as_bytes()),
    );
    let ts = triggers(&out);
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0]["detected_at"], "2026-03-16T09:00:00Z");
}

#[test]
fn pseudonymization_needs_its_key_and_hides_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[privacy]\npseudonymize = true\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let input = r#"{"event_id":"a1","employee_id":"emp-secret","occurred_at":"2026-03-02T09:00:00Z","type":"learning.module_abandoned","attrs":{"module_id":"m","progress_pct":90,"before_assessment":true}}"#;
    let refused = momentd(
        &["replay", "--input", "-", "--config", cfg],
        Some(input.as_bytes()),
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("MOMENTD_PSEUDONYM_KEY"));

    let out = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(["replay", "--input", "-", "--config", cfg])
        .env("MOMENTD_PSEUDONYM_KEY", "test-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("emp-secret"), "{text}");
    let t: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(t["subject"].as_str().unwrap().len(), 32);
}

#[test]
fn validate_config_prints_every_rule_and_rejects_bad_values_by_key() {
    let ok = momentd(
        &["validate-config", "--config", "config/momentd.toml"],
        None,
    );
    assert!(ok.status.success());
    let text = String::from_utf8(ok.stdout).unwrap();
    for rule in [
        "collaboration_decline",
        "recognition_withdrawal",
        "pulse_shortening",
        "checkin_lapse",
        "feedback_unacknowledged",
        "passive_goals",
        "learning_abandonment",
        "learning_confusion",
        "onboarding_friction",
        "mobility_frustration",
        "performance_dip",
        "attrition_risk",
        "cohort_onboarding_stall",
        "team_training_completion_low",
        "team_checkin_drop",
        "team_sentiment_shift",
    ] {
        assert!(text.contains(rule), "{rule} missing from:\n{text}");
    }
    assert!(
        text.contains("ratio = 0.5") && text.contains("grace = \"72h\""),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("[rules.collaboration_decline]\nratio = 1.5\n", "rules.collaboration_decline.ratio"),
        ("[rules.checkin_lapse]\ngrace = \"-3d\"\n", "rules.checkin_lapse.grace"),
        ("[rules.learning_abandonment.action]\nkind = \"micro_lesson\"\nmax_minutes = 9\naudience = \"employee\"\n", "rules.learning_abandonment.action.max_minutes"),
        ("[rules.checkin_lapse]\nnope = 1\n", "nope"),
    ] {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, body).unwrap();
        let out = momentd(&["validate-config", "--config", p.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{body}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(key), "{key} not named in: {err}");
    }
}

/// One line dated years ahead in an export of the past is rejected as out of range — more than a day
/// ahead of the wall clock, as in `run` — instead of moving the clock to 9999 and firing every
/// pending timer: the export gives the triggers it gives without that line. `--now` pins the
/// clock (the same export replays the same whenever); pinned past the bad line, it is taken,
/// and the timers all fire (the guard is what stops them).
#[test]
fn a_line_from_the_far_future_does_not_fire_every_timer() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-events.jsonl"),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(sample.lines().next().unwrap()).unwrap();
    let mut bad = first.clone();
    bad["event_id"] = "far-future".into();
    // (Years ahead rather than 9999: taken below, the engine closes each day up to it.)
    bad["occurred_at"] = "2036-01-01T00:00:00Z".into();
    let with = format!("{sample}{bad}\n");
    let plain = momentd(&["replay", "--input", "examples/sample-events.jsonl"], None);
    let guarded = momentd(&["replay", "--input", "-"], Some(with.as_bytes()));
    assert!(guarded.status.success());
    assert_eq!(
        String::from_utf8_lossy(&guarded.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "the same triggers as without the line"
    );
    assert!(String::from_utf8_lossy(&guarded.stderr).contains("timestamp_out_of_range"));
    let pinned = momentd(
        &["replay", "--input", "-", "--now", "2026-06-01T00:00:00Z"],
        Some(with.as_bytes()),
    );
    assert_eq!(
        pinned.stdout, guarded.stdout,
        "pinned to a past day: the same"
    );
    let taken = momentd(
        &["replay", "--input", "-", "--now", "2036-01-01T00:00:00Z"],
        Some(with.as_bytes()),
    );
    assert!(
        triggers(&taken).len() > triggers(&plain).len(),
        "taken, the line fires every pending timer"
    );
    let refused = momentd(&["replay", "--input", "-", "--now", "yesterday"], Some(b""));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--now"));
}
