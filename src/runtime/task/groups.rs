//! Group I/O: the task's side of the team and cohort stages (docs/contract.md §9).
//!
//! Out: the contributions the engine makes for groups, gathered per input and sent as a few
//! records per repartition partition (each holding its input's commit at the first message
//! that made any), and the task's watermark after them (at most every [`WATERMARK_EVERY`]),
//! or, before any event, that the task is empty. In: the repartition partition this task
//! owns — contributions and the other tasks' watermarks — into the engine's group stage.

use std::time::{Duration, Instant};

use super::collector::Via;
use super::PartitionTask;
use crate::engine::stage::From;
use crate::engine::Engine;
use crate::metrics;
use crate::rules::group::Contribution;
use crate::runtime::queue::{Fetched, Msg};
use crate::runtime::repartition::{Message, Repartition};
use crate::time::Ts;

/// How often at most a task publishes its watermark to the repartition topic while it moves
/// (and, before it, the contributions made since the last time: a few records of many
/// contributions each, rather than a few per batch).
const WATERMARK_EVERY: Duration = Duration::from_millis(100);

/// An input's contributions not sent yet, and the offset of the first message that made any.
type Gathered = (Vec<(Contribution, From)>, Option<i64>);

pub struct GroupIo {
    rep: Repartition,
    /// The repartition topic's index among the task's inputs (after the event inputs).
    input: usize,
    /// Per event input, the contributions of the messages processed since they were last
    /// sent, and the first of those messages' offset.
    contributions: Vec<Gathered>,
    /// The watermark last published, and when.
    published: Option<Ts>,
    published_at: Instant,
    /// Whether the task said it is empty and idle (it has had no event).
    said_empty: bool,
    started: Instant,
}

impl GroupIo {
    /// For a task with `events` event inputs (the repartition topic is the next).
    pub fn new(rep: Repartition, events: usize) -> GroupIo {
        GroupIo {
            rep,
            input: events,
            contributions: (0..events).map(|_| (Vec::new(), None)).collect(),
            published: None,
            published_at: Instant::now(),
            said_empty: false,
            started: Instant::now(),
        }
    }

    /// The repartition topic's index among the task's inputs.
    pub fn input(&self) -> usize {
        self.input
    }

    /// The contributions the engine made for input `i`'s message at `offset`.
    pub fn collect(&mut self, i: usize, offset: i64, engine: &mut Engine) {
        let (v, first) = &mut self.contributions[i];
        let before = v.len();
        v.extend(engine.take_contributions());
        if v.len() > before && first.is_none() {
            *first = Some(offset);
        }
    }

    /// Contributions gathered and not sent.
    pub fn held(&self) -> usize {
        self.contributions.iter().map(|c| c.0.len()).sum()
    }
}

impl PartitionTask {
    /// Sends the contributions made since the last call, one record per repartition
    /// partition and input, each holding its input's commit at the first message that made
    /// any (before the watermark that covers them).
    pub(super) fn send_contributions(&mut self) {
        let Some(g) = &mut self.groups else {
            return;
        };
        for (i, (v, first)) in g.contributions.iter_mut().enumerate() {
            let Some(first) = first.take() else {
                continue;
            };
            let records = g.rep.contributions(self.partition as u32, v.drain(..));
            self.out.after(i, first, records);
        }
    }

    /// Publishes the engine's watermark to every partition of the repartition topic, when it
    /// moved (at most every [`WATERMARK_EVERY`] unless `now`). Before any event, once the
    /// task has been idle for `time.idle_timeout`, it says it is empty: group stages then do
    /// not wait for it (docs/contract.md §3's idle partition, for a partition that has
    /// nothing).
    pub(super) fn publish_watermark(&mut self, now: bool) {
        let Some(g) = &self.groups else {
            return;
        };
        if now || g.published_at.elapsed() >= WATERMARK_EVERY {
            // The contributions first: the watermark after them says they are all out.
            self.send_contributions();
        }
        let w = self.engine.watermark();
        let task = self.partition as u32;
        let idle_timeout = self.shared.idle_timeout;
        let Some(g) = &mut self.groups else {
            return;
        };
        let records = match w {
            Some(w) if Some(w) != g.published => {
                if !now && g.published_at.elapsed() < WATERMARK_EVERY {
                    return;
                }
                g.published = Some(w);
                g.rep.watermark(task, Some(w))
            }
            None if !g.said_empty && g.started.elapsed() >= idle_timeout => {
                g.said_empty = true;
                let mut r = g.rep.watermark(task, None);
                if let Some(pop) = &self.shared.population {
                    pop.closed_here(task, &[], crate::rules::population::EMPTY_TASK);
                    r.push(pop.empty(task));
                }
                r
            }
            _ => return,
        };
        g.published_at = Instant::now();
        // After the contributions already sent.
        self.out.spontaneous(Via::Ordered, records);
    }

    /// Records of the repartition topic taken from its own queue.
    pub(super) fn process_repartition_fetched(&mut self, fetched: &Fetched) {
        if fetched.is_empty() {
            return;
        }
        let views: Vec<Msg<'_>> = fetched.iter().filter_map(Result::ok).collect();
        self.process_repartition(&views);
    }

    /// Repartition records (contributions and watermarks) into the group stage.
    pub(super) fn process_repartition(&mut self, msgs: &[Msg<'_>]) {
        let Some(r) = self.groups.as_ref().map(GroupIo::input) else {
            return;
        };
        for m in msgs {
            let pos = (r, m.offset);
            if !self.engine.restored_holds(pos) {
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
            let records = self
                .outputs
                .drain(..)
                .filter_map(|o| self.shared.sink.record(o))
                .collect();
            self.out.message(r, m.offset, records, None);
        }
        self.commit.publish(&self.out);
        metrics::watermarks(&self.labels, None, self.engine.group_watermark());
    }
}
