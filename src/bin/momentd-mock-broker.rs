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
//! * `broker-errors BROKER API_KEY ERROR_NAME COUNT` — the same, for the next COUNT requests
//!   of that API to one broker (with `leader`, a fault aimed at the topics that broker leads).
//!   Once set, that broker's errors for the API come from its own list only: a later
//!   `errors` for the same API no longer reaches it (librdkafka's mock keeps one or the other).
//! * `errors-left BROKER API_KEY` — answers `ok N`: how many of the errors set for that broker
//!   and API are still to come (a test's proof that its fault met requests).
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
  broker-errors BROKER API_KEY ERROR_NAME COUNT
                                      the same, for requests to that broker only (after
                                      it, `errors` for that API no longer reach the broker)
  errors-left BROKER API_KEY          answers `ok N`: how many of those are still to come
  leader TOPIC PARTITION BROKER       move the partition's leader (-1: none)
  coordinator group GROUP BROKER      move the group's coordinator";

use rdkafka::config::ClientConfig;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
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

/// The cluster, through rust-rdkafka's wrapper and (for what the wrapper lacks) librdkafka's own
/// handle.
struct Cluster<'c> {
    mock: MockCluster<'c, DefaultProducerContext>,
    raw: *mut rdkafka::bindings::rd_kafka_mock_cluster_t,
}

/// Applies one command line to the cluster: what follows `ok` (a query's answer, or nothing),
/// or what is wrong.
fn command(c: &Cluster<'_>, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if let ["errors-left", b, api] = words.as_slice() {
        let b = b
            .parse::<i32>()
            .map_err(|_| format!("{b:?} is not a broker id"))?;
        let api = api_key(api).ok_or_else(|| format!("unknown API key {api:?}"))?;
        let mut n: usize = 0;
        // SAFETY: `raw` is the live cluster; librdkafka writes the count to `n`.
        let r = unsafe {
            rdkafka::bindings::rd_kafka_mock_broker_error_stack_cnt(c.raw, b, api as i16, &mut n)
        };
        if r != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("broker {b}: {r:?}"));
        }
        return Ok(n.to_string());
    }
    command_changing(c, line).map(|()| String::new())
}

/// The commands that change the cluster.
fn command_changing(c: &Cluster<'_>, line: &str) -> Result<(), String> {
    let cluster = &c.mock;
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
        ["broker-errors", b, api, err, count] => {
            let b = int(b, "a broker id")?;
            let api = api_key(api).ok_or_else(|| format!("unknown API key {api:?}"))?;
            let code = error_code(err).ok_or_else(|| format!("unknown error name {err:?}"))?;
            let count = count.parse::<usize>().map_err(|_| format!("{count:?} is not a count"))?;
            for _ in 0..count {
                // SAFETY: `raw` is the live cluster of the producer `main` holds; one (error,
                // round-trip ms) pair of C ints follows the count, as librdkafka reads them.
                let r = unsafe {
                    rdkafka::bindings::rd_kafka_mock_broker_push_request_error_rtts(
                        c.raw,
                        b,
                        api as i16,
                        1,
                        code as std::ffi::c_int,
                        0 as std::ffi::c_int,
                    )
                };
                if r != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Err(format!("broker {b}: {r:?}"));
                }
            }
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
            "unknown command {line:?} (create TOPIC PARTITIONS | down BROKER | up BROKER | rtt BROKER MS | errors API_KEY ERROR_NAME COUNT | broker-errors BROKER API_KEY ERROR_NAME COUNT | leader TOPIC PARTITION BROKER | coordinator group GROUP BROKER)"
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
    // The cluster belongs to a client made with `test.mock.num.brokers` (rust-rdkafka's own
    // `MockCluster::new` hides librdkafka's handle, which per-broker errors need).
    let producer: BaseProducer = match ClientConfig::new()
        .set("test.mock.num.brokers", brokers.to_string())
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("momentd-mock-broker: cannot start the mock cluster: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: the producer lives until the end of `main`, and its cluster with it.
    let raw =
        unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr()) };
    let Some(mock) = producer.client().mock_cluster() else {
        eprintln!("momentd-mock-broker: the client has no mock cluster");
        std::process::exit(2);
    };
    let cluster = Cluster { mock, raw };
    for t in &topics {
        let (name, parts) = match t.split_once(':') {
            Some((n, p)) => (n, p.parse().unwrap_or(1)),
            None => (t.as_str(), 1),
        };
        if let Err(e) = cluster.mock.create_topic(name, parts, 1) {
            eprintln!("momentd-mock-broker: cannot create topic {name}: {e}");
            std::process::exit(2);
        }
    }
    println!("bootstrap={}", cluster.mock.bootstrap_servers());
    let _ = std::io::stdout().flush();
    // Serve until stdin closes (the test harness dropped its end) or a signal ends the process.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match command(&cluster, &line) {
            Ok(a) if a.is_empty() => "ok".to_string(),
            Ok(a) => format!("ok {a}"),
            Err(e) => format!("error: {e}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    drop(cluster);
    drop(producer);
}
