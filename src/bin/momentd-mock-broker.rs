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

use std::io::{BufRead, Write};

fn main() {
    let mut brokers = 1;
    let mut topics = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
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
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            [] => continue,
            ["create", topic, parts] => match parts.parse::<i32>() {
                Ok(n) => match cluster.create_topic(topic, n, 1) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e}"),
                },
                Err(_) => format!("error: {parts:?} is not a partition count"),
            },
            _ => format!("error: unknown command {line:?} (create TOPIC PARTITIONS)"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    drop(cluster);
}
