//! Test support: librdkafka's mock cluster in its own process, so a test can kill -9 the daemon
//! while the broker lives on.
//!
//! `momentd-mock-broker [--brokers N] [TOPIC[:PARTITIONS] ...]` creates the cluster and the
//! topics, prints `bootstrap=HOST:PORT,...` on one line of stdout, and serves until its stdin
//! closes or it gets SIGTERM/SIGINT.

use std::io::{Read, Write};

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
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
}
