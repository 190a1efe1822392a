//! Test support: librdkafka's mock cluster in its own process, so a test can kill -9 the daemon
//! while the broker lives on.
//!
//! `momentd-mock-broker [--brokers N] [TOPIC[:PARTITIONS] ...]` creates the cluster and the
//! topics, prints `bootstrap=HOST:PORT,...` on one line of stdout, and serves until its stdin
//! closes or it gets SIGTERM/SIGINT.
//!
//! Commands, one per line on stdin, each answered by one line on stdout (`ok`, or `error: …`):
//! * `create TOPIC PARTITIONS` — creates a topic (the mock cluster has no controller, so
//!   clients cannot create topics through the admin API).
//! * `down BROKER`, `up BROKER` — takes a broker (1..N) down (its connections closed, new ones
//!   refused) and brings it back.
//! * `rtt BROKER MS` — every response of the broker is delayed by MS milliseconds (0: none).
//! * `errors API_KEY ERROR_NAME COUNT` — the next COUNT requests of that API (`Produce`,
//!   `Fetch`, `OffsetCommit`, `Metadata`, …) fail with that error (librdkafka's name without
//!   its prefix: `REQUEST_TIMED_OUT`, `NOT_LEADER_FOR_PARTITION`, `NOT_COORDINATOR`, …).
//! * `leader TOPIC PARTITION BROKER` — moves the partition's leader (`-1`: none).
//! * `coordinator group GROUP BROKER` — moves the group's coordinator.

use std::io::{BufRead, Write};

const HELP: &str = "\
momentd-mock-broker [--brokers N] [TOPIC[:PARTITIONS] ...]

librdkafka's mock cluster in its own process (test support). Creates N brokers (default 1) and
the topics, prints `bootstrap=HOST:PORT,...` on one line, and serves until stdin closes or
SIGTERM. Commands, one a line on stdin, each answered `ok` or `error: ...` on one line:

  create TOPIC PARTITIONS             create a topic (the mock has no CreateTopics)
  down BROKER | up BROKER             take broker 1..N down, bring it back
  rtt BROKER MS                       delay each of the broker's responses by MS ms (0: none)
  errors API_KEY ERROR_NAME COUNT     the next COUNT requests of API_KEY (Produce, Fetch,
                                      OffsetCommit, Metadata, FindCoordinator, JoinGroup,
                                      Heartbeat, SyncGroup, ...) fail with ERROR_NAME
                                      (REQUEST_TIMED_OUT, NOT_LEADER_FOR_PARTITION,
                                      NOT_COORDINATOR, ...)
  leader TOPIC PARTITION BROKER       move the partition's leader (-1: none)
  coordinator group GROUP BROKER      move the group's coordinator";

use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// The API keys a fault test is likely to want, by name.
fn api_key(name: &str) -> Option<RDKafkaApiKey> {
    use RDKafkaApiKey::*;
    Some(match name {
        "Produce" => Produce,
        "Fetch" => Fetch,
        "ListOffsets" => ListOffsets,
        "Metadata" => Metadata,
        "OffsetCommit" => OffsetCommit,
        "OffsetFetch" => OffsetFetch,
        "FindCoordinator" => FindCoordinator,
        "JoinGroup" => JoinGroup,
        "Heartbeat" => Heartbeat,
        "LeaveGroup" => LeaveGroup,
        "SyncGroup" => SyncGroup,
        "ApiVersions" => ApiVersion,
        "InitProducerId" => InitProducerId,
        _ => return None,
    })
}

/// An error code by its librdkafka name (`REQUEST_TIMED_OUT`), from librdkafka's own table.
fn error_code(name: &str) -> Option<RDKafkaRespErr> {
    let mut descs: *const rdkafka::bindings::rd_kafka_err_desc = std::ptr::null();
    let mut n: usize = 0;
    // SAFETY: librdkafka fills in a pointer to its static table and its length.
    unsafe { rdkafka::bindings::rd_kafka_get_err_descs(&mut descs, &mut n) };
    if descs.is_null() {
        return None;
    }
    // SAFETY: the table is static, `n` entries long; names are NUL-terminated or null.
    let table = unsafe { std::slice::from_raw_parts(descs, n) };
    table.iter().find_map(|d| {
        if d.name.is_null() {
            return None;
        }
        let dn = unsafe { std::ffi::CStr::from_ptr(d.name) }.to_string_lossy();
        (dn == name).then_some(d.code)
    })
}

/// Applies one command line to the cluster: `ok`, or what is wrong.
fn command(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    line: &str,
) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let int = |w: &str, what: &str| w.parse::<i32>().map_err(|_| format!("{w:?} is not {what}"));
    let kafka = |r: rdkafka::error::KafkaResult<()>| r.map_err(|e| e.to_string());
    match words.as_slice() {
        ["create", topic, parts] => kafka(cluster.create_topic(topic, int(parts, "a partition count")?, 1)),
        ["down", b] => kafka(cluster.broker_down(int(b, "a broker id")?)),
        ["up", b] => kafka(cluster.broker_up(int(b, "a broker id")?)),
        ["rtt", b, ms] => {
            let ms = ms.parse::<u64>().map_err(|_| format!("{ms:?} is not milliseconds"))?;
            kafka(cluster.broker_round_trip_time(
                int(b, "a broker id")?,
                std::time::Duration::from_millis(ms),
            ))
        }
        ["errors", api, err, count] => {
            let api = api_key(api).ok_or_else(|| format!("unknown API key {api:?}"))?;
            let code = error_code(err).ok_or_else(|| format!("unknown error name {err:?}"))?;
            let count = count.parse::<usize>().map_err(|_| format!("{count:?} is not a count"))?;
            cluster.request_errors(api, &vec![code; count]);
            Ok(())
        }
        ["leader", topic, p, b] => {
            let b = int(b, "a broker id")?;
            kafka(cluster.partition_leader(topic, int(p, "a partition")?, (b >= 0).then_some(b)))
        }
        ["coordinator", "group", group, b] => kafka(cluster.coordinator(
            MockCoordinator::Group(group.to_string()),
            int(b, "a broker id")?,
        )),
        _ => Err(format!(
            "unknown command {line:?} (create TOPIC PARTITIONS | down BROKER | up BROKER | rtt BROKER MS | errors API_KEY ERROR_NAME COUNT | leader TOPIC PARTITION BROKER | coordinator group GROUP BROKER)"
        )),
    }
}

fn main() {
    let mut brokers = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--help" || a == "-h" {
            println!("{HELP}");
            return;
        }
        if a == "--brokers" {
            brokers = args.next().and_then(|v| v.parse().ok()).unwrap_or(1);
        } else {
            topics.push(a);
        }
    }
    let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("momentd-mock-broker: cannot start the mock cluster: {e}");
            std::process::exit(2);
        }
    };
    for t in &topics {
        let (name, parts) = match t.split_once(':') {
            Some((n, p)) => (n, p.parse().unwrap_or(1)),
            None => (t.as_str(), 1),
        };
        if let Err(e) = cluster.create_topic(name, parts, 1) {
            eprintln!("momentd-mock-broker: cannot create topic {name}: {e}");
            std::process::exit(2);
        }
    }
    println!("bootstrap={}", cluster.bootstrap_servers());
    let _ = std::io::stdout().flush();
    // Serve until stdin closes (the test harness dropped its end) or a signal ends the process.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match command(&cluster, &line) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    drop(cluster);
}
