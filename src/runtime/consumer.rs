//! The consumer thread: polls librdkafka's consumer queue (rebalances, statistics, errors),
//! commits the tasks' positions, and carries out the lifecycle's actions — including inside the
//! rebalance callback, which librdkafka runs on this thread during `poll`, so a revoke waits for
//! the revoked partitions' in-flight work (up to a deadline below the session timeout) and
//! commits synchronously before the partitions move. Before partitions are assigned it splits
//! their queues off (see [`super::queue`]): their messages go straight to their tasks. Only a
//! partition whose queue could not be split has its messages polled, batched and routed here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::{mpsc, Notify};

use super::lifecycle::{Action, Input, Lifecycle, Tp};
use super::queue::{SplitQueue, Waker};
use super::task::{Cmd, InBatch, PartitionTask, Shared, Source, Watermarks};
use crate::metrics;

/// Batches queued per partition task before the consumer thread waits (each at most
/// [`MAX_BATCH`] messages).
const TASK_QUEUE: usize = 16;

/// A running partition task: partition p of every input topic.
struct Task {
    tx: mpsc::Sender<Cmd>,
    /// Per input topic (in `kafka.input_topics` order): its commit position, and what was
    /// last committed.
    positions: Vec<(Arc<AtomicI64>, i64)>,
}

/// What the consumer thread owns besides the consumer: the lifecycle and the partition tasks.
pub struct Router {
    lifecycle: Lifecycle,
    /// By partition number.
    tasks: HashMap<i32, Task>,
    /// Input partitions assigned whose partition number does not have all its input topics
    /// assigned here (yet): not started, since one task must own partition p of every input.
    partial: HashMap<i32, std::collections::BTreeSet<usize>>,
    runtime: tokio::runtime::Handle,
    /// The partition tasks spawned (the daemon waits for them at shutdown: no client outlives
    /// what it serves).
    spawned: tokio_util::task::TaskTracker,
    shared: Shared,
    drain_timeout: Duration,
    health: super::Health,
    /// Messages polled but not yet handed to their tasks.
    batches: Batches,
    /// When the current poll round took its first message: the receipt time of every message
    /// of the round (one clock read per round, not per message).
    round_received: Instant,
    /// The consumer (set once it exists), for the partitions' split queues to keep alive.
    consumer: Weak<BaseConsumer<Ctx>>,
    /// Partition queues split off before their assignment, for the tasks about to start.
    splits: HashMap<Tp, Split>,
    /// `kafka.split_partition_queues`.
    split_queues: bool,
}

impl Router {
    pub fn new(
        runtime: tokio::runtime::Handle,
        spawned: tokio_util::task::TaskTracker,
        shared: Shared,
        drain_timeout: Duration,
        health: super::Health,
        split_queues: bool,
    ) -> Router {
        Router {
            lifecycle: Lifecycle::default(),
            tasks: HashMap::new(),
            partial: HashMap::new(),
            runtime,
            spawned,
            shared,
            drain_timeout,
            health,
            batches: Vec::new(),
            round_received: Instant::now(),
            consumer: Weak::new(),
            splits: HashMap::new(),
            split_queues,
        }
    }

    /// Splits the queues of partitions about to be assigned (and not already running here)
    /// off the consumer's queue, so their tasks read them directly (see [`super::queue`]).
    /// Without the consumer (not set yet), or with `kafka.split_partition_queues` off, the
    /// partitions go through the consumer's queue.
    fn split(&mut self, tps: &[Tp], wakers: &mut HashMap<Tp, Waker>) {
        let Some(consumer) = self.consumer.upgrade().filter(|_| self.split_queues) else {
            return;
        };
        for tp in tps {
            if self.tasks.contains_key(&tp.1) || self.splits.contains_key(tp) {
                continue;
            }
            let waker = Arc::clone(
                wakers
                    .entry(tp.clone())
                    .or_insert_with(|| Arc::new(Notify::new())),
            );
            // SAFETY: the waker stays in the consumer's context (`Ctx::wakers`, never removed),
            // which is dropped after the client.
            match unsafe { SplitQueue::split(&consumer, &tp.0, tp.1, &waker) } {
                Some(q) => {
                    self.splits.insert(tp.clone(), (q, waker));
                }
                None => tracing::warn!(
                    topic = %tp.0, partition = tp.1,
                    "could not split the partition's queue; its messages go through the consumer's"
                ),
            }
        }
    }

    fn step(&mut self, consumer: &BaseConsumer<Ctx>, input: Input) {
        for action in self.lifecycle.step(input) {
            match action {
                Action::Start(tps) => self.start(tps),
                Action::Drain(tps) => self.drain(consumer, tps),
                Action::DrainAll => {
                    let tps: Vec<Tp> = self
                        .tasks
                        .keys()
                        .flat_map(|&p| self.shared.inputs.iter().map(move |t| (t.clone(), p)))
                        .collect();
                    self.drain(consumer, tps);
                    // Whatever comes next (Close) is for the caller.
                    let more = self.lifecycle.step(Input::Drained);
                    debug_assert_eq!(more, vec![Action::Close]);
                }
                Action::Close => {}
            }
        }
        self.health.set_ready(self.lifecycle.ready());
        metrics::assigned(self.lifecycle.assigned());
    }

    /// The index of `topic` among the input topics.
    fn input_index(&self, topic: &str) -> Option<usize> {
        self.shared.inputs.iter().position(|t| t == topic)
    }

    /// Starts the tasks of the partition numbers that now have every input topic assigned
    /// here. One that does not is held, and said loudly: the assignment splits co-partitioned
    /// inputs (another member with another `partition.assignment.strategy`, or input topics
    /// of different partition counts), and this instance does not process it.
    fn start(&mut self, tps: Vec<Tp>) {
        let mut touched = std::collections::BTreeSet::new();
        for tp in tps {
            let Some(i) = self.input_index(&tp.0) else {
                tracing::warn!(topic = %tp.0, partition = tp.1, "assigned a topic that is not an input");
                continue;
            };
            self.partial.entry(tp.1).or_default().insert(i);
            touched.insert(tp.1);
        }
        let n = self.shared.inputs.len();
        for p in touched {
            let complete = self.partial.get(&p).is_some_and(|s| s.len() == n);
            if complete && !self.tasks.contains_key(&p) {
                self.partial.remove(&p);
                self.start_task(p);
            } else if !complete {
                let have: Vec<&str> = self.partial[&p]
                    .iter()
                    .map(|&i| self.shared.inputs[i].as_str())
                    .collect();
                tracing::error!(
                    partition = p, assigned = ?have, inputs = ?self.shared.inputs,
                    "the assignment splits co-partitioned input partitions (partition p of every input topic must be assigned to one member: partition.assignment.strategy = range, equal partition counts); this partition is not processed until it is whole"
                );
            }
        }
    }

    fn start_task(&mut self, p: i32) {
        let assigned = Instant::now();
        let (tx, rx) = mpsc::channel(TASK_QUEUE);
        let positions: Vec<Arc<AtomicI64>> = self
            .shared
            .inputs
            .iter()
            .map(|_| Arc::new(AtomicI64::new(-1)))
            .collect();
        let watermarks: Watermarks = {
            let (consumer, topics) = (self.consumer.clone(), self.shared.inputs.clone());
            Arc::new(move |i| {
                let c = consumer.upgrade()?;
                super::queue::cached_watermarks(&c, topics.get(i)?, p)
            })
        };
        let task = PartitionTask::new(p, self.shared.clone(), positions.clone(), watermarks);
        let sources: Vec<Option<Box<dyn Source>>> = self
            .shared
            .inputs
            .iter()
            .map(|t| {
                self.splits
                    .remove(&(t.clone(), p))
                    .map(|s| Box::new(s) as Box<dyn Source>)
            })
            .collect();
        let own_queue = sources.iter().all(Option::is_some);
        if self.shared.changelog.is_some() {
            // Not ready until the task has restored (it says so when it has).
            self.health.restoring();
        }
        self.spawned
            .spawn_on(task.run(rx, assigned, sources), &self.runtime);
        tracing::info!(partition = p, topics = ?self.shared.inputs, own_queue, "partition assigned");
        self.tasks.insert(
            p,
            Task {
                tx,
                positions: positions.into_iter().map(|a| (a, -1)).collect(),
            },
        );
    }

    /// Finishes the partitions' in-flight work (all of them in parallel, one deadline), commits
    /// their positions synchronously, and drops their tasks. A task goes when any of its input
    /// partitions is revoked; its others (if still assigned) are held until whole again.
    fn drain(&mut self, consumer: &BaseConsumer<Ctx>, tps: Vec<Tp>) {
        let deadline = Instant::now() + self.drain_timeout;
        // Messages of these partitions polled in this round but not handed over are dropped:
        // they are not committed, so the partitions' next owner reads them again.
        let parts: std::collections::BTreeSet<i32> = tps.iter().map(|tp| tp.1).collect();
        self.batches.retain(|(tp, _)| !parts.contains(&tp.1));
        for tp in &tps {
            if let Some(i) = self.input_index(&tp.0) {
                if let Some(s) = self.partial.get_mut(&tp.1) {
                    s.remove(&i);
                }
            }
        }
        self.partial.retain(|_, s| !s.is_empty());
        let mut waiting = Vec::new();
        for p in parts {
            let Some(task) = self.tasks.remove(&p) else {
                continue;
            };
            // Its inputs not revoked stay assigned, held.
            for (i, t) in self.shared.inputs.iter().enumerate() {
                if !tps.iter().any(|tp| tp.1 == p && &tp.0 == t) {
                    self.partial.entry(p).or_default().insert(i);
                }
            }
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            let mut cmd = Cmd::Drain { deadline, reply };
            // The queue may be full: wait for room, but not past the deadline.
            loop {
                match task.tx.try_send(cmd) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Full(c)) if Instant::now() < deadline => {
                        cmd = c;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
            waiting.push((p, task, answer));
        }
        let mut tpl = TopicPartitionList::new();
        for (p, task, answer) in waiting {
            let left =
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
            let positions: Vec<Option<i64>> = match answer.recv_timeout(left) {
                Ok(ps) => ps,
                // The task did not answer in time: commit what it had published.
                Err(_) => task
                    .positions
                    .iter()
                    .map(|(a, _)| Some(a.load(Ordering::Acquire)).filter(|&o| o >= 0))
                    .collect(),
            };
            for ((topic, pos), (_, committed)) in self
                .shared
                .inputs
                .iter()
                .zip(&positions)
                .zip(&task.positions)
            {
                if let Some(o) = pos.filter(|&o| o > *committed) {
                    let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                }
            }
            tracing::info!(partition = p, positions = ?positions, "partition drained");
        }
        commit_sync(consumer, &tpl, "revoke");
    }

    /// Commits every position that moved since the last commit. Synchronously: once a second a
    /// round trip to the coordinator is cheap, and the result is known here (and counted) —
    /// librdkafka does not reliably report asynchronous commit results to this consumer.
    fn commit_positions(&mut self, consumer: &BaseConsumer<Ctx>) {
        let mut tpl = TopicPartitionList::new();
        for (&p, task) in self.tasks.iter_mut() {
            for (topic, (position, committed)) in self.shared.inputs.iter().zip(&mut task.positions)
            {
                let o = position.load(Ordering::Acquire);
                if o > *committed {
                    let _ = tpl.add_partition_offset(topic, p, Offset::Offset(o));
                    *committed = o;
                }
            }
        }
        if !commit_sync(consumer, &tpl, "periodic") {
            // Try these positions again at the next interval.
            for (&p, task) in self.tasks.iter_mut() {
                for (topic, (_, committed)) in self.shared.inputs.iter().zip(&mut task.positions) {
                    if tpl.find_partition(topic, p).is_some() {
                        *committed = -1;
                    }
                }
            }
        }
    }

    /// Adds a message to its partition's batch (sent by [`Router::flush`]).
    fn route(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let (topic, partition) = (m.topic(), m.partition());
        let batch = match self
            .batches
            .iter()
            .position(|b| b.0 .1 == partition && b.0 .0 == topic)
        {
            Some(i) => i,
            None => {
                let tp = (topic.to_string(), partition);
                if !self.tasks.contains_key(&partition) {
                    // Not (or no longer) ours: its new owner reads it from the committed offset.
                    return;
                }
                let batch = self.spare_batch();
                self.batches.push((tp, batch));
                self.batches.len() - 1
            }
        };
        let content_type = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key.eq_ignore_ascii_case("content-type"))
                .and_then(|h| h.value)
        });
        let received = self.round_received;
        self.batches[batch]
            .1
            .push(m.offset(), m.key(), m.payload(), content_type, received);
    }

    /// An empty batch with room for a round's share.
    fn spare_batch(&self) -> InBatch {
        InBatch::with_capacity(MAX_BATCH / self.tasks.len().max(1) + 16, 256)
    }

    /// Hands each partition its batch. Waits while a task's queue is full (backpressure).
    fn flush(&mut self) {
        for (tp, msgs) in std::mem::take(&mut self.batches) {
            let (Some(task), Some(i)) = (self.tasks.get(&tp.1), self.input_index(&tp.0)) else {
                continue;
            };
            if task.tx.blocking_send(Cmd::Batch(i, msgs)).is_err() {
                tracing::error!(topic = %tp.0, partition = tp.1, "partition task ended unexpectedly");
            }
        }
    }
}

/// Commits `tpl` (if it holds anything) synchronously, counting the result by `occasion`;
/// false when the commit failed.
fn commit_sync(
    consumer: &BaseConsumer<Ctx>,
    tpl: &TopicPartitionList,
    occasion: &'static str,
) -> bool {
    if tpl.count() == 0 {
        return true;
    }
    match consumer.commit(tpl, CommitMode::Sync) {
        Ok(()) => {
            metrics::commit("ok", occasion);
            true
        }
        Err(e) => {
            metrics::commit("error", occasion);
            tracing::warn!(error = %e, occasion, "commit failed");
            false
        }
    }
}

/// Messages polled in one round, by partition, in offset order.
type Batches = Vec<(Tp, InBatch)>;

/// A partition's queue split off the consumer's, and what wakes its task.
type Split = (SplitQueue<Ctx>, Waker);

/// At most this many messages are gathered before they are handed to the tasks.
const MAX_BATCH: usize = 2048;

/// The consumer's context: librdkafka calls it on the consumer thread, during `poll`.
pub struct Ctx {
    pub router: Mutex<Option<Router>>,
    /// One waker per partition ever assigned, for as long as the client lives: librdkafka
    /// keeps calling a partition queue's callback after the queue's handle is gone.
    pub wakers: Mutex<HashMap<Tp, Waker>>,
}

impl Ctx {
    fn with_router(&self, f: impl FnOnce(&mut Router)) {
        if let Ok(mut g) = self.router.lock() {
            if let Some(r) = g.as_mut() {
                f(r);
            }
        }
    }
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        for (topic, t) in &s.topics {
            for (&p, part) in &t.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    metrics::consumer_lag(topic, p, part.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                metrics::rebalance("revoke");
                self.with_router(|r| r.step(consumer, Input::Revoked(tps(tpl))));
            }
            // Before librdkafka starts fetching them.
            Rebalance::Assign(tpl) => {
                let tps = tps(tpl);
                if let Ok(mut wakers) = self.wakers.lock() {
                    self.with_router(|r| r.split(&tps, &mut wakers));
                }
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                metrics::rebalance("assign");
                self.with_router(|r| {
                    r.step(consumer, Input::Assigned(tps(tpl)));
                    // Split but not started (the lifecycle is stopping): release them.
                    r.splits.clear();
                });
            }
            Rebalance::Error(e) => {
                metrics::rebalance("error");
                tracing::warn!(error = %e, "rebalance error");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Commits are synchronous and counted where they are made.
        tracing::debug!(result = ?result, "commit callback");
    }
}

/// Polls until `stop` is set, then drains every partition, commits, and leaves the group.
pub fn consume(
    consumer: Arc<BaseConsumer<Ctx>>,
    stop: Arc<AtomicBool>,
    commit_interval: Duration,
    producer: super::output::Producer,
) {
    let mut last_commit = Instant::now();
    let with = |f: &mut dyn FnMut(&mut Router)| consumer.context().with_router(f);
    // Before the first poll (which runs the first rebalance).
    with(&mut |r| r.consumer = Arc::downgrade(&consumer));
    while !stop.load(Ordering::Acquire) {
        // One round: wait for a message, then take what else is already there (up to a
        // batch), and hand each partition its share at once.
        let mut timeout = Duration::from_millis(100);
        let mut n = 0;
        let mut stamped = false;
        while n < MAX_BATCH {
            match consumer.poll(timeout) {
                Some(Ok(m)) => with(&mut |r| {
                    if !stamped {
                        r.round_received = Instant::now();
                        stamped = true;
                    }
                    r.route(&m)
                }),
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
            timeout = Duration::ZERO;
            n += 1;
        }
        with(&mut |r| r.flush());
        if last_commit.elapsed() >= commit_interval {
            with(&mut |r| r.commit_positions(&consumer));
            metrics::producer_queue(super::output::queue_depth(&producer));
            last_commit = Instant::now();
        }
    }
    tracing::info!("stopping: draining partitions and committing");
    with(&mut |r| r.step(&consumer, Input::Shutdown));
    // Leaving the group hands the partitions to the others at once (a revoke arrives for
    // partitions already drained: the lifecycle ignores it).
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if consumer.poll(Duration::from_millis(50)).is_none() {
            break;
        }
    }
}
