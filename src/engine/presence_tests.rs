//! docs/contract.md §8's exclusions, rule by rule: recorded time off and the calendar's non-working days
//! leave windows judged on the days present (reaching back over the excluded ones, not judged
//! when too few can be found) and stop deadlines; a cancellation gives the days back.

use super::test_support::{day, s, H};
use super::*;
use crate::config::Settings;
use crate::time::{day_of, HOUR};

/// `emp` is off from day `from` to day `to` (inclusive, days of `test_support::day`).
fn off(h: &mut H, emp: &str, id: &str, from: i64, to: i64) {
    h.send(
        emp,
        day(from.min(0)) - HOUR,
        Kind::TimeOffRecorded {
            time_off_id: s(id),
            starts_on: day_of(day(from)) as i32,
            ends_on: day_of(day(to)) as i32,
        },
    );
}

fn with_calendar(days: &[&str]) -> H {
    let mut st = Settings::default();
    st.rules.follow_up.enabled = false;
    st.calendar.non_working_days = days.iter().map(|d| d.to_string()).collect();
    H::with(st, None)
}

/// 70 days of collaboration: `base` a day for 56 days, then `recent(d)` on each of the last 14
/// (day 56 + d).
fn collab(h: &mut H, emp: &str, base: u32, recent: impl Fn(i64) -> u32) {
    for d in 0..70 {
        let v = if d < 56 { base } else { recent(d - 56) };
        h.send(
            emp,
            day(d) + HOUR,
            Kind::CollabActivity {
                messages: v,
                meetings: 0,
            },
        );
    }
    h.advance(day(70) + 2 * HOUR);
}

#[test]
fn collaboration_is_judged_on_the_days_present_and_not_with_too_few() {
    // Ten of the last fourteen days off, silent on them: without the time off a decline.
    let mut h = H::detections_only();
    collab(&mut h, "ann", 10, |d| if d < 10 { 0 } else { 10 });
    assert_eq!(
        h.fired("collaboration_decline").len(),
        1,
        "the control fires"
    );

    // With it, the recent window reaches back over the days off to fourteen days present.
    let mut h = H::detections_only();
    off(&mut h, "ann", "t1", 56, 65);
    collab(&mut h, "ann", 10, |d| if d < 10 { 0 } else { 10 });
    assert!(h.fired("collaboration_decline").is_empty());

    // A decline that runs on across the days off is still one, judged on the days present,
    // and says how many days it left out.
    let mut h = H::detections_only();
    off(&mut h, "cat", "t1", 56, 60);
    collab_days(&mut h, "cat", |d| match d {
        56..=60 => 0,
        46.. => 3,
        _ => 10,
    });
    let t = h.fired("collaboration_decline");
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].reasons[0].observed, 3.0,
        "the mean of fourteen days present"
    );
    assert!(
        t[0].reasons[0]
            .detail
            .as_deref()
            .unwrap()
            .ends_with("; 5 days excluded"),
        "{:?}",
        t[0].reasons[0].detail
    );

    // Off for days 30–66: the baseline finds days 0–18 only before them, under half of 56.
    let quiet = |d: i64| if (30..67).contains(&d) { 0 } else { 20 };
    let mut h = H::detections_only();
    collab_days(&mut h, "dee", quiet);
    assert_eq!(
        h.fired("collaboration_decline").len(),
        1,
        "the control fires"
    );
    let mut h = H::detections_only();
    off(&mut h, "dee", "t1", 30, 66);
    collab_days(&mut h, "dee", quiet);
    assert!(
        h.fired("collaboration_decline").is_empty(),
        "too few days: not judged"
    );
}

/// 70 days of collaboration, `per_day(d)` on day d; then the close of day 69.
fn collab_days(h: &mut H, emp: &str, per_day: impl Fn(i64) -> u32) {
    for d in 0..70 {
        h.send(
            emp,
            day(d) + HOUR,
            Kind::CollabActivity {
                messages: per_day(d),
                meetings: 0,
            },
        );
    }
    h.advance(day(70) + 2 * HOUR);
}
#[test]
fn the_calendar_is_left_out_for_everyone_and_a_cancellation_gives_days_back() {
    // 2026-03-02..2026-03-11 are days 56–65.
    let mut h = with_calendar(&["2026-03-02..2026-03-09", "2026-03-10", "2026-03-11"]);
    collab(&mut h, "dan", 10, |d| if d < 10 { 0 } else { 10 });
    collab(&mut h, "eve", 10, |d| if d < 10 { 0 } else { 10 });
    assert!(h.fired("collaboration_decline").is_empty());

    let mut h = H::detections_only();
    off(&mut h, "fay", "t1", 56, 65);
    h.send(
        "fay",
        day(0),
        Kind::TimeOffCancelled {
            time_off_id: s("t1"),
        },
    );
    collab(&mut h, "fay", 10, |d| if d < 10 { 0 } else { 10 });
    assert_eq!(h.fired("collaboration_decline").len(), 1);
}

#[test]
fn the_task_ratio_leaves_days_off_out() {
    // Tasks still planned while away, none completed.
    let run = |h: &mut H, away: std::ops::Range<i64>| {
        for d in 0..70 {
            let completed = if away.contains(&d) { 0 } else { 9 };
            h.send(
                "gus",
                day(d) + HOUR,
                Kind::WorkTasks {
                    completed,
                    planned: 10,
                },
            );
        }
        h.advance(day(70) + 2 * HOUR);
    };
    let mut h = H::detections_only();
    run(&mut h, 56..63);
    assert_eq!(h.fired("performance_dip").len(), 1, "the control fires");
    let mut h = H::detections_only();
    off(&mut h, "gus", "t1", 56, 62);
    run(&mut h, 56..63);
    assert!(
        h.fired("performance_dip").is_empty(),
        "14 days present, at 90%"
    );
    let mut h = H::detections_only();
    run(&mut h, 30..67);
    assert_eq!(h.fired("performance_dip").len(), 1, "the control fires");
    let mut h = H::detections_only();
    off(&mut h, "gus", "t1", 30, 66);
    run(&mut h, 30..67);
    assert!(
        h.fired("performance_dip").is_empty(),
        "too few days: not judged"
    );
}
#[test]
fn a_quiet_period_is_measured_in_days_present() {
    let mut h = H::detections_only();
    off(&mut h, "hal", "t1", 70, 79);
    for d in [0, 20, 40, 60] {
        h.send("hal", day(d), Kind::RecognitionReceived);
    }
    h.advance(day(95));
    assert!(h.fired("recognition_withdrawal").is_empty());
    h.advance(day(101));
    let t = h.fired("recognition_withdrawal");
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].detected_at, "2026-04-15T00:00:00Z",
        "day 60 + 30 days present"
    );
    assert!(t[0].reasons[0]
        .detail
        .as_deref()
        .unwrap()
        .ends_with("; 10 days excluded"));
}

#[test]
fn a_checkin_due_during_time_off_is_not_a_miss() {
    let run = |h: &mut H| {
        for (i, d) in [10, 24].into_iter().enumerate() {
            h.send(
                "ida",
                day(0) + i as i64,
                Kind::CheckinScheduled {
                    checkin_id: s(&format!("c{i}")),
                    due_at: day(d) + 10 * HOUR,
                },
            );
        }
        h.advance(day(40));
    };
    let mut h = H::detections_only();
    run(&mut h);
    assert_eq!(h.fired("checkin_lapse").len(), 1, "the control fires");
    let mut h = H::detections_only();
    off(&mut h, "ida", "t1", 22, 26);
    run(&mut h);
    assert!(h.fired("checkin_lapse").is_empty());
}

#[test]
fn deadlines_do_not_run_on_days_off() {
    let mut h = H::detections_only();
    off(&mut h, "jon", "t1", 3, 10);
    h.send("jon", day(0), Kind::ModuleStarted { module_id: s("m1") });
    h.send(
        "jon",
        day(0),
        Kind::FeedbackReceived {
            feedback_id: s("f1"),
        },
    );
    h.send(
        "jon",
        day(1),
        Kind::FeedbackReceived {
            feedback_id: s("f2"),
        },
    );
    h.send("jon", day(1), Kind::TaskStarted { task_id: s("k1") });
    h.advance(day(30));
    let at = |rule: &str| {
        h.fired(rule)
            .iter()
            .map(|t| t.detected_at.clone())
            .collect::<Vec<_>>()
    };
    // 14 days present from day 0: days 0–2 and 11–21.
    assert_eq!(at("learning_abandonment"), ["2026-01-27T00:00:00Z"]);
    // 7 days present from day 1: days 1–2 and 11–15.
    assert_eq!(at("feedback_unacknowledged"), ["2026-01-21T00:00:00Z"]);
    // 72 h present from day 1: days 1–2 and 11.
    assert_eq!(at("onboarding_friction"), ["2026-01-17T00:00:00Z"]);
}

#[test]
fn event_windows_reach_back_over_days_off_and_skip_events_on_them() {
    // Views at days 0, 15 and 40: 40 days apart, 25 of them present.
    let views = |h: &mut H| {
        for d in [0, 15, 40] {
            h.send("kim", day(d), Kind::PostingViewed { posting_id: s("p") });
        }
    };
    let mut h = H::detections_only();
    views(&mut h);
    assert!(
        h.fired("mobility_frustration").is_empty(),
        "the control is quiet"
    );
    let mut h = H::detections_only();
    off(&mut h, "kim", "t1", 16, 30);
    views(&mut h);
    assert_eq!(h.fired("mobility_frustration").len(), 1);

    // Passive goal updates: one made on a day off does not count.
    let goals = |h: &mut H| {
        for d in [0, 5, 10] {
            h.send(
                "lee",
                day(d),
                Kind::GoalUpdated {
                    goal_id: s("g"),
                    progress_delta_pct: 0.0,
                },
            );
        }
    };
    let mut h = H::detections_only();
    goals(&mut h);
    assert_eq!(h.fired("passive_goals").len(), 1, "the control fires");
    let mut h = H::detections_only();
    off(&mut h, "lee", "t1", 5, 5);
    goals(&mut h);
    assert!(h.fired("passive_goals").is_empty());
}

#[test]
fn a_follow_up_does_not_escalate_for_days_off() {
    let mut h = H::new();
    off(&mut h, "max", "t1", 4, 8);
    h.send(
        "max",
        day(0),
        Kind::ModuleAbandoned {
            module_id: s("m"),
            progress_pct: 90.0,
            before_assessment: true,
        },
    );
    h.advance(day(20));
    let t = h.triggers();
    assert_eq!(t.len(), 2);
    // deliver_by (day 2) + 7 days present: days 2–3 and 9–13.
    assert_eq!(
        (t[1].escalation, t[1].detected_at.as_str()),
        (1, "2026-01-19T00:00:00Z")
    );
}

#[test]
fn team_windows_leave_the_calendar_out() {
    // Check-ins: 5 a day, none on the days of `none`.
    let run = |h: &mut H, none: std::ops::Range<i64>| {
        for d in 0..70 {
            let per_day = if none.contains(&d) { 0 } else { 5 };
            for i in 0..per_day {
                h.send_in(
                    &format!("k{i}"),
                    Some("t-ci"),
                    None,
                    day(d) + HOUR,
                    Kind::CheckinCompleted {
                        checkin_id: s(&format!("{d}-{i}")),
                    },
                );
            }
        }
        h.advance(day(70) + 2 * HOUR);
    };
    let mut h = H::detections_only();
    run(&mut h, 56..63);
    assert_eq!(h.fired("team_checkin_drop").len(), 1, "the control fires");
    // 2026-03-02..08 are days 56–62: the window reaches back over them.
    let mut h = with_calendar(&["2026-03-02..2026-03-08"]);
    run(&mut h, 56..63);
    assert!(
        h.fired("team_checkin_drop").is_empty(),
        "14 days present, steady"
    );
    let mut h = H::detections_only();
    run(&mut h, 30..67);
    assert_eq!(h.fired("team_checkin_drop").len(), 1, "the control fires");
    // 2026-02-04..2026-03-12 are days 30–66: the baseline finds days 0–18 only.
    let mut h = with_calendar(&["2026-02-04..2026-03-12"]);
    run(&mut h, 30..67);
    assert!(
        h.fired("team_checkin_drop").is_empty(),
        "too few days: not judged"
    );
}
#[test]
fn time_off_is_never_published_and_bad_spans_are_refused() {
    let mut h = H::detections_only();
    off(&mut h, "ned", "t1", 0, 3);
    assert!(h.out.iter().all(|o| !matches!(o, Output::Trigger(_))));
    let limits = crate::event::Limits {
        max_event_bytes: 65536,
        now: None,
        max_future: crate::time::DAY,
    };
    let line = |a: &str, b: &str| {
        format!(
            r#"{{"event_id":"x","employee_id":"ned","occurred_at":"2026-01-05T00:00:00Z","type":"time_off.recorded","attrs":{{"time_off_id":"t","starts_on":"{a}","ends_on":"{b}"}}}}"#
        )
    };
    let decode = |l: String| {
        crate::event::decode(l.as_bytes(), crate::event::Encoding::Json, None, &limits)
            .map(|e| e.kind.into_owned())
    };
    assert!(decode(line("2026-01-05", "2026-01-09")).is_ok());
    for (a, b) in [
        ("2026-01-09", "2026-01-05"),
        ("2026-01-01", "2027-01-03"),
        ("2026-1-5", "2026-01-09"),
    ] {
        let e = decode(line(a, b)).unwrap_err();
        assert_eq!(e.code, crate::event::ErrorCode::SchemaViolation, "{a}..{b}");
    }
}

#[test]
fn days_off_are_not_judged_and_follow_ups_that_meet_fire_once() {
    // A decline fires at the close of day 69; the employee is then off for days 71–105 and
    // sends nothing more. The days off are not judged (their windows would be the frozen ones
    // of the day before); after them the silence is judged again.
    let mut h = H::detections_only();
    off(&mut h, "oli", "t1", 71, 105);
    collab(&mut h, "oli", 10, |_| 1);
    h.advance(day(120));
    let days: Vec<i64> = h
        .fired("collaboration_decline")
        .iter()
        .map(|t| (crate::time::parse_rfc3339(&t.detected_at).unwrap() - day(0)) / crate::time::DAY)
        .collect();
    assert_eq!(days.first(), Some(&70));
    assert!(days.iter().all(|d| !(72..=106).contains(d)), "{days:?}");

    // Two abandonments 15 days apart, both delivered while away: their silences end at the
    // same instant, and one follow-up comes of them, not two with one id.
    let mut h = H::new();
    off(&mut h, "pam", "t1", 1, 40);
    for (d, m) in [(0, "m1"), (15, "m2")] {
        h.send(
            "pam",
            day(d),
            Kind::ModuleAbandoned {
                module_id: s(m),
                progress_pct: 90.0,
                before_assessment: true,
            },
        );
    }
    h.advance(day(60));
    let t = h.triggers();
    let follow_ups: Vec<_> = t.iter().filter(|t| t.escalation == 1).collect();
    assert_eq!(t.iter().filter(|t| t.escalation == 0).count(), 2);
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    assert_eq!(
        follow_ups[0].detected_at, "2026-02-22T00:00:00Z",
        "day 41 + 7 days"
    );
}

#[test]
fn a_cancelled_time_off_gives_back_what_happened_on_its_days() {
    // Weekly recognition until day 63, recorded leave for days 40–70, cancelled on day 75:
    // the recognitions of days 42–63 count again, so the quiet period runs from day 63.
    let mut h = H::detections_only();
    off(&mut h, "quin", "t1", 40, 70);
    for d in (0..=63).step_by(7) {
        h.send("quin", day(d), Kind::RecognitionReceived);
    }
    h.send(
        "quin",
        day(75),
        Kind::TimeOffCancelled {
            time_off_id: s("t1"),
        },
    );
    h.advance(day(100));
    let t = h.fired("recognition_withdrawal");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].detected_at, "2026-04-08T00:00:00Z", "day 63 + 30 days");
}

#[test]
fn with_pseudonymization_the_time_off_id_is_kept_keyed() {
    let mut st = Settings::default();
    st.rules.follow_up.enabled = false;
    let mut h = H::with(st, Some(Pseudonymizer::new(b"a key of the deployment")));
    off(&mut h, "rae", "sick-2026-03-01", 56, 65);
    let kept = h.engine.state_of("rae").unwrap().time_off.clone();
    assert_eq!(kept.len(), 1);
    assert_ne!(kept[0].id, crate::rules::fingerprint("sick-2026-03-01"));
    // Cancelling by the same id still finds it.
    h.send(
        "rae",
        day(0),
        Kind::TimeOffCancelled {
            time_off_id: s("sick-2026-03-01"),
        },
    );
    assert!(h.engine.state_of("rae").unwrap().time_off.is_empty());
}
