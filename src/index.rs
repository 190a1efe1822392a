//! The employee index: a 128-bit fingerprint of the employee id → the slot holding the state.
//! Open addressing with linear probing over one vector of entries, so the entry an id will be
//! found in is known from its fingerprint alone: [`Index::prefetch`] asks the CPU for it a batch
//! ahead, and the lookups that follow overlap their cache misses instead of taking them one after
//! another (a general-purpose map hides where its buckets are). Below the engine, the rules'
//! group state and the runtime's queues, with the cache hint they share ([`prefetch_lines`]).

/// Fingerprint 0 marks an empty entry; a real fingerprint of 0 is stored as 1.
const EMPTY: u128 = 0;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: u128,
    slot: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: Vec<Entry>,
    len: usize,
}

fn norm(key: u128) -> u128 {
    if key == EMPTY {
        1
    } else {
        key
    }
}

impl Index {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// The entry a key's probe starts at (fingerprints are uniform: their low bits will do).
    fn home(&self, key: u128) -> usize {
        (key as u64 as usize) & self.mask()
    }

    /// Hints the CPU to load the entry `key`'s lookup starts at.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        if let Some(e) = self.entries.get(self.home(norm(key))) {
            prefetch_lines(e as *const Entry as *const u8, 1);
        }
    }

    /// Where a (normalized) key is: `Ok` at its entry, or `Err` at the empty entry that ends
    /// its probe. The table is never full, so a probe always ends.
    fn probe(&self, key: u128) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            match self.entries[i].key {
                k if k == key => return Ok(i),
                EMPTY => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    pub fn get(&self, key: u128) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.probe(norm(key)).ok().map(|i| self.entries[i].slot)
    }

    /// Inserts or replaces the slot of `key`.
    pub fn insert(&mut self, key: u128, slot: u32) {
        // At most 3/4 full, so probes stay short and always end at an empty entry.
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        let key = norm(key);
        match self.probe(key) {
            Ok(i) => self.entries[i].slot = slot,
            Err(i) => {
                self.entries[i] = Entry { key, slot };
                self.len += 1;
            }
        }
    }

    /// Removes `key`, shifting back the entries after it that probed past it (no tombstones).
    pub fn remove(&mut self, key: u128) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let i = self.probe(norm(key)).ok()?;
        let mask = self.mask();
        let removed = self.entries[i].slot;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.key == EMPTY {
                break;
            }
            // Move `e` into the hole when its home is not cyclically within (hole, j].
            let home = self.home(e.key);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = Entry::default();
        self.len -= 1;
        Some(removed)
    }

    /// Every slot held, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(|e| e.key != EMPTY)
            .map(|e| e.slot)
    }

    /// Makes room for `n` entries in all without growing again.
    pub fn reserve(&mut self, n: usize) {
        while (n + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let cap = (self.entries.len() * 2).max(64);
        let old = std::mem::replace(&mut self.entries, vec![Entry::default(); cap]);
        self.len = 0;
        for e in old.into_iter().filter(|e| e.key != EMPTY) {
            self.insert(e.key, e.slot);
        }
    }
}

/// Asks the CPU to bring the cache lines of `len` bytes at `p` closer (a hint: no fault, no
/// effect on results).
#[inline(always)]
pub(crate) fn prefetch_lines(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < len {
            // SAFETY: prefetch never faults and has no architectural effect, whatever the
            // address.
            unsafe { _mm_prefetch(p.wrapping_add(off) as *const i8, _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any sequence of inserts and removes leaves the index answering like a HashMap. Keys
        /// are drawn from a small range (with their low bits shared) so probes collide and
        /// removals shift entries back across the vector's wrap-around.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..200, any::<u32>()), 0..600)) {
            let mut ix = Index::default();
            let mut m: HashMap<u128, u32> = HashMap::new();
            for (insert, k, v) in ops {
                let key = ((k as u128) << 64) | (k as u128 % 7);
                if insert {
                    ix.insert(key, v);
                    m.insert(key, v);
                } else {
                    prop_assert_eq!(ix.remove(key), m.remove(&key));
                }
                prop_assert_eq!(ix.len(), m.len());
            }
            for k in 0u32..200 {
                let key = ((k as u128) << 64) | (k as u128 % 7);
                prop_assert_eq!(ix.get(key), m.get(&key).copied());
            }
            let mut a: Vec<u32> = ix.slots().collect();
            let mut b: Vec<u32> = m.values().copied().collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn zero_fingerprint_is_a_key_like_any_other() {
        let mut ix = Index::default();
        assert_eq!(ix.get(0), None);
        ix.insert(0, 7);
        assert_eq!(ix.get(0), Some(7));
        assert_eq!(ix.remove(0), Some(7));
        assert_eq!(ix.get(0), None);
        assert_eq!(ix.len(), 0);
    }
}
