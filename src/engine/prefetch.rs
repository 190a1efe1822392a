//! Prefetch: an event's state is brought into the cache before it is applied. A batch of
//! events is hashed once ([`Keys`]), their index entries, records and states prefetched a
//! [`PREFETCH_BATCH`] at a time, then applied in order — the same outputs as applying them one
//! by one, with the cache misses of many events overlapped.

use super::*;

/// Events per prefetch pass of [`Engine::apply_batch`]: enough to overlap many misses, few
/// enough that what they bring in stays in the L1/L2 cache until it is used.
pub const PREFETCH_BATCH: usize = 32;

impl Engine {
    /// Applies validated events in order, as [`Engine::apply`] does one by one, returning each
    /// event's outcome in `outcomes`. Before applying, it asks the CPU to fetch the state the
    /// events will touch, all at once: with many employees the state lives in main memory, and
    /// overlapping those misses instead of taking them one after another is most of the cost
    /// of an event (see `benches/engine.rs`). The prefetch is only a hint; the result is the
    /// same as `apply` on each event.
    pub fn apply_batch(
        &mut self,
        events: &[Event<'_>],
        out: &mut Vec<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        // A pipeline over chunks: while chunk k is applied, chunk k+1's records and chunk
        // k+2's index entries are already on their way, so each stage finds what the one
        // before it asked for in the cache instead of waiting for it. (What the stages find is
        // only ever a hint: applying uses the keys alone.)
        let n = events.len();
        let chunks = n.div_ceil(PREFETCH_BATCH);
        let chunk = |c: usize| &events[c * PREFETCH_BATCH..((c + 1) * PREFETCH_BATCH).min(n)];
        let mut keys: Vec<[Keys; PREFETCH_BATCH]> = Vec::with_capacity(chunks);
        let mut found: Vec<[(u32, u32); PREFETCH_BATCH]> = Vec::with_capacity(chunks);
        for k in 0..chunks + 2 {
            if k < chunks {
                keys.push(self.prefetch_entries(chunk(k).iter()));
            }
            if let Some(c) = k.checked_sub(1).filter(|&c| c < chunks) {
                found.push(self.prefetch_records(&keys[c][..chunk(c).len()]));
            }
            if let Some(c) = k.checked_sub(2).filter(|&c| c < chunks) {
                self.prefetch_state(chunk(c).iter(), &found[c]);
                for (ev, key) in chunk(c).iter().zip(keys[c]) {
                    let o = self.apply_keyed(ev, key, out);
                    outcomes.push(o);
                }
            }
        }
    }

    /// Hints the CPU to load what applying the (up to [`PREFETCH_BATCH`]) `events` will read:
    /// the index entries, then the slots, then the state behind the slots' pointers. Each pass
    /// has independent iterations, so the loads overlap. Call it just before applying them.
    ///
    /// Returns the events' keys, in order, for [`Engine::apply_keyed`] (which then does not hash
    /// the ids again).
    pub fn prefetch<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>> + Clone,
    ) -> [Keys; PREFETCH_BATCH] {
        let events = events.take(PREFETCH_BATCH);
        let keys = self.prefetch_entries(events.clone());
        let found = self.prefetch_records(&keys[..events.clone().count()]);
        self.prefetch_state(events, &found);
        keys
    }

    /// An event's keys: its employee's, and its team's when a team rule will read it.
    pub fn keys(&self, ev: &Event<'_>) -> Keys {
        Keys {
            employee: self.ctx.employee_key(&ev.employee_id),
            team: self.ctx.rules.groups.team_key(ev),
        }
    }

    /// Prefetch, stage one: hashes the events' ids and hints the index entries they will be
    /// found in. Each stage's iterations are independent, so their cache misses overlap.
    pub(super) fn prefetch_entries<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>>,
    ) -> [Keys; PREFETCH_BATCH] {
        let mut keys = [Keys::default(); PREFETCH_BATCH];
        for (k, ev) in keys.iter_mut().zip(events) {
            *k = self.keys(ev);
            self.index.prefetch(k.employee);
            if let Some(t) = k.team {
                self.groups.prefetch_team_entry(t);
            }
        }
        keys
    }

    /// Stage two: looks the keys up and hints the slots and team records; returns (slot, team)
    /// per event, `u32::MAX` where there is none.
    pub(super) fn prefetch_records(&self, keys: &[Keys]) -> [(u32, u32); PREFETCH_BATCH] {
        let mut found = [(u32::MAX, u32::MAX); PREFETCH_BATCH];
        for (f, k) in found.iter_mut().zip(keys) {
            if let Some(i) = self.index.get(k.employee) {
                f.0 = i;
                if let Some(sl) = self.slots.get(i as usize) {
                    prefetch_lines(sl as *const Slot as *const u8, std::mem::size_of::<Slot>());
                }
            }
        }
        for (f, k) in found.iter_mut().zip(keys) {
            if let Some(t) = k.team {
                f.1 = self.groups.prefetch_team(t).unwrap_or(u32::MAX);
            }
        }
        found
    }

    /// Stage three: hints the rule state behind the slots, the teams' member lists, and the
    /// day rings the events will add to.
    pub(super) fn prefetch_state<'a, 'b: 'a>(
        &self,
        events: impl Iterator<Item = &'a Event<'b>> + Clone,
        found: &[(u32, u32); PREFETCH_BATCH],
    ) {
        // Three passes, not one: the rings sit behind the rule state the first pass hints,
        // so reading it at once would wait for each event's load in turn.
        for (&(s, _), _) in found.iter().zip(events.clone()) {
            if let Some(sl) = self.slots.get(s as usize) {
                sl.state.prefetch();
            }
        }
        for (&(_, t), _) in found.iter().zip(events.clone()) {
            self.groups.prefetch_members(t);
        }
        for (&(s, _), ev) in found.iter().zip(events) {
            if let Some(sl) = self.slots.get(s as usize) {
                sl.state.prefetch_for(&ev.kind);
            }
        }
    }
}
