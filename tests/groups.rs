//! Team and cohort rules across partitions and instances (CONTRACT §9, the repartition
//! stage): a simulated workforce whose teams and cohorts are spread over six input
//! partitions gives `momentd run` the group triggers one `replay` gives — with one instance,
//! and with three instances in one group, one restarted (SIGTERM) and one killed (kill -9) in
//! the middle of the stream.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::*;

const PARTITIONS: i32 = 6;

/// tansu 0.6 does not expire a dead member while a new one is joining (see tests/changelog.rs).
fn session_gap(kind: Kind) {
    if kind == Kind::Tansu {
        std::thread::sleep(Duration::from_secs(11));
    }
}

/// A simulated workforce of 100 days in event-time order.
fn stream(employees: u32, seed: u64) -> Vec<String> {
    in_time_order(employees, 100, seed)
}

fn committed_total(b: &Broker, group: &str) -> i64 {
    committed(&b.bootstrap, group, INPUT, PARTITIONS)
        .values()
        .sum()
}

fn wait_committed(b: &Broker, group: &str, at_least: i64, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed_total(b, group) < at_least {
        assert!(
            Instant::now() < deadline,
            "the commit stayed at {} (< {at_least}): {}",
            committed_total(b, group),
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn groups_of(ts: &BTreeMap<String, serde_json::Value>) -> usize {
    ts.values().filter(|t| t["scope"] != "employee").count()
}

fn one_instance(kind: Kind) {
    let _g = serial();
    let lines = stream(160, 31);
    let want = by_id(&replay(&lines));
    assert!(groups_of(&want) >= 2, "the stream has group triggers");
    let b = Broker::start(kind, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let group = "g-groups-one";
    produce(&b.bootstrap, INPUT, &json_inputs(&lines));
    let d = Daemon::start(&b, group, &[]);
    d.wait_ready(Duration::from_secs(60));
    wait_committed(&b, group, lines.len() as i64, &d);
    let got = by_id(&read_json(&b.bootstrap, OUTPUT, Duration::from_secs(3)));
    same_triggers(&want, &got, "run differs from replay");
    eprintln!(
        "{} triggers ({} of teams and cohorts) over {PARTITIONS} partitions, as replay's",
        want.len(),
        groups_of(&want)
    );
}

#[test]
fn six_partitions_one_instance_give_replays_group_triggers_on_the_mock_cluster() {
    one_instance(Kind::Mock);
}

#[test]
fn six_partitions_one_instance_give_replays_group_triggers_on_tansu() {
    one_instance(Kind::Tansu);
}

fn three_instances(kind: Kind) {
    let _g = serial();
    let lines = stream(160, 32);
    let want = by_id(&replay(&lines));
    assert!(groups_of(&want) >= 2, "the stream has group triggers");
    three_instances_give(kind, &lines, &want, "g-groups-three", &[]);
}

/// Runs `lines` through three instances over six partitions — one SIGTERM'd and restarted a
/// third of the way in, one killed at two thirds — and checks they publish `want`.
fn three_instances_give(
    kind: Kind,
    lines: &[String],
    want: &BTreeMap<String, serde_json::Value>,
    group: &str,
    env: &[(&str, &str)],
) {
    let n = lines.len() as i64;
    let b = Broker::start(kind, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let producer = {
        let bootstrap = b.bootstrap.clone();
        let lines = lines.to_vec();
        let secs = if kind == Kind::Mock { 25.0 } else { 40.0 };
        std::thread::spawn(move || {
            let chunks = 40;
            for chunk in lines.chunks(lines.len().div_ceil(chunks)) {
                produce(&bootstrap, INPUT, &json_inputs(chunk));
                std::thread::sleep(Duration::from_secs_f64(secs / chunks as f64));
            }
        })
    };
    let mut ds: Vec<Daemon> = (0..3).map(|_| Daemon::start(&b, group, env)).collect();
    for d in &ds {
        d.wait_ready(Duration::from_secs(90));
    }
    // A third of the way in, one instance is stopped and started again; at two thirds another
    // is killed and started again.
    wait_committed(&b, group, n / 3, &ds[0]);
    ds[1].signal("TERM");
    assert!(
        ds[1].wait_exit(Duration::from_secs(30)).is_some(),
        "SIGTERM stops it"
    );
    ds[1] = Daemon::start(&b, group, env);
    ds[1].wait_ready(Duration::from_secs(90));
    wait_committed(&b, group, 2 * n / 3, &ds[0]);
    ds[2].kill9();
    session_gap(kind);
    ds[2] = Daemon::start(&b, group, env);
    ds[2].wait_ready(Duration::from_secs(90));
    producer.join().unwrap();
    wait_committed(&b, group, n, &ds[0]);
    let all = read_json(&b.bootstrap, OUTPUT, Duration::from_secs(4));
    let got = by_id(&all);
    same_triggers(want, &got, "run differs from replay");
    eprintln!(
        "{} triggers ({} of teams and cohorts) from three instances through a restart and a kill, as replay's ({} published)",
        want.len(),
        groups_of(want),
        all.len()
    );
}

#[test]
fn three_instances_a_restart_and_a_kill_give_replays_group_triggers_on_the_mock_cluster() {
    three_instances(Kind::Mock);
}

#[test]
fn three_instances_a_restart_and_a_kill_give_replays_group_triggers_on_tansu() {
    three_instances(Kind::Tansu);
}

/// `privacy.min_group_size` counts distinct employees of a group whatever partitions and
/// instances hold them: at the largest minimum under which `replay` still fires for a team,
/// `run` on two instances fires for it too, and at one more both stay silent. And an employee
/// erased in the middle of the stream leaves no fingerprint in any group's restored state.
#[test]
fn group_size_counts_members_across_instances_and_erased_members_leave_no_fingerprint() {
    let _g = serial();
    let mut lines = stream(160, 31);
    // An employee with a team, erased halfway.
    let half = lines.len() / 2;
    let first: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["team_id"].is_string())
        .unwrap();
    let erased = first["employee_id"].as_str().unwrap().to_string();
    let at = serde_json::from_str::<serde_json::Value>(&lines[half]).unwrap()["occurred_at"]
        .as_str()
        .unwrap()
        .to_string();
    lines.insert(
        half,
        serde_json::json!({"event_id": "erase-it", "employee_id": erased, "occurred_at": at,
            "type": "employee.erased", "attrs": {}})
        .to_string(),
    );
    let team_triggers = |min: usize| -> BTreeMap<String, serde_json::Value> {
        let m = min.to_string();
        by_id(&replay_with(
            &lines,
            &[("MOMENTD__PRIVACY__MIN_GROUP_SIZE", &m)],
        ))
    };
    // The largest minimum under which some team still fires.
    let mut min = 5;
    while team_triggers(min + 1)
        .values()
        .any(|t| t["scope"] == "team")
    {
        min += 1;
    }
    assert!(team_triggers(min).values().any(|t| t["scope"] == "team"));
    let b = Broker::start(Kind::Mock, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    produce(&b.bootstrap, INPUT, &json_inputs(&lines));
    for m in [min, min + 1] {
        let group = format!("g-groups-min-{m}");
        let output = format!("hr.triggers.min-{m}");
        b.create_topic(&output, 1);
        let ms = m.to_string();
        let env = [
            ("MOMENTD__PRIVACY__MIN_GROUP_SIZE", ms.as_str()),
            ("MOMENTD__KAFKA__OUTPUT_TOPIC", output.as_str()),
        ];
        let ds: Vec<Daemon> = (0..2).map(|_| Daemon::start(&b, &group, &env)).collect();
        for d in &ds {
            d.wait_ready(Duration::from_secs(90));
        }
        wait_committed(&b, &group, lines.len() as i64, &ds[0]);
        for d in &ds {
            assert!(
                d.metric("momentd_assigned_partitions", &[]) >= 1.0,
                "both instances hold partitions: {}",
                d.logs()
            );
        }
        for mut d in ds {
            d.signal("TERM");
            assert!(d.wait_exit(Duration::from_secs(30)).is_some());
            d.kill9();
        }
        let got = by_id(&read_json(&b.bootstrap, &output, Duration::from_secs(3)));
        let want = team_triggers(m);
        same_triggers(&want, &got, "run differs from replay");
        let teams = got.values().filter(|t| t["scope"] == "team").count();
        assert_eq!(teams > 0, m == min, "min {m}: {teams} team triggers");
        eprintln!("min_group_size {m}: {teams} team triggers, as replay's");
    }
    // Every changelog partition of the last run, restored: no fingerprint of the erased
    // employee in any group — though their events before the erasure made them a member.
    let settings = momentd::config::Settings::default();
    let mut before = momentd::Engine::from_settings(&settings, None);
    let fp = before.member_fingerprint(&erased);
    let mut out = Vec::new();
    let limits = momentd::event::Limits {
        max_event_bytes: 65536,
        now: None,
        max_future: momentd::time::DAY,
    };
    for l in &lines[..half] {
        if let Ok(ev) =
            momentd::event::decode(l.as_bytes(), momentd::event::Encoding::Json, None, &limits)
        {
            before.apply(&ev, &mut out);
        }
    }
    assert!(
        before.group_members().contains(&fp),
        "a member before the erasure"
    );
    let group = format!("g-groups-min-{}", min + 1);
    let topics = vec![INPUT.to_string(), format!("{group}-groups-repartition")];
    let records = read(
        &b.bootstrap,
        &format!("{group}-state-changelog"),
        usize::MAX,
        Duration::from_secs(3),
    );
    let mut restorers: BTreeMap<i32, momentd::engine::changelog::Restorer> = BTreeMap::new();
    for r in &records {
        let _ = restorers.entry(r.partition).or_default().add(
            r.key.as_deref().unwrap_or_default(),
            Some(r.value.as_slice()).filter(|v| !v.is_empty()),
        );
    }
    assert_eq!(restorers.len(), PARTITIONS as usize);
    for (p, r) in restorers {
        let mut e = momentd::Engine::from_settings(&settings, None);
        e.publish_contributions(p as u32, PARTITIONS as usize);
        r.finish(&mut e, &topics);
        assert!(
            !e.group_members().contains(&fp),
            "partition {p}'s restored group state holds the erased employee"
        );
    }
}

/// Recorded time off and a declared company holiday (CONTRACT §8) are a function of each
/// employee's events and of the configuration: three instances over six partitions, through a
/// restart and a kill, publish what one replay does.
#[test]
fn time_off_and_a_declared_holiday_give_replays_triggers_on_three_instances_on_the_mock_cluster() {
    let _g = serial();
    let lines = time_ordered(simulated_with(&momentd::sim::SimOptions {
        employees: 160,
        days: 100,
        seed: 33,
        pattern_share: 1.0,
        holiday: Some((55, 12)),
        declare_holiday: true,
        time_off_share: 0.1,
        ..Default::default()
    }));
    assert!(lines.iter().any(|l| l.contains("\"time_off.recorded\"")));
    // Days 55-66 of the simulation (it starts on 2026-01-05).
    let env = [(
        "MOMENTD__CALENDAR__NON_WORKING_DAYS",
        "2026-03-01..2026-03-12",
    )];
    let want = by_id(&replay_with(&lines, &env));
    let without = by_id(&replay(&lines));
    assert_ne!(
        want.keys().collect::<Vec<_>>(),
        without.keys().collect::<Vec<_>>(),
        "the calendar changes the triggers"
    );
    three_instances_give(Kind::Mock, &lines, &want, "g-shifts-three", &env);
}

/// Population shifts nobody declared (CONTRACT §8): an undeclared company holiday and an
/// outage of a feed are found from the population's figures — summed over every partition
/// through the population topic, a day closed only once every task has — so three instances
/// over six partitions, through a restart and a kill, publish what one replay does. (And the
/// population matters here: without it the holiday's triggers fire.)
#[test]
fn an_undeclared_holiday_and_a_feed_outage_give_replays_triggers_on_three_instances_on_the_mock_cluster(
) {
    let _g = serial();
    let lines = time_ordered(simulated_with(&momentd::sim::SimOptions {
        employees: 160,
        days: 100,
        seed: 34,
        pattern_share: 1.0,
        holiday: Some((70, 12)),
        outages: vec![(momentd::rules::presence::Source::Tasks, 60, 5)],
        ..Default::default()
    }));
    let want = by_id(&replay(&lines));
    let without = by_id(&replay_with(
        &lines,
        &[
            ("MOMENTD__POPULATION__RELATIVE", "false"),
            ("MOMENTD__POPULATION__GAP_SHARE", "0"),
        ],
    ));
    assert!(
        without.len() > want.len() + 10,
        "the population changes the triggers: {} without it, {} with",
        without.len(),
        want.len()
    );
    three_instances_give(Kind::Mock, &lines, &want, "g-population-three", &[]);
}
