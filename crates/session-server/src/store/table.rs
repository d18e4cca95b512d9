//! The memory store's table: sessions in one slab, found through a hash index of slot numbers,
//! threaded on two intrusive lists: least-recently-used order (one list per group, an app's
//! sessions), and expiry buckets.
//!
//! A general-purpose LRU map plus a B-tree expiry index cost about 500 bytes per session beyond
//! its data: a heap node per entry, a hash table of pointers, the id twice, and B-tree nodes
//! that appends leave half full. Here a session is one 128-byte slot, 4 bytes of index and its
//! attribute vector; links are slot numbers, not pointers, so nothing else is allocated per
//! session. Ids come from a CSPRNG and only the server makes them, so their first bytes already
//! are a uniform hash that no client can steer.

use crate::id::SessionId;
use hashbrown::HashTable;
use std::collections::BTreeMap;

/// Width of an expiry bucket in milliseconds: the sweep takes a bucket once all of it has
/// passed, so it runs at most this late (access checks the exact deadline and never is).
pub const BUCKET_MS: u64 = 100;

const NIL: u32 = u32::MAX;
/// Slots per chunk (512 KiB of them). The slab grows by chunks, never by reallocating: doubling
/// one vector would copy it and leave the old copy's pages resident for a while.
const CHUNK: usize = 4096;

/// Which least-recently-used list a value is on: the memory store keeps one per app, so that
/// an app's quota evicts that app's sessions.
pub trait Grouped {
    fn group(&self) -> usize;
}

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

#[derive(Debug)]
struct Slot<V> {
    id: SessionId,
    /// In the LRU list while occupied; `next` chains the free slots while vacant.
    lru: Link,
    expiry: Link,
    /// Indexed deadline (ms); `NOT_FILED` while out of the expiry lists.
    due: u64,
    value: Option<V>,
}

const NOT_FILED: u64 = u64::MAX;

/// The two ends of a group's least-recently-used list.
#[derive(Debug, Clone, Copy)]
struct Ends {
    newest: u32,
    oldest: u32,
}

const EMPTY: Ends = Ends {
    newest: NIL,
    oldest: NIL,
};

#[derive(Debug)]
pub struct Table<V> {
    /// Full chunks of `CHUNK` slots, the last one possibly partly filled.
    chunks: Vec<Vec<Slot<V>>>,
    free: u32,
    index: HashTable<u32>,
    /// Each group's list, by [`Grouped::group`].
    lists: Vec<Ends>,
    /// Expiry bucket (deadline / `BUCKET_MS`) to the first slot of its list.
    buckets: BTreeMap<u64, u32>,
    len: usize,
}

/// A slot number, valid until that slot is removed.
pub type SlotNo = u32;

/// Most sessions a table holds: slot numbers are below this (the largest `u32` means none).
pub const MAX_SLOTS: u32 = NIL;

/// Every slot number is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

fn hash(id: &SessionId) -> u64 {
    let b = id.bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: NIL,
            index: HashTable::new(),
            lists: Vec::new(),
            buckets: BTreeMap::new(),
            len: 0,
        }
    }
}

/// Bytes a session's slot takes, for tests that guard the memory budget.
#[cfg(test)]
pub fn slot_size<V>() -> usize {
    size_of::<Slot<V>>()
}

fn at<V>(chunks: &[Vec<Slot<V>>], slot: SlotNo) -> &Slot<V> {
    let slot = slot as usize;
    &chunks[slot / CHUNK][slot % CHUNK]
}

impl<V: Grouped> Table<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    fn slot(&self, slot: SlotNo) -> &Slot<V> {
        at(&self.chunks, slot)
    }

    fn slot_mut(&mut self, slot: SlotNo) -> &mut Slot<V> {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    pub fn find(&self, id: &SessionId) -> Option<SlotNo> {
        let chunks = &self.chunks;
        self.index
            .find(hash(id), |&s| at(chunks, s).id == *id)
            .copied()
    }

    #[cfg(test)]
    pub fn id(&self, slot: SlotNo) -> &SessionId {
        &self.slot(slot).id
    }

    /// The value in `slot`; `None` only for a slot number that no longer names a session.
    pub fn get(&self, slot: SlotNo) -> Option<&V> {
        self.slot(slot).value.as_ref()
    }

    pub fn get_mut(&mut self, slot: SlotNo) -> Option<&mut V> {
        self.slot_mut(slot).value.as_mut()
    }

    /// Adds a session that is not in the table, as the most recently used, filed under `due`.
    /// Fails only when the table holds [`MAX_SLOTS`] sessions and none has left a slot free.
    pub fn insert(&mut self, id: SessionId, value: V, due: u64) -> Result<SlotNo, TableFull> {
        let slot = match self.free {
            NIL => {
                let mut chunk = match self.chunks.pop() {
                    Some(chunk) if chunk.len() < CHUNK => chunk,
                    Some(full) => {
                        self.chunks.push(full);
                        Vec::with_capacity(CHUNK)
                    }
                    None => Vec::with_capacity(CHUNK),
                };
                let n = u32::try_from(self.chunks.len() * CHUNK + chunk.len())
                    .ok()
                    .filter(|n| *n < MAX_SLOTS);
                let pushed = n.is_some();
                if pushed {
                    chunk.push(Slot {
                        id,
                        lru: UNLINKED,
                        expiry: UNLINKED,
                        due: NOT_FILED,
                        value: Some(value),
                    });
                }
                if !chunk.is_empty() {
                    self.chunks.push(chunk);
                }
                n.ok_or(TableFull)?
            }
            free => {
                self.free = self.slot(free).lru.next;
                let s = self.slot_mut(free);
                s.id = id;
                s.value = Some(value);
                free
            }
        };
        let chunks = &self.chunks;
        self.index
            .insert_unique(hash(&id), slot, |&s| hash(&at(chunks, s).id));
        self.link_newest(slot);
        self.file(slot, due);
        self.len += 1;
        Ok(slot)
    }

    /// Takes a session out; its slot number becomes invalid. `None` for a slot number that
    /// no longer names a session (nothing changes).
    pub fn remove(&mut self, slot: SlotNo) -> Option<(SessionId, V)> {
        self.get(slot)?;
        let id = self.slot(slot).id;
        let chunks = &self.chunks;
        if let Ok(entry) = self
            .index
            .find_entry(hash(&id), |&s| at(chunks, s).id == id)
        {
            entry.remove();
        }
        self.unlink_lru(slot);
        self.unfile(slot);
        let free = self.free;
        let s = self.slot_mut(slot);
        let value = s.value.take()?;
        s.lru = Link {
            prev: NIL,
            next: free,
        };
        self.free = slot;
        self.len -= 1;
        Some((id, value))
    }

    /// Marks a session as the most recently used of its group.
    pub fn touch(&mut self, slot: SlotNo) {
        let group = self.group(slot);
        if self.lists.get(group).is_some_and(|l| l.newest != slot) {
            self.unlink_lru(slot);
            self.link_newest(slot);
        }
    }

    /// Every session held, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&SessionId, &V)> {
        self.chunks
            .iter()
            .flatten()
            .filter_map(|slot| slot.value.as_ref().map(|v| (&slot.id, v)))
    }

    /// The least recently used session of `group`.
    pub fn least_recently_used(&self, group: usize) -> Option<SlotNo> {
        self.lists
            .get(group)
            .and_then(|l| (l.oldest != NIL).then_some(l.oldest))
    }

    /// The group of the session in `slot` (0 for a vacant slot, which is on no list).
    fn group(&self, slot: SlotNo) -> usize {
        self.slot(slot).value.as_ref().map_or(0, Grouped::group)
    }

    fn ends(&mut self, group: usize) -> &mut Ends {
        if self.lists.len() <= group {
            self.lists.resize(group + 1, EMPTY);
        }
        &mut self.lists[group]
    }

    /// Files a session under a new indexed deadline.
    pub fn refile(&mut self, slot: SlotNo, due: u64) {
        self.unfile(slot);
        self.file(slot, due);
    }

    /// Takes out of the expiry lists a session whose whole bucket is past `now`, if any: the
    /// caller removes it or files it again under its real deadline.
    pub fn pop_due(&mut self, now: u64) -> Option<SlotNo> {
        let (&bucket, &first) = self.buckets.first_key_value()?;
        if (bucket + 1).saturating_mul(BUCKET_MS) > now {
            return None;
        }
        self.unfile(first);
        Some(first)
    }

    fn link_newest(&mut self, slot: SlotNo) {
        let group = self.group(slot);
        let old = self.ends(group).newest;
        self.slot_mut(slot).lru = Link {
            prev: NIL,
            next: old,
        };
        match old {
            NIL => self.ends(group).oldest = slot,
            old => self.slot_mut(old).lru.prev = slot,
        }
        self.ends(group).newest = slot;
    }

    fn unlink_lru(&mut self, slot: SlotNo) {
        let group = self.group(slot);
        let Link { prev, next } = self.slot_mut(slot).lru;
        match prev {
            NIL => self.ends(group).newest = next,
            p => self.slot_mut(p).lru.next = next,
        }
        match next {
            NIL => self.ends(group).oldest = prev,
            n => self.slot_mut(n).lru.prev = prev,
        }
        self.slot_mut(slot).lru = UNLINKED;
    }

    fn file(&mut self, slot: SlotNo, due: u64) {
        let bucket = due / BUCKET_MS;
        let head = self.buckets.insert(bucket, slot).unwrap_or(NIL);
        if head != NIL {
            self.slot_mut(head).expiry.prev = slot;
        }
        let s = self.slot_mut(slot);
        s.expiry = Link {
            prev: NIL,
            next: head,
        };
        s.due = due;
    }

    fn unfile(&mut self, slot: SlotNo) {
        let (Link { prev, next }, due) = {
            let s = self.slot(slot);
            (s.expiry, s.due)
        };
        if due == NOT_FILED {
            return;
        }
        match prev {
            NIL => {
                let bucket = due / BUCKET_MS;
                if next == NIL {
                    self.buckets.remove(&bucket);
                } else {
                    self.buckets.insert(bucket, next);
                }
            }
            p => self.slot_mut(p).expiry.next = next,
        }
        if next != NIL {
            self.slot_mut(next).expiry.prev = prev;
        }
        let s = self.slot_mut(slot);
        s.expiry = UNLINKED;
        s.due = NOT_FILED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test values are on one list, but for the pairs of the grouped test.
    macro_rules! one_group {
        ($($t:ty),*) => {$(impl Grouped for $t {
            fn group(&self) -> usize {
                0
            }
        })*};
    }
    one_group!(usize, char, u32, i32);

    impl Grouped for (usize, char) {
        fn group(&self) -> usize {
            self.0
        }
    }

    fn ids(n: usize) -> Vec<SessionId> {
        (0..n).map(|_| SessionId::generate()).collect()
    }

    #[test]
    fn finds_what_it_holds_and_forgets_what_it_removed() {
        let mut t = Table::default();
        let ids = ids(1000);
        let slots: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| t.insert(*id, i, 1_000).expect("room"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.find(id).map(|s| *t.get(s).expect("occupied")), Some(i));
        }
        for s in slots.iter().step_by(2) {
            t.remove(*s);
        }
        assert_eq!(t.len(), 500);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.find(id).is_some(), i % 2 == 1, "session {i}");
        }
        // Freed slots are reused rather than growing the slab.
        let more = self::ids(500);
        for id in &more {
            t.insert(*id, 0, 1_000).expect("room");
        }
        assert_eq!(t.chunks.iter().map(Vec::len).sum::<usize>(), 1000);
    }

    #[test]
    fn least_recently_used_follows_touches_and_removals() {
        let mut t = Table::default();
        let [a, b, c] = [(); 3].map(|_| SessionId::generate());
        let (sa, sb, sc) = (
            t.insert(a, 'a', 0).expect("room"),
            t.insert(b, 'b', 0).expect("room"),
            t.insert(c, 'c', 0).expect("room"),
        );
        assert_eq!(t.least_recently_used(0), Some(sa));
        t.touch(sa);
        assert_eq!(t.least_recently_used(0), Some(sb));
        t.remove(sb);
        assert_eq!(t.least_recently_used(0), Some(sc));
        t.remove(sc);
        assert_eq!(t.least_recently_used(0), Some(sa));
        t.remove(sa);
        assert_eq!(t.least_recently_used(0), None);
    }

    #[test]
    fn each_group_keeps_its_own_order() {
        let mut t = Table::default();
        let [a, b, c, d] = [(); 4].map(|_| SessionId::generate());
        let sa = t.insert(a, (0, 'a'), 0).expect("room");
        let sb = t.insert(b, (1, 'b'), 0).expect("room");
        let sc = t.insert(c, (0, 'c'), 0).expect("room");
        let sd = t.insert(d, (1, 'd'), 0).expect("room");
        assert_eq!(
            (t.least_recently_used(0), t.least_recently_used(1)),
            (Some(sa), Some(sb))
        );
        t.touch(sa);
        assert_eq!(t.least_recently_used(0), Some(sc));
        assert_eq!(t.least_recently_used(1), Some(sb), "another group's touch");
        t.remove(sb);
        assert_eq!(t.least_recently_used(1), Some(sd));
        t.remove(sd);
        assert_eq!(t.least_recently_used(1), None);
        assert_eq!(t.least_recently_used(7), None, "a group never seen");
        assert_eq!(t.least_recently_used(0), Some(sc));
    }

    /// Random operations against a plain model: same members, same LRU order, and every session
    /// due exactly when its bucket has passed.
    #[test]
    fn agrees_with_a_simple_model_under_random_operations() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        let mut t = Table::default();
        // id -> (value, due); LRU order: oldest first.
        let mut model: std::collections::HashMap<SessionId, (u32, u64)> = Default::default();
        let mut order: Vec<SessionId> = Vec::new();
        let mut now = 0u64;
        for step in 0..20_000u32 {
            match rng.random_range(0..6) {
                0 | 1 => {
                    let id = SessionId::generate();
                    let due = now + rng.random_range(0..2_000);
                    t.insert(id, step, due).expect("room");
                    model.insert(id, (step, due));
                    order.push(id);
                }
                2 if !order.is_empty() => {
                    let id = order.remove(rng.random_range(0..order.len()));
                    let slot = t.find(&id).expect("a member");
                    assert_eq!(
                        t.remove(slot),
                        Some((id, model.remove(&id).expect("modelled").0))
                    );
                }
                3 if !order.is_empty() => {
                    let id = order.remove(rng.random_range(0..order.len()));
                    t.touch(t.find(&id).expect("a member"));
                    order.push(id);
                }
                4 if !order.is_empty() => {
                    let id = order[rng.random_range(0..order.len())];
                    let due = now + rng.random_range(0..2_000);
                    t.refile(t.find(&id).expect("a member"), due);
                    model.get_mut(&id).expect("modelled").1 = due;
                }
                _ => {
                    now += rng.random_range(0..300);
                    while let Some(slot) = t.pop_due(now) {
                        let id = *t.id(slot);
                        let due = model[&id].1;
                        assert!(
                            due / BUCKET_MS < now / BUCKET_MS,
                            "popped before its bucket passed"
                        );
                        // Out of the index until filed again, as the sweep does.
                        t.refile(slot, NOT_FILED - 1);
                        model.get_mut(&id).expect("modelled").1 = NOT_FILED - 1;
                    }
                    let overdue = model
                        .values()
                        .filter(|(_, due)| due / BUCKET_MS < now / BUCKET_MS)
                        .count();
                    assert_eq!(overdue, 0, "a session whose bucket passed was not due");
                }
            }
            assert_eq!(t.len(), model.len());
            assert_eq!(
                t.least_recently_used(0).map(|s| *t.id(s)),
                order.first().copied()
            );
        }
        for (id, (value, _)) in &model {
            assert_eq!(
                t.find(id).map(|s| *t.get(s).expect("occupied")),
                Some(*value)
            );
        }
    }

    #[test]
    fn only_buckets_wholly_past_are_due_and_removal_unfiles() {
        let mut t = Table::default();
        let id = ids(4);
        let early = t.insert(id[0], 0, 1_050).expect("room");
        let same_bucket = t.insert(id[1], 1, 1_099).expect("room");
        let gone = t.insert(id[2], 2, 1_000).expect("room");
        let late = t.insert(id[3], 3, 5_000).expect("room");
        t.remove(gone);
        assert_eq!(t.pop_due(1_099), None, "the bucket has not wholly passed");
        let mut due = vec![t.pop_due(1_100), t.pop_due(1_100)];
        due.sort();
        assert_eq!(due, vec![Some(early), Some(same_bucket)]);
        assert_eq!(t.pop_due(4_999), None);
        t.refile(early, 3_000);
        assert_eq!(t.pop_due(10_000), Some(early));
        assert_eq!(t.pop_due(10_000), Some(late));
        assert_eq!(t.pop_due(10_000), None);
        assert!(t.buckets.is_empty());
    }
}
