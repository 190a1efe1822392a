//! The population barrier (docs/contract.md §8: the population's figures for a day are final
//! only once every task has closed its share of it).
//!
//! With the population topic, a task stops taking input before an event that would move its
//! engine's watermark past the end of a day after the last one the population has closed: it
//! closes its share through that day ([`Barrier::close`]: the records to publish), and waits
//! until the population reader says every task has closed it ([`Barrier::resume`]: the
//! figures go to the engine, which moves its time on). The idle clock closes days too. The
//! same decisions in every task, whatever the timing, are what make `run` equal `replay`.

use std::sync::Arc;

use tokio::sync::watch;

use super::collector::Via;
use super::PartitionTask;
use crate::engine::{Engine, Output};
use crate::metrics;
use crate::runtime::output::Record;
use crate::runtime::population::Population;
use crate::time::Ts;

pub struct Barrier {
    pop: Arc<Population>,
    /// The population's last closed day as the reader moves it.
    closed: watch::Receiver<Option<i64>>,
    /// This task's index among the population's tasks (its partition).
    task: u32,
    /// The day the task waits for the population to close before it takes more input.
    waiting: Option<i64>,
}

impl Barrier {
    pub fn new(pop: Arc<Population>, task: u32) -> Barrier {
        Barrier {
            closed: pop.closed.clone(),
            pop,
            task,
            waiting: None,
        }
    }

    /// Whether the task waits for the population.
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// The day the task waits for, if any.
    pub fn waits_for(&self) -> Option<i64> {
        self.waiting
    }

    /// Closes the engine's share through `day` and tells this instance's population table at
    /// once; returns the records that tell the topic (the other instances, and restarts). The
    /// task waits from now on.
    pub fn close(&mut self, engine: &mut Engine, day: i64) -> Vec<Record> {
        engine.close_share(day);
        let (shares, closed) = engine.take_shares();
        let closed = closed.unwrap_or(day);
        self.pop.closed_here(self.task, &shares, closed);
        let records = self.pop.records(self.task, shares, closed);
        if self.waiting.is_none() {
            metrics::population_waiting(true);
        }
        self.waiting = Some(day);
        records
    }

    /// Whether the population has closed the day the task waits for (true when it waits for
    /// none): then its figures go to the engine, whose outputs go to `out`, and the task may
    /// take input again.
    pub fn resume(&mut self, engine: &mut Engine, out: &mut Vec<Output>) -> bool {
        let Some(day) = self.waiting else {
            return true;
        };
        let Some(through) = (*self.closed.borrow()).filter(|&t| t >= day) else {
            return false;
        };
        let figures = self
            .pop
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .figures(engine.population_closed_through(), through);
        engine.population_closed(through, figures, out);
        self.waiting = None;
        metrics::population_waiting(false);
        for (d, source) in engine.take_gaps() {
            if metrics::source_gap(d, source) {
                tracing::warn!(
                    source = source.as_str(), day = %crate::time::format_date(d),
                    "feed gap: far fewer employees sent this rollup than on the same weekday before; the day is left out of its windows for everyone"
                );
            }
        }
        true
    }
}

/// The population reader moved the population's closed day (never, without a barrier).
pub async fn moved(b: &mut Option<Barrier>) {
    if let Some(b) = b {
        if b.closed.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

impl PartitionTask {
    /// Whether input must stop before an event at `t` (see the module's comment). The task
    /// then publishes its share of the days it closes and waits ([`PartitionTask::try_resume`]).
    pub(super) fn hold_for_population(&mut self, t: Ts) -> bool {
        if self.barrier.is_none() {
            return false;
        }
        loop {
            let Some(day) = self.engine.blocked_by(t) else {
                return false;
            };
            if self.barrier.as_ref().and_then(Barrier::waits_for) != Some(day) {
                self.publish_close(day);
            }
            if !self.try_resume() {
                return true;
            }
        }
    }

    /// Closes the task's share through `day`, publishes it, and waits for the population.
    pub(super) fn publish_close(&mut self, day: i64) {
        let Some(b) = &mut self.barrier else {
            return;
        };
        let records = b.close(&mut self.engine, day);
        self.out.spontaneous(Via::Each, records);
        // The group stages see this task's time while it waits (as often as ever).
        self.publish_watermark(false);
    }

    /// Whether the population has closed the day the task waits for (see [`Barrier::resume`]);
    /// the outputs that made go out.
    pub(super) fn try_resume(&mut self) -> bool {
        let Some(b) = &mut self.barrier else {
            return true;
        };
        let resumed = b.resume(&mut self.engine, &mut self.outputs);
        if resumed {
            self.flush_spontaneous();
        }
        resumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{day, H};
    use crate::event::Kind;
    use crate::time::{day_of, HOUR};

    fn engine() -> Engine {
        let mut e = H::new().engine;
        e.publish_population();
        e
    }

    /// What a task does before an event at `t`: the day it must close first, if any.
    fn close_before(b: &mut Barrier, e: &mut Engine, t: Ts) -> Option<i64> {
        let day = e.blocked_by(t)?;
        assert!(
            !b.close(e, day).is_empty(),
            "the share and the close are published"
        );
        Some(day)
    }

    #[test]
    fn input_waits_at_a_days_end_until_every_task_has_closed_the_day() {
        let pop = Arc::new(Population::local(2));
        let (mut b0, mut b1) = (Barrier::new(pop.clone(), 0), Barrier::new(pop.clone(), 1));
        let (mut e0, mut e1) = (engine(), engine());
        let mut h = H::new();
        let mut out = Vec::new();
        let collab = || Kind::CollabActivity {
            messages: 5,
            meetings: 0,
        };
        // Before its first event a task closes the day before it, as every task does.
        let t = day(10) + HOUR;
        let before = close_before(&mut b0, &mut e0, t).expect("nothing closed yet");
        assert_eq!(before, day_of(t) - 1);
        assert!(
            !b0.resume(&mut e0, &mut out),
            "task 1 has not closed the day"
        );
        assert_eq!(close_before(&mut b1, &mut e1, t), Some(before));
        assert!(b0.resume(&mut e0, &mut out) && b1.resume(&mut e1, &mut out));
        let ev = h.event("e1", t, collab());
        e0.apply(&ev, &mut out);
        // The rest of the day goes without waiting.
        assert_eq!(e0.blocked_by(day(10) + 20 * HOUR), None);
        // An event two days on would pass the end of day 10 and of day 11.
        let later = day(12) + 2 * HOUR;
        let blocked = close_before(&mut b0, &mut e0, later).expect("a day to close first");
        assert!(blocked > before);
        assert!(b0.waiting());
        assert!(!b0.resume(&mut e0, &mut out), "task 1 has not closed it");
        assert!(b0.waiting());
        // Task 1 closes it (its idle clock, say): the population has it, and task 0 goes on.
        b1.close(&mut e1, blocked);
        assert!(b0.resume(&mut e0, &mut out), "every task closed the day");
        assert!(!b0.waiting());
        assert_eq!(e0.population_closed_through(), Some(blocked));
        assert_eq!(e0.blocked_by(later), None, "the event may go now");
    }

    #[test]
    fn a_task_waiting_for_nothing_may_resume() {
        let pop = Arc::new(Population::local(1));
        let mut b = Barrier::new(pop, 0);
        let mut e = engine();
        assert!(b.resume(&mut e, &mut Vec::new()));
        assert!(!b.waiting());
    }
}
