//! The changelog's I/O (CONTRACT §9): restoring a task's state from its changelog partition,
//! and the records a checkpoint produces. The engine decides what the records hold
//! ([`crate::engine::changelog`]); this moves them.
//!
//! A restore runs in a blocking thread with a consumer of its own (no group: the partition is
//! assigned), so the consumer thread goes on polling, heartbeating and taking rebalances
//! while it runs. It reads the partition from its beginning to the end offset found when the
//! restore starts (read-uncommitted), then stops — it does not wait for a "caught up" that a
//! compacted or transactional log may never report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::output::{Kind, Record};
use crate::engine::changelog::{Restorer, Written};
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
    pub producer: rdkafka::producer::FutureProducer,
    pub interval: Duration,
    /// One client for every restore's end-offset look-up, made at the first: an empty
    /// changelog partition (a new deployment) then costs a round trip, not a consumer.
    pub meta: Arc<std::sync::Mutex<Option<Arc<BaseConsumer>>>>,
    /// How many partitions restore at once (the others wait their turn): four per core keeps
    /// the cores busy decoding while other restores open their consumers and fetch, without a
    /// hundred consumers' fetch buffers at once (1,000,000 employees over 125 partitions on 2
    /// cores: 5.5 s, against 7.5 s with no limit and 8.8 s with one per core).
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
            .set("auto.offset.reset", "earliest");
        c.create()
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
        let (consumer, high) = loop {
            if cancel.load(Ordering::Acquire) {
                return None;
            }
            match self.open(partition) {
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
        let mut r = Restorer::default();
        let mut corrupt = 0;
        let mut last_log = Instant::now();
        // Only restores that read take a turn at the gate.
        let _turn = match consumer {
            Some(_) => Some(self.gate.enter(cancel)?),
            None => None,
        };
        if let Some(consumer) = consumer {
            loop {
                if cancel.load(Ordering::Acquire) {
                    return None;
                }
                match consumer.poll(Duration::from_millis(200)) {
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

    /// A consumer assigned to the partition from its beginning, and the end offset to read
    /// to (`None`: the partition is empty).
    fn open(&self, partition: i32) -> Result<(Option<BaseConsumer>, i64), KafkaError> {
        let meta = {
            let mut g = self.meta.lock().unwrap_or_else(|e| e.into_inner());
            match g.as_ref() {
                Some(m) => Arc::clone(m),
                None => {
                    let m = Arc::new(self.consumer()?);
                    *g = Some(Arc::clone(&m));
                    m
                }
            }
        };
        let (low, high) = meta.fetch_watermarks(&self.topic, partition, Duration::from_secs(10))?;
        if high <= low {
            return Ok((None, high));
        }
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok((Some(consumer), high))
    }
}

/// A checkpoint waiting for the outputs before it to be acknowledged, then for its own records.
pub struct Staged {
    /// Output groups pushed before it: it is sent once that many are acknowledged.
    pub after: u64,
    /// The input position it covers (the next offset to read).
    pub through: i64,
    pub records: Vec<Record>,
    pub written: Written,
}
