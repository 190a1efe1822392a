//! Deadlines and the timer heap: each employee's per-rule deadlines ([`Dues`], derived from
//! the state), the earliest of them in one heap for the partition, and the firing of what is
//! due as the watermark passes it ([`Engine::advance`]).

use super::*;

/// Where the follow-up ladder's deadline sits in [`Dues`] (the employee rules use their
/// [`RuleId`] index, which is below it).
pub(super) const LADDER: usize = RuleId::AttritionRisk as usize;

/// Per-rule deadlines of one employee, `Ts::MAX` for none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Dues([Ts; LADDER + 1]);

impl Default for Dues {
    fn default() -> Dues {
        Dues([Ts::MAX; LADDER + 1])
    }
}

impl Dues {
    pub(super) fn set(&mut self, i: usize, due: Option<Ts>) {
        self.0[i] = due.unwrap_or(Ts::MAX);
    }
    pub(super) fn due(&self, i: usize, now: Ts) -> bool {
        self.0[i] <= now
    }
    pub(super) fn min(&self) -> Option<Ts> {
        let m = self.0.iter().copied().min().unwrap_or(Ts::MAX);
        (m != Ts::MAX).then_some(m)
    }
    /// What the deadlines [`Dues::of`] gives depend on besides the state: every enabled
    /// employee rule's parameters and the ladder's, hashed. A restore takes the deadlines its
    /// records give only when the checkpoint was written under the same.
    pub(super) fn version(rules: &RuleSet) -> u64 {
        let mut parts = String::new();
        macro_rules! params {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) {
                    parts.push_str(&format!("{}:{:?};", stringify!($id), rules.$params));
                }
            )*};
        }
        for_each_employee_rule!(params);
        parts.push_str(&format!("ladder:{:?}", rules.ladder));
        // Deadlines do not run on the calendar's non-working days.
        parts.push_str(&format!("calendar:{:?}", rules.calendar));
        // The rules' code too: a new version may compute deadlines otherwise.
        parts.push_str(env!("CARGO_PKG_VERSION"));
        xxhash_rust::xxh3::xxh3_64(parts.as_bytes())
    }

    /// Every rule's deadline, recomputed from the state.
    pub(super) fn of(rules: &RuleSet, st: &EmployeeState) -> Dues {
        let mut d = Dues::default();
        // (Deadlines stop on days off; feed gaps move none: they only leave days out of the
        // day-close windows.)
        let pres = Presence::new(&rules.calendar, &st.time_off, Presence::no_gaps());
        macro_rules! next_due {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) {
                    d.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, &pres));
                }
            )*};
        }
        for_each_employee_rule!(next_due);
        if let Some(lp) = &rules.ladder {
            d.set(LADDER, ladder::next_due(lp, &st.ladder, &pres));
        }
        d
    }
}

impl Engine {
    /// Moves the watermark forward (never back) and fires every timer now due.
    pub fn advance(&mut self, watermark: Ts, out: &mut Vec<Output>) {
        // Never past the end of a day the population has not closed (in `run`, the task
        // waits for it before it applies the event that would: see [`Engine::blocked_at`]).
        let watermark = watermark.min(self.pop.limit());
        if watermark > self.watermark {
            self.pop.close_share(crate::time::day_of(watermark) - 1);
            self.watermark = watermark;
            self.fire_due(out);
            self.evict_idle();
            if self.publish.is_none() {
                // The group stage's one source of time is this engine.
                self.source_watermark(0, watermark, out);
            }
        }
    }

    pub(super) fn fire_due(&mut self, out: &mut Vec<Output>) {
        loop {
            // Skip entries whose deadline has moved since they were pushed.
            while let Some(&Reverse((due, slot))) = self.timers.peek() {
                if self
                    .slots
                    .get(slot as usize)
                    .is_some_and(|s| s.due == Some(due))
                {
                    break;
                }
                self.timers.pop();
            }
            // (Group deadlines run on the group stage's clock: see `stage`.)
            let Some((_, slot)) = self
                .timers
                .peek()
                .map(|r| r.0)
                .filter(|&(due, _)| due <= self.watermark)
            else {
                break;
            };
            self.timers.pop();
            self.slots[slot as usize].due = None;
            self.pending -= 1;
            self.fire_slot(slot, out);
        }
    }

    pub(super) fn fire_slot(&mut self, slot: u32, out: &mut Vec<Output>) {
        self.unpack(slot);
        let now = self.watermark;
        let rules: &RuleSet = &self.ctx.rules;
        let sl = &mut self.slots[slot as usize];
        if !sl.dirty {
            sl.dirty = true;
            self.dirty.push(slot);
        }
        let st = &mut sl.state;
        let mut fires = std::mem::take(&mut self.fires);
        let dues = &mut sl.dues;
        let pres = Presence::new(&rules.calendar, &st.time_off, &self.pop.gaps)
            .with_figures(Some(&self.pop.figures));
        // Only the rules whose deadline has come: the others' state is not touched.
        macro_rules! on_timer {
            ($($id:ident => $module:ident, $params:ident;)*) => {$(
                if rules.enabled(RuleId::$id) && dues.due(RuleId::$id as usize, now) {
                    rules_mod::$module::on_timer(&rules.$params, &mut st.$params, now, &pres, &mut fires);
                    dues.set(RuleId::$id as usize, rules_mod::$module::next_due(&rules.$params, &st.$params, &pres));
                }
            )*};
        }
        for_each_employee_rule!(on_timer);
        if let Some(lp) = &rules.ladder {
            if dues.due(LADDER, now) {
                ladder::on_timer(lp, &mut st.ladder, now, &pres, &mut fires);
                dues.set(LADDER, ladder::next_due(lp, &st.ladder, &pres));
            }
        }
        // Rules hand their fires over in deadline order within each rule; across rules, order
        // by time so cooldown and the risk score see them as they happened.
        fires.sort_by_key(|f| (f.at, f.rule, f.escalation));
        let mut published = false;
        for f in fires.drain(..) {
            published |= self.ctx.finalize(&sl.subject, &sl.points, st, f, out);
        }
        self.fires = fires;
        if published {
            sl.dues = Dues::of(rules, st);
        }
        // Every deadline at or before `now` was handled; never schedule one there again.
        self.reschedule(slot, Some(now.saturating_add(1)));
        self.debug_check_dues(slot);
    }

    /// Tests and debug builds check that each rule's cached deadline is the one its state
    /// gives: a rule whose `handles` misses a kind it reads would show here.
    pub(super) fn debug_check_dues(&self, slot: u32) {
        if cfg!(debug_assertions) {
            if let Some(sl) = self.slots.get(slot as usize) {
                if !sl.subject.is_empty() && sl.packed.is_none() {
                    assert_eq!(
                        sl.dues,
                        Dues::of(&self.ctx.rules, &sl.state),
                        "cached deadlines differ from the state's"
                    );
                }
            }
        }
    }

    pub(super) fn reschedule(&mut self, slot: u32, not_before: Option<Ts>) {
        let mut due = self.slots[slot as usize].dues.min();
        if let (Some(d), Some(nb)) = (due, not_before) {
            due = Some(d.max(nb));
        }
        self.schedule(slot, due);
    }

    /// Sets the slot's timer to `due`.
    pub(super) fn schedule(&mut self, slot: u32, due: Option<Ts>) {
        let sl = &mut self.slots[slot as usize];
        if due != sl.due {
            match (sl.due, due) {
                (None, Some(_)) => self.pending += 1,
                (Some(_), None) => self.pending -= 1,
                _ => {}
            }
            sl.due = due;
            if let Some(d) = due {
                self.timers.push(Reverse((d, slot)));
                if self.timers.len() > 2 * self.pending + 1024 {
                    self.compact_timers();
                }
            }
        }
    }

    /// Drops the heap's stale entries: rebuilt from the slots' deadlines, in the heap's own
    /// allocation (a fresh one each time would be a large allocation, and fresh pages, per
    /// compaction).
    pub(super) fn compact_timers(&mut self) {
        let mut live = std::mem::take(&mut self.timers).into_vec();
        live.clear();
        live.extend(
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(n, s)| s.due.map(|d| Reverse((d, n as u32)))),
        );
        self.timers = BinaryHeap::from(live);
    }
}
