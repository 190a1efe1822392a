//! One task per input partition number: partition p of every input topic (docs/contract.md
//! §9: they are co-partitioned) through decode and one engine, outputs to the producer,
//! acknowledgements back into each input's commit position.
//!
//! The task is a coordinator: its select loop (below) hands each occurrence to the part that
//! owns it, after Kafka Streams' `StreamTask` and its seams:
//!
//! | part | file | owns |
//! |---|---|---|
//! | inputs | [`input`] | the partition's queues ([`Source`]) or the batches the consumer thread polled, and what is buffered |
//! | the event-time merge | [`merge`] | with several input topics, which input's message goes next (Kafka Streams' `PartitionGroup`) |
//! | decode, apply, dead letters | [`process`] | a message through the engine, or to the dead-letter topic |
//! | the population barrier | [`barrier`] | input held at a day's end until the population has closed the day |
//! | the output collector | [`collector`] | every output's delivery and its acknowledgement into its input's `OffsetTracker` (`RecordCollector`) |
//! | checkpoints and commits | [`checkpoint`] | changelog checkpoints after the outputs before them, and the commit positions |
//! | group I/O | [`groups`] | contributions and watermarks out to the repartition topic, repartition records in |
//! | the idle clock and gauges | [`clock`] | time moving on for a quiet partition, the partition's gauges |
//! | restore | [`restore`] | the state rebuilt from the changelog before any input |

mod barrier;
mod checkpoint;
mod clock;
mod collector;
mod groups;
mod input;
mod merge;
mod process;
mod restore;

pub use input::{InBatch, Source, Watermarks};
pub use merge::MAX_MERGE_WAIT;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::changelog::Changelog;
use super::output::{InOrder, Sink};
use super::queue::{Fetched, Waker};
use crate::engine::{Engine, Output};
use crate::event::Encoding;
use crate::metrics::{self, PartitionLabels};

use barrier::Barrier;
use checkpoint::{Checkpoints, Commit};
use clock::Clock;
use collector::{Collector, Each, Ordered};
use groups::GroupIo;
use input::{Input, Pulled};

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

/// At most this many messages with unacknowledged outputs per partition; beyond it the task
/// waits for acknowledgements before taking more input (its queue then fills up to librdkafka's
/// prefetch limits and the partition's fetching pauses: backpressure instead of unbounded
/// memory).
const MAX_IN_FLIGHT: usize = 10_000;

/// How often the idle clock and the gauges are looked at.
const TICK: Duration = Duration::from_millis(500);

/// Merging: how often a held-back merge looks again (whether the empty input caught up).
const HOLD_RETRY: Duration = Duration::from_millis(20);

pub struct PartitionTask {
    partition: i32,
    labels: PartitionLabels,
    shared: Shared,
    engine: Engine,
    /// The engine's outputs of the step being processed (reused).
    outputs: Vec<Output>,
    /// Per input topic, in order.
    inputs: Vec<Input>,
    /// How many inputs carry events (the first ones; the repartition topic is after them).
    events: usize,
    /// The inputs' high watermarks (merging: is an input caught up?).
    watermarks: Watermarks,
    out: Collector,
    commit: Commit,
    groups: Option<GroupIo>,
    barrier: Option<Barrier>,
    clock: Clock,
}

impl PartitionTask {
    /// The task of partition `partition`; `positions` are its inputs' commit positions (one
    /// per input topic, in order), read by the consumer thread; `watermarks` reads an input's
    /// watermarks as librdkafka's fetches last reported them.
    pub fn new(
        partition: i32,
        shared: Shared,
        positions: Vec<Arc<AtomicI64>>,
        watermarks: Watermarks,
    ) -> Self {
        let inputs: Vec<Input> = shared.inputs.iter().map(|t| Input::new(t)).collect();
        // Task-wide gauges carry the first input topic's name.
        let first = shared.inputs.first().map_or("", String::as_str);
        let events = shared.event_inputs();
        let producer = shared.sink.producer.clone();
        PartitionTask {
            partition,
            labels: PartitionLabels::new(first, partition),
            engine: shared.engine_for(partition),
            outputs: Vec::new(),
            events,
            watermarks,
            out: Collector::new(
                inputs.len(),
                Arc::new(Each(producer.clone())),
                Arc::new(Ordered(InOrder::new(producer))),
            ),
            commit: Commit::new(
                positions,
                shared.changelog.as_ref().map(|c| {
                    Checkpoints::new(
                        inputs.len(),
                        Arc::new(Ordered(InOrder::new(c.producer.clone()))),
                    )
                }),
            ),
            groups: shared.repartition.clone().map(|r| GroupIo::new(r, events)),
            barrier: shared
                .population
                .clone()
                .map(|p| Barrier::new(p, partition as u32)),
            clock: Clock::new(),
            inputs,
            shared,
        }
    }

    fn merging(&self) -> bool {
        self.events > 1
    }

    /// Whether the task waits for the population to close a day before it takes more input.
    fn waiting(&self) -> bool {
        self.barrier.as_ref().is_some_and(Barrier::waiting)
    }

    /// Runs the partition until it is drained or its channel closes; `assigned` is when the
    /// partition was assigned (its restore time ends as the task starts taking input).
    /// `sources` has, per input, its own queue if it could be split off; an input without one
    /// gets the messages the consumer thread polled, over `rx`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        assigned: Instant,
        mut sources: Vec<Option<Box<dyn Source>>>,
    ) {
        if self.shared.changelog.is_some() && !self.restore(&mut rx, &mut sources).await {
            // Revoked (or the router gone) while restoring.
            metrics::partition_revoked(&self.labels);
            return;
        }
        metrics::restored(assigned.elapsed());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checkpoint = self.checkpoint_interval();
        let wakers: Vec<Waker> = sources
            .iter()
            .flatten()
            .map(|s| Arc::clone(s.waker()))
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
            let room = self.out.in_flight() < MAX_IN_FLIGHT;
            let waiting = self.waiting();
            tokio::select! {
                biased;
                // Acknowledgements first, so memory cannot grow without bound.
                () = self.out.acknowledged(), if self.out.in_flight() > 0 => self.output_acked(),
                Some(written) = self.commit.checkpoint_acked(), if self.commit.sending() => {
                    metrics::changelog_written(&written);
                    self.commit.publish(&self.out);
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
                        let _ = reply.send(self.commit.positions(&self.out));
                        break;
                    }
                    None => break,
                },
                _ = barrier::moved(&mut self.barrier), if waiting => {
                    if self.try_resume() {
                        let p = self.resume_input();
                        more = any_source;
                        held = hold(p);
                    }
                },
                _ = input::wake(&wakers, more), if room && any_source && !waiting => {
                    let p = self.pull(&sources, &mut fetched);
                    more = p.full || (p.progressed && self.merging());
                    held = hold(p);
                },
                _ = sleep_until(held), if room && held.is_some() && !waiting => {
                    let p = self.pull(&sources, &mut fetched);
                    more = p.full || (p.progressed && any_source);
                    held = hold(p);
                },
            }
        }
        if self.waiting() {
            metrics::population_waiting(false);
        }
        metrics::partition_revoked(&self.labels);
    }

    /// An output group was acknowledged: checkpoints waiting for it may go, and the commit
    /// positions move.
    fn output_acked(&mut self) {
        self.commit.send_ready(&self.out);
        self.commit.publish(&self.out);
    }

    /// Awaits every output and a last checkpoint until `deadline`; what is not acknowledged by
    /// then is not committed (the partition's next owner reads it again).
    async fn drain(&mut self, deadline: Instant) {
        self.send_contributions();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, async {
            while self.out.in_flight() > 0 {
                self.out.acknowledged().await;
            }
            // The last checkpoint: everything processed, so the next owner restores it all.
            self.commit.send_ready(&self.out);
            self.checkpoint();
            while let Some(written) = self.commit.checkpoint_acked().await {
                metrics::changelog_written(&written);
                // (Published at once: should the answer come too late, the consumer thread
                // commits what the atomics say.)
                self.commit.publish(&self.out);
            }
        })
        .await;
        self.commit.publish(&self.out);
        if self.out.in_flight() > 0 {
            tracing::warn!(
                topic = %self.labels.topic,
                partition = self.partition,
                unacknowledged = self.out.in_flight(),
                "drain deadline passed; committing only what the broker acknowledged (the rest is redelivered)"
            );
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
