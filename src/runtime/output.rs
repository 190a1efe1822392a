//! What the runtime produces — triggers, audit records, dead letters — and how each is
//! delivered: enqueued (a full queue is waited out, never dropped) and retried until the
//! broker acknowledges it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use futures::channel::oneshot;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::util::{IntoOpaque, Timeout};
use rdkafka::ClientContext;

use crate::engine::Output;
use crate::event::{Encoding, Reject};
use crate::metrics;

/// What a record is, for the metrics recorded when the broker acknowledges it.
#[derive(Debug, Clone)]
pub enum Kind {
    Trigger {
        rule: String,
        severity: &'static str,
        escalation: u32,
    },
    Audit {
        rule: String,
        decision: &'static str,
    },
    DeadLetter,
    /// A state changelog record (counted by the checkpoint it belongs to).
    Changelog,
    /// A contribution or a watermark on the repartition topic.
    Repartition,
    /// A share or a close on the population topic.
    Population,
}

impl Kind {
    fn label(&self) -> &'static str {
        match self {
            Kind::Trigger { .. } => "triggers",
            Kind::Audit { .. } => "audit",
            Kind::DeadLetter => "dead_letters",
            Kind::Changelog => "changelog",
            Kind::Repartition => "repartition",
            Kind::Population => "population",
        }
    }
}

/// momentd's producer: librdkafka's, with a thread of its own serving delivery reports, each
/// completing the future of the record it reports on. (rust-rdkafka's `FutureProducer` does
/// the same, but its thread polls for 100 ms at a time, and each poll spins through its last
/// millisecond — the timeout is rounded down to whole milliseconds: with two producers an idle
/// daemon kept 2 % of a core busy, and a busy one lost as much of its time.) Cloning shares it;
/// when the last clone goes, the thread stops within [`ACK_POLL`] and the producer with it
/// (purging what was never delivered, like rust-rdkafka's: flush first).
#[derive(Clone)]
pub struct Producer(Arc<Handle>);

struct Handle {
    base: Arc<BaseProducer<Acks>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Handle {
    /// The last clone stops the delivery thread: it ends within [`ACK_POLL`], destroying the
    /// client as it goes (`runtime::clients` counts it until then).
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long the delivery thread waits for reports at a time (its spin at the end of each wait
/// is 0.1 % of it).
const ACK_POLL: Duration = Duration::from_secs(1);

/// The outcome of a delivery: acknowledged, or the error librdkafka gave up with.
type Ack = oneshot::Receiver<KafkaResult<()>>;

/// Completes each record's future when its delivery report comes.
struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<()>>>;

    fn delivery(&self, r: &DeliveryResult<'_>, done: Self::DeliveryOpaque) {
        let _ = done.send(r.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

impl Producer {
    pub fn new(config: &ClientConfig) -> KafkaResult<Producer> {
        let base: Arc<BaseProducer<Acks>> = Arc::new(config.create_with_context(Acks)?);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s) = (Arc::clone(&base), Arc::clone(&stop));
        let live = super::clients::Live::enter();
        std::thread::Builder::new()
            .name("momentd-acks".into())
            .spawn(move || {
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    b.poll(ACK_POLL);
                }
                // The last reference once the handle is gone: the client is destroyed here,
                // then the thread stops counting as live.
                drop(b);
                drop(live);
            })
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Ok(Producer(Arc::new(Handle { base, stop })))
    }

    /// Hands a record to librdkafka: its delivery's outcome, or the record back with why it
    /// was refused (a full queue among them).
    // (The record comes back to be sent again, as librdkafka's own `send` hands it back.)
    #[allow(clippy::result_large_err)]
    fn send<'a>(
        &self,
        rec: BaseRecord<'a, [u8], [u8]>,
    ) -> Result<Ack, (KafkaError, BaseRecord<'a, [u8], [u8]>)> {
        let (tx, rx) = oneshot::channel();
        self.0
            .base
            .send(with_opaque(rec, Box::new(tx)))
            .map(|()| rx)
            .map_err(|(e, r)| (e, with_opaque(r, ())))
    }

    /// Waits up to `timeout` for every queued record's delivery.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.0.base.flush(Timeout::After(timeout))
    }

    /// Records queued and not yet acknowledged.
    pub fn in_flight_count(&self) -> i32 {
        self.0.base.in_flight_count()
    }
}

/// The same record with another delivery opaque.
fn with_opaque<'a, D: IntoOpaque, E: IntoOpaque>(
    r: BaseRecord<'a, [u8], [u8], D>,
    opaque: E,
) -> BaseRecord<'a, [u8], [u8], E> {
    BaseRecord {
        topic: r.topic,
        partition: r.partition,
        payload: r.payload,
        key: r.key,
        timestamp: r.timestamp,
        headers: r.headers,
        delivery_opaque: opaque,
    }
}

/// One record to produce, owned, so a failed delivery can be sent again.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: Arc<str>,
    /// Where it must go (the changelog's partition p is task p's); `None`: the partitioner's
    /// choice by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub kind: Kind,
}

/// Where outputs go and how they are encoded.
#[derive(Clone)]
pub struct Sink {
    pub producer: Producer,
    pub output_topic: Arc<str>,
    pub dlq_topic: Arc<str>,
    pub audit_topic: Option<Arc<str>>,
    pub encoding: Encoding,
}

impl Sink {
    /// The record for an engine output (`None` for an audit record when auditing is off).
    pub fn record(&self, out: Output) -> Option<Record> {
        match out {
            Output::Trigger(t) => {
                let payload = match self.encoding {
                    Encoding::Json => t.to_json().into_bytes(),
                    Encoding::Protobuf => t.to_protobuf(),
                };
                Some(Record {
                    topic: Arc::clone(&self.output_topic),
                    partition: None,
                    key: Some(t.subject.clone().into_bytes()),
                    payload: Some(payload),
                    headers: vec![("content-type", self.encoding.content_type().into())],
                    kind: Kind::Trigger {
                        rule: t.rule,
                        severity: t.severity.as_str(),
                        escalation: t.escalation,
                    },
                })
            }
            Output::Audit(a) => {
                let topic = self.audit_topic.as_ref()?;
                Some(Record {
                    topic: Arc::clone(topic),
                    partition: None,
                    key: Some(a.subject.clone().into_bytes()),
                    payload: Some(serde_json::to_vec(&a).unwrap_or_default()),
                    headers: vec![("content-type", b"application/json".to_vec())],
                    kind: Kind::Audit {
                        decision: a.decision.as_str(),
                        rule: a.rule,
                    },
                })
            }
        }
    }

    /// The dead letter for a rejected input: its key and value as they were, with the
    /// contract's headers (and the original content-type, if it had one).
    pub fn dead_letter(
        &self,
        reject: &Reject,
        source: (&str, i32, i64),
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        content_type: Option<Vec<u8>>,
    ) -> Record {
        let (topic, partition, offset) = source;
        let mut headers = vec![
            ("momentd-error", reject.code.as_str().as_bytes().to_vec()),
            ("momentd-error-detail", reject.detail.clone().into_bytes()),
            ("momentd-source-topic", topic.as_bytes().to_vec()),
            (
                "momentd-source-partition",
                partition.to_string().into_bytes(),
            ),
            ("momentd-source-offset", offset.to_string().into_bytes()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        Record {
            topic: Arc::clone(&self.dlq_topic),
            partition: None,
            key,
            payload: Some(payload),
            headers,
            kind: Kind::DeadLetter,
        }
    }
}

/// Produces `rec` until the broker acknowledges it. A full local queue is waited out; a failed
/// delivery (after librdkafka's own retries) is counted, logged and sent again with backoff —
/// the input offset that caused it is not committed meanwhile, so nothing is lost.
pub async fn deliver(producer: &Producer, rec: &Record) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Some(f) = enqueue(producer, rec).await {
            if delivered(rec, f.await) {
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Produces `recs` (one changelog partition's checkpoint) until the broker acknowledges them
/// all, **in order**: when one fails after librdkafka's own retries, it and every record after
/// it are sent again, in order — so the partition's log never holds a later record of the
/// checkpoint without the earlier ones after it (what the restore relies on: a persisted
/// employee record implies its groups' records). A record delivered twice is the same record.
/// Returns how many records were sent again.
pub async fn deliver_in_order(producer: &Producer, recs: &[Record]) -> u64 {
    let mut from = 0;
    let mut resent = 0;
    let mut backoff = Duration::from_millis(100);
    while from < recs.len() {
        let mut pending = Vec::with_capacity(recs.len() - from);
        for (i, rec) in recs.iter().enumerate().skip(from) {
            match enqueue(producer, rec).await {
                Some(f) => pending.push((i, f)),
                None => break,
            }
        }
        let mut failed = from + pending.len();
        for (i, f) in pending {
            if !delivered(&recs[i], f.await) {
                failed = failed.min(i);
            }
        }
        if failed >= recs.len() {
            return resent;
        }
        resent += (recs.len() - failed) as u64;
        from = failed;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    resent
}

/// Delivers groups of records to the broker in the order they were queued, every record of
/// a group after every record of the groups queued before it, even when one fails and is sent
/// again (see [`deliver_in_order`]): one delivery at a time, each taking every group queued
/// meanwhile. A group waiting its turn joins the next delivery, so the throughput is not one
/// group per round trip to the broker (measured on the mock cluster: a task's repartition
/// records, one group every 100 ms for its contributions and one for its watermark, at one
/// round trip each fell behind whenever a round trip took more than 50 ms — a loaded broker,
/// or a longer `linger.ms` — and its input's commits fell further behind every second).
pub struct InOrder {
    producer: Producer,
    queue: std::sync::Mutex<Queue>,
    /// Whose turn it is to deliver.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    /// The last group queued, and the last one the broker acknowledged.
    queued: u64,
    delivered: u64,
    /// Deliveries made (each of one group or more), and records sent again in them.
    deliveries: u64,
    resent: u64,
}

impl InOrder {
    pub fn new(producer: Producer) -> Arc<InOrder> {
        Arc::new(InOrder {
            producer,
            queue: Default::default(),
            turn: Default::default(),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned lock's data is as good as ever.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many deliveries carried the groups acknowledged so far, and how many of their
    /// records were sent again after a failure.
    pub fn deliveries(&self) -> (u64, u64) {
        let q = self.queue();
        (q.deliveries, q.resent)
    }

    /// Queues `records` as the next group, now; the future resolves once the broker has
    /// acknowledged them (and every group before them).
    pub fn send(self: &Arc<Self>, records: Vec<Record>) -> BoxFuture<'static, ()> {
        let group = {
            let mut q = self.queue();
            q.records.extend(records);
            q.queued += 1;
            q.queued
        };
        let me = Arc::clone(self);
        Box::pin(async move {
            if me.queue().delivered >= group {
                return;
            }
            let _turn = me.turn.lock().await;
            let (records, through) = {
                let mut q = me.queue();
                if q.delivered >= group {
                    // Delivered with the group whose turn came before.
                    return;
                }
                (std::mem::take(&mut q.records), q.queued)
            };
            let resent = deliver_in_order(&me.producer, &records).await;
            let mut q = me.queue();
            q.delivered = through;
            q.deliveries += 1;
            q.resent += resent;
        })
    }
}

/// Hands `rec` to the producer (a full local queue is waited out); `None` when it refused the
/// record (counted and logged).
async fn enqueue(producer: &Producer, rec: &Record) -> Option<Ack> {
    let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
    for (k, v) in &rec.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    let mut fr: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&rec.topic).headers(headers);
    if let Some(p) = &rec.payload {
        fr = fr.payload(p.as_slice());
    }
    if let Some(k) = &rec.key {
        fr = fr.key(k.as_slice());
    }
    if let Some(p) = rec.partition {
        fr = fr.partition(p);
    }
    loop {
        match producer.send(fr) {
            Ok(f) => return Some(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                fr = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                metrics::produce_error(rec.kind.label());
                tracing::warn!(topic = %rec.topic, error = %e, "could not enqueue a record; retrying");
                return None;
            }
        }
    }
}

/// Whether a delivery succeeded (counted as acknowledged); a failure is counted and logged.
fn delivered(rec: &Record, result: Result<KafkaResult<()>, oneshot::Canceled>) -> bool {
    match result {
        Ok(Ok(())) => {
            acknowledged(&rec.kind);
            true
        }
        Ok(Err(e)) => {
            metrics::produce_error(rec.kind.label());
            tracing::warn!(topic = %rec.topic, error = %e, "delivery failed; retrying");
            false
        }
        Err(_) => {
            metrics::produce_error(rec.kind.label());
            tracing::warn!(topic = %rec.topic, "delivery outcome lost; retrying");
            false
        }
    }
}

fn acknowledged(kind: &Kind) {
    match kind {
        Kind::Trigger {
            rule,
            severity,
            escalation,
        } => metrics::trigger_acked(rule, severity, *escalation),
        Kind::Audit { rule, decision } => metrics::audit_acked(rule, decision),
        Kind::DeadLetter | Kind::Changelog | Kind::Repartition | Kind::Population => {}
    }
}

/// The producer's queue depth, for the gauge.
pub fn queue_depth(p: &Producer) -> i32 {
    p.in_flight_count()
}
