//! Faults from the broker side (issue 16), through the fault-capable mock broker: librdkafka's
//! mock cluster with three brokers, faults set mid-stream by `momentd-mock-broker`'s stdin
//! commands.

mod support;

use std::time::{Duration, Instant};

use support::*;

const PARTITIONS: i32 = 3;

/// One produce request in flight per connection. The mock cluster checks no sequence numbers
/// for an idempotent producer without a transactional id (librdkafka's
/// `rd_kafka_mock_validate_records` returns early), so when a request fails and the next one
/// behind it succeeds, the mock appends the second, and the producer then counts the first
/// as persisted (`rd_kafka_handle_idempotent_Produce_success` acknowledges every earlier
/// message implicitly). A real broker refuses the second with OUT_OF_ORDER_SEQUENCE_NUMBER.
/// With one request in flight no request waits behind a failed one, so a loss here is
/// momentd's, not the mock's.
const ONE_IN_FLIGHT: (&str, &str) = ("MOMENTD__KAFKA__CLIENT__MAX_IN_FLIGHT", "1");

fn committed_total(b: &Broker, group: &str) -> i64 {
    committed(&b.bootstrap, group, INPUT, PARTITIONS)
        .values()
        .sum()
}

/// Waits until `n` inputs are committed, the daemon up all along.
fn wait_all_committed(b: &Broker, group: &str, n: i64, d: &mut Daemon, deadline: Instant) {
    while committed_total(b, group) < n {
        assert!(
            d.wait_exit(Duration::ZERO).is_none(),
            "it stays up: {}",
            d.logs()
        );
        assert!(
            Instant::now() < deadline,
            "committed {} of {n}: {}",
            committed_total(b, group),
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The commands answer `ok` or a one-line error, and `--help` documents them.
#[test]
fn the_mock_broker_takes_fault_commands() {
    let b = Broker::mock_cluster(3, &[(INPUT, PARTITIONS)]);
    for (cmd, ok) in [
        ("down 2", true),
        ("up 2", true),
        ("rtt 1 500", true),
        ("rtt 1 0", true),
        ("errors Produce REQUEST_TIMED_OUT 2", true),
        ("errors Produce NO_SUCH_ERROR 2", false),
        ("errors NoSuchApi REQUEST_TIMED_OUT 2", false),
        ("broker-errors 3 Produce REQUEST_TIMED_OUT 2", true),
        ("broker-errors 9 Produce REQUEST_TIMED_OUT 2", false),
        ("broker-errors 3 Produce NO_SUCH_ERROR 2", false),
        ("errors-left 3 Produce", false),
        (&format!("leader {INPUT} 0 3"), true),
        (&format!("leader {INPUT} 0 7"), false),
        ("coordinator group g 2", true),
        ("nonsense", false),
    ] {
        let a = b.command(cmd);
        if cmd.starts_with("errors-left") {
            assert_eq!(a, "ok 2", "the two set on broker 3 are still to come");
            continue;
        }
        assert_eq!(a == "ok", ok, "{cmd}: {a}");
        assert!(ok || a.starts_with("error: "), "{cmd}: {a}");
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_momentd-mock-broker"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for c in [
        "down BROKER",
        "rtt BROKER MS",
        "errors API_KEY ERROR_NAME COUNT",
        "broker-errors BROKER API_KEY ERROR_NAME COUNT",
        "errors-left BROKER API_KEY",
        "leader TOPIC",
        "coordinator group",
    ] {
        assert!(help.contains(c), "{c} in {help}");
    }
}

/// Twenty retriable produce errors while the daemon works through a stream: it stays up,
/// retries, and publishes replay's triggers; every input is committed.
#[test]
fn twenty_retriable_produce_errors_lose_nothing() {
    let _g = serial();
    let lines = in_time_order(90, 80, 41);
    let n = lines.len() as i64;
    let want = by_id(&replay(&lines));
    let b = Broker::mock_cluster(3, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let group = "g-fault-produce";
    // All of it produced first, then the fault set, then the daemon started: the Produce
    // requests that meet the errors are the daemon's own (triggers, changelog, repartition
    // and population records), from its first batch on.
    produce(&b.bootstrap, INPUT, &json_inputs(&lines));
    assert_eq!(b.command("errors Produce REQUEST_TIMED_OUT 20"), "ok");
    let mut d = Daemon::start(&b, group, &[ONE_IN_FLIGHT]);
    let deadline = Instant::now() + Duration::from_secs(180);
    wait_all_committed(&b, group, n, &mut d, deadline);
    let got = by_id(&read_json(&b.bootstrap, OUTPUT, Duration::from_secs(3)));
    same_triggers(&want, &got, "after 20 produce errors");
    eprintln!(
        "{} triggers through 20 produce errors, as replay's",
        want.len()
    );
}

/// Runs a simulated stream produced in chunks over a few seconds through one daemon on the
/// three-broker mock cluster, applying each `(share, command)` once that share of the input is
/// committed; the daemon must stay up and publish replay's triggers, every input committed.
/// Besides the mock broker's commands: `wait MS` pauses before the next command, `drained
/// BROKER API_KEY` waits until the errors set for that broker's API have all met requests,
/// `restart`
/// kills the daemon (kill -9) and starts another in the group — its triggers and the first's
/// together must still be replay's, so nothing was committed before its outputs were
/// acknowledged.
fn through_faults(group: &str, seed: u64, faults: &[(f64, String)]) {
    let _g = serial();
    let lines = in_time_order(90, 80, seed);
    let n = lines.len() as i64;
    let want = by_id(&replay(&lines));
    let b = Broker::mock_cluster(3, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let mut d = Daemon::start(&b, group, &[ONE_IN_FLIGHT]);
    d.wait_ready(Duration::from_secs(60));
    let producer = {
        let (bootstrap, lines) = (b.bootstrap.clone(), lines.clone());
        std::thread::spawn(move || {
            for chunk in lines.chunks(lines.len().div_ceil(30)) {
                produce(&bootstrap, INPUT, &json_inputs(chunk));
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    // (Commands at a share already reached follow at once: while a topic has no leader the
    // mock cannot answer the committed-offsets check.)
    let mut reached = 0.0;
    for (share, cmd) in faults {
        while *share > reached && committed_total(&b, group) < (n as f64 * share) as i64 {
            assert!(
                d.wait_exit(Duration::ZERO).is_none(),
                "it stays up: {}",
                d.logs()
            );
            assert!(Instant::now() < deadline, "{}", d.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        reached = reached.max(*share);
        if let Some(ms) = cmd.strip_prefix("wait ") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        } else if let Some(q) = cmd.strip_prefix("drained ") {
            // Waits until the errors set for a broker's API have all met requests.
            while b.command(&format!("errors-left {q}")) != "ok 0" {
                assert!(Instant::now() < deadline, "{cmd}: {}", d.logs());
                std::thread::sleep(Duration::from_millis(50));
            }
        } else if cmd == "restart" {
            // Killed without a chance to flush or commit: what it committed must not be ahead
            // of what the broker acknowledged, or the next instance never sends those outputs.
            d.kill9();
            d = Daemon::start_on(&b.bootstrap, group, &[ONE_IN_FLIGHT]);
        } else {
            assert_eq!(b.command(cmd), "ok", "{cmd}");
        }
    }
    producer.join().unwrap();
    wait_all_committed(&b, group, n, &mut d, deadline);
    let got = by_id(&read_json(&b.bootstrap, OUTPUT, Duration::from_secs(3)));
    same_triggers(&want, &got, &format!("through {faults:?}"));
    eprintln!("{} triggers through {faults:?}, as replay's", want.len());
}

#[test]
fn half_second_round_trips_lose_nothing() {
    through_faults(
        "g-fault-rtt",
        42,
        &[
            (0.1, "rtt 1 500".into()),
            (0.1, "rtt 2 500".into()),
            (0.1, "rtt 3 500".into()),
            (0.6, "rtt 1 0".into()),
            (0.6, "rtt 2 0".into()),
            (0.6, "rtt 3 0".into()),
        ],
    );
}

#[test]
fn partition_leaders_and_the_coordinator_moving_lose_nothing() {
    let group = "g-fault-moves";
    let mut faults: Vec<(f64, String)> = (0..PARTITIONS)
        .map(|p| (0.3, format!("leader {INPUT} {p} {}", 1 + (p + 1) % 3)))
        .collect();
    faults.push((0.4, format!("leader {OUTPUT} 0 2")));
    faults.push((0.5, format!("coordinator group {group} 3")));
    through_faults(group, 43, &faults);
}

#[test]
fn commit_errors_from_the_coordinator_lose_nothing() {
    through_faults(
        "g-fault-commit",
        44,
        &[(0.3, "errors OffsetCommit REQUEST_TIMED_OUT 10".into())],
    );
}

/// The broker leading a third of the input, the trigger topic's partition, or the group's
/// coordinator goes down for 20 seconds and comes back; the daemon is then killed, so what
/// it had committed meanwhile is tested against what it had published.
#[test]
fn the_leaders_broker_down_for_twenty_seconds_loses_nothing() {
    through_faults(
        "g-fault-down",
        45,
        &[
            (0.3, "down 1".into()),
            (0.3, "wait 20000".into()),
            (0.3, "up 1".into()),
            (0.5, "restart".into()),
        ],
    );
}

/// tansu killed (kill -9) in the middle of a stream and started again on the same database a
/// few seconds later: the daemon reconnects by itself, stays up, and the triggers are replay's.
#[test]
fn a_tansu_restart_under_the_daemon_loses_nothing() {
    let _g = serial();
    let lines = in_time_order(60, 60, 47);
    let n = lines.len() as i64;
    let want = by_id(&replay(&lines));
    let mut b = Broker::start(Kind::Tansu, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let group = "g-fault-tansu";
    let mut d = Daemon::start(&b, group, &[]);
    d.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(300);
    let (first, rest) = lines.split_at(lines.len() * 6 / 10);
    produce(&b.bootstrap, INPUT, &json_inputs(first));
    wait_all_committed(&b, group, n * 3 / 10, &mut d, deadline);
    b.restart_tansu(Duration::from_secs(3));
    produce(&b.bootstrap, INPUT, &json_inputs(rest));
    wait_all_committed(&b, group, n, &mut d, deadline);
    let got = by_id(&read_json(&b.bootstrap, OUTPUT, Duration::from_secs(3)));
    same_triggers(&want, &got, "through a tansu restart");
    assert!(d.wait_exit(Duration::ZERO).is_none(), "it stays up");
    eprintln!(
        "{} triggers through a tansu restart, as replay's",
        want.len()
    );
}

/// Twenty retriable produce errors on the changelog alone: its partitions are led by broker 3,
/// which leads nothing else, and broker 3 fails the next twenty Produce requests. Checkpoints
/// wait for the changelog, commits wait for the checkpoints; the daemon is killed afterwards,
/// so its successor restores from what the changelog holds and reads the input again from what
/// was committed.
#[test]
fn twenty_produce_errors_on_the_changelog_lose_nothing() {
    let group = "g-fault-changelog";
    // Leaders move first; the errors follow once every client has seen the moves (an error
    // set for broker 3 is taken by any Produce request that reaches it, even one the broker
    // then refuses as no longer its partition's leader).
    let at = 0.2;
    let mut faults: Vec<(f64, String)> = Vec::new();
    let mut lead = |topic: &str, partitions: i32, broker: &dyn Fn(i32) -> i32| {
        for p in 0..partitions {
            faults.push((at, format!("leader {topic} {p} {}", broker(p))));
        }
    };
    lead(&format!("{group}-state-changelog"), PARTITIONS, &|_| 3);
    lead(INPUT, PARTITIONS, &|p| 1 + p % 2);
    lead(&format!("{group}-groups-repartition"), PARTITIONS, &|p| {
        1 + p % 2
    });
    lead(&format!("{group}-population"), 1, &|_| 1);
    lead(OUTPUT, 1, &|_| 2);
    lead(DLQ, 1, &|_| 1);
    faults.push((at, format!("coordinator group {group} 1")));
    faults.push((at, "wait 3000".into()));
    faults.push((0.3, "broker-errors 3 Produce REQUEST_TIMED_OUT 20".into()));
    faults.push((0.3, "drained 3 Produce".into()));
    faults.push((0.6, "restart".into()));
    through_faults(group, 46, &faults);
}
