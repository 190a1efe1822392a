//! The slot store: one slot per employee of the partition, found through the index by a
//! fingerprint of the id; slots of employees restored and not needed since stay packed
//! (serialized) until their next event or deadline; idle ones are evicted after
//! `state.idle_ttl`, and erased ones released.

use super::*;

#[derive(Debug)]
pub(super) struct Slot {
    /// The index key (a fingerprint of the employee id).
    pub(super) key: u128,
    /// The employee as outputs name them: the id, or its pseudonym — with pseudonymization on,
    /// the raw id is not kept (nor written to the changelog). Empty: a free slot.
    pub(super) subject: Box<str>,
    /// The employee's point in each experiment (`RuleSet::experiment_list` order), computed
    /// from the raw id when the slot was made: NaN where unknown (restored state written under
    /// a configuration without that experiment; filled in at the employee's next event).
    pub(super) points: Box<[f64]>,
    /// Changed since the last checkpoint (listed in `Engine::dirty`).
    pub(super) dirty: bool,
    /// The earliest of `dues`, clamped by the last firing: the entry in the timer heap.
    pub(super) due: Option<Ts>,
    /// Each rule's next deadline, as its `next_due` gives for the state (derived, not part of
    /// the state): an event recomputes only its rule's, a firing only the due rules'.
    pub(super) dues: Dues,
    pub(super) state: EmployeeState,
    /// Restored and not needed since: the state's serialized bytes, decoded at the employee's
    /// next event or deadline (`Engine::unpack`). Meanwhile `state` holds only the flags and
    /// the last day seen, `dues` is empty, and `due` is the deadline the record gave.
    pub(super) packed: Option<Box<[u8]>>,
}

impl Engine {
    /// Restored states still held as bytes (not needed since the restore).
    pub fn packed(&self) -> usize {
        self.slots.iter().filter(|s| s.packed.is_some()).count()
    }

    /// Restored states that could not be decoded when their employee was next needed: each
    /// went on from its flags alone (see `changelog`).
    pub fn corrupt_states(&self) -> u64 {
        self.corrupt_states
    }

    /// Decodes a slot's state restored packed (a no-op otherwise) and derives its deadlines.
    /// Bytes that do not decode leave the flags and the last day seen (read with the record):
    /// the history is lost, the employee's exit or consent is not.
    pub(super) fn unpack(&mut self, slot: u32) {
        let Some(sl) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(bytes) = sl.packed.take() else {
            return;
        };
        match EmployeeState::from_bytes(&bytes) {
            Some(st) => sl.state = st,
            None => {
                self.corrupt_states += 1;
                sl.state = EmployeeState {
                    flags: sl.state.flags,
                    seen_day: sl.state.seen_day,
                    ..Default::default()
                };
                if !sl.dirty {
                    sl.dirty = true;
                    self.dirty.push(slot);
                }
            }
        }
        sl.dues = Dues::of(&self.ctx.rules, &sl.state);
    }

    /// `state.idle_ttl`: once per UTC day of the watermark, employees whose last event is older
    /// than the TTL are evicted (a tombstone at the next checkpoint). An exited employee, or one
    /// who withdrew consent, keeps the flag (only the history goes): a late event must still not
    /// fire about them.
    pub(super) fn evict_idle(&mut self) {
        let ttl = self.ctx.rules.idle_ttl_days;
        let today = crate::time::day_of(self.watermark);
        if ttl <= 0 || today <= self.idle_checked {
            return;
        }
        self.idle_checked = today;
        for slot in 0..self.slots.len() as u32 {
            let sl = &mut self.slots[slot as usize];
            if sl.subject.is_empty() || today - sl.state.seen_day as i64 <= ttl {
                continue;
            }
            if sl.state.flags == 0 {
                let key = sl.key;
                self.release(slot);
                self.dirty_evicted.push(key);
            } else if sl.packed.take().is_some() || sl.state.has_history() {
                let flags = sl.state.flags;
                sl.state = EmployeeState {
                    flags,
                    seen_day: sl.state.seen_day,
                    ..Default::default()
                };
                sl.dues = Dues::default();
                if !sl.dirty {
                    sl.dirty = true;
                    self.dirty.push(slot);
                }
                self.reschedule(slot, None);
            }
        }
    }

    pub(super) fn alloc(&mut self, key: u128, employee_id: &str) -> u32 {
        let subject = self.ctx.subject(employee_id).into_boxed_str();
        let points = self.ctx.points(employee_id);
        self.alloc_slot(key, subject, points, EmployeeState::default())
    }

    pub(super) fn alloc_slot(
        &mut self,
        key: u128,
        subject: Box<str>,
        points: Box<[f64]>,
        state: EmployeeState,
    ) -> u32 {
        let slot = Slot {
            key,
            subject,
            points,
            dirty: false,
            due: None,
            dues: Dues::default(),
            state,
            packed: None,
        };
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = slot;
                n
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, n);
        n
    }

    /// An erasure, for every group: the group stage forgets the member.
    pub(super) fn contribute_erasure(
        &mut self,
        emp: u64,
        ev: &Event<'_>,
        pos: Option<(usize, i64)>,
        out: &mut Vec<Output>,
    ) {
        let mut c = std::mem::take(&mut self.contributions);
        c.push(crate::rules::group::Contribution {
            group: crate::rules::group::GroupRef::All,
            emp,
            at: ev.occurred_at,
            eid: fingerprint(&ev.event_id),
            what: crate::rules::group::What::Erased,
        });
        self.contribute(&mut c, pos, out);
        self.contributions = c;
    }

    /// Frees the slot: the employee's state, timers and index entry go. Returns its key.
    pub(super) fn release(&mut self, slot: u32) -> u128 {
        let sl = &mut self.slots[slot as usize];
        if sl.due.take().is_some() {
            self.pending -= 1;
        }
        sl.subject = Box::default();
        sl.points = Box::default();
        sl.state = EmployeeState::default();
        sl.packed = None;
        sl.dues = Dues::default();
        // A dirty slot stays listed: the checkpoint skips free slots (the erasure mark is
        // written for its key instead).
        let key = sl.key;
        self.index.remove(key);
        self.free.push(slot);
        key
    }
}
