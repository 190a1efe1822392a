//! `momentd run` against two independent Kafka-protocol brokers on loopback, each started here:
//! librdkafka's mock cluster (in its own process) and tansu with SQLite storage.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use support::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample-events.jsonl");

fn sample_lines() -> Vec<String> {
    std::fs::read_to_string(SAMPLE)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Triggers keyed by id; panics if one id ever comes with two different contents.
fn by_id(triggers: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    for t in triggers {
        let id = t["trigger_id"].as_str().expect("trigger_id").to_string();
        if let Some(prev) = m.insert(id.clone(), t.clone()) {
            assert_eq!(prev, *t, "trigger {id} redelivered with different content");
        }
    }
    m
}

/// Every metric the daemon issue lists, by name.
const METRICS: &[&str] = &[
    "momentd_events_consumed_total",
    "momentd_dead_letters_total",
    "momentd_duplicate_events_total",
    "momentd_triggers_total",
    "momentd_processing_latency_seconds_bucket",
    "momentd_event_time_lag_seconds",
    "momentd_watermark_timestamp_seconds",
    "momentd_consumer_lag_messages",
    "momentd_commits_total",
    "momentd_rebalances_total",
    "momentd_tracked_employees",
    "momentd_state_bytes",
    "momentd_producer_queue_depth",
    "momentd_assigned_partitions",
    "momentd_ready",
    "momentd_source_gap_days_total",
    "momentd_population_closed_timestamp_seconds",
    "momentd_population_waiting_partitions",
];

fn sample_gives_the_same_triggers_as_replay(kind: Kind, env: &[(&str, &str)]) {
    let _g = serial();
    let lines = sample_lines();
    let b = Broker::start(kind, &[(INPUT, 1), (OUTPUT, 1), (DLQ, 1)]);
    let mut d = Daemon::start(&b, "g-sample", env);
    assert_eq!(
        d.wait_live(Duration::from_secs(30)),
        503,
        "/readyz answers 503 before partitions are assigned"
    );
    d.wait_ready(Duration::from_secs(60));
    // Each partition's task reads its own queue unless split queues are turned off.
    let split = !env.contains(&("MOMENTD__KAFKA__SPLIT_PARTITION_QUEUES", "false"));
    let json = env.contains(&("MOMENTD__LOG__FORMAT", "json"));
    let said = if json {
        format!("\"own_queue\":{split}")
    } else {
        format!("own_queue={split}")
    };
    assert!(
        d.logged(&said),
        "partition assigned with own_queue={split}: {}",
        d.logs()
    );

    // An independent client (Python confluent-kafka) produces the input.
    let produced = python_client(&["produce", &b.bootstrap, INPUT, SAMPLE]);
    assert_eq!(produced.trim(), lines.len().to_string());

    let want = replay(&lines);
    assert!(want.len() >= 5, "the sample shows several rules");
    let got = read(&b.bootstrap, OUTPUT, want.len(), Duration::from_secs(30));
    let extra = read(&b.bootstrap, OUTPUT, want.len() + 1, Duration::from_secs(2));
    assert_eq!(extra.len(), want.len(), "no trigger beyond replay's");
    for r in &got {
        let t = r.json();
        assert_eq!(
            r.key.as_deref(),
            t["subject"].as_str().map(str::as_bytes),
            "keyed by subject"
        );
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    let got_json: Vec<serde_json::Value> = got.iter().map(Rec::json).collect();
    assert_eq!(
        by_id(&got_json),
        by_id(&want),
        "same ids, same content as replay"
    );

    // The sample's three bad lines are on the dead-letter topic, as they were, with headers.
    let dlq = read(&b.bootstrap, DLQ, 3, Duration::from_secs(10));
    assert_eq!(dlq.len(), 3);
    for r in &dlq {
        let off: usize = r.headers["momentd-source-offset"].parse().unwrap();
        assert_eq!(r.value, lines[off].as_bytes(), "the original value");
        assert_eq!(r.headers["momentd-source-topic"], INPUT);
        assert_eq!(r.headers["momentd-source-partition"], "0");
        assert!(!r.headers["momentd-error-detail"].is_empty());
    }
    let mut reasons: Vec<&str> = dlq
        .iter()
        .map(|r| r.headers["momentd-error"].as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["malformed_json", "schema_violation", "unknown_type"]
    );

    // Metrics: counted, and every listed metric present (consumer lag comes with librdkafka's
    // statistics, every 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = d.get("/metrics").unwrap();
        let missing: Vec<&&str> = METRICS
            .iter()
            .filter(|m| !body.lines().any(|l| l.starts_with(**m)))
            .collect();
        if missing.is_empty() {
            assert_eq!(parse_metric(&body, "momentd_dead_letters_total", &[]), 3.0);
            assert_eq!(
                parse_metric(&body, "momentd_triggers_total", &[]),
                want.len() as f64
            );
            assert!(
                !body.contains("emp-"),
                "no employee id anywhere in the metrics"
            );
            break;
        }
        assert!(Instant::now() < deadline, "metrics missing: {missing:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert_eq!(
        committed(&b.bootstrap, "g-sample", INPUT, 1).get(&0),
        Some(&(lines.len() as i64)),
        "every input committed"
    );
    // The log is a file here: no colour codes in it; as JSON, one object a line.
    let logs = std::fs::read_to_string(&d.log).unwrap();
    assert!(!logs.contains('\u{1b}'), "escape codes in the log file");
    if json {
        for l in logs.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}"));
            assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
        }
    }
}

#[test]
fn sample_gives_the_same_triggers_as_replay_on_the_mock_cluster() {
    sample_gives_the_same_triggers_as_replay(Kind::Mock, &[]);
}

#[test]
fn sample_gives_the_same_triggers_as_replay_on_tansu() {
    // (With JSON logs: CONTRACT §6's `log.format`.)
    sample_gives_the_same_triggers_as_replay(Kind::Tansu, &[("MOMENTD__LOG__FORMAT", "json")]);
}

/// The escape hatch: every message polled by the consumer thread and handed to its task.
#[test]
fn sample_gives_the_same_triggers_through_the_consumer_thread() {
    sample_gives_the_same_triggers_as_replay(
        Kind::Mock,
        &[("MOMENTD__KAFKA__SPLIT_PARTITION_QUEUES", "false")],
    );
}

fn poison_messages_go_to_the_dead_letter_topic(kind: Kind) {
    let _g = serial();
    let b = Broker::start(kind, &[(INPUT, 1), (OUTPUT, 1), (DLQ, 1)]);
    let mut d = Daemon::start(
        &b,
        "g-poison",
        &[("MOMENTD__INPUT__MAX_EVENT_BYTES", "2048")],
    );
    d.wait_ready(Duration::from_secs(60));
    let event = |emp: &str, ty: &str, at: &str, attrs: serde_json::Value| {
        serde_json::json!({"event_id": format!("{emp}-1"), "employee_id": emp, "occurred_at": at,
            "type": ty, "attrs": attrs})
        .to_string()
        .into_bytes()
    };
    let abandoned =
        serde_json::json!({"module_id": "m-9", "progress_pct": 90, "before_assessment": true});
    let k = |s: &str| Some(s.as_bytes().to_vec());
    let pb = vec![("content-type", b"application/x-protobuf".to_vec())];
    let inputs: Vec<Input> = vec![
        (
            k("emp-p1"),
            b"{\"event_id\": \"x\", not json".to_vec(),
            vec![],
        ),
        (k("emp-p2"), vec![0xff, 0xff, 0xff, 0x01], pb),
        (
            k("emp-p3"),
            event(
                "emp-p3",
                "hr.no_such_type",
                "2026-03-01T10:00:00Z",
                serde_json::json!({}),
            ),
            vec![],
        ),
        (
            k("emp-other"),
            event(
                "emp-p4",
                "learning.module_abandoned",
                "2026-03-01T10:00:00Z",
                abandoned.clone(),
            ),
            vec![],
        ),
        (
            k("emp-p5"),
            event(
                "emp-p5",
                "feedback.comment",
                "2026-03-01T10:00:00Z",
                serde_json::json!({"text": "long ".repeat(1000)}),
            ),
            vec![],
        ),
        (
            k("emp-p6"),
            event(
                "emp-p6",
                "learning.module_abandoned",
                "1999-12-31T23:00:00Z",
                abandoned.clone(),
            ),
            vec![],
        ),
        (
            k("emp-ok"),
            event(
                "emp-ok",
                "learning.module_abandoned",
                "2026-03-01T11:00:00Z",
                abandoned,
            ),
            vec![],
        ),
    ];
    produce(&b.bootstrap, INPUT, &inputs);

    let dlq = read(&b.bootstrap, DLQ, 6, Duration::from_secs(30));
    let mut dlq = dlq;
    dlq.sort_by_key(|r| r.headers["momentd-source-offset"].parse::<i64>().unwrap());
    let reasons: Vec<&str> = dlq
        .iter()
        .map(|r| r.headers["momentd-error"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed_json",
            "malformed_protobuf",
            "unknown_type",
            "key_mismatch",
            "too_large",
            "timestamp_out_of_range"
        ]
    );
    for (i, r) in dlq.iter().enumerate() {
        assert_eq!(r.headers["momentd-source-offset"], i.to_string());
        assert_eq!(r.value, inputs[i].1, "the original value");
        assert_eq!(r.key, inputs[i].0, "the original key");
        assert!(!r.headers["momentd-error-detail"].is_empty());
    }
    assert_eq!(
        dlq[1].headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf"),
        "the original content-type stays"
    );
    // The daemon moved past them: the good event after them made its trigger.
    let out = read(&b.bootstrap, OUTPUT, 1, Duration::from_secs(30));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].json()["subject"], "emp-ok");
    for reason in reasons {
        assert_eq!(
            d.metric(
                "momentd_dead_letters_total",
                &[&format!("reason=\"{reason}\"")]
            ),
            1.0,
            "{reason} counted"
        );
    }
    d.signal("TERM");
    assert!(d
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    assert_eq!(
        committed(&b.bootstrap, "g-poison", INPUT, 1).get(&0),
        Some(&7),
        "dead letters are committed like any other input"
    );
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_on_the_mock_cluster() {
    poison_messages_go_to_the_dead_letter_topic(Kind::Mock);
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_on_tansu() {
    poison_messages_go_to_the_dead_letter_topic(Kind::Tansu);
}

/// Produces `lines` over about `secs` seconds from a thread (so a daemon can be stopped while
/// input still arrives).
fn produce_slowly(bootstrap: &str, lines: Vec<String>, secs: f64) -> std::thread::JoinHandle<()> {
    let bootstrap = bootstrap.to_string();
    std::thread::spawn(move || {
        let chunks = 20;
        let size = lines.len().div_ceil(chunks);
        for chunk in lines.chunks(size) {
            produce(&bootstrap, INPUT, &json_inputs(chunk));
            std::thread::sleep(Duration::from_secs_f64(secs / chunks as f64));
        }
    })
}

/// Reads the output until it holds a trigger for each of `n` subjects.
fn read_until_subjects(bootstrap: &str, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let all: Vec<serde_json::Value> =
            read(bootstrap, OUTPUT, usize::MAX, Duration::from_secs(2))
                .iter()
                .map(Rec::json)
                .collect();
        let subjects: HashSet<&str> = all.iter().filter_map(|t| t["subject"].as_str()).collect();
        if subjects.len() >= n {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} subjects have their trigger",
            subjects.len()
        );
    }
}

fn stop_mid_stream_then_restart(kind: Kind, graceful: bool) {
    let _g = serial();
    let n = if kind == Kind::Mock { 30_000 } else { 8_000 };
    let group = if graceful { "g-term" } else { "g-kill" };
    let lines = one_trigger_each(n, group);
    let b = Broker::start(kind, &[(INPUT, 2), (OUTPUT, 1), (DLQ, 1)]);
    let mut d = Daemon::start(&b, group, &[]);
    d.wait_ready(Duration::from_secs(60));
    let producer = produce_slowly(&b.bootstrap, lines, 4.0);
    d.wait_metric(
        "momentd_triggers_total",
        &[],
        (n / 10) as f64,
        Duration::from_secs(60),
    );
    let stopped = Instant::now();
    let mut before_stop = String::new();
    if graceful {
        d.signal("TERM");
        let status = d
            .wait_exit(Duration::from_secs(15))
            .expect("exits after SIGTERM");
        assert!(status.success(), "exit 0: {status:?}\n{}", d.logs());
        assert!(
            stopped.elapsed() < Duration::from_secs(11),
            "within shutdown.timeout (10 s): {:?}",
            stopped.elapsed()
        );
    } else {
        // Crash after a periodic commit that moved past the start, with more input in
        // flight. (A first commit can be of offset 0: the oldest trigger not yet acknowledged —
        // tansu acknowledges slowly — holds it there.)
        d.wait_metric(
            "momentd_commits_total",
            &["result=\"ok\""],
            1.0,
            Duration::from_secs(30),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while committed(&b.bootstrap, group, INPUT, 2)
            .values()
            .sum::<i64>()
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "no commit moved past the start: {}",
                d.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let commits = d.metrics_matching("momentd_commits_total");
        d.kill9();
        before_stop = format!("{commits}\n{}", d.logs());
    }
    producer.join().unwrap();
    let first: Vec<serde_json::Value> =
        read(&b.bootstrap, OUTPUT, usize::MAX, Duration::from_secs(3))
            .iter()
            .map(Rec::json)
            .collect();
    let first_subjects: HashSet<String> = first
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    let pos = committed(&b.bootstrap, group, INPUT, 2);
    let inputs = read(&b.bootstrap, INPUT, n, Duration::from_secs(10));
    assert_eq!(inputs.len(), n);
    let done: i64 = pos.values().sum();
    assert!(
        done > 0 && done < n as i64,
        "stopped mid-stream: {done} of {n} committed ({pos:?}); before the stop:\n{before_stop}"
    );
    for r in &inputs {
        let subject = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let is_committed = pos.get(&r.partition).is_some_and(|&c| r.offset < c);
        if is_committed {
            assert!(
                first_subjects.contains(&subject),
                "input {}:{} is committed but its trigger was not published",
                r.partition,
                r.offset
            );
        } else if graceful {
            assert!(
                !first_subjects.contains(&subject),
                "input {}:{} was processed and published but not committed",
                r.partition,
                r.offset
            );
        }
    }

    let d2 = Daemon::start(&b, group, &[]);
    d2.wait_ready(Duration::from_secs(60));
    let all = read_until_subjects(&b.bootstrap, n, Duration::from_secs(120));
    let ids = by_id(&all);
    assert_eq!(ids.len(), n, "one trigger id per input");
    if graceful {
        assert_eq!(
            all.len(),
            n,
            "after a graceful stop, nothing is published twice"
        );
    } else {
        eprintln!(
            "kill -9: {} triggers redelivered, each with its original id and content",
            all.len() - n
        );
    }
    drop(d2);
}

#[test]
fn sigterm_mid_stream_commits_exactly_what_was_published_on_the_mock_cluster() {
    stop_mid_stream_then_restart(Kind::Mock, true);
}

#[test]
fn sigterm_mid_stream_commits_exactly_what_was_published_on_tansu() {
    stop_mid_stream_then_restart(Kind::Tansu, true);
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_keep_their_ids_on_the_mock_cluster() {
    stop_mid_stream_then_restart(Kind::Mock, false);
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_keep_their_ids_on_tansu() {
    stop_mid_stream_then_restart(Kind::Tansu, false);
}

fn two_instances_split_and_hand_over(kind: Kind) {
    let _g = serial();
    let n = if kind == Kind::Mock { 20_000 } else { 6_000 };
    let lines = one_trigger_each(n, "two");
    let b = Broker::start(kind, &[(INPUT, 4), (OUTPUT, 1), (DLQ, 1)]);
    let mut a = Daemon::start(&b, "g-two", &[]);
    a.wait_ready(Duration::from_secs(60));
    let c = Daemon::start(&b, "g-two", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Topic-partitions: two of the input and the same two of the repartition topic each.
    while !(a.metric("momentd_assigned_partitions", &[]) == 4.0
        && c.metric("momentd_assigned_partitions", &[]) == 4.0)
    {
        assert!(
            Instant::now() < deadline,
            "the two instances did not split the 4 partitions: {} and {}",
            a.metric("momentd_assigned_partitions", &[]),
            c.metric("momentd_assigned_partitions", &[])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let producer = produce_slowly(&b.bootstrap, lines, 4.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.metric("momentd_triggers_total", &[]) + c.metric("momentd_triggers_total", &[])
        < (n / 5) as f64
    {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        a.metric("momentd_triggers_total", &[]) > 0.0,
        "both instances work"
    );
    a.signal("TERM");
    assert!(a
        .wait_exit(Duration::from_secs(15))
        .is_some_and(|s| s.success()));
    c.wait_metric(
        "momentd_assigned_partitions",
        &[],
        8.0,
        Duration::from_secs(60),
    );
    producer.join().unwrap();
    let all = read_until_subjects(&b.bootstrap, n, Duration::from_secs(120));
    assert_eq!(by_id(&all).len(), n, "no input skipped, one id each");
    let mut per_subject: HashMap<&str, usize> = HashMap::new();
    for t in &all {
        *per_subject
            .entry(t["subject"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(per_subject.len(), n);
}

#[test]
fn two_instances_split_the_partitions_and_hand_over_on_the_mock_cluster() {
    two_instances_split_and_hand_over(Kind::Mock);
}

#[test]
fn two_instances_split_the_partitions_and_hand_over_on_tansu() {
    two_instances_split_and_hand_over(Kind::Tansu);
}

/// CONTRACT §3: a quiet partition's watermark moves on with the wall clock once it has been
/// idle for `time.idle_timeout` — so an absence rule fires on a quiet stream — but never jumps
/// to "now".
#[test]
fn an_idle_partition_fires_absence_timers_at_wall_clock_pace() {
    let _g = serial();
    let b = Broker::start(Kind::Mock, &[(INPUT, 1), (OUTPUT, 1), (DLQ, 1)]);
    let d = Daemon::start(&b, "g-idle", &[("MOMENTD__TIME__IDLE_TIMEOUT", "1s")]);
    d.wait_ready(Duration::from_secs(60));
    let t = |s: &str| momentd::time::parse_rfc3339(s).unwrap();
    let f = momentd::time::format_rfc3339;
    let last = t("2026-03-10T12:00:00Z");
    let h = momentd::time::HOUR;
    let ev = |emp: &str, n: u32, ty: &str, at: i64, attrs: serde_json::Value| {
        serde_json::json!({"event_id": format!("{emp}-{n}"), "employee_id": emp,
            "occurred_at": f(at), "type": ty, "attrs": attrs})
        .to_string()
    };
    let lines = vec![
        // emp-soon: one check-in skipped, the next one's 72 h grace ends 3 s after the last
        // event: only the idle clock can get there.
        ev(
            "emp-soon",
            1,
            "checkin.skipped",
            last - 48 * h,
            serde_json::json!({"checkin_id": "c1"}),
        ),
        ev(
            "emp-soon",
            2,
            "checkin.scheduled",
            last - 10 * h,
            serde_json::json!({"checkin_id": "c2", "due_at": f(last - 72 * h + 3_000)}),
        ),
        // emp-later: the same, but its grace ends an hour after the last event.
        ev(
            "emp-later",
            1,
            "checkin.skipped",
            last - 48 * h,
            serde_json::json!({"checkin_id": "c1"}),
        ),
        ev(
            "emp-later",
            2,
            "checkin.scheduled",
            last - 10 * h,
            serde_json::json!({"checkin_id": "c2", "due_at": f(last - 71 * h)}),
        ),
        ev(
            "emp-x",
            1,
            "collab.activity",
            last,
            serde_json::json!({"messages": 1, "meetings": 0}),
        ),
    ];
    produce(&b.bootstrap, INPUT, &json_inputs(&lines));
    let out = read(&b.bootstrap, OUTPUT, 1, Duration::from_secs(20));
    assert_eq!(out.len(), 1, "the idle clock fired the near timer");
    let t0 = out[0].json();
    assert_eq!(t0["subject"], "emp-soon");
    assert_eq!(t0["rule"], "checkin_lapse");
    // Several more idle seconds: the timer an hour of event time away must not fire.
    std::thread::sleep(Duration::from_secs(4));
    let again = read(&b.bootstrap, OUTPUT, 2, Duration::from_secs(1));
    assert_eq!(again.len(), 1, "the watermark did not jump to now");
    let wm = d.metric("momentd_watermark_timestamp_seconds", &[]);
    assert!(
        wm > (last / 1000) as f64 + 3.0 && wm < (last / 1000) as f64 + 600.0,
        "the watermark moved on at wall-clock pace: {wm}"
    );
}

/// Start-up is bounded (issue 16): against a "broker" that accepts connections and never
/// answers, `run` gives up after `kafka.startup_timeout` with an error naming the step it was
/// at; and SIGTERM during start-up stops it at once, with exit 0.
#[test]
fn start_up_against_a_broker_that_never_answers_is_bounded_and_named() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let mut d = Daemon::start_on(
        &addr,
        "g-silent",
        &[("MOMENTD__KAFKA__STARTUP_TIMEOUT", "3s")],
    );
    let t0 = Instant::now();
    let status = d
        .wait_exit(Duration::from_secs(60))
        .expect("it gives up by itself");
    assert!(!status.success(), "a failed start-up is an error");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(
        log.contains("start-up step \"cluster metadata and topics\"")
            && log.contains("kafka.startup_timeout"),
        "the error names the step: {log}"
    );
    assert!(log.contains("start-up: waiting for the cluster"), "{log}");

    let mut d = Daemon::start_on(&addr, "g-silent-term", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.logged("start-up: waiting for the cluster") {
        assert!(Instant::now() < deadline, "{}", d.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.signal("TERM");
    let t0 = Instant::now();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("SIGTERM during start-up stops it");
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

/// `momentd dev` as a new user runs it: every trigger `replay` gives for the sample is printed,
/// and Ctrl-C stops it with exit 0 and not one warning or error — every client stops before
/// the in-process cluster it talks to.
#[test]
fn dev_prints_the_samples_triggers_and_stops_cleanly_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let replay = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(["replay", "--input", "examples/sample-events.jsonl"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let expected = String::from_utf8(replay.stdout).unwrap().lines().count();
    assert!(expected > 20, "the sample fires: {expected}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(["dev"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MOMENTD_PSEUDONYM_KEY")
        .env("MOMENTD__HTTP__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut printed = Vec::new();
    while printed.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{} of {expected} triggers printed: {printed:#?}\n{}",
                    printed.len(),
                    logs.join().unwrap()
                );
            }
        }
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let stop = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < stop, "dev still running 30 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let logs = logs.join().unwrap();
    assert!(status.success(), "exit 0 after Ctrl-C: {status:?}\n{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    let loud: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(loud.is_empty(), "a clean stop says nothing loud: {loud:#?}");
    assert_eq!(printed.len(), expected);
}
