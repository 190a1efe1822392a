//! How the runtime delivers records that must reach the broker in order (a task's repartition
//! records, its changelog checkpoints): `runtime::output::InOrder`, on the mock cluster.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::config::ClientConfig;

use momentd::runtime::output::{InOrder, Kind, Record};
use support::*;

const TOPIC: &str = "ordered";
const PARTITIONS: i32 = 3;
const GROUPS: usize = 120;

/// Group `g`'s records: one to each partition, the group's number in the payload.
fn group(topic: &Arc<str>, g: usize) -> Vec<Record> {
    (0..PARTITIONS)
        .map(|p| Record {
            topic: Arc::clone(topic),
            partition: Some(p),
            key: Some(b"k".to_vec()),
            payload: Some(g.to_string().into_bytes()),
            headers: Vec::new(),
            kind: Kind::Repartition,
        })
        .collect()
}

/// Every partition holds, before any record of group g, every earlier group's record (a
/// record sent twice may appear twice); and every group arrived.
fn assert_in_order(recs: &[Rec]) {
    let mut seen: HashMap<i32, Vec<usize>> = HashMap::new();
    for r in recs {
        let g: usize = std::str::from_utf8(&r.value).unwrap().parse().unwrap();
        let s = seen.entry(r.partition).or_default();
        let highest = s.iter().copied().max();
        // Either a record sent again (seen already), or the next group.
        assert!(
            s.contains(&g) || highest.map_or(g == 0, |h| g == h + 1),
            "partition {} has group {g} after groups {:?}",
            r.partition,
            s
        );
        s.push(g);
    }
    for p in 0..PARTITIONS {
        let s = seen.get(&p).cloned().unwrap_or_default();
        assert_eq!(
            s.iter().copied().max(),
            Some(GROUPS - 1),
            "partition {p} has every group"
        );
    }
}

/// Queues a group every `every` (while the earlier ones are being delivered) through one
/// `InOrder`, and waits for them all; returns (deliveries, records sent again).
fn send_groups(b: &Broker, every: Duration, extra: &[(&str, &str)]) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &b.bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        let producer = momentd::runtime::output::Producer::new(&c).unwrap();
        let out = InOrder::new(producer);
        let topic: Arc<str> = TOPIC.into();
        let mut pending = FuturesOrdered::new();
        let mut tick = tokio::time::interval(every);
        let (mut queued, mut done) = (0, 0);
        while done < GROUPS {
            tokio::select! {
                _ = tick.tick(), if queued < GROUPS => {
                    pending.push_back(out.send(group(&topic, queued)));
                    queued += 1;
                }
                Some(()) = pending.next(), if !pending.is_empty() => done += 1,
            }
        }
        out.deliveries()
    })
}

/// With 100 ms round trips and a group every 5 ms, the groups queued while one delivery is
/// out go together in the next — not one round trip each — and land in the order queued.
#[test]
fn groups_queued_meanwhile_share_a_delivery_and_keep_their_order() {
    let _g = serial();
    let b = Broker::mock_cluster(1, &[(TOPIC, PARTITIONS)]);
    assert_eq!(b.command("rtt 1 100"), "ok");
    let (deliveries, _) = send_groups(&b, Duration::from_millis(5), &[]);
    assert!(
        deliveries * 4 <= GROUPS as u64,
        "{deliveries} deliveries for {GROUPS} groups"
    );
    assert_eq!(b.command("rtt 1 0"), "ok");
    let recs = read(&b.bootstrap, TOPIC, GROUPS * 3, Duration::from_secs(3));
    assert_in_order(&recs);
    eprintln!("{GROUPS} groups in {deliveries} deliveries, in order");
}

/// Deliveries that fail after librdkafka's own attempts (the broker down, mid-stream, for
/// longer than `message.timeout.ms`) are sent again, and no later group overtakes them.
#[test]
fn groups_failed_and_sent_again_are_not_overtaken() {
    let _g = serial();
    let b = Arc::new(Broker::mock_cluster(1, &[(TOPIC, PARTITIONS)]));
    let b2 = Arc::clone(&b);
    let fault = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(b2.command("down 1"), "ok");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(b2.command("up 1"), "ok");
    });
    // A group every 20 ms: 2.4 s of them, the broker down from 0.5 s to 3.5 s.
    let (deliveries, resent) = send_groups(
        &b,
        Duration::from_millis(20),
        &[("message.timeout.ms", "1000")],
    );
    fault.join().unwrap();
    assert!(resent > 0, "some records failed and were sent again");
    let recs = read(&b.bootstrap, TOPIC, GROUPS * 3, Duration::from_secs(3));
    assert_in_order(&recs);
    eprintln!(
        "{GROUPS} groups in {deliveries} deliveries, {resent} records sent again, {} read: in order",
        recs.len()
    );
}
