//! The timer service of a subtask: event-time and processing-time timers,
//! keyed, deduplicated, fired in time order, snapshotted without a pause and
//! checkpointed incrementally.
//!
//! Every timer the host accepts has a key in the subtask's key groups (see
//! [`crate::wasm::host_timers`] for why a timer with no key is refused); a
//! timer with no key exists only when restored from a checkpoint or
//! savepoint of an older weir, and is kept (it fires first at its time).
//!
//! # Structure
//!
//! Flink keeps a binary heap of timers per key group, with a hash set beside
//! it for dedupe, and snapshots it by copying the heap's array. Operators
//! register a timer per event (a window's end for the event's key), so
//! almost every registration is a duplicate, and in practice there are few
//! distinct times (one per open window) and many keys per time. So here each
//! domain is a `BTreeMap` from the distinct times to a *bucket*: the keys
//! registered for that time, their bytes in one arena and a
//! [`hashbrown::HashTable`] of their slots for dedupe. Registering or
//! deleting is one hash lookup in the bucket of its time (no allocation per
//! timer, no key comparisons along a tree path); the map is as deep as there
//! are distinct times. A deleted or fired key leaves a dead slot that a new
//! registration of it revives; a bucket mostly dead is compacted.
//!
//! Timers fire in `(time, key bytes)` order, the order of the ordered set
//! this replaced, which the operators' exact outputs depend on: when a
//! bucket becomes due its live keys are sorted once (the *drain order*); a
//! key registered at that time while it fires is inserted into the rest of
//! the order, so it fires in the same place as before.
//!
//! # Snapshots
//!
//! Buckets are shared (`Arc`) copy-on-write: a snapshot at a barrier clones
//! the two maps of pointers, O(distinct times), and the first write to a
//! bucket after it copies that bucket (`Arc::make_mut`). The coordinator
//! turns the [`TimerSnapshot`] into records on its own thread while the
//! subtask goes on.
//!
//! The service keeps the buckets of its previous snapshot as the *base* of
//! the next one, so a non-full snapshot yields the net effect since then
//! ([`TimerSnapshot::delta`]): a bucket still shared with the base did not
//! change; a bucket gone (fired) is one `cleared` entry per key group it
//! had keys in, not a record per timer; a bucket that changed is diffed
//! against its base. Registrations that fired or were deleted before the
//! barrier never reach a checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::model::keygroup::key_group;
use crate::model::TimeDomain;
use crate::state::checkpoint::TimerRecord;

/// A registered timer: when, and for which key.
pub type TimerEntry = (i64, Option<Vec<u8>>);

fn hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// One key's place in a bucket.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    len: u32,
    live: bool,
}

/// The timers of one domain at one time: deduplicated keys in one arena.
#[derive(Debug, Clone, Default)]
struct Bucket {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    /// Slots (live or dead) by the hash of their key; a key has one slot.
    index: HashTable<usize>,
    /// Live keyed slots.
    live: usize,
    /// Whether a timer with no key is registered (older weir's, restored).
    keyless: bool,
    /// While the bucket fires: live slots sorted by key, from `next` on.
    order: Vec<usize>,
    next: usize,
}

impl Bucket {
    fn key(&self, slot: usize) -> &[u8] {
        let s = self.slots[slot];
        &self.arena[s.start..s.start + s.len as usize]
    }

    fn find(&self, key: &[u8], h: u64) -> Option<usize> {
        self.index.find(h, |&i| self.key(i) == key).copied()
    }

    fn is_empty(&self) -> bool {
        self.live == 0 && !self.keyless
    }

    fn len(&self) -> usize {
        self.live + usize::from(self.keyless)
    }

    fn contains(&self, key: Option<&[u8]>) -> bool {
        match key {
            None => self.keyless,
            Some(k) => self.find(k, hash(k)).is_some_and(|i| self.slots[i].live),
        }
    }

    /// Adds `key`; whether it was not there.
    fn insert(&mut self, key: Option<&[u8]>) -> bool {
        let Some(key) = key else {
            return !std::mem::replace(&mut self.keyless, true);
        };
        let h = hash(key);
        let slot = match self.find(key, h) {
            Some(i) if self.slots[i].live => return false,
            Some(i) => {
                self.slots[i].live = true;
                i
            }
            None => {
                let i = self.slots.len();
                self.slots.push(Slot {
                    start: self.arena.len(),
                    len: key.len() as u32,
                    live: true,
                });
                self.arena.extend_from_slice(key);
                let Bucket {
                    index,
                    arena,
                    slots,
                    ..
                } = self;
                index.insert_unique(h, i, |&j| {
                    let s = slots[j];
                    hash(&arena[s.start..s.start + s.len as usize])
                });
                i
            }
        };
        self.live += 1;
        if !self.order.is_empty() {
            // Firing: it fires in its place among the keys still to fire
            // (unless it is a revived slot still among them).
            let rest = &self.order[self.next..];
            if let Err(p) = rest.binary_search_by(|&j| self.key(j).cmp(key)) {
                self.order.insert(self.next + p, slot);
            }
        }
        true
    }

    /// Removes `key`; whether it was there.
    fn remove(&mut self, key: Option<&[u8]>) -> bool {
        let Some(key) = key else {
            return std::mem::replace(&mut self.keyless, false);
        };
        match self.find(key, hash(key)) {
            Some(i) if self.slots[i].live => {
                self.slots[i].live = false;
                self.live -= 1;
                let dead = self.slots.len() - self.live;
                if self.order.is_empty() && dead > 64 && dead > self.live {
                    self.compact();
                }
                true
            }
            _ => false,
        }
    }

    /// Drops the dead slots (not while firing: the drain order holds slots).
    fn compact(&mut self) {
        let mut fresh = Bucket::default();
        for i in 0..self.slots.len() {
            if self.slots[i].live {
                fresh.insert(Some(self.key(i)));
            }
        }
        fresh.keyless = self.keyless;
        *self = fresh;
    }

    /// Live keyed slots, sorted by key.
    fn sorted(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].live)
            .collect();
        order.sort_unstable_by(|&a, &b| self.key(a).cmp(self.key(b)));
        order
    }

    /// Every timer: the keyless one, then keys in slot order.
    fn keys(&self) -> impl Iterator<Item = Option<&[u8]>> {
        let keyless = self.keyless.then_some(None);
        keyless.into_iter().chain(
            (0..self.slots.len())
                .filter(|&i| self.slots[i].live)
                .map(|i| Some(self.key(i))),
        )
    }

    /// Pops up to `limit` timers in key order into `out`.
    fn pop(&mut self, limit: usize, mut out: impl FnMut(Option<&[u8]>)) -> usize {
        let mut n = 0;
        if self.keyless && limit > 0 {
            self.keyless = false;
            out(None);
            n += 1;
        }
        if self.order.is_empty() && self.live > 0 {
            self.order = self.sorted();
            self.next = 0;
        }
        while n < limit && self.next < self.order.len() {
            let i = self.order[self.next];
            self.next += 1;
            if self.slots[i].live {
                self.slots[i].live = false;
                self.live -= 1;
                let s = self.slots[i];
                out(Some(&self.arena[s.start..s.start + s.len as usize]));
                n += 1;
            }
        }
        n
    }
}

type Buckets = BTreeMap<i64, Arc<Bucket>>;

/// The domain's code in stored records.
fn domain_code(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

/// The timers of one subtask.
#[derive(Debug)]
pub struct TimerService {
    max_parallelism: u32,
    /// Event time, then processing time.
    domains: [Buckets; 2],
    counts: [usize; 2],
    /// The buckets at the previous snapshot (or restore): what the next
    /// non-full snapshot is the difference from.
    base: [Buckets; 2],
}

impl TimerService {
    /// No timers, for a subtask of a job with `max_parallelism` key groups.
    pub fn new(max_parallelism: u32) -> Self {
        TimerService {
            max_parallelism,
            domains: Default::default(),
            counts: [0; 2],
            base: Default::default(),
        }
    }

    /// Registers a timer; a second registration of the same one is a no-op.
    pub fn register(&mut self, domain: TimeDomain, key: Option<&[u8]>, timestamp: i64) {
        let d = domain_code(domain) as usize;
        let bucket = self.domains[d].entry(timestamp).or_default();
        // A duplicate (most registrations) is found without copying the bucket.
        if bucket.contains(key) {
            return;
        }
        if Arc::make_mut(bucket).insert(key) {
            self.counts[d] += 1;
        }
    }

    /// Deletes a timer if it is registered.
    pub fn delete(&mut self, domain: TimeDomain, key: Option<&[u8]>, timestamp: i64) {
        let d = domain_code(domain) as usize;
        let Some(bucket) = self.domains[d].get_mut(&timestamp) else {
            return;
        };
        if !bucket.contains(key) {
            return;
        }
        let bucket = Arc::make_mut(bucket);
        if bucket.remove(key) {
            self.counts[d] -= 1;
        }
        if bucket.is_empty() {
            self.domains[d].remove(&timestamp);
        }
    }

    /// Removes up to `limit` timers of `domain` due at `time` (timestamp <=
    /// time) and hands each to `out`, in `(time, key)` order; returns how many.
    pub fn pop_due_with(
        &mut self,
        domain: TimeDomain,
        time: i64,
        limit: usize,
        mut out: impl FnMut(i64, Option<&[u8]>),
    ) -> usize {
        let d = domain_code(domain) as usize;
        let mut n = 0;
        while n < limit {
            let Some(mut first) = self.domains[d].first_entry() else {
                break;
            };
            let ts = *first.key();
            if ts > time {
                break;
            }
            let bucket = Arc::make_mut(first.get_mut());
            let popped = bucket.pop(limit - n, |key| out(ts, key));
            n += popped;
            self.counts[d] -= popped;
            if bucket.is_empty() {
                first.remove();
            }
        }
        n
    }

    /// Removes and returns, in `(time, key)` order, up to `limit` timers of
    /// `domain` due at `time` (timestamp <= time).
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64, limit: usize) -> Vec<TimerEntry> {
        let mut due = Vec::new();
        self.pop_due_with(domain, time, limit, |ts, key| {
            due.push((ts, key.map(<[u8]>::to_vec)))
        });
        due
    }

    /// The earliest processing-time timer, if any.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.domains[1].keys().next().copied()
    }

    /// The timers as they are now, for a checkpoint or savepoint: all of
    /// them if `full`, else their difference from the previous snapshot.
    /// Costs O(distinct times); the records are made from it later, on
    /// another thread.
    pub fn snapshot(&mut self, full: bool) -> TimerSnapshot {
        let now = self.domains.clone();
        let base = std::mem::replace(&mut self.base, now.clone());
        TimerSnapshot {
            max_parallelism: self.max_parallelism,
            now,
            base: (!full).then_some(base),
        }
    }

    /// Registers restored timers; the next non-full snapshot is relative to them.
    pub fn restore(&mut self, records: Vec<TimerRecord>) {
        for (domain, ts, key) in records {
            let domain = if domain == 0 {
                TimeDomain::EventTime
            } else {
                TimeDomain::ProcessingTime
            };
            self.register(domain, key.as_deref(), ts);
        }
        self.base = self.domains.clone();
    }

    /// Number of timers pending, in both domains.
    pub fn pending(&self) -> usize {
        self.counts[0] + self.counts[1]
    }

    /// Number of timers registered in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        self.counts[domain_code(domain) as usize]
    }
}

/// What a checkpoint stores of one key group's timers instead of all of
/// them: the net effect since the previous checkpoint. Applied in field
/// order: clear the times, remove, add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerDelta {
    /// `(domain, time)` whose timers in the key group are all gone.
    pub cleared: Vec<(u8, i64)>,
    /// Timers gone (fired or deleted).
    pub removed: Vec<TimerRecord>,
    /// Timers registered.
    pub added: Vec<TimerRecord>,
}

impl TimerDelta {
    /// Applies it to a key group's timers.
    pub fn apply(self, timers: &mut std::collections::BTreeSet<TimerRecord>) {
        for (domain, time) in self.cleared {
            timers.retain(|(d, t, _)| (*d, *t) != (domain, time));
        }
        for r in &self.removed {
            timers.remove(r);
        }
        timers.extend(self.added);
    }
}

/// A subtask's timers at a barrier, shared copy-on-write with it: all, or
/// the difference from its previous snapshot.
#[derive(Debug)]
pub struct TimerSnapshot {
    max_parallelism: u32,
    now: [Buckets; 2],
    /// For a non-full snapshot: the buckets at the previous one.
    base: Option<[Buckets; 2]>,
}

impl TimerSnapshot {
    /// Whether it holds all timers (else the difference from the previous snapshot).
    pub fn is_full(&self) -> bool {
        self.base.is_none()
    }

    /// Number of timers pending at the barrier.
    pub fn len(&self) -> u64 {
        self.now
            .iter()
            .flat_map(|b| b.values())
            .map(|b| b.len() as u64)
            .sum()
    }

    /// Whether no timer was pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, d: usize, ts: i64, key: Option<&[u8]>) -> (u32, TimerRecord) {
        let kg = key_group(key, self.max_parallelism);
        (kg, (d as u8, ts, key.map(<[u8]>::to_vec)))
    }

    /// Every timer, grouped by the key group of its key, as full checkpoints
    /// and savepoints store them.
    pub fn records(&self) -> Vec<(u32, Vec<TimerRecord>)> {
        let mut by_group: BTreeMap<u32, Vec<TimerRecord>> = BTreeMap::new();
        for (d, buckets) in self.now.iter().enumerate() {
            for (&ts, bucket) in buckets {
                for key in bucket.keys() {
                    let (kg, r) = self.record(d, ts, key);
                    by_group.entry(kg).or_default().push(r);
                }
            }
        }
        by_group.into_iter().collect()
    }

    /// The difference from the previous snapshot, by key group (only key
    /// groups with a difference); for a full snapshot, every timer as added.
    pub fn delta(&self) -> Vec<(u32, TimerDelta)> {
        let empty: [Buckets; 2] = Default::default();
        let base = self.base.as_ref().unwrap_or(&empty);
        let mut by_group: BTreeMap<u32, TimerDelta> = BTreeMap::new();
        for d in 0..2 {
            let (now, base) = (&self.now[d], &base[d]);
            for (&ts, old) in base {
                let new = now.get(&ts);
                if new.is_some_and(|n| Arc::ptr_eq(n, old)) {
                    continue;
                }
                let removed: Vec<Option<&[u8]>> = match new {
                    Some(new) => old.keys().filter(|k| !new.contains(*k)).collect(),
                    None => Vec::new(),
                };
                match new {
                    // Changed in part: the keys removed and the keys added.
                    Some(new) if removed.len() <= new.len() => {
                        for key in removed {
                            let (kg, r) = self.record(d, ts, key);
                            by_group.entry(kg).or_default().removed.push(r);
                        }
                        for key in new.keys().filter(|k| !old.contains(*k)) {
                            let (kg, r) = self.record(d, ts, key);
                            by_group.entry(kg).or_default().added.push(r);
                        }
                    }
                    // Gone (fired) or mostly changed: clear the time in
                    // each key group it had keys in, then add what is there now.
                    _ => {
                        let mut groups: Vec<u32> = old
                            .keys()
                            .map(|k| key_group(k, self.max_parallelism))
                            .collect();
                        groups.sort_unstable();
                        groups.dedup();
                        for kg in groups {
                            by_group.entry(kg).or_default().cleared.push((d as u8, ts));
                        }
                        for key in new.into_iter().flat_map(|n| n.keys()) {
                            let (kg, r) = self.record(d, ts, key);
                            by_group.entry(kg).or_default().added.push(r);
                        }
                    }
                }
            }
            for (&ts, new) in now {
                if base.contains_key(&ts) {
                    continue;
                }
                for key in new.keys() {
                    let (kg, r) = self.record(d, ts, key);
                    by_group.entry(kg).or_default().added.push(r);
                }
            }
        }
        by_group.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const ET: TimeDomain = TimeDomain::EventTime;
    const PT: TimeDomain = TimeDomain::ProcessingTime;

    fn all(t: &TimerService) -> BTreeSet<TimerRecord> {
        t.snapshot_peek()
    }

    impl TimerService {
        /// Every timer, without touching the base.
        fn snapshot_peek(&self) -> BTreeSet<TimerRecord> {
            let snap = TimerSnapshot {
                max_parallelism: self.max_parallelism,
                now: self.domains.clone(),
                base: None,
            };
            snap.records().into_iter().flat_map(|(_, r)| r).collect()
        }
    }

    /// Applies deltas as a restore does, key group by key group.
    fn apply(groups: &mut BTreeMap<u32, BTreeSet<TimerRecord>>, delta: Vec<(u32, TimerDelta)>) {
        for (kg, d) in delta {
            d.apply(groups.entry(kg).or_default());
        }
    }

    fn flat(groups: &BTreeMap<u32, BTreeSet<TimerRecord>>) -> BTreeSet<TimerRecord> {
        groups.values().flatten().cloned().collect()
    }

    #[test]
    fn dedup_order_and_due() {
        let mut t = TimerService::new(128);
        t.register(ET, Some(b"b"), 10);
        t.register(ET, Some(b"a"), 10);
        t.register(ET, Some(b"a"), 10);
        t.register(ET, None, 5);
        t.register(ET, None, 20);
        assert_eq!(t.len(ET), 4);
        assert_eq!(t.pending(), 4);
        t.delete(ET, None, 20);
        t.delete(ET, Some(b"zz"), 10);
        t.delete(ET, Some(b"a"), 99);
        assert_eq!(t.len(ET), 3);
        let due = t.pop_due(ET, 10, 100);
        assert_eq!(
            due,
            vec![
                (5, None),
                (10, Some(b"a".to_vec())),
                (10, Some(b"b".to_vec()))
            ]
        );
        assert_eq!(t.len(ET), 0);
        t.register(PT, None, 7);
        t.register(PT, Some(b"x"), 3);
        assert_eq!(t.next_processing_time(), Some(3));
        assert_eq!((t.len(PT), t.pending()), (2, 2));
    }

    /// The ordered set this replaced: the reference for every order.
    fn model_pop(model: &mut BTreeSet<TimerEntry>, time: i64, limit: usize) -> Vec<TimerEntry> {
        let mut due = Vec::new();
        while due.len() < limit && model.first().is_some_and(|(ts, _)| *ts <= time) {
            due.push(model.pop_first().expect("non-empty"));
        }
        due
    }

    #[test]
    fn fires_as_the_ordered_set_did_with_writes_while_firing() {
        let mut t = TimerService::new(128);
        let mut model: BTreeSet<TimerEntry> = BTreeSet::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut time = 0i64;
        for step in 0..20_000 {
            let key = format!("k{}", rand(500)).into_bytes();
            let ts = time + rand(6) as i64 - 1;
            match rand(10) {
                0..=5 => {
                    t.register(ET, Some(&key), ts);
                    model.insert((ts, Some(key)));
                }
                6..=7 => {
                    t.delete(ET, Some(&key), ts);
                    model.remove(&(ts, Some(key)));
                }
                _ => {
                    // A few at a time, so that writes land while a time fires.
                    let limit = 1 + rand(20) as usize;
                    assert_eq!(
                        t.pop_due(ET, time, limit),
                        model_pop(&mut model, time, limit),
                        "step {step}"
                    );
                    if rand(8) == 0 {
                        time += 1;
                    }
                }
            }
            assert_eq!(t.len(ET), model.len());
        }
        assert_eq!(
            t.pop_due(ET, i64::MAX, usize::MAX),
            model_pop(&mut model, i64::MAX, usize::MAX)
        );
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn many_deletes_compact_and_keys_come_back() {
        let mut t = TimerService::new(128);
        for i in 0..1000u32 {
            t.register(ET, Some(&i.to_be_bytes()), 1);
        }
        for i in 0..990u32 {
            t.delete(ET, Some(&i.to_be_bytes()), 1);
        }
        assert_eq!(t.len(ET), 10);
        let b = &t.domains[0][&1];
        assert!(b.slots.len() < 200, "compacted: {} slots", b.slots.len());
        t.register(ET, Some(&5u32.to_be_bytes()), 1);
        t.register(ET, Some(&995u32.to_be_bytes()), 1);
        assert_eq!(t.len(ET), 11);
        let due: Vec<u32> = t
            .pop_due(ET, 1, 100)
            .into_iter()
            .map(|(_, k)| u32::from_be_bytes(k.unwrap().try_into().unwrap()))
            .collect();
        assert_eq!(due, [5, 990, 991, 992, 993, 994, 995, 996, 997, 998, 999]);
        assert!(t.domains[0].is_empty());
    }

    #[test]
    fn a_snapshot_is_not_changed_by_writes_after_it() {
        let mut t = TimerService::new(128);
        t.register(ET, Some(b"a"), 1);
        t.register(ET, Some(b"b"), 2);
        t.register(PT, Some(b"c"), 3);
        let snap = t.snapshot(true);
        let before = all(&t);
        t.register(ET, Some(b"d"), 1);
        t.delete(ET, Some(b"b"), 2);
        t.pop_due(PT, 100, 10);
        t.register(ET, Some(b"e"), 9);
        // The snapshot moves to another thread and still sees the barrier's timers.
        let records = std::thread::spawn(move || {
            assert!(snap.is_full());
            assert_eq!(snap.len(), 3);
            snap.records()
        })
        .join()
        .unwrap();
        let got: BTreeSet<TimerRecord> = records.into_iter().flat_map(|(_, r)| r).collect();
        assert_eq!(got, before);
        assert_eq!(
            all(&t),
            BTreeSet::from([
                (0, 1, Some(b"a".to_vec())),
                (0, 1, Some(b"d".to_vec())),
                (0, 9, Some(b"e".to_vec()))
            ])
        );
        for (kg, records) in t.snapshot(true).records() {
            for (_, _, key) in records {
                assert_eq!(kg, key_group(key.as_deref(), 128));
            }
        }
    }

    #[test]
    fn deltas_applied_in_order_restore_what_a_full_snapshot_holds() {
        let mut t = TimerService::new(16);
        let mut restored: BTreeMap<u32, BTreeSet<TimerRecord>> = BTreeMap::new();
        let key = |i: u32| format!("key{i}").into_bytes();
        // A full snapshot starts the chain.
        for i in 0..200 {
            t.register(ET, Some(&key(i)), i64::from(i % 4));
        }
        apply(&mut restored, t.snapshot(true).delta());
        assert_eq!(flat(&restored), all(&t));
        for round in 0..6u32 {
            // Some due fire (whole times and part of one), some deleted,
            // some registered again, new ones at new and old times.
            t.pop_due(ET, i64::from(round), 30);
            for i in (round * 7..200).step_by(11) {
                t.delete(ET, Some(&key(i)), i64::from(i % 4));
            }
            for i in 0..40 {
                let k = key(i * 5 + round);
                t.register(ET, Some(&k), i64::from(round + i % 3));
                t.register(PT, Some(&k), 1000 + i64::from(i % 2));
            }
            if round == 3 {
                t.pop_due(PT, 2000, 1000);
            }
            let snap = t.snapshot(false);
            assert!(!snap.is_full());
            let delta = snap.delta();
            apply(&mut restored, delta);
            assert_eq!(flat(&restored), all(&t), "round {round}");
            // Every record in the key group of its key.
            for (kg, set) in &restored {
                for (_, _, k) in set {
                    assert_eq!(*kg, key_group(k.as_deref(), 16));
                }
            }
        }
        // Nothing changed: an empty delta.
        assert!(t.snapshot(false).delta().is_empty());
        // A restored service goes on from where it was restored.
        let mut r = TimerService::new(16);
        r.restore(flat(&restored).into_iter().collect());
        assert_eq!(all(&r), all(&t));
        assert!(r.snapshot(false).delta().is_empty());
        r.register(ET, Some(b"new"), 77);
        assert_eq!(
            r.snapshot(false).delta(),
            vec![(
                key_group(Some(b"new"), 16),
                TimerDelta {
                    added: vec![(0, 77, Some(b"new".to_vec()))],
                    ..Default::default()
                }
            )]
        );
    }

    #[test]
    fn a_fired_time_is_one_cleared_entry_per_key_group() {
        let mut t = TimerService::new(4);
        for i in 0..1000u32 {
            t.register(ET, Some(&i.to_le_bytes()), 10);
        }
        t.register(ET, Some(b"stays"), 20);
        t.snapshot(true);
        assert_eq!(t.pop_due(ET, 10, usize::MAX).len(), 1000);
        let delta = t.snapshot(false).delta();
        assert_eq!(delta.len(), 4);
        for (_, d) in delta {
            assert_eq!(d.cleared, vec![(0, 10)]);
            assert!(d.removed.is_empty() && d.added.is_empty());
        }
    }

    #[test]
    fn keyless_timers_of_an_older_weir_restore_and_fire_first() {
        let mut t = TimerService::new(8);
        t.restore(vec![
            (0, 5, Some(b"a".to_vec())),
            (0, 5, None),
            (1, 6, None),
        ]);
        assert_eq!(t.pending(), 3);
        assert_eq!(
            t.pop_due(ET, 5, 10),
            vec![(5, None), (5, Some(b"a".to_vec()))]
        );
        let snap = t.snapshot(false);
        let delta = snap.delta();
        let mut groups = BTreeMap::new();
        groups
            .entry(key_group(Some(b"a"), 8))
            .or_insert_with(BTreeSet::new)
            .insert((0u8, 5i64, Some(b"a".to_vec())));
        groups
            .entry(key_group(None, 8))
            .or_insert_with(BTreeSet::new)
            .extend([(0u8, 5i64, None), (1, 6, None)]);
        apply(&mut groups, delta);
        assert_eq!(flat(&groups), BTreeSet::from([(1, 6, None)]));
    }
}
