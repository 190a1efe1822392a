use super::test_support::{day, s, H};
use super::*;
use crate::config::Settings;
use crate::time::HOUR;

// --- collaboration_decline --------------------------------------------------------------------

/// 56 days at `base` per day, then 14 days at `recent` per day (days 0..=69).
fn collaboration_history(h: &mut H, emp: &str, base: u32, recent: u32) {
    for d in 0..70 {
        let v = if d < 56 { base } else { recent };
        h.send(
            emp,
            day(d) + 10 * HOUR,
            Kind::CollabActivity {
                messages: v,
                meetings: 0,
            },
        );
    }
}

#[test]
fn collaboration_decline_fires_at_the_close_of_the_first_eligible_day() {
    let mut h = H::new();
    collaboration_history(&mut h, "ana", 20, 4);
    assert!(h.triggers().is_empty(), "day 69 has not closed yet");
    h.advance(day(70) + 2 * HOUR);
    let tr = h.triggers();
    assert_eq!(tr.len(), 1);
    let tr = tr[0];
    assert_eq!(tr.rule, "collaboration_decline");
    assert_eq!(tr.subject, "ana");
    assert_eq!(tr.detected_at, "2026-03-16T00:00:00Z"); // the end of day 69
    assert_eq!(tr.deliver_by, "2026-03-18T00:00:00Z");
    assert_eq!(tr.severity, crate::trigger::Severity::High);
    assert_eq!(tr.risk_score, 25.0);
    assert_eq!(tr.action.kind, "micro_lesson");
    assert_eq!(tr.action.audience, "employee");
    let r = &tr.reasons[0];
    assert_eq!(
        (r.observed, r.baseline, r.threshold, r.window_days),
        (4.0, Some(20.0), 10.0, Some(14))
    );
}

#[test]
fn collaboration_that_stays_above_the_ratio_is_quiet() {
    let mut h = H::new();
    collaboration_history(&mut h, "ana", 20, 11);
    // Keep the rollups coming at 11/day (55% of the baseline) for another week.
    for d in 70..77 {
        h.send(
            "ana",
            day(d) + 10 * HOUR,
            Kind::CollabActivity {
                messages: 11,
                meetings: 0,
            },
        );
    }
    h.advance(day(77));
    assert!(h.triggers().is_empty());
    assert!(h.out.is_empty(), "not even a suppressed decision");
}

#[test]
fn collaboration_decline_needs_seventy_days_and_a_baseline_of_five() {
    let mut h = H::new();
    // 55 days of baseline then silence: at the close of day 68 only 69 days of history.
    for d in 1..56 {
        h.send(
            "bo",
            day(d) + HOUR,
            Kind::CollabActivity {
                messages: 20,
                meetings: 0,
            },
        );
    }
    h.advance(day(70));
    assert!(h.triggers().is_empty(), "69 days of history is not enough");
    h.advance(day(71));
    assert_eq!(
        h.triggers().len(),
        1,
        "on day 70 it is: and silence counts as zero"
    );

    let mut h = H::new();
    collaboration_history(&mut h, "cy", 4, 0);
    h.advance(day(140));
    assert!(
        h.triggers().is_empty(),
        "a baseline under 5 per day is too thin to judge"
    );
}

#[test]
fn late_rollup_does_not_refire_a_closed_day() {
    let mut h = H::new();
    collaboration_history(&mut h, "ana", 20, 4);
    h.advance(day(70) + 2 * HOUR);
    assert_eq!(h.decisions("collaboration_decline"), vec![Decision::Fired]);
    // A late rollup into the recent window: counted, but day 69 is not evaluated again.
    let before = h.engine.state_of("ana").unwrap().collaboration.clone();
    h.send(
        "ana",
        day(60) + HOUR,
        Kind::CollabActivity {
            messages: 1,
            meetings: 0,
        },
    );
    assert_ne!(
        h.engine.state_of("ana").unwrap().collaboration,
        before,
        "the late rollup counts"
    );
    assert_eq!(h.decisions("collaboration_decline"), vec![Decision::Fired]);
}

// --- checkin_lapse ----------------------------------------------------------------------------

#[test]
fn skipped_twice_fires_checkin_lapse() {
    let mut h = H::new();
    h.send(
        "dee",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    h.send(
        "dee",
        day(1),
        Kind::CheckinSkipped {
            checkin_id: s("c1"),
        },
    );
    h.send(
        "dee",
        day(14),
        Kind::CheckinScheduled {
            checkin_id: s("c2"),
            due_at: day(15),
        },
    );
    assert!(h.triggers().is_empty());
    h.send(
        "dee",
        day(15) + HOUR,
        Kind::CheckinSkipped {
            checkin_id: s("c2"),
        },
    );
    let tr = h.triggers();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].rule, "checkin_lapse");
    assert_eq!(tr[0].detected_at, "2026-01-20T01:00:00Z");
    assert_eq!(tr[0].action.kind, "manager_coaching");
    assert_eq!(tr[0].reasons[0].observed, 2.0);
    assert_eq!(tr[0].reasons[0].threshold, 2.0);
    assert!(tr[0].reasons[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("skipped at 2026-01-06T00:00:00Z"));
}

#[test]
fn a_single_missed_checkin_is_quiet() {
    let mut h = H::new();
    h.send(
        "dee",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    h.send(
        "dee",
        day(1),
        Kind::CheckinSkipped {
            checkin_id: s("c1"),
        },
    );
    h.send(
        "dee",
        day(14),
        Kind::CheckinScheduled {
            checkin_id: s("c2"),
            due_at: day(15),
        },
    );
    h.send(
        "dee",
        day(15),
        Kind::CheckinCompleted {
            checkin_id: s("c2"),
        },
    );
    h.send(
        "dee",
        day(28),
        Kind::CheckinScheduled {
            checkin_id: s("c3"),
            due_at: day(29),
        },
    );
    h.send(
        "dee",
        day(29),
        Kind::CheckinSkipped {
            checkin_id: s("c3"),
        },
    );
    h.advance(day(60));
    assert!(
        h.triggers().is_empty(),
        "a completion breaks the run of misses"
    );
}

#[test]
fn silent_misses_fire_when_the_watermark_passes_due_plus_grace() {
    let mut h = H::new();
    h.send(
        "eli",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    h.send(
        "eli",
        day(14),
        Kind::CheckinScheduled {
            checkin_id: s("c2"),
            due_at: day(15),
        },
    );
    // The deadline of c2 is day 18; another employee's event moves the watermark to 1 h before.
    h.send("zed", day(18), Kind::RecognitionGiven);
    assert!(
        h.triggers().is_empty(),
        "the watermark lags by the allowed lateness"
    );
    h.send("zed", day(18) + HOUR, Kind::RecognitionGiven);
    let tr = h.triggers();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].subject, "eli");
    assert_eq!(tr[0].detected_at, "2026-01-23T00:00:00Z");
    assert!(tr[0].reasons[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("not completed within 72 h"));
}

#[test]
fn redelivered_event_counts_once() {
    let mut h = H::new();
    h.send(
        "fay",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    let skip = h.event(
        "fay",
        day(1),
        Kind::CheckinSkipped {
            checkin_id: s("c1"),
        },
    );
    assert_eq!(h.send_event(&skip), Outcome::Applied);
    assert_eq!(h.send_event(&skip), Outcome::Duplicate);
    assert_eq!(h.send_event(&skip), Outcome::Duplicate);
    // A second skip of the same check-in under a new event id is a real event, but it does not
    // make a second check-in missed in a row: only the same id re-sent three times.
    h.advance(day(30));
    assert!(h.triggers().is_empty());
}

#[test]
fn late_completion_does_not_undo_a_miss_already_counted() {
    let mut h = H::new();
    h.send(
        "gus",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    h.advance(day(5));
    // c1 missed at day 4 by the timer. A completion for c1 that arrives late resets the run
    // (a completion shows re-engagement) but does not fire anything.
    h.send(
        "gus",
        day(3),
        Kind::CheckinCompleted {
            checkin_id: s("c1"),
        },
    );
    h.send(
        "gus",
        day(14),
        Kind::CheckinScheduled {
            checkin_id: s("c2"),
            due_at: day(15),
        },
    );
    h.send(
        "gus",
        day(15),
        Kind::CheckinSkipped {
            checkin_id: s("c2"),
        },
    );
    assert!(h.triggers().is_empty());
}

// --- learning_abandonment ---------------------------------------------------------------------

#[test]
fn abandoned_before_assessment_fires_with_that_module() {
    let mut h = H::new();
    h.send(
        "hal",
        day(0),
        Kind::ModuleStarted {
            module_id: s("sql-101"),
        },
    );
    h.send(
        "hal",
        day(2),
        Kind::ModuleAbandoned {
            module_id: s("sql-101"),
            progress_pct: 85.0,
            before_assessment: true,
        },
    );
    let tr = h.triggers();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].rule, "learning_abandonment");
    assert_eq!(tr[0].detected_at, "2026-01-07T00:00:00Z");
    assert_eq!(
        tr[0].action.content_id.as_deref(),
        Some("remediation/sql-101")
    );
    assert_eq!(tr[0].severity, crate::trigger::Severity::Low);
    assert!(tr[0].reasons[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("85% progress"));
}

#[test]
fn abandoned_early_or_completed_in_time_is_quiet() {
    let mut h = H::new();
    h.send("ida", day(0), Kind::ModuleStarted { module_id: s("m1") });
    h.send(
        "ida",
        day(1),
        Kind::ModuleAbandoned {
            module_id: s("m1"),
            progress_pct: 10.0,
            before_assessment: false,
        },
    );
    h.send("ida", day(0), Kind::ModuleStarted { module_id: s("m2") });
    h.send("ida", day(13), Kind::ModuleCompleted { module_id: s("m2") });
    h.advance(day(40));
    assert!(h.triggers().is_empty());
}

#[test]
fn module_left_open_fires_fourteen_days_after_start() {
    let mut h = H::new();
    h.send(
        "jo",
        day(0) + 9 * HOUR,
        Kind::ModuleStarted { module_id: s("m3") },
    );
    h.advance(day(14) + 8 * HOUR);
    assert!(h.triggers().is_empty());
    h.advance(day(14) + 9 * HOUR);
    let tr = h.triggers();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].detected_at, "2026-01-19T09:00:00Z");
    assert_eq!(tr[0].action.content_id.as_deref(), Some("remediation/m3"));
    assert_eq!(tr[0].reasons[0].window_days, Some(14));
}

#[test]
fn a_timer_overdue_on_arrival_still_fires_once() {
    let mut h = H::new();
    h.send("zed", day(30), Kind::RecognitionGiven);
    // A late start, older than the watermark: its deadline has already passed.
    h.send("kim", day(1), Kind::ModuleStarted { module_id: s("m4") });
    assert_eq!(h.triggers().len(), 1);
    assert_eq!(h.triggers()[0].detected_at, "2026-01-20T00:00:00Z");
    h.advance(day(60));
    assert_eq!(h.detections().len(), 1);
}

// --- cooldown, consent, exit, erasure ---------------------------------------------------------

fn abandon(h: &mut H, emp: &str, at: Ts, m: &str) {
    h.send(
        emp,
        at,
        Kind::ModuleAbandoned {
            module_id: s(m),
            progress_pct: 90.0,
            before_assessment: true,
        },
    );
}

#[test]
fn cooldown_suppresses_a_second_fire_within_fourteen_days() {
    let mut st = Settings::default();
    st.rules.follow_up.enabled = false; // decisions of detections only
    let mut h = H::with(st, None);
    abandon(&mut h, "lu", day(0), "a");
    abandon(&mut h, "lu", day(13), "b");
    abandon(&mut h, "lu", day(14), "c");
    let got: Vec<_> = h
        .detections()
        .iter()
        .map(|t| t.detected_at.clone())
        .collect();
    assert_eq!(got, vec!["2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z"]);
    assert_eq!(
        h.decisions("learning_abandonment"),
        vec![
            Decision::Fired,
            Decision::SuppressedCooldown,
            Decision::Fired
        ]
    );
}

#[test]
fn withdrawn_consent_suppresses_and_restored_consent_resumes() {
    let mut h = H::new();
    h.send(
        "mo",
        day(0),
        Kind::ConsentUpdated {
            individual_processing: false,
        },
    );
    abandon(&mut h, "mo", day(1), "a");
    assert!(h.triggers().is_empty());
    assert_eq!(
        h.decisions("learning_abandonment"),
        vec![Decision::SuppressedConsent]
    );
    h.send(
        "mo",
        day(2),
        Kind::ConsentUpdated {
            individual_processing: true,
        },
    );
    abandon(&mut h, "mo", day(3), "b");
    assert_eq!(h.triggers().len(), 1);
}

#[test]
fn nothing_fires_after_exit_not_even_pending_timers() {
    let mut h = H::new();
    h.send("ned", day(0), Kind::ModuleStarted { module_id: s("m") });
    h.send(
        "ned",
        day(0),
        Kind::CheckinScheduled {
            checkin_id: s("c1"),
            due_at: day(1),
        },
    );
    h.send("ned", day(1), Kind::Exited { voluntary: true });
    assert_eq!(h.engine.pending_timers(), 0);
    assert_eq!(
        h.send("ned", day(2), Kind::ModuleStarted { module_id: s("x") }),
        Outcome::AfterExit
    );
    abandon(&mut h, "ned", day(3), "y");
    h.advance(day(60));
    assert!(h.triggers().is_empty());
    assert!(h.out.is_empty(), "not even an audit record");
}

#[test]
fn erasure_deletes_all_state_and_silences_the_employee() {
    let mut h = H::new();
    h.send("ola", day(0), Kind::ModuleStarted { module_id: s("m") });
    h.send(
        "ola",
        day(0),
        Kind::CollabActivity {
            messages: 9,
            meetings: 1,
        },
    );
    assert!(h.engine.state_of("ola").is_some());
    h.send("ola", day(1), Kind::Erased);
    assert!(h.engine.state_of("ola").is_none());
    assert_eq!(h.engine.employees(), 0);
    assert_eq!(h.engine.pending_timers(), 0);
    assert_eq!(
        h.send("ola", day(2), Kind::ModuleStarted { module_id: s("n") }),
        Outcome::Erased
    );
    abandon(&mut h, "ola", day(3), "z");
    h.advance(day(60));
    assert!(h.out.is_empty());
    // The slot is reused for the next employee: no growth from erasures.
    h.send("pia", day(4), Kind::RecognitionGiven);
    assert_eq!(h.engine.slots.len(), 1);
}

#[test]
fn disabled_rule_never_fires() {
    let mut st = Settings::default();
    st.rules.learning_abandonment.enabled = false;
    let mut h = H::with(st, None);
    h.send("ria", day(0), Kind::ModuleStarted { module_id: s("m") });
    abandon(&mut h, "ria", day(1), "m");
    h.advance(day(30));
    assert!(h.out.is_empty());
    assert!(
        h.engine.state_of("ria").unwrap().learning.is_none(),
        "no state kept for it either"
    );
}

// --- ids, pseudonyms, determinism ------------------------------------------------------------

#[test]
fn pseudonymized_subject_is_an_hmac_and_stable() {
    let p = Pseudonymizer::new(b"k1");
    let mut h = H::with(Settings::default(), Some(p.clone()));
    abandon(&mut h, "sam", day(0), "a");
    let tr = h.triggers();
    assert_eq!(tr[0].subject.len(), 32);
    assert_ne!(tr[0].subject, "sam");
    assert_eq!(tr[0].subject, p.pseudonym("sam"));
    assert_ne!(Pseudonymizer::new(b"k2").pseudonym("sam"), tr[0].subject);
    // Known-answer: HMAC-SHA256("k1", "sam"), first 16 bytes.
    assert!(tr[0].subject.chars().all(|c| c.is_ascii_hexdigit()));
    if let Output::Audit(a) = &h.out[1] {
        assert_eq!(
            a.subject, tr[0].subject,
            "the audit record is pseudonymized too"
        );
    } else {
        panic!("expected the audit record");
    }
}

#[test]
fn same_input_gives_the_same_outputs_and_ids() {
    let run = || {
        let mut h = H::new();
        collaboration_history(&mut h, "ana", 20, 4);
        abandon(&mut h, "ana", day(70), "m");
        h.advance(day(71));
        h.out
    };
    let a = run();
    // collaboration fired + its audit, the abandonment + its audit, and the close of day 70
    // (silence again) suppressed by the cooldown.
    assert_eq!(a.len(), 5);
    assert_eq!(a, run());
    let ids: Vec<_> = a
        .iter()
        .filter_map(|o| {
            if let Output::Trigger(t) = o {
                Some((t.rule.as_str(), t.trigger_id.clone()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0].1, ids[1].1);
    let abandonment = ids
        .iter()
        .find(|(r, _)| *r == "learning_abandonment")
        .unwrap();
    assert_eq!(
        abandonment.1,
        trigger_id("learning_abandonment", "ana", day(70), 0, "")
    );
}

#[test]
fn typical_employee_state_is_compact() {
    let mut s = Settings::default();
    s.audit.enabled = false;
    let mut e = Engine::from_settings(&s, None);
    let mut out = Vec::new();
    for ev in crate::synth::everyday(200, 90, 7) {
        e.apply(&ev, &mut out);
    }
    let per = e.state_bytes() / e.employees();
    assert!(per > 50, "the state holds the windows: {per}");
    assert!(per <= 512, "{per} bytes per employee");
}

fn experiment_settings(control_share: f64) -> Settings {
    crate::config::from_toml_str(&format!(
        r#"
        [rules.follow_up]
        enabled = false
        [[experiments]]
        id = "remediation-2026q1"
        rules = ["learning_abandonment"]
        control_share = {control_share}
        [[experiments.arms]]
        name = "lesson"
        [[experiments.arms]]
        name = "mentor"
        weight = 1
        action = {{ kind = "micro_mentoring_invite", content_id = "peer-mentor", max_minutes = 5, audience = "employee" }}
        "#
    ))
    .expect("settings with an experiment")
}

fn abandon_all(h: &mut H, n: usize) {
    for i in 0..n {
        h.send(
            &format!("emp-{i}"),
            day(1) + i as i64 * 1000,
            Kind::ModuleAbandoned {
                module_id: s("m-1"),
                progress_pct: 90.0,
                before_assessment: true,
            },
        );
    }
}

#[test]
fn experiment_holds_out_the_control_and_labels_the_arms() {
    let mut h = H::with(experiment_settings(0.3), None);
    abandon_all(&mut h, 400);
    let published = h.fired("learning_abandonment");
    let decisions = h.decisions("learning_abandonment");
    let held = decisions
        .iter()
        .filter(|d| **d == Decision::HeldOut)
        .count();
    assert_eq!(
        published.len() + held,
        400,
        "each detection is published or held out"
    );
    assert!((80..=160).contains(&held), "about 30 % held out: {held}");
    let mut arms = std::collections::BTreeMap::new();
    for t in &published {
        let e = t
            .experiment
            .as_ref()
            .expect("published triggers carry their arm");
        assert_eq!(e.id, "remediation-2026q1");
        *arms.entry(e.arm.clone()).or_insert(0) += 1;
        match e.arm.as_str() {
            "mentor" => {
                assert_eq!(t.action.kind, "micro_mentoring_invite", "the arm's action");
                assert_eq!(t.action.content_id.as_deref(), Some("peer-mentor"));
            }
            "lesson" => assert_eq!(t.action.kind, "micro_lesson", "the rule's own action"),
            other => panic!("unexpected arm {other}"),
        }
    }
    assert!(arms["lesson"] > 80 && arms["mentor"] > 80, "{arms:?}");
    // The arm is a pure function of (experiment, employee): another engine agrees.
    let mut again = H::with(experiment_settings(0.3), None);
    abandon_all(&mut again, 400);
    let ids = |h: &H| {
        h.fired("learning_abandonment")
            .iter()
            .map(|t| (t.subject.clone(), t.experiment.clone().unwrap().arm))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&h), ids(&again));
}

#[test]
fn an_experiment_leaves_other_rules_alone_and_no_control_publishes_all() {
    let mut h = H::with(experiment_settings(0.0), None);
    abandon_all(&mut h, 50);
    assert_eq!(h.fired("learning_abandonment").len(), 50);
    assert!(!h
        .decisions("learning_abandonment")
        .contains(&Decision::HeldOut));
    h.send(
        "emp-x",
        day(2),
        Kind::CheckinSkipped {
            checkin_id: s("c1"),
        },
    );
    h.send(
        "emp-x",
        day(16),
        Kind::CheckinSkipped {
            checkin_id: s("c2"),
        },
    );
    let lapse = h.fired("checkin_lapse");
    assert_eq!(lapse.len(), 1);
    assert!(
        lapse[0].experiment.is_none(),
        "not covered by the experiment"
    );
}

#[test]
fn experiments_are_validated_naming_the_key() {
    let bad = |t: &str| crate::config::from_toml_str(t).unwrap_err().to_string();
    let e = bad("[[experiments]]\nid = \"x\"\nrules = [\"no_such_rule\"]\n[[experiments.arms]]\nname = \"a\"\n");
    assert!(
        e.contains("experiments[0].rules") && e.contains("no_such_rule"),
        "{e}"
    );
    let e = bad("[[experiments]]\nid = \"x\"\nrules = [\"checkin_lapse\"]\ncontrol_share = 1.0\n[[experiments.arms]]\nname = \"a\"\n");
    assert!(e.contains("experiments[0].control_share"), "{e}");
    let e = bad("[[experiments]]\nid = \"x\"\nrules = [\"learning_confusion\"]\n[[experiments.arms]]\nname = \"a\"\naction = { kind = \"manager_coaching\", max_minutes = 5, audience = \"manager\" }\n");
    assert!(e.contains("experiments[0].arms[0].action"), "{e}");
}

// --- apply_batch ------------------------------------------------------------------------------

/// The prefetch pipeline is only a hint: a simulated workforce (patterns, duplicates, exits,
/// erasures) applied in batches of every size the pipeline treats differently gives the same
/// outputs and outcomes as applying its events one by one.
#[test]
fn apply_batch_gives_what_apply_gives_one_by_one() {
    let sim = crate::sim::simulate(&crate::sim::SimOptions {
        employees: 300,
        days: 90,
        seed: 5,
        ..Default::default()
    });
    let events: Vec<Event<'static>> = sim
        .records
        .into_iter()
        .filter_map(|r| match r {
            crate::sim::Record::Event(e) => Some(e),
            crate::sim::Record::Malformed(_) => None,
        })
        .collect();
    let engine = || {
        Engine::new(
            Arc::new(RuleSet::compile(&Settings::default())),
            EngineOptions::default(),
        )
    };
    let mut one = engine();
    let (mut want, mut want_outcomes) = (Vec::new(), Vec::new());
    for ev in &events {
        want_outcomes.push(one.apply(ev, &mut want));
    }
    assert!(want.len() > 10, "the stream fires: {} outputs", want.len());
    for batch in [
        1,
        PREFETCH_BATCH - 1,
        PREFETCH_BATCH,
        3 * PREFETCH_BATCH + 5,
        256,
    ] {
        let mut e = engine();
        let (mut got, mut outcomes) = (Vec::new(), Vec::new());
        for chunk in events.chunks(batch) {
            e.apply_batch(chunk, &mut got, &mut outcomes);
        }
        assert_eq!(outcomes, want_outcomes, "batch {batch}");
        assert_eq!(got, want, "batch {batch}");
    }
}
