//! A message through decode and the engine, or to the dead-letter topic: bad input never
//! stops the task and is never silently lost (a dead letter with its reason, a metric, and
//! the task moves on).

use std::time::Instant;

use super::collector::Via;
use super::PartitionTask;
use crate::engine::Keys;
use crate::event::{decode, Encoding, Event, Limits, Reject};
use crate::runtime::output::Record;
use crate::runtime::queue::Msg;

/// Contributions held before they are sent even if the watermark has not been published.
const CONTRIBUTIONS_HELD: usize = 8192;

impl PartitionTask {
    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_event_bytes: self.shared.max_event_bytes,
            now: Some(crate::runtime::now_ms()),
            max_future: crate::time::DAY,
        }
    }

    /// A message's event, or why it is a dead letter (the encoding from its `content-type`,
    /// else `input.default_encoding`).
    pub(super) fn decode_with<'m>(
        &self,
        m: &Msg<'m>,
        limits: &Limits,
    ) -> Result<Event<'m>, Reject> {
        let encoding = m
            .content_type
            .and_then(Encoding::from_content_type)
            .unwrap_or(self.shared.default_encoding);
        decode(m.payload.unwrap_or_default(), encoding, m.key, limits)
    }

    /// A batch of input `i`'s messages in offset order: a prefetch chunk at a time, decoded,
    /// its state prefetched, applied — so the chunk's payloads and decoded events are still
    /// in the core's cache when they are applied. `received` is when the batch was taken.
    /// Returns how many were processed: all, unless the population barrier stopped it.
    pub(super) fn process_batch(&mut self, i: usize, msgs: &[Msg<'_>], received: Instant) -> usize {
        let limits = self.limits();
        let mut decoded: Vec<Result<Event<'_>, Reject>> =
            Vec::with_capacity(crate::engine::PREFETCH_BATCH.min(msgs.len()));
        let mut any_event = false;
        let mut done = 0;
        for ms in msgs.chunks(crate::engine::PREFETCH_BATCH) {
            decoded.clear();
            decoded.extend(ms.iter().map(|m| self.decode_with(m, &limits)));
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

    /// One message of input `i`: its event applied (its outputs sent, its contributions
    /// kept for the repartition topic), or its dead letter sent.
    pub(super) fn process(
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
                if let Some(g) = &mut self.groups {
                    g.collect(i, m.offset, &mut self.engine);
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
                records.push(self.shared.sink.dead_letter(
                    reject,
                    source,
                    m.key.map(<[u8]>::to_vec),
                    m.payload.unwrap_or_default().to_vec(),
                    m.content_type.map(<[u8]>::to_vec),
                ));
            }
        }
        self.out.message(i, m.offset, records, Some(received));
    }

    /// After a batch: the positions for the consumer thread (once per batch); if it held an
    /// event, the idle clock counts from now (one batch is one instant) and the group stages
    /// hear of the task's time.
    pub(super) fn after_batch(&mut self, any_event: bool) {
        if self
            .groups
            .as_ref()
            .is_some_and(|g| g.held() >= CONTRIBUTIONS_HELD)
        {
            self.send_contributions();
        }
        self.commit.publish(&self.out);
        if any_event {
            self.clock.input(self.engine.watermark());
            self.publish_watermark(false);
            if self.groups.is_some() {
                crate::metrics::watermarks(&self.labels, self.engine.watermark(), None);
            }
        }
    }

    /// Outputs made by time alone (no input holds them): delivered, held against the first
    /// input.
    pub(super) fn flush_spontaneous(&mut self) {
        let records: Vec<Record> = self
            .outputs
            .drain(..)
            .filter_map(|o| self.shared.sink.record(o))
            .collect();
        self.out.spontaneous(Via::Each, records);
    }
}
