//! The task's inputs: partition p of each input topic, read from its own librdkafka queue
//! ([`Source`]) or, when the queue could not be split off, as batches the consumer thread
//! polled ([`InBatch`]); and what is taken but not processed yet ([`Buffered`]: merging, or
//! held back by the population barrier). With one input the task processes its messages in
//! offset order as they come; with several, [`super::merge`] orders them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::ConsumerContext;

use super::PartitionTask;
use crate::metrics;
use crate::runtime::queue::{Fetched, Msg, SplitQueue, Viewed, Waker};

/// At most this many messages are taken from the partition's queue at once (then the task
/// yields to the others on its worker before taking more).
pub const TAKE: usize = 1024;

/// One input partition's own librdkafka queue, as the task reads it.
pub trait Source: Send {
    /// Takes up to `max` messages (or errors librdkafka put in their place) into `into`.
    fn take(&self, into: &mut Fetched, max: usize);
    /// What wakes the task when the queue goes from empty to non-empty.
    fn waker(&self) -> &Waker;
}

impl<C: ConsumerContext + 'static> Source for (SplitQueue<C>, Waker) {
    fn take(&self, into: &mut Fetched, max: usize) {
        self.0.take(into, max);
    }

    fn waker(&self) -> &Waker {
        &self.1
    }
}

/// Input `i`'s (low, high) watermarks as librdkafka's last fetch reported them (`None`: not
/// known yet). Handed to the task by the consumer at assignment.
pub type Watermarks = Arc<dyn Fn(usize) -> Option<(i64, i64)> + Send + Sync>;

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
/// partition's queue could not be split off; see [`crate::runtime::queue`]), in offset order,
/// with their bytes in one buffer.
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

    pub fn views(&self) -> Vec<Msg<'_>> {
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

    /// When the batch was taken.
    pub fn received(&self) -> Instant {
        self.received.unwrap_or_else(Instant::now)
    }
}

/// Messages taken from an input but not processed yet: merging, or held back by the population
/// barrier.
pub enum Buffered {
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
    pub fn rest(&self) -> impl Iterator<Item = (Msg<'_>, Instant)> + '_ {
        let (rest, received): (Vec<Msg<'_>>, Instant) = match self {
            Buffered::Fetched {
                msgs,
                received,
                done,
            } => (msgs.views()[*done..].to_vec(), *received),
            Buffered::Polled { batch, done } => (
                batch.views().into_iter().skip(*done).collect(),
                batch.received(),
            ),
        };
        rest.into_iter().map(move |m| (m, received))
    }

    pub fn len(&self) -> usize {
        match self {
            Buffered::Fetched { msgs, .. } => msgs.views().len(),
            Buffered::Polled { batch, .. } => batch.msgs.len(),
        }
    }

    pub fn done(&mut self) -> &mut usize {
        match self {
            Buffered::Fetched { done, .. } | Buffered::Polled { done, .. } => done,
        }
    }
}

/// Partition p of one input topic, as its task reads it.
pub struct Input {
    pub topic: String,
    pub counters: metrics::EventCounters,
    /// Messages taken and not processed yet, oldest first.
    pub buffered: VecDeque<Buffered>,
    /// Merging: since when this input, with nothing buffered, holds the others back.
    pub holding_since: Option<Instant>,
}

impl Input {
    pub fn new(topic: &str) -> Input {
        Input {
            topic: topic.to_owned(),
            counters: metrics::EventCounters::new(topic),
            buffered: VecDeque::new(),
            holding_since: None,
        }
    }

    pub fn buffered(&self) -> bool {
        self.buffered.iter().any(|b| b.len() > 0)
    }
}

/// What one look at the queues did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pulled {
    /// A take filled its batch: more may be waiting without a wake-up.
    pub full: bool,
    /// Messages were processed.
    pub progressed: bool,
    /// Merging: an input with nothing buffered holds the others back.
    pub held: bool,
}

impl PartitionTask {
    /// Takes what the inputs' own queues hold and processes it: with one input, a batch in
    /// offset order; merging, into the inputs' buffers and then merged.
    pub(super) fn pull(
        &mut self,
        sources: &[Option<Box<dyn Source>>],
        fetched: &mut Fetched,
    ) -> Pulled {
        let mut rep_full = false;
        if let Some(Some(queue)) = self.groups.as_ref().and_then(|g| sources.get(g.input())) {
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

    fn pull_events(
        &mut self,
        sources: &[Option<Box<dyn Source>>],
        fetched: &mut Fetched,
    ) -> Pulled {
        if !self.merging() {
            if self.inputs[0].buffered() {
                // What the population barrier held back goes first.
                return self.resume_input();
            }
            let Some(Some(queue)) = sources.first() else {
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
            let Some(queue) = source else { continue };
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
    pub(super) fn polled(&mut self, i: usize, batch: InBatch) -> Pulled {
        if i >= self.inputs.len() {
            return Pulled::default();
        }
        if self.groups.as_ref().is_some_and(|g| g.input() == i) {
            self.process_repartition(&batch.views());
            return Pulled {
                progressed: true,
                ..Pulled::default()
            };
        }
        if !self.merging() {
            if self.waiting() || self.inputs[i].buffered() {
                // Behind what the population barrier holds back.
                self.inputs[i]
                    .buffered
                    .push_back(Buffered::Polled { batch, done: 0 });
                return self.resume_input();
            }
            let views = batch.views();
            let n = self.process_batch(i, &views, batch.received());
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
    pub(super) fn resume_input(&mut self) -> Pulled {
        if self.merging() {
            return self.merge();
        }
        let mut progressed = false;
        while !self.waiting() {
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
                    (self.process_batch(0, rest, batch.received()), rest.len())
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
}

/// An error librdkafka put in a partition's queue in place of a message (an offset reset, a
/// broker error): not input, it holds no offset.
pub fn consumer_error(topic: &str, partition: i32, error: &str) {
    tracing::warn!(
        topic,
        partition,
        error,
        "consumer error on the partition's queue"
    );
}

/// Ready at once when `more`; else when one of the queues' wakers fires.
pub async fn wake(wakers: &[Waker], more: bool) {
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
