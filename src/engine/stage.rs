//! The group stage: team and cohort state fed by **contributions** (what an employee's event
//! gives a group — fingerprints and counts, see `rules::group::Contribution`), on a clock of its
//! own.
//!
//! An employee engine turns each event into contributions. In `replay` (and in `run` without
//! the repartition topic) they go straight to the same engine's group stage, the engine's
//! watermark being the stage's one source of time. In `run` with the repartition topic, they
//! go to the partition that owns their group, and each employee task publishes its watermark
//! to every partition: a group task's time is the least of them, so a day closes for a team
//! only once every employee partition has passed it.
//!
//! Either way the stage applies contributions **in event-time order**: a contribution waits in
//! the buffer until the stage's time has passed it, and goes — ordered by time, member, event
//! — after every group deadline up to its time. So the group rules see one sequence whatever
//! the partitioning, the instances or the order partitions were read in. (A contribution
//! already behind the stage's time when it arrives — an event later than
//! `time.allowed_lateness` — is applied at once.)
//!
//! The stage's state is checkpointed with the engine's (`changelog`): teams and cohorts with
//! the time the stage had released through, buffered contributions one record each, and in
//! the clock the stage's time, each source's watermark, and the highest position taken from
//! each source — a source that crashed and publishes its contributions again is not counted
//! twice.

use std::collections::BTreeMap;

use super::{Engine, Output};
use crate::rules::group::Contribution;
use crate::time::Ts;

/// Where a contribution came from: (source partition, input topic index, offset, n-th
/// contribution of that event). Positions of one source and topic only ever grow, except when
/// the source publishes again after a crash.
pub type From = (u32, u16, i64, u8);

/// A source's watermark when it has had no event and is idle (see [`Engine::source_empty`]).
pub const EMPTY: Ts = Ts::MAX;

/// The application order of a contribution (see [`Contribution::order`]).
pub type OrderKey = (Ts, u64, u64, u8);

#[derive(Debug, Default)]
pub(crate) struct Stage {
    /// The stage's time: the least of the sources' watermarks, once every source has sent
    /// one. Contributions before it are applied.
    pub watermark: Option<Ts>,
    pub sources: Vec<Option<Ts>>,
    /// Per (source, input topic): the highest position taken.
    pub highest: BTreeMap<(u32, u16), (i64, u8)>,
    /// Contributions at or after the stage's time, in application order.
    pub buffer: BTreeMap<OrderKey, Waiting>,
    /// Buffered contributions not written to the changelog yet, and those written and
    /// released since the last checkpoint (their records to delete).
    pub unwritten: usize,
    pub released: Vec<OrderKey>,
    /// Members erased (their erasure applied): a contribution of theirs applied later — one
    /// made after the erasure's time, or a late one — is dropped, so they cannot come back.
    pub erased: std::collections::BTreeSet<u64>,
    /// Restored group records: (their input position, the stage time they were written at),
    /// by group key — a contribution before both is in the group's state already.
    pub restored_groups: std::collections::HashMap<u128, (Vec<i64>, Ts), ahash::RandomState>,
}

/// A contribution waiting for the stage's time (boxed: the buffer's nodes move entries).
#[derive(Debug)]
pub(crate) struct Waiting {
    pub c: Box<Contribution>,
    /// In the changelog already.
    pub written: bool,
}

impl Stage {
    pub fn with_sources(n: usize) -> Stage {
        Stage {
            sources: vec![None; n.max(1)],
            ..Stage::default()
        }
    }
}

impl Engine {
    /// Publish mode (`run` with the repartition topic): this engine's contributions are handed
    /// out by [`Engine::take_contributions`] instead of going to its own group stage, whose
    /// time then comes from `sources` employee partitions ([`Engine::source_watermark`]).
    /// `source` is this engine's own partition.
    pub fn publish_contributions(&mut self, source: u32, sources: usize) {
        self.publish = Some(source);
        self.stage.sources = vec![None; sources.max(1)];
    }

    /// Publish mode: the contributions made since the last call, with where they came from.
    pub fn take_contributions(&mut self) -> std::vec::Drain<'_, (Contribution, From)> {
        self.published.drain(..)
    }

    /// The stage's time (`None` until every source has sent a watermark).
    pub fn group_watermark(&self) -> Option<Ts> {
        self.stage.watermark
    }

    /// Contributions waiting for the stage's time.
    pub fn buffered_contributions(&self) -> usize {
        self.stage.buffer.len()
    }

    /// The fingerprint an employee is known by in group state (for tools and tests).
    pub fn member_fingerprint(&self, employee_id: &str) -> u64 {
        super::employee_fp(self.ctx.employee_key(employee_id))
    }

    /// Every member fingerprint the group stage holds: in teams and cohorts, and in waiting
    /// contributions (for tests of erasure).
    pub fn group_members(&self) -> Vec<u64> {
        let mut v = self.groups.fingerprints();
        v.extend(self.stage.buffer.values().map(|w| w.c.emp));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// An event's contributions, made by the employee side.
    pub(crate) fn contribute(
        &mut self,
        contributions: &mut Vec<Contribution>,
        pos: Option<(usize, i64)>,
        out: &mut Vec<Output>,
    ) {
        for (k, c) in contributions.drain(..).enumerate() {
            let from = pos.map(|(i, o)| (self.publish.unwrap_or(0), i as u16, o, k as u8));
            match (self.publish, from) {
                (Some(_), Some(from)) => self.published.push((c, from)),
                (Some(s), None) => self.published.push((c, (s, 0, -1, k as u8))),
                (None, _) => self.receive(c, from, pos, out),
            }
        }
    }

    /// A contribution reaches the group stage: `from` is where it was made, `delivered` the
    /// task input position it came by (the event's own in `replay`, a repartition offset in
    /// `run`).
    pub fn receive(
        &mut self,
        c: Contribution,
        from: Option<From>,
        delivered: Option<(usize, i64)>,
        out: &mut Vec<Output>,
    ) {
        if let Some((s, t, o, k)) = from.filter(|f| f.2 >= 0) {
            let h = self.stage.highest.entry((s, t)).or_insert((i64::MIN, 0));
            if (o, k) <= *h {
                // Published again by a source that restarted: taken already.
                return;
            }
            *h = (o, k);
        }
        if let (Some((i, o)), Some(key)) = (
            delivered.filter(|_| !self.stage.restored_groups.is_empty()),
            c.group_key(),
        ) {
            if let Some((through, released)) = self.stage.restored_groups.get(&key) {
                if through.get(i).is_some_and(|&t| o < t) && c.at < *released {
                    // The group's restored state holds it.
                    return;
                }
            }
        }
        if self.stage.watermark.is_some_and(|w| c.at < w) {
            // Behind the stage's time: its deadlines have passed (what they found is out
            // already), so it goes at once.
            let _ = out;
            self.apply_contribution(&c);
            return;
        }
        // Keyed by its order: the same contribution again (read again after a restore that
        // holds it waiting) is the same entry.
        if let std::collections::btree_map::Entry::Vacant(v) = self.stage.buffer.entry(c.order()) {
            v.insert(Waiting {
                c: Box::new(c),
                written: false,
            });
            self.stage.unwritten += 1;
        }
    }

    /// Source `source`'s watermark reached `w`: the stage's time may move on, releasing what
    /// the buffer holds before it, after the group deadlines before each.
    pub fn source_watermark(&mut self, source: u32, w: Ts, out: &mut Vec<Output>) {
        let Some(slot) = self.stage.sources.get_mut(source as usize) else {
            return;
        };
        if slot.is_some_and(|s| s >= w && s != EMPTY) {
            return;
        }
        *slot = Some(w.min(EMPTY - 1));
        self.release_contributions(out);
    }

    /// Source `source` has had no event yet and has been idle for `time.idle_timeout`: the
    /// stage does not wait for it (until it sends a watermark).
    pub fn source_empty(&mut self, source: u32, out: &mut Vec<Output>) {
        if let Some(slot @ None) = self.stage.sources.get_mut(source as usize) {
            *slot = Some(EMPTY);
            self.release_contributions(out);
        }
    }

    /// Moves the stage's time to the least known source watermark, releasing what waits
    /// before it.
    pub(crate) fn release_contributions(&mut self, out: &mut Vec<Output>) {
        let Some(known) = self
            .stage
            .sources
            .iter()
            .copied()
            .collect::<Option<Vec<Ts>>>()
        else {
            return;
        };
        let Some(least) = known.into_iter().filter(|&w| w != EMPTY).min() else {
            return;
        };
        // Not past the end of a day the population has not closed (its figures are in the
        // team rules' thresholds).
        let least = least.min(self.pop.limit());
        if self.stage.watermark.is_some_and(|cur| least <= cur) {
            return;
        }
        self.stage.watermark = Some(least);
        while let Some(entry) = self.stage.buffer.first_entry() {
            if entry.key().0 >= least {
                break;
            }
            let (key, w) = entry.remove_entry();
            self.group_timers(w.c.at, out);
            self.apply_contribution(&w.c);
            if w.written {
                self.stage.released.push(key);
            } else {
                self.stage.unwritten -= 1;
            }
        }
        self.group_timers(least, out);
    }

    /// Applies a contribution to the groups, but none of a member erased already.
    fn apply_contribution(&mut self, c: &Contribution) {
        if self.stage.erased.contains(&c.emp) {
            return;
        }
        self.groups.apply(&self.ctx.rules.groups, c);
        if c.what == crate::rules::group::What::Erased {
            self.stage.erased.insert(c.emp);
        }
    }

    /// Every group deadline at or before `now`.
    fn group_timers(&mut self, now: Ts, out: &mut Vec<Output>) {
        if self
            .groups
            .next_due(&self.ctx.rules.groups)
            .is_none_or(|d| d > now)
        {
            return;
        }
        let mut gf = std::mem::take(&mut self.group_fires);
        self.groups
            .on_timer(&self.ctx.rules.groups, now, Some(&self.pop), &mut gf);
        for g in gf.drain(..) {
            self.ctx.finalize_group(g, out);
        }
        self.group_fires = gf;
    }
}

/// The partition of the repartition topic that owns a group (and its group task).
pub fn partition_of(group_key: u128, partitions: u32) -> u32 {
    (group_key % partitions.max(1) as u128) as u32
}
