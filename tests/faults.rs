//! Faults from the broker side (issue 16), through the fault-capable mock broker: librdkafka's
//! mock cluster with three brokers, faults set mid-stream by `momentd-mock-broker`'s stdin
//! commands.

mod support;

use std::time::{Duration, Instant};

use support::*;

const PARTITIONS: i32 = 3;

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
        (&format!("leader {INPUT} 0 3"), true),
        (&format!("leader {INPUT} 0 7"), false),
        ("coordinator group g 2", true),
        ("nonsense", false),
    ] {
        let a = b.command(cmd);
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
    let mut d = Daemon::start(&b, group, &[]);
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
fn through_faults(group: &str, seed: u64, faults: &[(f64, String)]) {
    let _g = serial();
    let lines = in_time_order(90, 80, seed);
    let n = lines.len() as i64;
    let want = by_id(&replay(&lines));
    let b = Broker::mock_cluster(3, &[(INPUT, PARTITIONS), (OUTPUT, 1), (DLQ, 1)]);
    let mut d = Daemon::start(&b, group, &[]);
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
    for (share, cmd) in faults {
        while committed_total(&b, group) < (n as f64 * share) as i64 {
            assert!(
                d.wait_exit(Duration::ZERO).is_none(),
                "it stays up: {}",
                d.logs()
            );
            assert!(Instant::now() < deadline, "{}", d.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(b.command(cmd), "ok", "{cmd}");
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
