//! One input partition's task: messages in offset order through decode and the engine, outputs
//! to the producer, acknowledgements back into the commit position; the idle-partition clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use super::changelog::{Changelog, Staged};
use super::consumer::Ctx;
use super::offsets::OffsetTracker;
use super::output::{deliver, deliver_in_order, Record, Sink};
use super::queue::{Fetched, Msg, SplitQueue, Waker};
use crate::engine::changelog::Written;
use crate::engine::{Engine, Keys, Output};
use crate::event::{decode, Encoding, Event, Reject};
use crate::metrics::{self, PartitionLabels};
use crate::time::Ts;

/// Where a message's bytes sit in its batch's buffer (`None`: the message had none).
type Span = Option<(usize, usize)>;

/// One message polled from the consumer's queue: its bytes are copied into its batch's buffer.
#[derive(Debug)]
struct InMsg {
    offset: i64,
    key: Span,
    payload: Span,
    content_type: Span,
}

/// Messages of one partition that came through the consumer's own queue (only if the
/// partition's queue could not be split off; see [`super::queue`]), in offset order, with their
/// bytes in one buffer.
#[derive(Debug, Default)]
pub struct InBatch {
    bytes: Vec<u8>,
    msgs: Vec<InMsg>,
    received: Option<Instant>,
}

impl InBatch {
    /// An empty batch with room for about `msgs` messages of `bytes_each` bytes.
    pub fn with_capacity(msgs: usize, bytes_each: usize) -> InBatch {
        InBatch {
            bytes: Vec::with_capacity(msgs * bytes_each),
            msgs: Vec::with_capacity(msgs),
            received: None,
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
        };
        self.received.get_or_insert(received);
        self.msgs.push(msg);
    }

    fn get(&self, s: Span) -> Option<&[u8]> {
        s.and_then(|(a, b)| self.bytes.get(a..b))
    }

    fn views(&self) -> Vec<Msg<'_>> {
        self.msgs
            .iter()
            .map(|m| Msg {
                offset: m.offset,
                key: self.get(m.key),
                payload: self.get(m.payload),
                content_type: self.get(m.content_type),
            })
            .collect()
    }
}

#[derive(Debug)]
pub enum Cmd {
    /// Messages of this partition polled by the consumer thread, in offset order (only when
    /// the partition's queue could not be split off).
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
    /// The state changelog, when `state.changelog` is on.
    pub changelog: Option<Changelog>,
    pub health: super::Health,
}

/// The partition's own librdkafka queue and what wakes the task when it has messages.
pub type Source = (SplitQueue<Ctx>, Waker);

/// At most this many messages are taken from the partition's queue at once (then the task
/// yields to the others on its worker before taking more).
const TAKE: usize = 1024;

/// At most this many messages with unacknowledged outputs per partition; beyond it the task
/// waits for acknowledgements before taking more input (its queue then fills up to librdkafka's
/// prefetch limits and the partition's fetching pauses: backpressure instead of unbounded
/// memory).
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
    /// Groups of outputs pushed to `pending`, and acknowledged, since the start.
    pushed: u64,
    acked: u64,
    /// Checkpoints waiting for the outputs before them, oldest first.
    staged: VecDeque<Staged>,
    /// Checkpoints whose records are being delivered: each yields its input position.
    sending: FuturesOrdered<BoxFuture<'static, (i64, Written)>>,
    /// The input position of the last checkpoint the broker acknowledged: with a changelog,
    /// the commit position.
    checkpointed: Option<i64>,
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
            pushed: 0,
            acked: 0,
            staged: VecDeque::new(),
            sending: FuturesOrdered::new(),
            checkpointed: None,
        }
    }

    /// Runs the partition until it is drained or its channel closes; `assigned` is when the
    /// partition was assigned (its restore time ends as the task starts taking input). With a
    /// `source` the task reads the partition's own queue; without, it gets the messages the
    /// consumer thread polled, over `rx`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        assigned: Instant,
        mut source: Option<Source>,
    ) {
        if self.shared.changelog.is_some() && !self.restore(&mut rx, &mut source).await {
            // Revoked (or the router gone) while restoring.
            metrics::partition_revoked(&self.labels);
            return;
        }
        metrics::restored(assigned.elapsed());
        let mut tick = tokio::time::interval(TICK);
        let every = self
            .shared
            .changelog
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.interval);
        // Partitions checkpoint at different phases of the interval, so an instance's
        // checkpoints do not reach the broker as one burst every interval (on the mock
        // cluster, a burst of every employee's record each second held triggers' p99 latency
        // at ~150 ms).
        let phase = every.mul_f64((self.partition.rem_euclid(16)) as f64 / 16.0);
        let mut checkpoint = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let waker = source.as_ref().map(|(_, w)| Arc::clone(w));
        let mut fetched = Fetched::default();
        // Whether the queue may hold messages without a wake-up to come: at the start, after a
        // full take, and at every tick (a safety net: a wake-up is only sent when the queue
        // goes from empty to non-empty).
        let mut more = source.is_some();
        loop {
            if more {
                // A full take is a few hundred microseconds of work: let the worker's other
                // tasks run before the next.
                tokio::task::yield_now().await;
            }
            let room = self.pending.len() < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                // Acknowledgements first, so memory cannot grow without bound.
                Some(()) = self.pending.next(), if !self.pending.is_empty() => self.acked(),
                Some((through, written)) = self.sending.next(), if !self.sending.is_empty() => {
                    self.checkpoint_acked(through, written)
                }
                cmd = rx.recv(), if room => match cmd {
                    Some(Cmd::Batch(batch)) => {
                        let received = batch.received.unwrap_or_else(Instant::now);
                        self.process_batch(&batch.views(), received);
                    }
                    Some(Cmd::Drain { deadline, reply }) => {
                        // Stop reading the queue (and release it) before answering: the
                        // partition's next assignment may split it off again at once.
                        drop(source.take());
                        self.drain(deadline).await;
                        let _ = reply.send(self.commit_position());
                        break;
                    }
                    None => break,
                },
                _ = wake(waker.as_deref(), more), if room && source.is_some() => {
                    if let Some((queue, _)) = &source {
                        queue.take(&mut fetched, TAKE);
                        more = fetched.len() == TAKE;
                        self.process_fetched(&fetched);
                        fetched.clear();
                    }
                },
                _ = tick.tick() => {
                    self.on_tick();
                    more = source.is_some();
                }
                _ = checkpoint.tick(), if self.shared.changelog.is_some() => self.checkpoint(),
            }
        }
        metrics::partition_revoked(&self.labels);
    }

    /// Restores the partition's state from its changelog partition before any input is
    /// taken, in a blocking thread (the consumer thread goes on polling); `/readyz` says 503
    /// meanwhile. Messages the consumer thread hands over meanwhile are held and processed
    /// after. False when the partition was revoked (or the router went away) first.
    async fn restore(&mut self, rx: &mut mpsc::Receiver<Cmd>, source: &mut Option<Source>) -> bool {
        let Some(cl) = self.shared.changelog.clone() else {
            return true;
        };
        // Counted as restoring by the router since it started the task (so /readyz never says
        // 200 between the assignment and the restore).
        let health = self.shared.health.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut engine = std::mem::replace(&mut self.engine, (self.shared.engine)());
        let partition = self.partition;
        let job = {
            let cancel = Arc::clone(&cancel);
            tokio::task::spawn_blocking(move || {
                let r = cl.restore(partition, &mut engine, &cancel);
                (engine, r)
            })
        };
        tokio::pin!(job);
        let mut held: Vec<InBatch> = Vec::new();
        let result = loop {
            tokio::select! {
                r = &mut job => break r,
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Batch(b)) => held.push(b),
                    Some(Cmd::Drain { reply, .. }) => {
                        cancel.store(true, Ordering::Release);
                        drop(source.take());
                        let _ = reply.send(None);
                        health.restored();
                        return false;
                    }
                    None => {
                        cancel.store(true, Ordering::Release);
                        health.restored();
                        return false;
                    }
                },
            }
        };
        match result {
            Ok((engine, Some(r))) => {
                self.engine = engine;
                metrics::restored_records(r.records, r.bytes);
                tracing::info!(
                    topic = %self.topic, partition = self.partition,
                    employees = r.employees, records = r.records, bytes = r.bytes,
                    corrupt = r.corrupt, seconds = r.elapsed.as_secs_f64(),
                    "state restored from the changelog"
                );
            }
            Ok((_, None)) => {
                health.restored();
                return false;
            }
            Err(e) => tracing::error!(
                topic = %self.topic, partition = self.partition, error = %e,
                "restoring the partition's state failed; it starts empty"
            ),
        }
        health.restored();
        for b in held {
            let received = b.received.unwrap_or_else(Instant::now);
            self.process_batch(&b.views(), received);
        }
        true
    }

    fn acked(&mut self) {
        self.tracker.acked();
        self.acked += 1;
        self.send_staged();
        self.publish_position();
    }

    /// Pushes a group of outputs to be awaited in order.
    fn push_outputs(&mut self, f: BoxFuture<'static, ()>) {
        self.pushed += 1;
        self.pending.push_back(f);
    }

    /// The offset the consumer may commit: with a changelog, the last acknowledged
    /// checkpoint's (the state up to it is durable); without, what the outputs allow.
    fn commit_position(&self) -> Option<i64> {
        if self.shared.changelog.is_some() {
            self.checkpointed
        } else {
            self.tracker.committable()
        }
    }

    fn publish_position(&self) {
        if let Some(o) = self.commit_position() {
            self.position.store(o, Ordering::Release);
        }
    }

    /// Writes what changed since the last checkpoint (CONTRACT §9): its records wait for the
    /// outputs pushed before them, then go to the changelog partition of this partition.
    fn checkpoint(&mut self) {
        let Some(cl) = &self.shared.changelog else {
            return;
        };
        // The position never goes back behind a restored checkpoint.
        let restored = self
            .engine
            .last_checkpoint()
            .and_then(|c| c.through.first().copied());
        let through = match (self.tracker.next(), restored) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None if self.engine.is_dirty() => 0,
                None => return,
            },
        };
        let mut recs = Vec::new();
        let written = self.engine.checkpoint(&cl.inputs, &[through], &mut recs);
        if recs.is_empty() {
            return;
        }
        let records = cl.records(self.partition, recs);
        self.staged.push_back(Staged {
            after: self.pushed,
            through,
            records,
            written,
        });
        self.send_staged();
    }

    /// Sends the checkpoints whose outputs are all acknowledged, in order. (The producer is
    /// idempotent and the records go to one partition, so they are persisted in order; a
    /// failed delivery re-sends from the failed record on, see `deliver_in_order`.)
    fn send_staged(&mut self) {
        while self.staged.front().is_some_and(|s| s.after <= self.acked) {
            let Some(s) = self.staged.pop_front() else {
                break;
            };
            let producer = self
                .shared
                .changelog
                .as_ref()
                .map_or_else(|| self.shared.sink.producer.clone(), |c| c.producer.clone());
            self.sending.push_back(Box::pin(async move {
                deliver_in_order(&producer, &s.records).await;
                (s.through, s.written)
            }));
        }
    }

    fn checkpoint_acked(&mut self, through: i64, written: Written) {
        metrics::changelog_written(&written);
        self.checkpointed = Some(self.checkpointed.map_or(through, |c| c.max(through)));
        self.publish_position();
    }

    async fn drain(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, async {
            while self.pending.next().await.is_some() {
                self.tracker.acked();
                self.acked += 1;
            }
            // The last checkpoint: everything processed, so the next owner restores it all.
            self.send_staged();
            self.checkpoint();
            while let Some((through, written)) = self.sending.next().await {
                self.checkpoint_acked(through, written);
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

    /// Messages taken from the partition's queue (errors librdkafka put there are logged:
    /// they are not input and hold no offset).
    fn process_fetched(&mut self, fetched: &Fetched) {
        if fetched.is_empty() {
            return;
        }
        let received = Instant::now();
        let views: Vec<Msg<'_>> = fetched
            .iter()
            .filter_map(|f| {
                f.map_err(|e| {
                    tracing::warn!(
                        topic = %self.topic, partition = self.partition, error = %e,
                        "consumer error on the partition's queue"
                    )
                })
                .ok()
            })
            .collect();
        self.process_batch(&views, received);
    }

    /// A batch of messages in offset order: decoded first, then applied in offset order, a
    /// prefetch chunk at a time (the engine fetches the state a chunk touches before applying
    /// it). `received` is when the batch was taken.
    fn process_batch(&mut self, msgs: &[Msg<'_>], received: Instant) {
        let limits = crate::event::Limits {
            max_event_bytes: self.shared.max_event_bytes,
            now: Some(super::now_ms()),
            max_future: crate::time::DAY,
        };
        let default = self.shared.default_encoding;
        // A chunk at a time: decoded, its state prefetched, applied — so the chunk's payloads
        // and decoded events are still in the core's cache when they are applied.
        let mut decoded: Vec<Result<Event<'_>, Reject>> =
            Vec::with_capacity(crate::engine::PREFETCH_BATCH.min(msgs.len()));
        let mut any_event = false;
        for ms in msgs.chunks(crate::engine::PREFETCH_BATCH) {
            decoded.clear();
            decoded.extend(ms.iter().map(|m| {
                let encoding = m
                    .content_type
                    .and_then(Encoding::from_content_type)
                    .unwrap_or(default);
                decode(m.payload.unwrap_or_default(), encoding, m.key, &limits)
            }));
            let keys = self
                .engine
                .prefetch(decoded.iter().filter_map(|r| r.as_ref().ok()));
            let mut keys = keys.into_iter();
            for (m, r) in ms.iter().zip(&decoded) {
                let k = if r.is_ok() { keys.next() } else { None };
                any_event |= r.is_ok();
                self.process(m, r, k, received);
            }
        }
        self.counters.flush();
        // Once per batch: the consumer thread reads it at commit time.
        self.publish_position();
        if any_event {
            // The idle clock counts from the last event (one batch is one instant).
            self.last_input = Instant::now();
            self.watermark_at_last_input = self.engine.watermark();
        }
    }

    fn process(
        &mut self,
        m: &Msg<'_>,
        decoded: &Result<Event<'_>, Reject>,
        keys: Option<Keys>,
        received: Instant,
    ) {
        let mut records: Vec<Record> = Vec::new();
        match decoded {
            Ok(ev) => {
                let outcome = match keys {
                    Some(k) => self
                        .engine
                        .apply_at(ev, k, (0, m.offset), &mut self.outputs),
                    None => {
                        let k = self.engine.keys(ev);
                        self.engine
                            .apply_at(ev, k, (0, m.offset), &mut self.outputs)
                    }
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
                    m.key.map(<[u8]>::to_vec),
                    m.payload.unwrap_or_default().to_vec(),
                    m.content_type.map(<[u8]>::to_vec),
                );
                records.push(rec);
            }
        }
        let has_outputs = !records.is_empty();
        self.tracker.processed(m.offset, has_outputs);
        if has_outputs {
            let f = self.deliver_all(records, Some(received));
            self.push_outputs(f);
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
                    let f = self.deliver_all(records, None);
                    self.push_outputs(f);
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

/// Ready at once when `more`; else when the queue's waker fires.
async fn wake(waker: Option<&tokio::sync::Notify>, more: bool) {
    match waker {
        Some(w) if !more => w.notified().await,
        _ => {}
    }
}
