//! One task per input partition number: partition p of every input topic (CONTRACT §9: they
//! are co-partitioned) through decode and one engine, outputs to the producer,
//! acknowledgements back into each input's commit position; the idle-partition clock.
//!
//! With one input topic the task processes its messages in offset order as they come. With
//! two or more it merges them by event time: the message with the smallest `occurred_at` at
//! the head of an input goes first, ties to the input listed first in `kafka.input_topics`,
//! so the engine sees one order whatever the timing of the fetches. An input with nothing
//! buffered holds the others back until it has messages, until it is known to be caught up
//! (everything up to the partition's high watermark, as the last fetch reported it, is
//! processed), or for at most [`MAX_MERGE_WAIT`] (after Kafka Streams' `max.task.idle.ms`).

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
use super::output::{deliver, InOrder, Record, Sink};
use super::queue::{Fetched, Msg, SplitQueue, Viewed, Waker};
use crate::engine::changelog::Written;
use crate::engine::{Engine, Keys, Output};
use crate::event::{decode, Encoding, Event, Reject};
use crate::metrics::{self, PartitionLabels};
use crate::rules::group::Contribution;
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
    /// Messages of input `.0` (its index in `kafka.input_topics`) polled by the consumer
    /// thread, in offset order (only when the partition's queue could not be split off).
    Batch(usize, InBatch),
    /// Finish: await every output until the deadline, then answer with the offset to commit
    /// for each input.
    Drain {
        deadline: Instant,
        reply: std::sync::mpsc::SyncSender<Vec<Option<i64>>>,
    },
}

/// What every partition task shares.
#[derive(Clone)]
pub struct Shared {
    pub sink: Sink,
    /// `kafka.input_topics`: a task reads partition p of each, in this order.
    pub inputs: Arc<[String]>,
    pub default_encoding: Encoding,
    pub max_event_bytes: usize,
    pub idle_timeout: Duration,
    /// Builds a fresh engine for a partition.
    pub engine: Arc<dyn Fn() -> Engine + Send + Sync>,
    /// The state changelog, when `state.changelog` is on.
    pub changelog: Option<Changelog>,
    /// The repartition topic, when `state.repartition` is on: then the last of `inputs`.
    pub repartition: Option<super::repartition::Repartition>,
    /// The population topic's reader, with the repartition topic.
    pub population: Option<Arc<super::population::Population>>,
    pub health: super::Health,
}

impl Shared {
    /// A fresh engine for partition `partition`: in publish mode with the repartition topic.
    fn engine_for(&self, partition: i32) -> Engine {
        let mut e = (self.engine)();
        if let Some(r) = &self.repartition {
            e.publish_contributions(partition as u32, r.partitions as usize);
        }
        if self.population.is_some() {
            e.publish_population();
        }
        e
    }

    /// The inputs that carry events (the repartition topic, last, does not).
    fn event_inputs(&self) -> usize {
        self.inputs.len() - usize::from(self.repartition.is_some())
    }
}

/// How often at most a task publishes its watermark to the repartition topic while it moves
/// (and, before it, the contributions made since the last time: a few records of many
/// contributions each, rather than a few per batch).
const WATERMARK_EVERY: Duration = Duration::from_millis(100);

/// Contributions held before they are sent even if the watermark has not been published.
const CONTRIBUTIONS_HELD: usize = 8192;

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

/// Merging: the longest an input with nothing buffered, not known to be caught up, holds the
/// task's other inputs back.
pub const MAX_MERGE_WAIT: Duration = Duration::from_secs(1);

/// Merging: how often a held-back merge looks again (whether the empty input caught up).
const HOLD_RETRY: Duration = Duration::from_millis(20);

/// Messages taken from an input but not processed yet: merging, or held back by the population
/// barrier.
enum Buffered {
    Fetched {
        msgs: Viewed,
        received: Instant,
        done: usize,
    },
    Polled {
        batch: InBatch,
        done: usize,
    },
}

impl Buffered {
    /// The messages not processed yet, with when they were taken.
    fn rest(&self) -> impl Iterator<Item = (Msg<'_>, Instant)> + '_ {
        let (rest, received): (Vec<Msg<'_>>, Instant) = match self {
            Buffered::Fetched {
                msgs,
                received,
                done,
            } => (msgs.views()[*done..].to_vec(), *received),
            Buffered::Polled { batch, done } => (
                batch.views().into_iter().skip(*done).collect(),
                batch.received.unwrap_or_else(Instant::now),
            ),
        };
        rest.into_iter().map(move |m| (m, received))
    }

    fn len(&self) -> usize {
        match self {
            Buffered::Fetched { msgs, .. } => msgs.views().len(),
            Buffered::Polled { batch, .. } => batch.msgs.len(),
        }
    }

    fn done(&mut self) -> &mut usize {
        match self {
            Buffered::Fetched { done, .. } | Buffered::Polled { done, .. } => done,
        }
    }
}

/// Partition p of one input topic, as its task reads it.
struct Input {
    topic: String,
    /// Which offsets may be committed.
    tracker: OffsetTracker,
    /// The commit position, read by the consumer thread (-1: nothing yet).
    position: Arc<AtomicI64>,
    counters: metrics::EventCounters,
    /// Merging: messages taken and not processed yet, oldest first.
    buffered: VecDeque<Buffered>,
    /// Merging: since when this input, with nothing buffered, holds the others back.
    holding_since: Option<Instant>,
    /// With a changelog: the position of the last checkpoint the broker acknowledged.
    checkpointed: Option<i64>,
}

impl Input {
    fn buffered(&self) -> bool {
        self.buffered.iter().any(|b| b.len() > 0)
    }
}

/// What one look at the queues did.
#[derive(Debug, Default, Clone, Copy)]
struct Pulled {
    /// A take filled its batch: more may be waiting without a wake-up.
    full: bool,
    /// Messages were processed.
    progressed: bool,
    /// Merging: an input with nothing buffered holds the others back.
    held: bool,
}

pub struct PartitionTask {
    partition: i32,
    labels: PartitionLabels,
    shared: Shared,
    engine: Engine,
    inputs: Vec<Input>,
    /// For the high watermarks librdkafka's fetches report (merging: is an input caught up?).
    consumer: std::sync::Weak<rdkafka::consumer::BaseConsumer<Ctx>>,
    pending: FuturesOrdered<BoxFuture<'static, ()>>,
    /// The input each group of `pending` outputs belongs to, in the same order.
    pending_inputs: VecDeque<usize>,
    last_input: Instant,
    /// The watermark when the partition last saw an event (the idle clock counts from it).
    watermark_at_last_input: Option<Ts>,
    outputs: Vec<Output>,
    last_state_bytes: Option<Instant>,
    /// Groups of outputs pushed to `pending`, and acknowledged, since the start.
    pushed: u64,
    acked: u64,
    /// Checkpoints waiting for the outputs before them, oldest first.
    staged: VecDeque<Staged>,
    /// Checkpoints whose records are being delivered: each yields its input positions.
    sending: FuturesOrdered<BoxFuture<'static, (Vec<i64>, Written)>>,
    /// The engine's count of restored states found undecodable, as last reported.
    corrupt_states: u64,
    /// How many inputs carry events (the first ones), and the repartition topic's index.
    events: usize,
    rep: Option<usize>,
    /// The watermark last published to the repartition topic, and when.
    published_watermark: Option<Ts>,
    published_at: Instant,
    /// Whether the task said it is empty and idle (it has had no event).
    said_empty: bool,
    started: Instant,
    /// With the repartition topic: per event input, the contributions of the messages
    /// processed since they were last sent, and the first of those messages' offset.
    contributions: Vec<(Vec<(Contribution, crate::engine::stage::From)>, Option<i64>)>,
    /// Delivers the groups of repartition records in the order they were pushed: one
    /// group's records all reach their partitions before the next group's, failures re-sent
    /// in order — a watermark never overtakes the contributions it covers, nor a batch of
    /// contributions an earlier one.
    repartition_out: Arc<InOrder>,
    /// The same for the checkpoints' changelog records (with a changelog): a record sent
    /// again after a failure never lands after a later checkpoint's record of the same key.
    changelog_out: Option<Arc<InOrder>>,
    /// The population's last closed day as the reader moves it (with the population topic).
    population_closed: Option<tokio::sync::watch::Receiver<Option<i64>>>,
    /// The day the task waits for the population to close before it takes more input (its
    /// next event would pass the end of the day after it).
    population_wait: Option<i64>,
}

impl PartitionTask {
    /// The task of partition `partition`; `positions` are its inputs' commit positions (one
    /// per input topic, in order), read by the consumer thread.
    pub fn new(
        partition: i32,
        shared: Shared,
        positions: Vec<Arc<AtomicI64>>,
        consumer: std::sync::Weak<rdkafka::consumer::BaseConsumer<Ctx>>,
    ) -> Self {
        let inputs = shared
            .inputs
            .iter()
            .zip(positions)
            .map(|(topic, position)| Input {
                topic: topic.clone(),
                tracker: OffsetTracker::default(),
                position,
                counters: metrics::EventCounters::new(topic),
                buffered: VecDeque::new(),
                holding_since: None,
                checkpointed: None,
            })
            .collect();
        // Task-wide gauges carry the first input topic's name.
        let first = shared.inputs.first().map_or("", String::as_str);
        let events = shared.event_inputs();
        let rep = shared.repartition.as_ref().map(|_| events);
        PartitionTask {
            partition,
            labels: PartitionLabels::new(first, partition),
            engine: shared.engine_for(partition),
            events,
            rep,
            published_watermark: None,
            published_at: Instant::now(),
            said_empty: false,
            started: Instant::now(),
            contributions: (0..events).map(|_| (Vec::new(), None)).collect(),
            repartition_out: InOrder::new(shared.sink.producer.clone()),
            changelog_out: shared
                .changelog
                .as_ref()
                .map(|c| InOrder::new(c.producer.clone())),
            population_closed: shared.population.as_ref().map(|p| p.closed.clone()),
            population_wait: None,
            shared,
            inputs,
            consumer,
            pending: FuturesOrdered::new(),
            pending_inputs: VecDeque::new(),
            last_input: Instant::now(),
            watermark_at_last_input: None,
            outputs: Vec::new(),
            last_state_bytes: None,
            pushed: 0,
            acked: 0,
            staged: VecDeque::new(),
            sending: FuturesOrdered::new(),
            corrupt_states: 0,
        }
    }

    fn merging(&self) -> bool {
        self.events > 1
    }

    /// Runs the partition until it is drained or its channel closes; `assigned` is when the
    /// partition was assigned (its restore time ends as the task starts taking input).
    /// `sources` has, per input, its own queue if it could be split off; an input without one
    /// gets the messages the consumer thread polled, over `rx`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        assigned: Instant,
        mut sources: Vec<Option<Source>>,
    ) {
        if self.shared.changelog.is_some() && !self.restore(&mut rx, &mut sources).await {
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
        let wakers: Vec<Waker> = sources
            .iter()
            .flatten()
            .map(|(_, w)| Arc::clone(w))
            .collect();
        let any_source = !wakers.is_empty();
        let mut fetched = Fetched::default();
        // Whether a queue may hold messages without a wake-up to come: at the start, after a
        // full take (or, merging, any progress), and at every tick (a safety net: a wake-up is
        // only sent when a queue goes from empty to non-empty).
        let mut more = any_source;
        let hold = |p: Pulled| p.held.then(|| tokio::time::Instant::now() + HOLD_RETRY);
        // Merging, held back by an empty input: when to look again (messages held during the
        // restore may be held back already).
        let mut held: Option<tokio::time::Instant> = if self.merging() {
            hold(self.merge())
        } else {
            None
        };
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
                    self.checkpoint_acked(&through, written)
                }
                // The clocks before input: a backlog always has input ready, and must not
                // starve the checkpoints (nor the commits that follow them).
                _ = checkpoint.tick(), if self.shared.changelog.is_some() => self.checkpoint(),
                _ = tick.tick() => {
                    self.on_tick();
                    more = any_source;
                }
                cmd = rx.recv(), if room => match cmd {
                    Some(Cmd::Batch(i, batch)) => held = hold(self.polled(i, batch)),
                    Some(Cmd::Drain { deadline, reply }) => {
                        // Stop reading the queues (and release them, and the messages taken
                        // from them: they are not committed) before answering: the
                        // partition's next assignment may split them off again at once.
                        for input in &mut self.inputs {
                            input.buffered.clear();
                        }
                        sources.clear();
                        self.drain(deadline).await;
                        let _ = reply.send(self.commit_positions());
                        break;
                    }
                    None => break,
                },
                _ = population_moved(&mut self.population_closed), if self.population_wait.is_some() => {
                    if self.try_resume() {
                        let p = self.resume_input();
                        more = any_source;
                        held = hold(p);
                    }
                },
                _ = wake(&wakers, more), if room && any_source && self.population_wait.is_none() => {
                    let p = self.pull(&sources, &mut fetched);
                    more = p.full || (p.progressed && self.merging());
                    held = hold(p);
                },
                _ = sleep_until(held), if room && held.is_some() && self.population_wait.is_none() => {
                    let p = self.pull(&sources, &mut fetched);
                    more = p.full || (p.progressed && any_source);
                    held = hold(p);
                },
            }
        }
        if self.population_wait.is_some() {
            metrics::population_waiting(false);
        }
        metrics::partition_revoked(&self.labels);
    }

    /// Restores the partition's state from its changelog partition before any input is
    /// taken, in a blocking thread (the consumer thread goes on polling); `/readyz` says 503
    /// meanwhile. Messages the consumer thread hands over meanwhile are held and processed
    /// after. False when the partition was revoked (or the router went away) first.
    async fn restore(
        &mut self,
        rx: &mut mpsc::Receiver<Cmd>,
        sources: &mut Vec<Option<Source>>,
    ) -> bool {
        let Some(cl) = self.shared.changelog.clone() else {
            return true;
        };
        // Counted as restoring by the router since it started the task (so /readyz never says
        // 200 between the assignment and the restore).
        let health = self.shared.health.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut engine =
            std::mem::replace(&mut self.engine, self.shared.engine_for(self.partition));
        let partition = self.partition;
        let job = {
            let cancel = Arc::clone(&cancel);
            tokio::task::spawn_blocking(move || {
                let r = cl.restore(partition, &mut engine, &cancel);
                (engine, r)
            })
        };
        tokio::pin!(job);
        let mut held: Vec<(usize, InBatch)> = Vec::new();
        let result = loop {
            tokio::select! {
                r = &mut job => break r,
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Batch(i, b)) => held.push((i, b)),
                    Some(Cmd::Drain { reply, .. }) => {
                        cancel.store(true, Ordering::Release);
                        sources.clear();
                        let _ = reply.send(vec![None; self.inputs.len()]);
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
                    topic = %self.labels.topic, partition = self.partition,
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
                topic = %self.labels.topic, partition = self.partition, error = %e,
                "restoring the partition's state failed; it starts empty"
            ),
        }
        health.restored();
        // The idle clock counts from the restore: a restored partition that stays quiet
        // moves its watermark on (and group stages with it), as one that saw an event does.
        self.last_input = Instant::now();
        self.watermark_at_last_input = self.engine.watermark();
        for (i, b) in held {
            self.polled(i, b);
        }
        true
    }

    /// Input positions of the last checkpoint restored or written for these input topics
    /// (-1: none for that input).
    fn restored_through(&self) -> Vec<i64> {
        let n = self.inputs.len();
        self.engine
            .last_checkpoint()
            .filter(|c| c.topics.as_slice() == &*self.shared.inputs)
            .map_or_else(|| vec![-1; n], |c| c.through.clone())
    }

    fn acked(&mut self) {
        if let Some(i) = self.pending_inputs.pop_front() {
            self.inputs[i].tracker.acked();
        }
        self.acked += 1;
        self.send_staged();
        self.publish_positions();
    }

    /// Pushes a group of outputs of input `input` to be awaited in order.
    fn push_outputs(&mut self, input: usize, f: BoxFuture<'static, ()>) {
        self.pushed += 1;
        self.pending.push_back(f);
        self.pending_inputs.push_back(input);
    }

    /// The offset the consumer may commit for input `i`: with a changelog, the last
    /// acknowledged checkpoint's (the state up to it is durable); without, what the outputs
    /// allow.
    fn commit_position(&self, i: usize) -> Option<i64> {
        if self.shared.changelog.is_some() {
            self.inputs[i].checkpointed
        } else {
            self.inputs[i].tracker.committable()
        }
    }

    fn commit_positions(&self) -> Vec<Option<i64>> {
        (0..self.inputs.len())
            .map(|i| self.commit_position(i))
            .collect()
    }

    fn publish_positions(&self) {
        for (i, input) in self.inputs.iter().enumerate() {
            if let Some(o) = self.commit_position(i) {
                input.position.store(o, Ordering::Release);
            }
        }
    }

    /// Writes what changed since the last checkpoint (CONTRACT §9): its records wait for the
    /// outputs pushed before them, then go to the changelog partition of this partition.
    fn checkpoint(&mut self) {
        if self.shared.changelog.is_none() {
            return;
        }
        // What the checkpoint covers has sent its contributions (they are outputs it waits
        // for).
        self.send_contributions();
        let Some(cl) = &self.shared.changelog else {
            return;
        };
        // The position never goes back behind a restored checkpoint; an input with none yet
        // is at -1 (nothing of it is in the state, nothing of it is committed).
        let restored = self.restored_through();
        let through: Vec<i64> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let r = restored.get(i).copied().unwrap_or(-1);
                input.tracker.next().map_or(r, |n| n.max(r))
            })
            .collect();
        if through.iter().all(|&t| t < 0) && !self.engine.is_dirty() {
            return;
        }
        let mut recs = Vec::new();
        let written = self.engine.checkpoint(&cl.inputs, &through, &mut recs);
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
        // (Checkpoints are staged only with a changelog.)
        let Some(out) = &self.changelog_out else {
            return;
        };
        while self.staged.front().is_some_and(|s| s.after <= self.acked) {
            let Some(s) = self.staged.pop_front() else {
                break;
            };
            let delivered = out.send(s.records);
            self.sending.push_back(Box::pin(async move {
                delivered.await;
                (s.through, s.written)
            }));
        }
    }

    fn checkpoint_acked(&mut self, through: &[i64], written: Written) {
        metrics::changelog_written(&written);
        for (input, &t) in self.inputs.iter_mut().zip(through) {
            if t >= 0 {
                input.checkpointed = Some(input.checkpointed.map_or(t, |c| c.max(t)));
            }
        }
        self.publish_positions();
    }

    async fn drain(&mut self, deadline: Instant) {
        self.send_contributions();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, async {
            while self.pending.next().await.is_some() {
                if let Some(i) = self.pending_inputs.pop_front() {
                    self.inputs[i].tracker.acked();
                }
                self.acked += 1;
            }
            // The last checkpoint: everything processed, so the next owner restores it all.
            self.send_staged();
            self.checkpoint();
            while let Some((through, written)) = self.sending.next().await {
                self.checkpoint_acked(&through, written);
            }
        })
        .await;
        self.publish_positions();
        if !self.pending.is_empty() {
            tracing::warn!(
                topic = %self.labels.topic,
                partition = self.partition,
                unacknowledged = self.pending.len(),
                "drain deadline passed; committing only what the broker acknowledged (the rest is redelivered)"
            );
        }
    }

    /// Takes what the inputs' own queues hold and processes it: with one input, a batch in
    /// offset order; merging, into the inputs' buffers and then merged.
    fn pull(&mut self, sources: &[Option<Source>], fetched: &mut Fetched) -> Pulled {
        let mut rep_full = false;
        if let Some(Some((queue, _))) = self.rep.and_then(|r| sources.get(r)) {
            queue.take(fetched, TAKE);
            rep_full = fetched.len() == TAKE;
            self.process_repartition_fetched(fetched);
            fetched.clear();
        }
        let p = self.pull_events(sources, fetched);
        Pulled {
            full: p.full || rep_full,
            ..p
        }
    }

    fn pull_events(&mut self, sources: &[Option<Source>], fetched: &mut Fetched) -> Pulled {
        if !self.merging() {
            if self.inputs[0].buffered() {
                // What the population barrier held back goes first.
                return self.resume_input();
            }
            let Some(Some((queue, _))) = sources.first() else {
                return Pulled::default();
            };
            queue.take(fetched, TAKE);
            let p = Pulled {
                full: fetched.len() == TAKE,
                progressed: !fetched.is_empty(),
                held: false,
            };
            self.process_fetched(fetched);
            return p;
        }
        let mut full = false;
        let (events, partition) = (self.events, self.partition);
        for (input, source) in self.inputs.iter_mut().zip(sources).take(events) {
            let Some((queue, _)) = source else { continue };
            if input.buffered() {
                continue;
            }
            let mut fetched = Fetched::default();
            queue.take(&mut fetched, TAKE);
            full |= fetched.len() == TAKE;
            if !fetched.is_empty() {
                let msgs = Viewed::take(&mut fetched, |e| {
                    consumer_error(&input.topic, partition, &e)
                });
                input.buffered.push_back(Buffered::Fetched {
                    msgs,
                    received: Instant::now(),
                    done: 0,
                });
            }
        }
        Pulled {
            full,
            ..self.merge()
        }
    }

    /// Messages the consumer thread polled for input `i`.
    fn polled(&mut self, i: usize, batch: InBatch) -> Pulled {
        if i >= self.inputs.len() {
            return Pulled::default();
        }
        if Some(i) == self.rep {
            let received = batch.received.unwrap_or_else(Instant::now);
            self.process_repartition(&batch.views(), received);
            return Pulled {
                progressed: true,
                ..Pulled::default()
            };
        }
        if !self.merging() {
            if self.population_wait.is_some() || self.inputs[i].buffered() {
                // Behind what the population barrier holds back.
                self.inputs[i]
                    .buffered
                    .push_back(Buffered::Polled { batch, done: 0 });
                return self.resume_input();
            }
            let received = batch.received.unwrap_or_else(Instant::now);
            let views = batch.views();
            let n = self.process_batch(i, &views, received);
            let held = n < views.len();
            drop(views);
            if held {
                // The population barrier held the rest back: the batch waits, further on.
                self.inputs[i]
                    .buffered
                    .push_front(Buffered::Polled { batch, done: n });
            }
            return Pulled {
                progressed: true,
                ..Pulled::default()
            };
        }
        self.inputs[i]
            .buffered
            .push_back(Buffered::Polled { batch, done: 0 });
        self.merge()
    }

    /// Whether input `i`, with nothing buffered, may be passed over by the merge: everything
    /// up to its high watermark (as librdkafka's last fetch reported it) is processed, or it
    /// has held the others back for [`MAX_MERGE_WAIT`].
    fn may_pass(&mut self, i: usize, now: Instant, restored: &[i64]) -> bool {
        let input = &self.inputs[i];
        let next = input
            .tracker
            .next()
            .or_else(|| restored.get(i).copied().filter(|&t| t >= 0));
        let caught_up = self.consumer.upgrade().is_some_and(|c| {
            match super::queue::cached_watermarks(&c, &input.topic, self.partition) {
                Some((low, high)) => match next {
                    Some(n) => n >= high,
                    None => high <= low,
                },
                None => false,
            }
        });
        let input = &mut self.inputs[i];
        if caught_up {
            input.holding_since = None;
            return true;
        }
        let since = *input.holding_since.get_or_insert(now);
        now.duration_since(since) >= MAX_MERGE_WAIT
    }

    /// Merges the inputs' buffered messages by event time (see the module's comment) and
    /// processes them, until every buffer is empty or an empty input holds the rest back.
    fn merge(&mut self) -> Pulled {
        let n = self.events;
        let mut bufs: Vec<VecDeque<Buffered>> = self
            .inputs
            .iter_mut()
            .take(n)
            .map(|i| std::mem::take(&mut i.buffered))
            .collect();
        let restored = self.restored_through();
        let now = Instant::now();
        let mut heads = vec![0usize; n];
        let mut held = false;
        let mut any_event = false;
        {
            let lists: Vec<Vec<(Msg<'_>, Instant)>> = bufs
                .iter()
                .map(|q| q.iter().flat_map(Buffered::rest).collect())
                .collect();
            let limits = self.limits();
            let default = self.shared.default_encoding;
            let decoded: Vec<Vec<Result<Event<'_>, Reject>>> = lists
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|(m, _)| {
                            let encoding = m
                                .content_type
                                .and_then(Encoding::from_content_type)
                                .unwrap_or(default);
                            decode(m.payload.unwrap_or_default(), encoding, m.key, &limits)
                        })
                        .collect()
                })
                .collect();
            for (i, l) in lists.iter().enumerate() {
                if !l.is_empty() {
                    self.inputs[i].holding_since = None;
                }
            }
            // Whether each input, once empty, may be passed over (looked up once per merge).
            let mut passable: Vec<Option<bool>> = vec![None; n];
            loop {
                let mut best: Option<(Ts, usize)> = None;
                for i in 0..n {
                    match decoded[i].get(heads[i]) {
                        Some(d) => {
                            // What is not an event (a dead letter) has no time to wait for: it
                            // goes at once.
                            let t = match d {
                                Ok(ev) => ev.occurred_at,
                                Err(_) => Ts::MIN,
                            };
                            if best.is_none_or(|(bt, _)| t < bt) {
                                best = Some((t, i));
                            }
                        }
                        None => {
                            let pass = *passable[i]
                                .get_or_insert_with(|| self.may_pass(i, now, &restored));
                            held |= !pass;
                        }
                    }
                }
                let Some((_, i)) = best.filter(|_| !held) else {
                    break;
                };
                let (m, received) = &lists[i][heads[i]];
                let d = &decoded[i][heads[i]];
                if let Ok(ev) = d {
                    if self.hold_for_population(ev.occurred_at) {
                        break;
                    }
                }
                any_event |= d.is_ok();
                self.process(i, m, d, None, *received);
                heads[i] += 1;
            }
        }
        // What was not processed goes back, in order.
        let progressed = heads.iter().any(|&h| h > 0);
        for ((input, mut q), mut consumed) in self.inputs.iter_mut().zip(bufs.drain(..)).zip(heads)
        {
            while let Some(b) = q.front_mut() {
                let left = b.len() - *b.done();
                if consumed >= left {
                    consumed -= left;
                    q.pop_front();
                } else {
                    *b.done() += consumed;
                    break;
                }
            }
            input.buffered = q;
            input.counters.flush();
        }
        if progressed {
            self.after_batch(any_event);
        }
        Pulled {
            full: false,
            progressed,
            held,
        }
    }

    /// Messages taken from the (one) input's queue (errors librdkafka put there are logged:
    /// they are not input and hold no offset). What the population barrier holds back stays
    /// as fetched, its views made once, and goes first once the population has closed the day.
    fn process_fetched(&mut self, fetched: &mut Fetched) {
        if fetched.is_empty() {
            return;
        }
        let msgs = Viewed::take(fetched, |e| {
            consumer_error(&self.inputs[0].topic, self.partition, &e)
        });
        self.inputs[0].buffered.push_back(Buffered::Fetched {
            msgs,
            received: Instant::now(),
            done: 0,
        });
        self.resume_input();
    }

    /// Buffered input, as far as the population barrier lets it go (one input: its batches in
    /// order; merging: the merge).
    fn resume_input(&mut self) -> Pulled {
        if self.merging() {
            return self.merge();
        }
        let mut progressed = false;
        while self.population_wait.is_none() {
            let Some(mut b) = self.inputs[0].buffered.pop_front() else {
                break;
            };
            // What is left of the batch.
            let (n, left) = match &b {
                Buffered::Fetched {
                    msgs,
                    received,
                    done,
                } => {
                    let rest = &msgs.views()[*done..];
                    (self.process_batch(0, rest, *received), rest.len())
                }
                Buffered::Polled { batch, done } => {
                    let views = batch.views();
                    let rest = &views[*done..];
                    let received = batch.received.unwrap_or_else(Instant::now);
                    (self.process_batch(0, rest, received), rest.len())
                }
            };
            progressed |= n > 0;
            if n < left {
                // Held again (the batch spans another day's end): the same batch, further on.
                *b.done() += n;
                self.inputs[0].buffered.push_front(b);
            }
        }
        Pulled {
            progressed,
            ..Pulled::default()
        }
    }

    /// With the population topic: whether input must stop before an event at `t`, because
    /// it would move the watermark past the end of a day after the last the population has
    /// closed. The task then publishes its share of the days it closes and waits
    /// ([`PartitionTask::try_resume`]).
    fn hold_for_population(&mut self, t: Ts) -> bool {
        if self.population_closed.is_none() {
            return false;
        }
        loop {
            let Some(day) = self.engine.blocked_by(t) else {
                return false;
            };
            if self.population_wait != Some(day) {
                self.publish_close(day);
            }
            if !self.try_resume() {
                return true;
            }
        }
    }

    /// Closes the task's share through `day`, publishes it, and waits for the population.
    fn publish_close(&mut self, day: i64) {
        let Some(pop) = self.shared.population.clone() else {
            return;
        };
        self.engine.close_share(day);
        let (shares, closed) = self.engine.take_shares();
        let closed = closed.unwrap_or(day);
        pop.closed_here(self.partition as u32, &shares, closed);
        let records = pop.records(self.partition as u32, shares, closed);
        self.inputs[0].tracker.spontaneous();
        let f = self.deliver_all(records, None);
        self.push_outputs(0, f);
        if self.population_wait.is_none() {
            metrics::population_waiting(true);
        }
        self.population_wait = Some(day);
        // The group stages see this task's time while it waits (as often as ever).
        self.publish_watermark(false);
    }

    /// Whether the population has closed the day the task waits for: then its figures go to
    /// the engine (which moves its time on), and the task takes input again.
    fn try_resume(&mut self) -> bool {
        let Some(day) = self.population_wait else {
            return true;
        };
        let through = self.population_closed.as_ref().and_then(|r| *r.borrow());
        let (Some(through), Some(pop)) = (
            through.filter(|&t| t >= day),
            self.shared.population.clone(),
        ) else {
            return false;
        };
        let figures = pop
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .figures(self.engine.population_closed_through(), through);
        self.engine
            .population_closed(through, figures, &mut self.outputs);
        self.population_wait = None;
        metrics::population_waiting(false);
        for (d, source) in self.engine.take_gaps() {
            if metrics::source_gap(d, source) {
                tracing::warn!(
                    source = source.as_str(), day = %crate::time::format_date(d),
                    "feed gap: far fewer employees sent this rollup than on the same weekday before; the day is left out of its windows for everyone"
                );
            }
        }
        self.flush_spontaneous();
        true
    }

    /// Outputs made by time alone (no input holds them): delivered, held against the first
    /// input.
    fn flush_spontaneous(&mut self) {
        let records: Vec<Record> = self
            .outputs
            .drain(..)
            .filter_map(|o| self.shared.sink.record(o))
            .collect();
        if !records.is_empty() {
            self.inputs[0].tracker.spontaneous();
            let f = self.deliver_all(records, None);
            self.push_outputs(0, f);
        }
    }

    fn limits(&self) -> crate::event::Limits {
        crate::event::Limits {
            max_event_bytes: self.shared.max_event_bytes,
            now: Some(super::now_ms()),
            max_future: crate::time::DAY,
        }
    }

    /// A batch of input `i`'s messages in offset order: decoded first, then applied in offset
    /// order, a prefetch chunk at a time (the engine fetches the state a chunk touches before
    /// applying it). `received` is when the batch was taken.
    /// Returns how many were processed: all, unless the population barrier stopped it.
    fn process_batch(&mut self, i: usize, msgs: &[Msg<'_>], received: Instant) -> usize {
        let limits = self.limits();
        let default = self.shared.default_encoding;
        // A chunk at a time: decoded, its state prefetched, applied — so the chunk's payloads
        // and decoded events are still in the core's cache when they are applied.
        let mut decoded: Vec<Result<Event<'_>, Reject>> =
            Vec::with_capacity(crate::engine::PREFETCH_BATCH.min(msgs.len()));
        let mut any_event = false;
        let mut done = 0;
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
                if let Ok(ev) = r {
                    if self.hold_for_population(ev.occurred_at) {
                        self.inputs[i].counters.flush();
                        self.after_batch(any_event);
                        return done;
                    }
                }
                let k = if r.is_ok() { keys.next() } else { None };
                any_event |= r.is_ok();
                self.process(i, m, r, k, received);
                done += 1;
            }
        }
        self.inputs[i].counters.flush();
        self.after_batch(any_event);
        done
    }

    /// After a batch: the positions for the consumer thread (once per batch); if it held an
    /// event, the idle clock counts from now (one batch is one instant).
    /// Sends the contributions made since the last call, one record per repartition
    /// partition and input, each holding its input's commit at the first message that made
    /// any (before the watermark that covers them).
    fn send_contributions(&mut self) {
        let Some(rep) = self.shared.repartition.clone() else {
            return;
        };
        for i in 0..self.contributions.len() {
            let (v, first) = &mut self.contributions[i];
            let Some(first) = first.take() else {
                continue;
            };
            let records = rep.contributions(self.partition as u32, v.drain(..));
            self.inputs[i].tracker.hold(first);
            let f = self.deliver_repartition(records);
            self.push_outputs(i, f);
        }
    }

    fn after_batch(&mut self, any_event: bool) {
        if self.contributions.iter().map(|c| c.0.len()).sum::<usize>() >= CONTRIBUTIONS_HELD {
            self.send_contributions();
        }
        self.publish_positions();
        if any_event {
            self.last_input = Instant::now();
            self.watermark_at_last_input = self.engine.watermark();
            self.publish_watermark(false);
            if self.rep.is_some() {
                metrics::watermarks(&self.labels, self.engine.watermark(), None);
            }
        }
    }

    /// Publishes the engine's watermark to every partition of the repartition topic, when it
    /// moved (at most every [`WATERMARK_EVERY`] unless `now`). Before any event, once the
    /// task has been idle for `time.idle_timeout`, it says it is empty: group stages then do
    /// not wait for it (CONTRACT §3's idle partition, for a partition that has nothing).
    fn publish_watermark(&mut self, now: bool) {
        let Some(rep) = self.shared.repartition.clone() else {
            return;
        };
        let w = self.engine.watermark();
        if now || self.published_at.elapsed() >= WATERMARK_EVERY {
            // The contributions first: the watermark after them says they are all out.
            self.send_contributions();
        }
        let records = match w {
            Some(w) if Some(w) != self.published_watermark => {
                if !now && self.published_at.elapsed() < WATERMARK_EVERY {
                    return;
                }
                self.published_watermark = Some(w);
                rep.watermark(self.partition as u32, Some(w))
            }
            None if !self.said_empty && self.started.elapsed() >= self.shared.idle_timeout => {
                self.said_empty = true;
                let mut r = rep.watermark(self.partition as u32, None);
                if let Some(pop) = &self.shared.population {
                    pop.closed_here(
                        self.partition as u32,
                        &[],
                        crate::rules::population::EMPTY_TASK,
                    );
                    r.push(pop.empty(self.partition as u32));
                }
                r
            }
            _ => return,
        };
        self.published_at = Instant::now();
        // Held against the first input (they depend on none), after the contributions
        // already pushed.
        self.inputs[0].tracker.spontaneous();
        let f = self.deliver_repartition(records);
        self.push_outputs(0, f);
    }

    /// Delivers repartition records in order, after every group of them pushed before.
    fn deliver_repartition(&self, records: Vec<Record>) -> BoxFuture<'static, ()> {
        self.repartition_out.send(records)
    }

    /// Records of the repartition topic taken from its own queue.
    fn process_repartition_fetched(&mut self, fetched: &Fetched) {
        if fetched.is_empty() {
            return;
        }
        let views: Vec<Msg<'_>> = fetched.iter().filter_map(Result::ok).collect();
        self.process_repartition(&views, Instant::now());
    }

    /// Repartition records (contributions and watermarks) into the group stage.
    fn process_repartition(&mut self, msgs: &[Msg<'_>], _received: Instant) {
        let Some(r) = self.rep else {
            return;
        };
        for m in msgs {
            let pos = (r, m.offset);
            if !self.engine.restored_holds(pos) {
                use super::repartition::Message;
                match Message::decode(m.payload.unwrap_or_default()) {
                    Ok(Message::Contributions(cs)) => {
                        for (contribution, from) in cs {
                            self.engine.receive(
                                contribution,
                                Some(from),
                                Some(pos),
                                &mut self.outputs,
                            );
                        }
                    }
                    Ok(Message::Watermark {
                        source,
                        at: Some(w),
                    }) => self.engine.source_watermark(source, w, &mut self.outputs),
                    Ok(Message::Watermark { source, at: None }) => {
                        self.engine.source_empty(source, &mut self.outputs)
                    }
                    Err(e) => {
                        metrics::repartition_unreadable();
                        tracing::error!(
                            topic = %self.inputs[r].topic, partition = self.partition,
                            offset = m.offset, error = %e,
                            "repartition record cannot be read; skipped"
                        );
                    }
                }
            }
            let records: Vec<Record> = self
                .outputs
                .drain(..)
                .filter_map(|o| self.shared.sink.record(o))
                .collect();
            let has_outputs = !records.is_empty();
            self.inputs[r].tracker.processed(m.offset, has_outputs);
            if has_outputs {
                let f = self.deliver_all(records, None);
                self.push_outputs(r, f);
            }
        }
        self.publish_positions();
        metrics::watermarks(&self.labels, None, self.engine.group_watermark());
    }

    fn process(
        &mut self,
        i: usize,
        m: &Msg<'_>,
        decoded: &Result<Event<'_>, Reject>,
        keys: Option<Keys>,
        received: Instant,
    ) {
        let mut records: Vec<Record> = Vec::new();
        match decoded {
            Ok(ev) => {
                let k = keys.unwrap_or_else(|| self.engine.keys(ev));
                let outcome = self
                    .engine
                    .apply_at(ev, k, (i, m.offset), &mut self.outputs);
                self.inputs[i]
                    .counters
                    .event(ev.kind.type_name(), outcome.as_str());
                records.extend(
                    self.outputs
                        .drain(..)
                        .filter_map(|o| self.shared.sink.record(o)),
                );
                if self.rep.is_some() {
                    let (v, first) = &mut self.contributions[i];
                    let before = v.len();
                    v.extend(self.engine.take_contributions());
                    if v.len() > before && first.is_none() {
                        *first = Some(m.offset);
                    }
                }
            }
            Err(reject) => {
                let input = &mut self.inputs[i];
                input.counters.dead_letter(reject.code.as_str());
                tracing::debug!(
                    topic = %input.topic, partition = self.partition, offset = m.offset,
                    reason = reject.code.as_str(), "dead letter"
                );
                let source = (input.topic.as_str(), self.partition, m.offset);
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
        self.inputs[i].tracker.processed(m.offset, has_outputs);
        if has_outputs {
            let f = self.deliver_all(records, Some(received));
            self.push_outputs(i, f);
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
        let corrupt = self.engine.corrupt_states();
        if corrupt > self.corrupt_states {
            for _ in self.corrupt_states..corrupt {
                metrics::changelog_corrupt();
            }
            tracing::error!(
                topic = %self.labels.topic, partition = self.partition,
                count = corrupt - self.corrupt_states,
                "restored employee state could not be decoded when it was needed; those employees go on from their flags alone (history lost)"
            );
            self.corrupt_states = corrupt;
        }
        let idle = self.last_input.elapsed();
        if let Some(w0) = self.watermark_at_last_input {
            if idle >= self.shared.idle_timeout {
                let w = w0.saturating_add(idle.as_millis() as i64);
                if let Some(day) = self.engine.blocked_at(w) {
                    // The idle clock closes days too: the population hears of it (and the
                    // engine's time stops short of a day it has not closed).
                    if self.population_wait.is_none_or(|d| d < day) {
                        self.publish_close(day);
                    }
                    self.try_resume();
                }
                self.engine.advance(w, &mut self.outputs);
                self.flush_spontaneous();
            }
        }
        self.publish_watermark(true);
        if self.rep.is_some() {
            metrics::group_gauges(
                &self.labels,
                self.engine.group_watermark(),
                self.engine.buffered_contributions(),
            );
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

/// An error librdkafka put in a partition's queue in place of a message (an offset reset, a
/// broker error): not input, it holds no offset.
fn consumer_error(topic: &str, partition: i32, error: &str) {
    tracing::warn!(
        topic,
        partition,
        error,
        "consumer error on the partition's queue"
    );
}

/// The population reader moved the population's closed day (never, without one).
async fn population_moved(rx: &mut Option<tokio::sync::watch::Receiver<Option<i64>>>) {
    if let Some(rx) = rx {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Ready at once when `more`; else when one of the queues' wakers fires.
async fn wake(wakers: &[Waker], more: bool) {
    if more {
        return;
    }
    match wakers {
        [] => std::future::pending().await,
        [w] => w.notified().await,
        ws => {
            let all: Vec<_> = ws.iter().map(|w| Box::pin(w.notified())).collect();
            futures::future::select_all(all).await;
        }
    }
}
