//! Every output's delivery and its acknowledgement, in one place (after Kafka Streams'
//! `RecordCollector`).
//!
//! A group of records — a message's triggers, audit records or dead letter; a batch's
//! contributions to the repartition topic; what the clocks fired — is handed to a [`Deliver`]
//! and its acknowledgement awaited in the order groups were sent ([`Collector::acknowledged`]).
//! Each group holds the commit of the input it belongs to, in that input's
//! [`OffsetTracker`], until it is acknowledged:
//! - a message's outputs hold it at the message's offset ([`Collector::message`]);
//! - outputs of several messages sent as one hold it at the first of them
//!   ([`Collector::after`]);
//! - outputs no input caused hold the first input at its next offset
//!   ([`Collector::spontaneous`]).
//!
//! So a commit position read from [`Collector::committable`] never passes an output the broker
//! has not acknowledged. The delivery itself is behind [`Deliver`], so the bookkeeping is
//! tested without a broker.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};

use crate::metrics;
use crate::runtime::offsets::OffsetTracker;
use crate::runtime::output::{deliver, InOrder, Producer, Record};

/// How a group of records reaches the broker: the future resolves once every record of the
/// group is acknowledged (deliveries are retried until they are).
pub trait Deliver: Send + Sync {
    fn deliver(&self, records: Vec<Record>) -> BoxFuture<'static, ()>;
}

/// Each record produced on its own, all awaited: triggers, audit records, dead letters,
/// population records (their order across partitions carries no meaning).
pub struct Each(pub Producer);

impl Deliver for Each {
    fn deliver(&self, records: Vec<Record>) -> BoxFuture<'static, ()> {
        let producer = self.0.clone();
        Box::pin(async move {
            futures::future::join_all(records.iter().map(|r| deliver(&producer, r))).await;
        })
    }
}

/// Groups delivered in the order they were sent ([`InOrder`]): the repartition topic's
/// records (a watermark never overtakes the contributions it covers) and checkpoints'
/// changelog records (a record sent again never lands after a later one of the same key).
pub struct Ordered(pub Arc<InOrder>);

impl Deliver for Ordered {
    fn deliver(&self, records: Vec<Record>) -> BoxFuture<'static, ()> {
        self.0.send(records)
    }
}

/// Which delivery a group goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Each,
    Ordered,
}

pub struct Collector {
    each: Arc<dyn Deliver>,
    ordered: Arc<dyn Deliver>,
    /// Groups sent and not acknowledged yet, in the order they were sent.
    pending: FuturesOrdered<BoxFuture<'static, ()>>,
    /// The input each group of `pending` holds, in the same order.
    owners: VecDeque<usize>,
    /// Per input: which offsets may be committed.
    trackers: Vec<OffsetTracker>,
    /// Groups sent, and acknowledged, since the start.
    sent: u64,
    acked: u64,
}

impl Collector {
    pub fn new(inputs: usize, each: Arc<dyn Deliver>, ordered: Arc<dyn Deliver>) -> Collector {
        Collector {
            each,
            ordered,
            pending: FuturesOrdered::new(),
            owners: VecDeque::new(),
            trackers: vec![OffsetTracker::default(); inputs],
            sent: 0,
            acked: 0,
        }
    }

    /// Input `input`'s message at `offset` is processed, with these outputs (perhaps none);
    /// `received` is when it was taken (the latency metric counts from it).
    pub fn message(
        &mut self,
        input: usize,
        offset: i64,
        records: Vec<Record>,
        received: Option<Instant>,
    ) {
        let has_outputs = !records.is_empty();
        self.trackers[input].processed(offset, has_outputs);
        if !has_outputs {
            return;
        }
        let f = self.each.deliver(records);
        let f = match received {
            Some(t) => Box::pin(async move {
                f.await;
                metrics::latency(t.elapsed());
            }),
            None => f,
        };
        self.push(input, f);
    }

    /// Outputs of input `input`'s messages processed already, the first at `first`, sent in
    /// order after every group sent before ([`Via::Ordered`]).
    pub fn after(&mut self, input: usize, first: i64, records: Vec<Record>) {
        self.trackers[input].hold(first);
        let f = self.ordered.deliver(records);
        self.push(input, f);
    }

    /// Outputs that no input caused (the clocks' timers, the population's closes, watermarks):
    /// held against the first input.
    pub fn spontaneous(&mut self, via: Via, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.trackers[0].spontaneous();
        let f = match via {
            Via::Each => self.each.deliver(records),
            Via::Ordered => self.ordered.deliver(records),
        };
        self.push(0, f);
    }

    fn push(&mut self, input: usize, f: BoxFuture<'static, ()>) {
        self.sent += 1;
        self.pending.push_back(f);
        self.owners.push_back(input);
    }

    /// Waits for the oldest group sent to be acknowledged (never resolves with none in
    /// flight). Cancel-safe: a group is counted acknowledged only when this resolves.
    pub async fn acknowledged(&mut self) {
        if self.pending.next().await.is_some() {
            if let Some(i) = self.owners.pop_front() {
                self.trackers[i].acked();
            }
            self.acked += 1;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Groups sent and not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Groups sent since the start.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Groups acknowledged since the start (always the oldest first).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The offset input `input` may commit as far as its outputs go.
    pub fn committable(&self, input: usize) -> Option<i64> {
        self.trackers[input].committable()
    }

    /// The next offset after input `input`'s last message processed.
    pub fn next(&self, input: usize) -> Option<i64> {
        self.trackers[input].next()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// A delivery acknowledged when the test says: each group sent waits for its own
    /// acknowledgement, in any order the test chooses.
    #[derive(Default)]
    pub struct Manual {
        acks: Mutex<Vec<Option<oneshot::Sender<()>>>>,
        pub records: Mutex<Vec<Vec<Record>>>,
    }

    impl Manual {
        /// Acknowledges the `n`th group sent (from 0).
        pub fn ack(&self, n: usize) {
            let tx = self.acks.lock().unwrap()[n]
                .take()
                .expect("acknowledged once");
            tx.send(()).unwrap();
        }

        /// Groups sent so far.
        pub fn sent(&self) -> usize {
            self.acks.lock().unwrap().len()
        }
    }

    impl Deliver for Manual {
        fn deliver(&self, records: Vec<Record>) -> BoxFuture<'static, ()> {
            let (tx, rx) = oneshot::channel();
            self.acks.lock().unwrap().push(Some(tx));
            self.records.lock().unwrap().push(records);
            Box::pin(async move {
                let _ = rx.await;
            })
        }
    }

    pub fn record(n: u8) -> Record {
        Record {
            topic: "out".into(),
            partition: None,
            key: None,
            payload: Some(vec![n]),
            headers: Vec::new(),
            kind: crate::runtime::output::Kind::DeadLetter,
        }
    }

    /// Takes every acknowledgement that is ready now.
    pub fn settle(c: &mut Collector) {
        while c.in_flight() > 0 && c.acknowledged().now_or_never().is_some() {}
    }

    fn collector() -> (Collector, Arc<Manual>, Arc<Manual>) {
        let each = Arc::new(Manual::default());
        let ordered = Arc::new(Manual::default());
        let c = Collector::new(2, each.clone(), ordered.clone());
        (c, each, ordered)
    }

    #[test]
    fn a_commit_never_passes_an_unacknowledged_output() {
        let (mut c, each, _) = collector();
        c.message(0, 10, vec![], None);
        c.message(0, 11, vec![record(11)], None);
        c.message(0, 12, vec![], None);
        c.message(0, 13, vec![record(13)], None);
        c.message(0, 14, vec![], None);
        assert_eq!(
            c.committable(0),
            Some(11),
            "11's output is not acknowledged"
        );
        // 13's acknowledgement comes first: the commit still waits for 11's.
        each.ack(1);
        settle(&mut c);
        assert_eq!(c.committable(0), Some(11));
        assert_eq!(c.acked(), 0, "groups are acknowledged oldest first");
        each.ack(0);
        settle(&mut c);
        assert_eq!(c.committable(0), Some(15));
        assert_eq!((c.sent(), c.acked(), c.in_flight()), (2, 2, 0));
    }

    #[test]
    fn a_batchs_contributions_hold_the_commit_at_its_first_message() {
        let (mut c, each, ordered) = collector();
        for o in 100..110 {
            c.message(0, o, if o == 105 { vec![record(0)] } else { vec![] }, None);
        }
        c.after(0, 100, vec![record(1)]);
        assert_eq!((each.sent(), ordered.sent()), (1, 1));
        each.ack(0);
        settle(&mut c);
        assert_eq!(
            c.committable(0),
            Some(100),
            "the contributions are not acknowledged"
        );
        ordered.ack(0);
        settle(&mut c);
        assert_eq!(c.committable(0), Some(110));
    }

    #[test]
    fn each_input_is_held_by_its_own_outputs() {
        let (mut c, each, _) = collector();
        c.message(0, 5, vec![record(0)], None);
        c.message(1, 7, vec![], None);
        assert_eq!((c.committable(0), c.committable(1)), (Some(5), Some(8)));
        // A timer's output holds the first input at its next offset.
        c.spontaneous(Via::Each, vec![record(1)]);
        c.message(0, 6, vec![], None);
        each.ack(0);
        settle(&mut c);
        assert_eq!(c.committable(0), Some(6), "the timer's output is awaited");
        each.ack(1);
        settle(&mut c);
        assert_eq!(c.committable(0), Some(7));
        c.spontaneous(Via::Each, vec![]);
        assert_eq!(c.in_flight(), 0, "nothing to send holds nothing");
    }
}
