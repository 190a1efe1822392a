//! One input partition's task: messages in offset order through decode and the engine, outputs
//! to the producer, acknowledgements back into the commit position; the idle-partition clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use super::offsets::OffsetTracker;
use super::output::{deliver, Record, Sink};
use crate::engine::{Engine, Keys, Output};
use crate::event::{decode, Encoding, Event, Reject};
use crate::metrics::{self, PartitionLabels};
use crate::time::Ts;

/// Where a message's bytes sit in its batch's buffer (`None`: the message had none).
type Span = Option<(usize, usize)>;

/// One consumed message: its bytes are copied out of librdkafka's buffer into its batch's.
#[derive(Debug)]
pub struct InMsg {
    pub offset: i64,
    key: Span,
    payload: Span,
    content_type: Span,
    pub received: Instant,
}

/// Messages of one partition from one poll round, in offset order, with their bytes in one
/// buffer: one allocation per batch instead of two or three per message (each freed on another
/// thread than the one that made it).
#[derive(Debug, Default)]
pub struct InBatch {
    bytes: Vec<u8>,
    pub msgs: Vec<InMsg>,
}

impl InBatch {
    /// An empty batch with room for about `msgs` messages of `bytes_each` bytes.
    pub fn with_capacity(msgs: usize, bytes_each: usize) -> InBatch {
        InBatch {
            bytes: Vec::with_capacity(msgs * bytes_each),
            msgs: Vec::with_capacity(msgs),
        }
    }

    fn put(&mut self, b: Option<&[u8]>) -> Span {
        let b = b?;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        Some((start, self.bytes.len()))
    }

    /// Appends a message (copying its key, value and `content-type` header value).
    pub fn push(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        content_type: Option<&[u8]>,
        received: Instant,
    ) {
        let msg = InMsg {
            offset,
            key: self.put(key),
            payload: self.put(payload),
            content_type: self.put(content_type),
            received,
        };
        self.msgs.push(msg);
    }

    fn get(&self, s: Span) -> Option<&[u8]> {
        s.and_then(|(a, b)| self.bytes.get(a..b))
    }

    pub fn key(&self, m: &InMsg) -> Option<&[u8]> {
        self.get(m.key)
    }

    pub fn payload(&self, m: &InMsg) -> Option<&[u8]> {
        self.get(m.payload)
    }

    pub fn content_type(&self, m: &InMsg) -> Option<&[u8]> {
        self.get(m.content_type)
    }

    /// The bytes its buffer holds without growing.
    pub fn room(&self) -> usize {
        self.bytes.capacity()
    }

    /// Empties the batch, keeping its room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.msgs.clear();
    }
}

#[derive(Debug)]
pub enum Cmd {
    /// Messages of this partition, in offset order (what one poll round brought).
    Batch(InBatch),
    /// Finish: await every output until the deadline, then answer with the offset to commit.
    Drain {
        deadline: Instant,
        reply: std::sync::mpsc::SyncSender<Option<i64>>,
    },
}

/// What every partition task shares.
#[derive(Clone)]
pub struct Shared {
    pub sink: Sink,
    pub default_encoding: Encoding,
    pub max_event_bytes: usize,
    pub idle_timeout: Duration,
    /// Builds a fresh engine for a partition.
    pub engine: Arc<dyn Fn() -> Engine + Send + Sync>,
    /// Where processed batches go back to the consumer thread, emptied, to be filled again
    /// (set by the consumer's router).
    pub spent: Option<std::sync::mpsc::Sender<InBatch>>,
}

/// At most this many messages with unacknowledged outputs per partition; beyond it the task
/// waits for acknowledgements before taking more input (the channel then fills and the
/// consumer thread waits: backpressure instead of unbounded memory).
const MAX_IN_FLIGHT: usize = 10_000;

/// How often the idle clock and the gauges are looked at.
const TICK: Duration = Duration::from_millis(500);

/// How often the (costly) serialized state size is measured.
const STATE_BYTES_EVERY: Duration = Duration::from_secs(30);

pub struct PartitionTask {
    topic: String,
    partition: i32,
    labels: PartitionLabels,
    shared: Shared,
    engine: Engine,
    tracker: OffsetTracker,
    /// The commit position, read by the consumer thread (-1: nothing yet).
    position: Arc<AtomicI64>,
    pending: FuturesOrdered<BoxFuture<'static, ()>>,
    last_input: Instant,
    /// The watermark when the partition last saw an event (the idle clock counts from it).
    watermark_at_last_input: Option<Ts>,
    outputs: Vec<Output>,
    last_state_bytes: Option<Instant>,
    counters: metrics::EventCounters,
}

impl PartitionTask {
    pub fn new(topic: &str, partition: i32, shared: Shared, position: Arc<AtomicI64>) -> Self {
        PartitionTask {
            topic: topic.to_string(),
            partition,
            labels: PartitionLabels::new(topic, partition),
            engine: (shared.engine)(),
            shared,
            tracker: OffsetTracker::default(),
            position,
            pending: FuturesOrdered::new(),
            last_input: Instant::now(),
            watermark_at_last_input: None,
            outputs: Vec::new(),
            last_state_bytes: None,
            counters: metrics::EventCounters::new(topic),
        }
    }

    /// Runs the partition until it is drained or its channel closes; `assigned` is when the
    /// partition was assigned (its restore time ends as the task starts taking input).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, assigned: Instant) {
        metrics::restored(assigned.elapsed());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                // Acknowledgements first, so memory cannot grow without bound.
                Some(()) = self.pending.next(), if !self.pending.is_empty() => self.acked(),
                cmd = rx.recv(), if self.pending.len() < MAX_IN_FLIGHT => match cmd {
                    Some(Cmd::Batch(batch)) => self.process_batch(batch),
                    Some(Cmd::Drain { deadline, reply }) => {
                        self.drain(deadline).await;
                        let _ = reply.send(self.tracker.committable());
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        metrics::partition_revoked(&self.labels);
    }

    fn acked(&mut self) {
        self.tracker.acked();
        self.publish_position();
    }

    fn publish_position(&self) {
        if let Some(o) = self.tracker.committable() {
            self.position.store(o, Ordering::Release);
        }
    }

    async fn drain(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, async {
            while self.pending.next().await.is_some() {
                self.tracker.acked();
            }
        })
        .await;
        self.publish_position();
        if !self.pending.is_empty() {
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                unacknowledged = self.pending.len(),
                "drain deadline passed; committing only what the broker acknowledged (the rest is redelivered)"
            );
        }
    }

    /// One poll round's messages: decoded first, then applied in offset order, a prefetch
    /// chunk at a time (the engine fetches the state a chunk touches before applying it).
    fn process_batch(&mut self, batch: InBatch) {
        let limits = crate::event::Limits {
            max_event_bytes: self.shared.max_event_bytes,
            now: Some(super::now_ms()),
            max_future: crate::time::DAY,
        };
        let default = self.shared.default_encoding;
        let decoded: Vec<Result<Event<'_>, Reject>> = batch
            .msgs
            .iter()
            .map(|m| {
                let encoding = batch
                    .content_type(m)
                    .and_then(Encoding::from_content_type)
                    .unwrap_or(default);
                decode(
                    batch.payload(m).unwrap_or_default(),
                    encoding,
                    batch.key(m),
                    &limits,
                )
            })
            .collect();
        for (ms, evs) in batch
            .msgs
            .chunks(crate::engine::PREFETCH_BATCH)
            .zip(decoded.chunks(crate::engine::PREFETCH_BATCH))
        {
            let keys = self
                .engine
                .prefetch(evs.iter().filter_map(|r| r.as_ref().ok()));
            let mut keys = keys.into_iter();
            for (m, r) in ms.iter().zip(evs) {
                let k = if r.is_ok() { keys.next() } else { None };
                self.process(&batch, m, r, k);
            }
        }
        self.counters.flush();
        if decoded.iter().any(Result::is_ok) {
            // The idle clock counts from the last event (one poll round is one instant).
            self.last_input = Instant::now();
            self.watermark_at_last_input = self.engine.watermark();
        }
        drop(decoded);
        if let Some(spent) = &self.shared.spent {
            let mut batch = batch;
            batch.clear();
            // The consumer thread may be gone (shutting down): then the batch is just freed.
            let _ = spent.send(batch);
        }
    }

    fn process(
        &mut self,
        batch: &InBatch,
        m: &InMsg,
        decoded: &Result<Event<'_>, Reject>,
        keys: Option<Keys>,
    ) {
        let mut records: Vec<Record> = Vec::new();
        match decoded {
            Ok(ev) => {
                let outcome = match keys {
                    Some(k) => self.engine.apply_keyed(ev, k, &mut self.outputs),
                    None => self.engine.apply(ev, &mut self.outputs),
                };
                self.counters.event(ev.kind.type_name(), outcome.as_str());
                records.extend(
                    self.outputs
                        .drain(..)
                        .filter_map(|o| self.shared.sink.record(o)),
                );
            }
            Err(reject) => {
                self.counters.dead_letter(reject.code.as_str());
                tracing::debug!(
                    topic = %self.topic, partition = self.partition, offset = m.offset,
                    reason = reject.code.as_str(), "dead letter"
                );
                let source = (self.topic.as_str(), self.partition, m.offset);
                let rec = self.shared.sink.dead_letter(
                    reject,
                    source,
                    batch.key(m).map(<[u8]>::to_vec),
                    batch.payload(m).unwrap_or_default().to_vec(),
                    batch.content_type(m).map(<[u8]>::to_vec),
                );
                records.push(rec);
            }
        }
        let has_outputs = !records.is_empty();
        self.tracker.processed(m.offset, has_outputs);
        if has_outputs {
            self.pending
                .push_back(self.deliver_all(records, Some(m.received)));
        } else {
            self.publish_position();
        }
    }

    fn deliver_all(
        &self,
        records: Vec<Record>,
        received: Option<Instant>,
    ) -> BoxFuture<'static, ()> {
        let producer = self.shared.sink.producer.clone();
        Box::pin(async move {
            futures::future::join_all(records.iter().map(|r| deliver(&producer, r))).await;
            if let Some(t) = received {
                metrics::latency(t.elapsed());
            }
        })
    }

    /// The idle clock (CONTRACT §3): once the partition has had no event for `idle_timeout`,
    /// its watermark moves on with the wall-clock time that passes while it stays idle,
    /// counted from its last event — never jumping to "now".
    fn on_tick(&mut self) {
        let idle = self.last_input.elapsed();
        if let Some(w0) = self.watermark_at_last_input {
            if idle >= self.shared.idle_timeout {
                let w = w0.saturating_add(idle.as_millis() as i64);
                self.engine.advance(w, &mut self.outputs);
                let records: Vec<Record> = self
                    .outputs
                    .drain(..)
                    .filter_map(|o| self.shared.sink.record(o))
                    .collect();
                if !records.is_empty() {
                    self.tracker.spontaneous();
                    self.pending.push_back(self.deliver_all(records, None));
                }
            }
        }
        let lag = self
            .engine
            .max_event_time()
            .map(|t| (super::now_ms() - t) as f64 / 1000.0);
        metrics::partition_gauges(
            &self.labels,
            self.engine.watermark(),
            lag,
            self.engine.employees(),
            self.pending.len(),
        );
        if self
            .last_state_bytes
            .is_none_or(|t| t.elapsed() >= STATE_BYTES_EVERY)
        {
            metrics::state_bytes(&self.labels, self.engine.state_bytes());
            self.last_state_bytes = Some(Instant::now());
        }
    }
}
