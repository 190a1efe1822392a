//! The engine's side of the population barrier (docs/contract.md §8): in `run` with the
//! population topic, the engine's time may not pass the end of a day after the last one the
//! whole population has closed; its share of each day goes out, and the population's figures
//! come back, in the same order whatever the partitioning — so `run` equals `replay`.

use super::*;

impl Engine {
    /// Publish mode for the population (`run` with the population topic): this engine's
    /// shares go out ([`Engine::take_shares`]) and the population's figures come back
    /// ([`Engine::population_closed`]).
    pub fn publish_population(&mut self) {
        self.pop.local = false;
    }

    /// In `run` with the population topic: the day the population must have closed before a
    /// watermark `w` may be reached (`None`: it may now).
    pub fn blocked_at(&self, w: Ts) -> Option<i64> {
        (!self.pop.local && w > self.watermark && w > self.pop.limit())
            .then(|| crate::time::day_of(w) - 1)
    }

    /// [`Engine::blocked_at`] for an event at `t` (its watermark, if it moves it).
    pub fn blocked_by(&self, t: Ts) -> Option<i64> {
        if self.max_event_time.is_some_and(|m| t <= m) {
            return None;
        }
        self.blocked_at(t.saturating_sub(self.ctx.rules.allowed_lateness))
    }

    /// Closes this engine's population share through `day` (its watermark is about to pass
    /// the day's end); the shares to publish are then in [`Engine::take_shares`].
    pub fn close_share(&mut self, day: i64) {
        self.pop.close_share(day);
    }

    /// This engine's closed shares not handed out yet, and the last day closed.
    pub fn take_shares(
        &mut self,
    ) -> (
        Vec<(i32, crate::rules::population::DayFigures)>,
        Option<i64>,
    ) {
        (
            std::mem::take(&mut self.pop.outbox),
            self.pop.acc.closed_through.map(i64::from),
        )
    }

    /// The population closed every day through `through`, with these figures (each day's sum
    /// over every task): the engine's time may move on to the end of the next day.
    pub fn population_closed(
        &mut self,
        through: i64,
        days: impl IntoIterator<Item = (i32, crate::rules::population::DayFigures)>,
        out: &mut Vec<Output>,
    ) {
        if self.pop.closed.is_some_and(|c| c >= through) {
            return;
        }
        let after = self.pop.closed;
        for (d, f) in days {
            if after.is_none_or(|c| d as i64 > c) && d as i64 <= through {
                self.pop.figures.set(d, f);
            }
        }
        self.pop.closed_through(through);
        // Resume what the barrier held: the time of the events applied, and the stage's.
        if let Some(t) = self.max_event_time {
            self.advance(t.saturating_sub(self.ctx.rules.allowed_lateness), out);
        }
        self.release_contributions(out);
    }

    /// The last day the population's figures are final for.
    pub fn population_closed_through(&self) -> Option<i64> {
        self.pop.closed
    }

    /// Feed gaps found since the last call: (UTC day, source).
    pub fn take_gaps(&mut self) -> Vec<(i64, Source)> {
        std::mem::take(&mut self.pop.found)
    }
}
