//! The changelog's I/O (docs/contract.md §9): restoring a task's state from its changelog partition,
//! and the records a checkpoint produces. The engine decides what the records hold
//! ([`crate::engine::changelog`]); this moves them.
//!
//! A restore runs in a blocking thread, so the consumer thread goes on polling, heartbeating
//! and taking rebalances while it runs. Every restore of the instance reads through one
//! consumer of its own (no group: partitions are assigned to it as their restores start and
//! unassigned as they end), each from its partition's own queue split off that consumer —
//! one fetcher and one set of connections for all of them, as a plain consumer reading the
//! topic has, and each partition decoded on its own thread. It reads the partition from its
//! beginning to the end offset found when the restore starts (read-uncommitted), then stops —
//! it does not wait for a "caught up" that a compacted or transactional log may never report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::output::{Kind, Record};
use crate::engine::changelog::Restorer;
use crate::engine::Engine;

/// What every task needs to write and restore its changelog partition.
#[derive(Clone)]
pub struct Changelog {
    pub topic: Arc<str>,
    /// The input topics, in the order of the positions in every record.
    pub inputs: Arc<[String]>,
    /// Settings for the restore consumers (brokers, security, …).
    pub client: ClientConfig,
    /// A producer of its own (idempotent, like the outputs'): a checkpoint's burst of records
    /// does not queue in front of the triggers on the outputs' connection.
    pub producer: super::output::Producer,
    pub interval: Duration,
    /// The restores' consumer, made at the first restore (it also looks up end offsets: an
    /// empty changelog partition, as in a new deployment, costs a round trip).
    pub meta: Arc<std::sync::Mutex<Option<Arc<BaseConsumer>>>>,
    /// How many partitions restore at once (the others wait their turn): eight per core keeps
    /// the cores busy decoding while other partitions are being fetched, without every
    /// partition's fetch buffer at once (1,000,000 employees over 125 partitions on 2 cores:
    /// 1.88 s at 16, 2.44 s at 8, 2.03 s at 64).
    pub gate: Arc<Gate>,
}

/// A counting gate for blocking threads: at most `n` inside at once.
#[derive(Debug)]
pub struct Gate {
    free: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
}

impl Gate {
    pub fn new(n: usize) -> Gate {
        Gate {
            free: std::sync::Mutex::new(n.max(1)),
            cv: std::sync::Condvar::new(),
        }
    }

    /// Waits for a place; `None` when `cancel` is set first.
    fn enter(&self, cancel: &AtomicBool) -> Option<GateGuard<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if cancel.load(Ordering::Acquire) {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(GateGuard(self));
            }
            free = self
                .cv
                .wait_timeout(free, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// What a restore read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restored {
    pub records: u64,
    pub bytes: u64,
    pub corrupt: u64,
    pub employees: usize,
    pub elapsed: Duration,
}

impl Changelog {
    /// The producer records of a checkpoint, to partition `partition`.
    pub fn records(
        &self,
        partition: i32,
        recs: Vec<crate::engine::changelog::Record>,
    ) -> Vec<Record> {
        recs.into_iter()
            .map(|r| Record {
                topic: Arc::clone(&self.topic),
                partition: Some(partition),
                key: Some(r.key),
                payload: r.value,
                headers: Vec::new(),
                kind: Kind::Changelog,
            })
            .collect()
    }

    fn consumer(&self) -> Result<BaseConsumer, KafkaError> {
        let mut c = self.client.clone();
        c.set("group.id", "momentd-restore")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Kafka Streams restores read-uncommitted too: the end offset found at the start
            // is the bound, and a transaction left open must not hold the restore back.
            .set("isolation.level", "read_uncommitted")
            .set("auto.offset.reset", "earliest")
            // Each restoring partition has its own (split) queue, and librdkafka's prefetch
            // bound applies per queue: its default 64 MiB × the restores at once stayed in
            // the process after they ended. 4 MiB keeps a fetch or two ahead of the decoder.
            .set("queued.max.messages.kbytes", "4096");
        c.create()
    }

    /// The instance's restore consumer (made at the first call). A thread polls its own
    /// queue (errors and events not of a partition); the partitions' messages go to their
    /// split queues.
    fn reader(&self) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut g = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = g.as_ref() {
            return Ok(Arc::clone(m));
        }
        let m = Arc::new(self.consumer()?);
        let weak = Arc::downgrade(&m);
        let topic = Arc::clone(&self.topic);
        let _ = std::thread::Builder::new()
            .name("momentd-restore".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    if let Some(Err(e)) = c.poll(Duration::from_millis(200)) {
                        tracing::debug!(topic = %topic, error = %e, "restore consumer");
                    }
                }
            });
        *g = Some(Arc::clone(&m));
        Ok(m)
    }

    /// Restores partition `partition`'s state into `engine` (fresh), blocking; gives up only
    /// when `cancel` is set (the partition was revoked meanwhile), retrying broker errors.
    /// A record that cannot be read is counted, logged with its offset, and skipped: the
    /// key keeps what earlier records held (a corrupt record must not stop the partition).
    pub fn restore(
        &self,
        partition: i32,
        engine: &mut Engine,
        cancel: &AtomicBool,
    ) -> Option<Restored> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let (reader, high) = loop {
            if cancel.load(Ordering::Acquire) {
                return None;
            }
            match self.end_offset(partition) {
                Ok(x) => break x,
                Err(e) => {
                    tracing::warn!(
                        topic = %self.topic, partition, error = %e,
                        "cannot start reading the changelog yet; retrying"
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        // Not sized by the end offset: offsets only grow (a compacted log keeps a few records
        // of many offsets), and a table reserved for a million of them was ~50 MB per restore
        // in progress — 16 at once took an instance from 420 to 870 MiB (soak bench).
        let mut r = Restorer::default();
        let mut corrupt = 0;
        if let Some(reader) = reader {
            // Only restores that read take a turn at the gate.
            let _turn = self.gate.enter(cancel)?;
            // Retried until it works or the partition goes: an assignment fails while an
            // earlier restore of the same partition (revoked, then given back) has not let
            // go of it yet.
            let mut backoff = Duration::from_millis(50);
            let queue = loop {
                if cancel.load(Ordering::Acquire) {
                    return None;
                }
                match Reading::start(&reader, &self.topic, partition) {
                    Ok(q) => break q,
                    Err(e) => {
                        tracing::warn!(
                            topic = %self.topic, partition, error = %e,
                            "cannot start reading the changelog partition yet; retrying"
                        );
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            };
            let mut last_log = Instant::now();
            loop {
                if cancel.load(Ordering::Acquire) {
                    return None;
                }
                match queue.queue.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let offset = m.offset();
                        if let Err(e) = r.add(m.key().unwrap_or_default(), m.payload()) {
                            corrupt += 1;
                            crate::metrics::changelog_corrupt();
                            tracing::error!(
                                topic = %self.topic, partition, offset, error = %e,
                                "changelog record cannot be read; skipped"
                            );
                        }
                        if offset + 1 >= high {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => tracing::warn!(
                        topic = %self.topic, partition, error = %e,
                        "error while restoring; going on"
                    ),
                    None => {}
                }
                if last_log.elapsed() >= Duration::from_secs(10) {
                    tracing::info!(
                        topic = %self.topic, partition, records = r.records,
                        end_offset = high, "restoring"
                    );
                    last_log = Instant::now();
                }
            }
        }
        let out = Restored {
            records: r.records,
            bytes: r.bytes,
            corrupt,
            employees: r.employees(),
            elapsed: Duration::ZERO,
        };
        if !r.finish(engine, &self.inputs) {
            tracing::warn!(
                topic = %self.topic, partition, inputs = ?self.inputs,
                "the changelog was written for other input topics: state restored, but input positions are not used"
            );
        }
        Some(Restored {
            elapsed: started.elapsed(),
            ..out
        })
    }

    /// The restore consumer and the partition's end offset to read to (no consumer: the
    /// partition is empty).
    fn end_offset(&self, partition: i32) -> Result<(Option<Arc<BaseConsumer>>, i64), KafkaError> {
        let reader = self.reader()?;
        let (low, high) =
            reader.fetch_watermarks(&self.topic, partition, Duration::from_secs(10))?;
        Ok(((high > low).then_some(reader), high))
    }
}

/// A partition being read by the restore consumer: its queue split off, the partition
/// assigned from its beginning; unassigned when dropped.
struct Reading<'a> {
    reader: &'a Arc<BaseConsumer>,
    tpl: TopicPartitionList,
    queue:
        rdkafka::consumer::base_consumer::PartitionQueue<rdkafka::consumer::DefaultConsumerContext>,
}

impl<'a> Reading<'a> {
    fn start(
        reader: &'a Arc<BaseConsumer>,
        topic: &str,
        partition: i32,
    ) -> Result<Reading<'a>, KafkaError> {
        // Split before the assignment, so none of its messages reach the consumer's queue.
        let queue =
            reader
                .split_partition_queue(topic, partition)
                .ok_or(KafkaError::Subscription(format!(
                    "cannot split the queue of {topic} [{partition}]"
                )))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
        reader.incremental_assign(&tpl)?;
        Ok(Reading { reader, tpl, queue })
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.reader.incremental_unassign(&self.tpl) {
            tracing::warn!(error = %e, "unassigning a restored changelog partition");
        }
    }
}
