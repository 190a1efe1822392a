//! Checkpoints and commit positions (docs/contract.md §9; after quix-streams' order: outputs →
//! changelog → commit).
//!
//! A checkpoint is the engine's changes since the last one, as of the input positions it
//! covers. It is staged behind the output groups sent before it and goes to the changelog
//! once they are all acknowledged ([`Commit::send_ready`]); once its own records are
//! acknowledged, its positions are the inputs' commit positions. Without a changelog the
//! commit position is what the outputs allow ([`Collector::committable`]). Either way a
//! commit never passes an unacknowledged output, nor (with a changelog) state that is not
//! durable.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};

use super::collector::{Collector, Deliver};
use super::PartitionTask;
use crate::engine::changelog::Written;
use crate::runtime::output::Record;

/// A checkpoint waiting for the outputs before it to be acknowledged, then for its own records.
pub struct Staged {
    /// Output groups sent before it: it is sent once that many are acknowledged.
    pub after: u64,
    /// The input positions it covers (per input topic, the next offset to read; -1: none).
    pub through: Vec<i64>,
    pub records: Vec<Record>,
    pub written: Written,
}

/// The checkpoints of a task with a changelog.
pub struct Checkpoints {
    out: Arc<dyn Deliver>,
    /// Waiting for the outputs before them, oldest first.
    staged: VecDeque<Staged>,
    /// Being delivered: each yields its input positions.
    sending: FuturesOrdered<BoxFuture<'static, (Vec<i64>, Written)>>,
    /// Per input: the position of the last checkpoint the broker acknowledged.
    checkpointed: Vec<Option<i64>>,
}

impl Checkpoints {
    pub fn new(inputs: usize, out: Arc<dyn Deliver>) -> Checkpoints {
        Checkpoints {
            out,
            staged: VecDeque::new(),
            sending: FuturesOrdered::new(),
            checkpointed: vec![None; inputs],
        }
    }
}

/// The inputs' commit positions, and the checkpoints they follow with a changelog.
pub struct Commit {
    /// Per input, read by the consumer thread (-1: nothing yet).
    positions: Vec<Arc<AtomicI64>>,
    checkpoints: Option<Checkpoints>,
}

impl Commit {
    pub fn new(positions: Vec<Arc<AtomicI64>>, checkpoints: Option<Checkpoints>) -> Commit {
        Commit {
            positions,
            checkpoints,
        }
    }

    /// The offset the consumer may commit for input `i`: with a changelog, the last
    /// acknowledged checkpoint's (the state up to it is durable); without, what the outputs
    /// allow.
    pub fn position(&self, i: usize, out: &Collector) -> Option<i64> {
        match &self.checkpoints {
            Some(c) => c.checkpointed[i],
            None => out.committable(i),
        }
    }

    pub fn positions(&self, out: &Collector) -> Vec<Option<i64>> {
        (0..self.positions.len())
            .map(|i| self.position(i, out))
            .collect()
    }

    /// Hands the positions to the consumer thread.
    pub fn publish(&self, out: &Collector) {
        for (i, p) in self.positions.iter().enumerate() {
            if let Some(o) = self.position(i, out) {
                p.store(o, Ordering::Release);
            }
        }
    }

    /// Stages a checkpoint behind every output group sent so far.
    pub fn stage(
        &mut self,
        through: Vec<i64>,
        records: Vec<Record>,
        written: Written,
        out: &Collector,
    ) {
        let Some(c) = &mut self.checkpoints else {
            return;
        };
        c.staged.push_back(Staged {
            after: out.sent(),
            through,
            records,
            written,
        });
        self.send_ready(out);
    }

    /// Sends the checkpoints whose outputs are all acknowledged, in order.
    pub fn send_ready(&mut self, out: &Collector) {
        let Some(c) = &mut self.checkpoints else {
            return;
        };
        while c.staged.front().is_some_and(|s| s.after <= out.acked()) {
            let Some(s) = c.staged.pop_front() else {
                break;
            };
            let delivered = c.out.deliver(s.records);
            c.sending.push_back(Box::pin(async move {
                delivered.await;
                (s.through, s.written)
            }));
        }
    }

    /// Whether a checkpoint's records are being delivered.
    pub fn sending(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| !c.sending.is_empty())
    }

    /// Waits for the oldest checkpoint being delivered: its positions become the commit's;
    /// what it wrote is returned (`None`: none is being delivered). Cancel-safe.
    pub async fn checkpoint_acked(&mut self) -> Option<Written> {
        let c = self.checkpoints.as_mut()?;
        let (through, written) = c.sending.next().await?;
        for (cp, &t) in c.checkpointed.iter_mut().zip(&through) {
            if t >= 0 {
                *cp = Some(cp.map_or(t, |c| c.max(t)));
            }
        }
        Some(written)
    }
}

impl PartitionTask {
    /// The checkpoint clock: every `kafka.commit_interval`, partitions at different phases of
    /// it, so an instance's checkpoints do not reach the broker as one burst every interval
    /// (on the mock cluster, a burst of every employee's record each second held triggers' p99
    /// latency at ~150 ms).
    pub(super) fn checkpoint_interval(&self) -> tokio::time::Interval {
        let every = self
            .shared
            .changelog
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.interval);
        let phase = every.mul_f64((self.partition.rem_euclid(16)) as f64 / 16.0);
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    }

    /// Input positions of the last checkpoint restored or written for these input topics
    /// (-1: none for that input).
    pub(super) fn restored_through(&self) -> Vec<i64> {
        let n = self.inputs.len();
        self.engine
            .last_checkpoint()
            .filter(|c| c.topics.as_slice() == &*self.shared.inputs)
            .map_or_else(|| vec![-1; n], |c| c.through.clone())
    }

    /// Writes what changed since the last checkpoint: its records wait for the outputs sent
    /// before them, then go to the changelog partition of this partition.
    pub(super) fn checkpoint(&mut self) {
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
        let through: Vec<i64> = (0..self.inputs.len())
            .map(|i| {
                let r = restored.get(i).copied().unwrap_or(-1);
                self.out.next(i).map_or(r, |n| n.max(r))
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
        self.commit.stage(through, records, written, &self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::collector::tests::{record, settle, Manual};
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_checkpoint_waits_for_the_outputs_before_it_and_the_commit_for_the_checkpoint() {
        let (each, ordered, changelog) = (
            Arc::new(Manual::default()),
            Arc::new(Manual::default()),
            Arc::new(Manual::default()),
        );
        let mut out = Collector::new(1, each.clone(), ordered);
        let position = Arc::new(AtomicI64::new(-1));
        let mut commit = Commit::new(
            vec![position.clone()],
            Some(Checkpoints::new(1, changelog.clone())),
        );
        out.message(0, 5, vec![record(5)], None);
        out.message(0, 6, vec![], None);
        commit.stage(vec![7], vec![record(0)], Written::default(), &out);
        assert_eq!(changelog.sent(), 0, "5's output is not acknowledged");
        // An output after the checkpoint does not hold it.
        out.message(0, 7, vec![record(7)], None);
        each.ack(0);
        settle(&mut out);
        commit.send_ready(&out);
        assert_eq!(
            changelog.sent(),
            1,
            "the outputs before it are acknowledged"
        );
        commit.publish(&out);
        assert_eq!(
            commit.position(0, &out),
            None,
            "the checkpoint is not acknowledged"
        );
        assert_eq!(position.load(Ordering::Acquire), -1);
        assert!(commit.checkpoint_acked().now_or_never().is_none());
        changelog.ack(0);
        let written = commit.checkpoint_acked().now_or_never().flatten();
        assert_eq!(written, Some(Written::default()));
        commit.publish(&out);
        assert_eq!(
            commit.position(0, &out),
            Some(7),
            "the checkpoint's position, though 7's output is not acknowledged: the state through 6 is durable"
        );
        assert_eq!(position.load(Ordering::Acquire), 7);
    }

    #[test]
    fn checkpoints_go_in_order_and_positions_never_move_back() {
        let changelog = Arc::new(Manual::default());
        let out = Collector::new(1, Arc::new(Manual::default()), Arc::new(Manual::default()));
        let mut commit = Commit::new(
            vec![Arc::new(AtomicI64::new(-1))],
            Some(Checkpoints::new(1, changelog.clone())),
        );
        commit.stage(vec![10], vec![record(1)], Written::default(), &out);
        commit.stage(vec![20], vec![record(2)], Written::default(), &out);
        assert_eq!(changelog.sent(), 2);
        // The later checkpoint's records are acknowledged first: it waits for the earlier.
        changelog.ack(1);
        assert!(commit.checkpoint_acked().now_or_never().is_none());
        changelog.ack(0);
        assert!(commit.checkpoint_acked().now_or_never().flatten().is_some());
        assert_eq!(commit.position(0, &out), Some(10));
        assert!(commit.checkpoint_acked().now_or_never().flatten().is_some());
        assert_eq!(commit.position(0, &out), Some(20));
        // An input none of whose messages a checkpoint covers (-1) keeps its position.
        commit.stage(vec![-1], vec![record(3)], Written::default(), &out);
        changelog.ack(2);
        assert!(commit.checkpoint_acked().now_or_never().flatten().is_some());
        assert_eq!(commit.position(0, &out), Some(20));
        // Nor does one that has none yet: it stays without a position to commit.
        let changelog = Arc::new(Manual::default());
        let out = Collector::new(2, Arc::new(Manual::default()), Arc::new(Manual::default()));
        let mut commit = Commit::new(
            vec![Arc::new(AtomicI64::new(-1)), Arc::new(AtomicI64::new(-1))],
            Some(Checkpoints::new(2, changelog.clone())),
        );
        commit.stage(vec![-1, 5], vec![record(4)], Written::default(), &out);
        changelog.ack(0);
        assert!(commit.checkpoint_acked().now_or_never().flatten().is_some());
        assert_eq!(commit.positions(&out), vec![None, Some(5)]);
    }

    #[test]
    fn without_a_changelog_the_commit_is_what_the_outputs_allow() {
        let each = Arc::new(Manual::default());
        let mut out = Collector::new(1, each.clone(), Arc::new(Manual::default()));
        let commit = Commit::new(vec![Arc::new(AtomicI64::new(-1))], None);
        out.message(0, 3, vec![record(3)], None);
        out.message(0, 4, vec![], None);
        assert_eq!(commit.position(0, &out), Some(3));
        each.ack(0);
        settle(&mut out);
        assert_eq!(commit.positions(&out), vec![Some(5)]);
    }
}
