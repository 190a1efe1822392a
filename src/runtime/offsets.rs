//! Which input offset may be committed: pure bookkeeping, so the exact offsets can be asserted
//! without a broker.
//!
//! A partition's messages are processed in offset order. A message whose outputs (triggers,
//! audit records, a dead letter) are not all acknowledged by the broker holds the commit at
//! its offset; a message without outputs is done once processed. Outputs that no input caused
//! (timers fired by the idle-partition clock) hold the commit at the next offset, which only
//! matters for the order in which they are awaited. Outputs of several messages sent as one
//! (their contributions to the repartition topic, once per batch) hold the commit at the first
//! of them ([`OffsetTracker::hold`]), wherever they sit in the queue.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    /// The next offset after the last message processed.
    next: Option<i64>,
    /// For each group of outputs awaiting acknowledgement, oldest first: the offset the commit
    /// may not pass until it is acknowledged.
    pending: VecDeque<i64>,
    /// The same offsets, counted: the least of them is the commit's bound.
    holds: BTreeMap<i64, usize>,
}

impl OffsetTracker {
    /// Records a processed message; `has_outputs` says whether acknowledgements are awaited
    /// for it (call [`OffsetTracker::acked`] once for it, in order).
    pub fn processed(&mut self, offset: i64, has_outputs: bool) {
        if has_outputs {
            self.hold(offset);
        }
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// Records a group of outputs of messages already processed, the first of them at
    /// `offset`: the commit stays before it until the group is acknowledged.
    pub fn hold(&mut self, offset: i64) {
        self.pending.push_back(offset);
        *self.holds.entry(offset).or_default() += 1;
    }

    /// Records outputs that no input caused (the idle clock's timers).
    pub fn spontaneous(&mut self) {
        // Nothing processed yet: nothing to commit either way; keep the order.
        self.hold(self.next.unwrap_or(i64::MAX));
    }

    /// The oldest awaited group of outputs is acknowledged.
    pub fn acked(&mut self) {
        if let Some(o) = self.pending.pop_front() {
            if let Some(n) = self.holds.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    self.holds.remove(&o);
                }
            }
        }
    }

    /// The offset to commit (the next one to read), if any message was processed.
    pub fn committable(&self) -> Option<i64> {
        let next = self.next?;
        Some(self.holds.keys().next().map_or(next, |&p| p.min(next)))
    }

    /// The next offset after the last message processed.
    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// Groups of outputs not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_commit_before_the_first_message() {
        let t = OffsetTracker::default();
        assert_eq!(t.committable(), None);
    }

    #[test]
    fn messages_without_outputs_commit_as_they_are_processed() {
        let mut t = OffsetTracker::default();
        t.processed(10, false);
        t.processed(11, false);
        assert_eq!(t.committable(), Some(12));
    }

    #[test]
    fn an_unacknowledged_output_holds_the_commit_at_its_offset() {
        let mut t = OffsetTracker::default();
        t.processed(10, false);
        t.processed(11, true);
        t.processed(12, false);
        t.processed(13, true);
        t.processed(14, false);
        assert_eq!(
            t.committable(),
            Some(11),
            "11's trigger is not acknowledged"
        );
        t.acked();
        assert_eq!(t.committable(), Some(13));
        t.acked();
        assert_eq!(t.committable(), Some(15));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn idle_clock_outputs_do_not_hold_back_processed_messages() {
        let mut t = OffsetTracker::default();
        t.processed(5, false);
        t.spontaneous();
        assert_eq!(t.committable(), Some(6));
        t.processed(6, false);
        assert_eq!(
            t.committable(),
            Some(6),
            "the timer's trigger is awaited before what follows it"
        );
        t.acked();
        assert_eq!(t.committable(), Some(7));
    }

    #[test]
    fn a_group_for_several_messages_holds_the_commit_at_the_first() {
        let mut t = OffsetTracker::default();
        for o in 100..200 {
            t.processed(o, o == 150);
        }
        // The batch's contributions, made by messages 100.., sent after 150's trigger.
        t.hold(100);
        assert_eq!(t.committable(), Some(100));
        t.acked();
        assert_eq!(
            t.committable(),
            Some(100),
            "150's trigger acknowledged, the contributions are not"
        );
        t.acked();
        assert_eq!(t.committable(), Some(200));
    }
}
