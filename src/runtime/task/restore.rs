//! Restore: the partition's state rebuilt from its changelog partition before any input is
//! taken (Kafka Streams' `StoreChangelogReader`), in a blocking thread so the consumer thread
//! goes on polling (a restore on the poll thread misses `max.poll.interval.ms`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::input::{InBatch, Source};
use super::{Cmd, PartitionTask};
use crate::metrics;

impl PartitionTask {
    /// Restores the partition's state; `/readyz` says 503 meanwhile. Messages the consumer
    /// thread hands over meanwhile are held and processed after. False when the partition was
    /// revoked (or the router went away) first.
    pub(super) async fn restore(
        &mut self,
        rx: &mut mpsc::Receiver<Cmd>,
        sources: &mut Vec<Option<Box<dyn Source>>>,
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
        self.clock.input(self.engine.watermark());
        for (i, b) in held {
            self.polled(i, b);
        }
        true
    }
}
