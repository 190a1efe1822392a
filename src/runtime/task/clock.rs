//! The idle clock (docs/contract.md §3) and the partition's gauges.
//!
//! Once the partition has had no event for `time.idle_timeout`, its watermark moves on with
//! the wall-clock time that passes while it stays idle, counted from its last event — never
//! jumping to "now" — so timers fire and the group stages and the population do not wait for
//! a quiet partition for ever.

use std::time::{Duration, Instant};

use super::PartitionTask;
use crate::metrics;
use crate::time::Ts;

/// How often the (costly) serialized state size is measured.
const STATE_BYTES_EVERY: Duration = Duration::from_secs(30);

pub struct Clock {
    /// When the partition last saw an event (or was restored).
    last_input: Instant,
    /// The watermark then.
    watermark_at_last_input: Option<Ts>,
    last_state_bytes: Option<Instant>,
    /// The engine's count of restored states found undecodable, as last reported.
    corrupt_states: u64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            last_input: Instant::now(),
            watermark_at_last_input: None,
            last_state_bytes: None,
            corrupt_states: 0,
        }
    }

    /// The partition saw an event (or was restored): the idle clock counts from now, with the
    /// engine's watermark `w`.
    pub fn input(&mut self, w: Option<Ts>) {
        self.last_input = Instant::now();
        self.watermark_at_last_input = w;
    }

    /// The watermark the idle clock gives at `now`: once idle for `timeout`, the watermark at
    /// the last event plus the time since (`None`: not idle, or no event yet).
    pub fn idle_watermark(&self, now: Instant, timeout: Duration) -> Option<Ts> {
        let idle = now.saturating_duration_since(self.last_input);
        let w0 = self.watermark_at_last_input?;
        (idle >= timeout).then(|| w0.saturating_add(idle.as_millis() as i64))
    }
}

impl PartitionTask {
    /// The tick: corrupt restored states reported, the idle clock, the watermark published,
    /// the gauges.
    pub(super) fn on_tick(&mut self) {
        let corrupt = self.engine.corrupt_states();
        if corrupt > self.clock.corrupt_states {
            for _ in self.clock.corrupt_states..corrupt {
                metrics::changelog_corrupt();
            }
            tracing::error!(
                topic = %self.labels.topic, partition = self.partition,
                count = corrupt - self.clock.corrupt_states,
                "restored employee state could not be decoded when it was needed; those employees go on from their flags alone (history lost)"
            );
            self.clock.corrupt_states = corrupt;
        }
        if let Some(w) = self
            .clock
            .idle_watermark(Instant::now(), self.shared.idle_timeout)
        {
            if let Some(day) = self.engine.blocked_at(w) {
                // The idle clock closes days too: the population hears of it (and the
                // engine's time stops short of a day it has not closed).
                let waits_for = self.barrier.as_ref().and_then(|b| b.waits_for());
                if waits_for.is_none_or(|d| d < day) {
                    self.publish_close(day);
                }
                self.try_resume();
            }
            self.engine.advance(w, &mut self.outputs);
            self.flush_spontaneous();
        }
        self.publish_watermark(true);
        if self.groups.is_some() {
            metrics::group_gauges(
                &self.labels,
                self.engine.group_watermark(),
                self.engine.buffered_contributions(),
            );
        }
        let lag = self
            .engine
            .max_event_time()
            .map(|t| (crate::runtime::now_ms() - t) as f64 / 1000.0);
        metrics::partition_gauges(
            &self.labels,
            self.engine.watermark(),
            lag,
            self.engine.employees(),
            self.out.in_flight(),
        );
        if self
            .clock
            .last_state_bytes
            .is_none_or(|t| t.elapsed() >= STATE_BYTES_EVERY)
        {
            metrics::state_bytes(&self.labels, self.engine.state_bytes());
            self.clock.last_state_bytes = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_partitions_time_moves_on_from_its_last_event_not_to_now() {
        let mut c = Clock::new();
        let t0 = c.last_input;
        let timeout = Duration::from_secs(5);
        assert_eq!(
            c.idle_watermark(t0 + timeout, timeout),
            None,
            "no event yet"
        );
        c.input(Some(1_000_000));
        let t0 = c.last_input;
        assert_eq!(c.idle_watermark(t0 + Duration::from_secs(4), timeout), None);
        assert_eq!(
            c.idle_watermark(t0 + timeout, timeout),
            Some(1_005_000),
            "the watermark at the last event plus the idle time"
        );
        assert_eq!(
            c.idle_watermark(t0 + Duration::from_secs(60), timeout),
            Some(1_060_000)
        );
        c.input(Some(2_000_000));
        assert_eq!(
            c.idle_watermark(c.last_input, timeout),
            None,
            "an event: not idle"
        );
    }
}
