//! Typed handles on declared state, with a cache that lasts from call to call.
//!
//! Values are stored as JSON (see the crate docs). Reads that miss the cache
//! go to the host; writes are buffered and sent in one call per state when the
//! operator call ends. What the cache knows stays right between calls because
//! only this instance writes its state (the host starts a new instance for a
//! restore, a restart or a swap); it is bounded ([`STATE_CACHE_ENTRIES`]) and
//! emptied when a write could not be encoded, when a map is cleared, and
//! when a call's share of hits shows that the keys are too many for it to
//! hold (it then keeps to a batch or two; see `Slots::end_call`).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bytes::{extend, same, Appender};
use crate::event::Error;
use crate::runtime::wit::{state as host, types};
use crate::runtime::CALL_KEYS;

/// The kinds of declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// One value per key: [`ValueState`].
    Value,
    /// A map of user keys to values per key: [`MapState`].
    Map,
    /// An ordered list of values per key: [`ListState`].
    List,
}

/// A declared state: what an operator returns from [`crate::Operator::states`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSpec {
    /// Unique name within the operator.
    pub name: String,
    /// The kind of state.
    pub kind: StateKind,
    /// Schema version of the stored values; raise it when their shape
    /// changes and implement [`crate::Operator::migrate`].
    pub version: u32,
}

impl StateSpec {
    /// A value state called `name` at schema `version`.
    pub fn value(name: &str, version: u32) -> Self {
        Self::new(name, StateKind::Value, version)
    }
    /// A map state called `name` at schema `version`.
    pub fn map(name: &str, version: u32) -> Self {
        Self::new(name, StateKind::Map, version)
    }
    /// A list state called `name` at schema `version`.
    pub fn list(name: &str, version: u32) -> Self {
        Self::new(name, StateKind::List, version)
    }
    fn new(name: &str, kind: StateKind, version: u32) -> Self {
        StateSpec {
            name: name.to_string(),
            kind,
            version,
        }
    }
    pub(crate) fn to_wit(&self) -> types::StateSpec {
        types::StateSpec {
            name: self.name.clone(),
            kind: match self.kind {
                StateKind::Value => types::StateKind::Value,
                StateKind::Map => types::StateKind::Map,
                StateKind::List => types::StateKind::List,
            },
            version: self.version,
        }
    }
}

/// A state cache the context flushes at the end of every operator call.
pub(crate) trait Flush {
    fn flush(&self) -> Result<(), Error>;
}

fn encode<T: Serialize>(state: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::fatal(format!("cannot encode a value of state `{state}`: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(state: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::fatal(format!(
            "state `{state}` holds a value that does not decode as this type: {e}"
        ))
    })
}

/// Splits flat blobs into their parts (`None` for an absent one).
pub(crate) fn split_blobs(blobs: &types::Blobs) -> Result<Vec<Option<&[u8]>>, Error> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(blobs.lens.len());
    for &len in &blobs.lens {
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = at + len as usize;
        let part = blobs
            .data
            .get(at..end)
            .ok_or_else(|| Error::fatal("malformed blobs from the host"))?;
        out.push(Some(part));
        at = end;
    }
    Ok(out)
}

fn empty_blobs() -> types::Blobs {
    types::Blobs {
        data: Vec::new(),
        lens: Vec::new(),
    }
}

fn push_blob(blobs: &mut types::Blobs, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            extend(&mut blobs.data, b);
            blobs.lens.push(b.len() as i32);
        }
        None => blobs.lens.push(-1),
    }
}

struct Slot<T> {
    value: Option<T>,
    dirty: bool,
    /// Where the host stores the entry, if a write said ([`NO_PLACE`]
    /// otherwise; value states only, see `put-many-placed`): given back
    /// with its next write, so that the host need not find it.
    place: u64,
}

/// The values of the entries (keys, or (key, user key) pairs) a cache
/// knows, by number, with those the current call wrote and how many of its
/// lookups were of new entries: what value and map caches keep alike.
struct Slots<V> {
    slots: Vec<Slot<V>>,
    /// The slots written in this call.
    dirty: Vec<u32>,
    /// Entries looked up in this call, and how many of them were not known.
    looked_up: usize,
    missed: usize,
    /// Entries known when the call started.
    known: usize,
}

impl<V> Slots<V> {
    fn new() -> Self {
        Slots {
            slots: Vec::new(),
            dirty: Vec::new(),
            looked_up: 0,
            missed: 0,
            known: 0,
        }
    }

    /// Counts a lookup; a `new` entry gets an empty slot (filled by a fetch).
    fn looked_up(&mut self, new: bool) {
        self.looked_up += 1;
        self.missed += usize::from(new);
        if new {
            self.slots.push(Slot {
                value: None,
                dirty: false,
                place: NO_PLACE,
            });
        }
    }

    /// Entry `i`'s value.
    fn value(&self, i: u32) -> &Option<V> {
        &self.slots[i as usize].value
    }

    /// Sets entry `i`'s value as fetched from the host.
    fn fill(&mut self, i: u32, value: V) {
        self.slots[i as usize].value = Some(value);
    }

    /// Writes entry `i` (`new`: just added to the index).
    fn write(&mut self, i: u32, new: bool, value: Option<V>) {
        if new {
            self.slots.push(Slot {
                value,
                dirty: true,
                place: NO_PLACE,
            });
            self.dirty.push(i);
        } else {
            let slot = &mut self.slots[i as usize];
            slot.value = value;
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(i);
            }
        }
    }

    /// Hands each entry written in this call to `f` with its place, which
    /// sends it: those of `first` in its order (the entries of the host's
    /// last read, whose places it then knows), then the others; they are
    /// clean afterwards.
    fn flush_each(&mut self, first: &[u32], mut f: impl FnMut(u32, Option<&V>, u64)) {
        for &i in first.iter().chain(&self.dirty) {
            let Some(slot) = self.slots.get_mut(i as usize) else {
                continue;
            };
            if slot.dirty {
                slot.dirty = false;
                f(i, slot.value.as_ref(), slot.place);
            }
        }
        self.dirty.clear();
    }

    /// Notes where the host stores entry `i`.
    fn set_place(&mut self, i: u32, place: u64) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            slot.place = place;
        }
    }

    /// Ends a call (after [`Slots::flush_each`]): whether the cache forgets
    /// every entry, which it does when a value failed to encode (it was not
    /// written, and must not be read back), past [`STATE_CACHE_ENTRIES`],
    /// and when the entries are too many to come back while known.
    ///
    /// The last is judged by the share of the call's lookups that hit: over
    /// `n` entries in all, a cache that held `k` of them at the start of the
    /// call hits about `k / n` of the time. Under `k / STATE_CACHE_ENTRIES`
    /// says that `n` is past what the cache can hold (where it would keep
    /// growing to its bound, forget and start again, and hit on a fraction
    /// of the lookups only): it then keeps to a batch's entries or two (and the host
    /// finds the slots of a write after a read of the same keys without
    /// looking them up again), instead of growing a large index of entries
    /// that rarely come back. Over fewer entries the share grows call by
    /// call as the cache warms up. The caller empties its index.
    fn end_call(&mut self, failed: bool) -> bool {
        let hits = self.looked_up - self.missed;
        let forget = failed
            || self.slots.len() > STATE_CACHE_ENTRIES
            || hits * STATE_CACHE_ENTRIES < self.known * self.looked_up;
        self.looked_up = 0;
        self.missed = 0;
        if forget {
            self.forget();
        }
        self.known = self.slots.len();
        forget
    }

    /// Forgets every entry (none may be dirty).
    fn forget(&mut self) {
        debug_assert!(self.dirty.is_empty());
        self.slots.clear();
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Entry `eq` picks in `table`, or `next` added under `hash` (`rehash`
/// hashes the entries when the table grows): hashed once, probed once. The
/// entry, and whether it is new.
fn find_or_add(
    table: &mut hashbrown::HashTable<u32>,
    hash: u64,
    eq: impl FnMut(&u32) -> bool,
    rehash: impl Fn(&u32) -> u64,
    next: u32,
) -> (u32, bool) {
    match table.entry(hash, eq, rehash) {
        hashbrown::hash_table::Entry::Occupied(e) => (*e.get(), false),
        hashbrown::hash_table::Entry::Vacant(e) => {
            e.insert(next);
            (next, true)
        }
    }
}

/// The keys a cache knows, by number, indexed by a hash table of numbers:
/// finding or adding a key allocates nothing once the buffers have grown,
/// and the key just used is found without hashing. A key of up to
/// [`INLINE`] bytes is kept in its own record, so that checking a
/// candidate of a probe reads one line, not a span and then the arena.
#[derive(Default)]
pub(crate) struct KeyIndex {
    records: Vec<KeyRecord>,
    /// The bytes of keys longer than [`INLINE`].
    arena: Vec<u8>,
    table: hashbrown::HashTable<u32>,
    last: Option<u32>,
}

/// The longest key a [`KeyRecord`] holds itself.
const INLINE: usize = 12;

/// A key: its length, and its bytes (up to [`INLINE`]) or where they
/// start in the arena (the first 4 bytes, little-endian).
#[derive(Clone, Copy)]
struct KeyRecord {
    len: u32,
    bytes: [u8; INLINE],
}

impl KeyRecord {
    /// The record of `key`, whose bytes, if it is long, go to the end of `arena`.
    fn new(key: &[u8], arena: &mut Vec<u8>) -> Self {
        let mut bytes = [0; INLINE];
        if key.len() <= INLINE {
            bytes[..key.len()].copy_from_slice(key);
        } else {
            bytes[..4].copy_from_slice(&(arena.len() as u32).to_le_bytes());
            extend(arena, key);
        }
        KeyRecord {
            len: key.len() as u32,
            bytes,
        }
    }
}

fn hash_key(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

/// The bytes of key `i`, in its record or in `arena`.
#[inline]
fn record_key<'a>(records: &'a [KeyRecord], arena: &'a [u8], i: u32) -> &'a [u8] {
    let r = &records[i as usize];
    let len = r.len as usize;
    if len <= INLINE {
        &r.bytes[..len]
    } else {
        let start = u32::from_le_bytes(r.bytes[..4].try_into().expect("4 bytes")) as usize;
        &arena[start..start + len]
    }
}

impl KeyIndex {
    /// Key number `i`.
    pub(crate) fn key(&self, i: u32) -> &[u8] {
        record_key(&self.records, &self.arena, i)
    }

    /// The number of `key`, if it is there.
    pub(crate) fn find(&mut self, key: &[u8]) -> Option<u32> {
        if let Some(i) = self.last {
            if same(self.key(i), key) {
                return Some(i);
            }
        }
        let (records, arena) = (&self.records, &self.arena);
        let found = self
            .table
            .find(hash_key(key), |&i| same(record_key(records, arena, i), key))
            .copied();
        if found.is_some() {
            self.last = found;
        }
        found
    }

    /// The number of `key`, added if new (then `true`): hashed once, probed once.
    pub(crate) fn insert(&mut self, key: &[u8]) -> (u32, bool) {
        if let Some(i) = self.last {
            if same(self.key(i), key) {
                return (i, false);
            }
        }
        let (records, arena) = (&self.records, &self.arena);
        let (i, new) = find_or_add(
            &mut self.table,
            hash_key(key),
            |&i| same(record_key(records, arena, i), key),
            |&i| hash_key(record_key(records, arena, i)),
            records.len() as u32,
        );
        if new {
            let record = KeyRecord::new(key, &mut self.arena);
            self.records.push(record);
        }
        self.last = Some(i);
        (i, new)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Forgets every key, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.arena.clear();
        self.table.clear();
        self.last = None;
    }
}

/// How many keys (or, for a [`MapState`], (key, user key) pairs) a handle
/// keeps known from call to call before it forgets them all (about 60 bytes
/// of guest memory each, plus the value).
const STATE_CACHE_ENTRIES: usize = 1 << 16;

struct ValueCache<T> {
    name: String,
    handle: host::ValueState,
    /// The keys known (read or written) since the cache was last emptied;
    /// `slots[i]` is key `i`'s value. The host's copy changes only through
    /// this instance's writes (a restore, a restart or a swap starts a new
    /// instance), so a known value stays right from call to call.
    keys: KeyIndex,
    slots: Slots<T>,
    prefetched: bool,
    /// Reused buffers of a fetch; `fetched` holds, until the call ends, the
    /// key numbers of its last read from the host, in order.
    request: types::Blobs,
    fetched: Vec<u32>,
    /// Key number of each event of the call (after the batch's prefetch).
    positions: Vec<u32>,
    /// Reused buffers of a write: the key numbers written, and the places
    /// given with them (see [`Slot::place`]).
    written: Vec<u32>,
    given: Vec<u64>,
}

const NO_KEY: u32 = u32::MAX;
/// A place the host does not know (see `put-many-placed`).
const NO_PLACE: u64 = u64::MAX;

impl<T> ValueCache<T> {
    /// The number of `key`: the current event's own key is found without hashing.
    fn find(&mut self, key: &[u8]) -> Option<u32> {
        let (at, ptr, len) = crate::runtime::CURRENT.get();
        if let Some(&i) = self.positions.get(at as usize) {
            // The very bytes of the current event's key: no need to compare them.
            if i != NO_KEY && key.as_ptr() as usize == ptr && key.len() == len {
                return Some(i);
            }
        }
        self.keys.find(key)
    }
}

impl<T: Serialize + DeserializeOwned> ValueCache<T> {
    /// Fetches `keys` (possibly repeated, `None`: no key) that the cache
    /// does not hold yet; with `batch`, they are the call's keys in order,
    /// and each position's key number is remembered.
    fn fetch<'k>(
        &mut self,
        keys: impl IntoIterator<Item = Option<&'k [u8]>>,
        batch: bool,
    ) -> Result<(), Error> {
        self.request.data.clear();
        self.request.lens.clear();
        self.fetched.clear();
        for key in keys {
            let Some(key) = key else {
                if batch {
                    self.positions.push(NO_KEY);
                }
                continue;
            };
            let (i, new) = self.keys.insert(key);
            if batch {
                self.positions.push(i);
            }
            self.slots.looked_up(new);
            if new {
                push_blob(&mut self.request, Some(key));
                self.fetched.push(i);
            }
        }
        if self.fetched.is_empty() {
            return Ok(());
        }
        let values = self.handle.get_many(&self.request);
        let parts = split_blobs(&values)?;
        for (&i, value) in self.fetched.iter().zip(parts) {
            if let Some(bytes) = value {
                self.slots.fill(i, decode(&self.name, bytes)?);
            }
        }
        Ok(())
    }
}

/// A declared value state: one value of type `T` per key.
///
/// The first read in a batch fetches the values of all the batch's keys
/// that the handle does not know yet in one call; writes are buffered and
/// sent in one call when the operator call ends. Values read or written stay
/// known from call to call (up to 65,536 keys; the handle forgets them all
/// past that, and when the keys are too many for it to hold): only this
/// instance changes its state, so a key read again is not fetched again.
pub struct ValueState<T> {
    inner: Rc<RefCell<ValueCache<T>>>,
}

impl<T: Serialize + DeserializeOwned + Clone + 'static> ValueState<T> {
    pub(crate) fn open(name: &str) -> Result<Self, String> {
        let handle = host::ValueState::open(name)?;
        Ok(ValueState {
            inner: Rc::new(RefCell::new(ValueCache {
                name: name.to_string(),
                handle,
                keys: KeyIndex::default(),
                slots: Slots::new(),
                prefetched: false,
                request: empty_blobs(),
                fetched: Vec::new(),
                positions: Vec::new(),
                written: Vec::new(),
                given: Vec::new(),
            })),
        })
    }

    pub(crate) fn flusher(&self) -> Rc<dyn Flush> {
        self.inner.clone()
    }

    /// The handle's cache, to share with a later open of the same state.
    pub(crate) fn shared(&self) -> Rc<dyn std::any::Any> {
        self.inner.clone()
    }

    /// A handle on the cache of an earlier open, if it holds values of type `T`.
    pub(crate) fn from_shared(cache: Rc<dyn std::any::Any>) -> Option<Self> {
        let inner = cache.downcast::<RefCell<ValueCache<T>>>().ok()?;
        Some(ValueState { inner })
    }

    /// The value stored for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<T>, Error> {
        let mut cache = self.inner.borrow_mut();
        if !cache.prefetched {
            cache.prefetched = true;
            CALL_KEYS.with_borrow(|keys| cache.fetch(keys.iter(), true))?;
        }
        let i = match cache.find(key) {
            Some(i) => i,
            None => {
                cache.fetch([Some(key)], false)?;
                cache.keys.find(key).expect("just fetched")
            }
        };
        Ok(cache.slots.value(i).clone())
    }

    /// Stores `value` for `key`.
    pub fn set(&self, key: &[u8], value: T) {
        self.write(key, Some(value));
    }

    /// Removes the value of `key`.
    pub fn remove(&self, key: &[u8]) {
        self.write(key, None);
    }

    fn write(&self, key: &[u8], value: Option<T>) {
        let mut cache = self.inner.borrow_mut();
        // Most writes follow a read of the same key: found without hashing.
        let (i, new) = match cache.find(key) {
            Some(i) => (i, false),
            None => cache.keys.insert(key),
        };
        cache.slots.write(i, new, value);
    }
}

impl<T: Serialize + DeserializeOwned> Flush for RefCell<ValueCache<T>> {
    fn flush(&self) -> Result<(), Error> {
        let mut guard = self.borrow_mut();
        let cache = &mut *guard;
        let mut keys = empty_blobs();
        let mut values = empty_blobs();
        let mut result = Ok(());
        let (name, index) = (&cache.name, &cache.keys);
        let (written, given) = (&mut cache.written, &mut cache.given);
        written.clear();
        given.clear();
        cache.slots.flush_each(&cache.fetched, |i, value, place| {
            if let Err(e) = push_value(name, value, &mut values) {
                result = Err(e);
                return;
            }
            push_blob(&mut keys, Some(index.key(i)));
            written.push(i);
            given.push(place);
        });
        if !keys.lens.is_empty() {
            let stored = cache.handle.put_many_placed(&keys, &values, given);
            for (&i, place) in cache.written.iter().zip(stored) {
                cache.slots.set_place(i, place);
            }
        }
        debug_assert_eq!(cache.keys.len(), cache.slots.len());
        cache.fetched.clear();
        if cache.slots.end_call(result.is_err()) {
            cache.keys.clear();
        }
        cache.positions.clear();
        cache.prefetched = false;
        result
    }
}

/// The (key, user key) pairs one batch touches, in one flat arena (each
/// key's bytes followed by its encoded user key's), indexed by a hash table
/// of positions: finding or adding a pair allocates nothing once the buffers
/// have grown, and the pair just used is found without hashing.
#[derive(Default)]
struct PairIndex {
    arena: Vec<u8>,
    /// Per pair: where it starts in `arena`, the key's length, the user key's length.
    spans: Vec<(u32, u32, u32)>,
    table: hashbrown::HashTable<u32>,
    last: Option<u32>,
}

fn hash_pair(key: &[u8], map_key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write_usize(key.len());
    h.write(key);
    h.write(map_key);
    h.finish()
}

impl PairIndex {
    /// Pair number `i`: (key, encoded user key).
    fn pair(&self, i: u32) -> (&[u8], &[u8]) {
        pair_at(&self.arena, &self.spans, i)
    }

    /// The number of (`key`, `map_key`), if it is there.
    fn find(&mut self, key: &[u8], map_key: &[u8]) -> Option<u32> {
        if let Some(i) = self.last {
            if same_pair(self.pair(i), (key, map_key)) {
                return Some(i);
            }
        }
        let (arena, spans) = (&self.arena, &self.spans);
        let found = self
            .table
            .find(hash_pair(key, map_key), |&i| {
                same_pair(pair_at(arena, spans, i), (key, map_key))
            })
            .copied();
        if found.is_some() {
            self.last = found;
        }
        found
    }

    /// The number of (`key`, `map_key`), added if new (then `true`): hashed
    /// once, probed once.
    fn insert(&mut self, key: &[u8], map_key: &[u8]) -> (u32, bool) {
        if let Some(i) = self.last {
            if same_pair(self.pair(i), (key, map_key)) {
                return (i, false);
            }
        }
        let (arena, spans) = (&self.arena, &self.spans);
        let (i, new) = find_or_add(
            &mut self.table,
            hash_pair(key, map_key),
            |&i| same_pair(pair_at(arena, spans, i), (key, map_key)),
            |&i| {
                let (k, mk) = pair_at(arena, spans, i);
                hash_pair(k, mk)
            },
            spans.len() as u32,
        );
        if new {
            self.spans.push((
                self.arena.len() as u32,
                key.len() as u32,
                map_key.len() as u32,
            ));
            extend(&mut self.arena, key);
            extend(&mut self.arena, map_key);
        }
        self.last = Some(i);
        (i, new)
    }

    /// Number of pairs.
    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Forgets every pair, keeping the memory.
    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.table.clear();
        self.last = None;
    }
}

fn same_pair(a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> bool {
    same(a.0, b.0) && same(a.1, b.1)
}

fn pair_at<'a>(arena: &'a [u8], spans: &[(u32, u32, u32)], i: u32) -> (&'a [u8], &'a [u8]) {
    let (start, key_len, mk_len) = spans[i as usize];
    let (start, mid) = (start as usize, (start + key_len) as usize);
    (&arena[start..mid], &arena[mid..mid + mk_len as usize])
}

/// Appends the JSON encoding of `value` to `buf` (left as it was on an error).
pub(crate) fn encode_into<T: Serialize>(
    state: &str,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = buf.len();
    serde_json::to_writer(Appender(&mut *buf), value).map_err(|e| {
        buf.truncate(start);
        Error::fatal(format!("cannot encode a value of state `{state}`: {e}"))
    })
}

/// Appends a slot's value to the flat values of a write, encoded straight
/// into the buffer (no allocation per value), or -1 for a removal.
fn push_value<T: Serialize>(
    state: &str,
    value: Option<&T>,
    values: &mut types::Blobs,
) -> Result<(), Error> {
    match value {
        Some(v) => {
            let start = values.data.len();
            encode_into(state, v, &mut values.data)?;
            values.lens.push((values.data.len() - start) as i32);
        }
        None => values.lens.push(-1),
    }
    Ok(())
}

struct MapCache<V> {
    name: String,
    handle: host::MapState,
    /// The pairs known (read or written) since the cache was last emptied
    /// (see [`ValueCache::keys`]); `slots[i]` is pair `i`'s value.
    pairs: PairIndex,
    slots: Slots<V>,
    /// Reused buffers: an encoded user key, the pairs of a prefetch, a fetch.
    map_key: Vec<u8>,
    pending_keys: types::Blobs,
    pending_map_keys: types::Blobs,
    request_keys: types::Blobs,
    request_map_keys: types::Blobs,
    request_values: types::Blobs,
    fetched: Vec<u32>,
}

impl<V: Serialize + DeserializeOwned> MapCache<V> {
    /// Encodes `map_key` into the reused buffer `self.map_key`.
    fn encode_map_key<K: Serialize>(&mut self, map_key: &K) -> Result<(), Error> {
        self.map_key.clear();
        encode_into(&self.name, map_key, &mut self.map_key)
    }

    /// Fetches the pending pairs that the cache does not hold yet.
    fn fetch_pending(&mut self) -> Result<(), Error> {
        self.request_keys.data.clear();
        self.request_keys.lens.clear();
        self.request_map_keys.data.clear();
        self.request_map_keys.lens.clear();
        self.fetched.clear();
        let (mut at, mut mk_at) = (0usize, 0usize);
        for (&len, &mk_len) in self
            .pending_keys
            .lens
            .iter()
            .zip(&self.pending_map_keys.lens)
        {
            let key = &self.pending_keys.data[at..at + len as usize];
            let mk = &self.pending_map_keys.data[mk_at..mk_at + mk_len as usize];
            at += len as usize;
            mk_at += mk_len as usize;
            let (i, new) = self.pairs.insert(key, mk);
            self.slots.looked_up(new);
            if new {
                push_blob(&mut self.request_keys, Some(key));
                push_blob(&mut self.request_map_keys, Some(mk));
                self.fetched.push(i);
            }
        }
        if self.fetched.is_empty() {
            return Ok(());
        }
        let values = self
            .handle
            .get_many(&self.request_keys, &self.request_map_keys);
        let mut at = 0usize;
        for (&i, &len) in self.fetched.iter().zip(&values.lens) {
            if len < 0 {
                continue;
            }
            let end = at + len as usize;
            let bytes = values
                .data
                .get(at..end)
                .ok_or_else(|| Error::fatal("malformed blobs from the host"))?;
            at = end;
            self.slots.fill(i, decode(&self.name, bytes)?);
        }
        Ok(())
    }

    /// The number of (`key`, the encoded user key in `self.map_key`),
    /// fetched from the host if the cache does not hold it.
    fn find_or_fetch(&mut self, key: &[u8]) -> Result<u32, Error> {
        if let Some(i) = self.pairs.find(key, &self.map_key) {
            return Ok(i);
        }
        clear_blobs(&mut self.pending_keys);
        clear_blobs(&mut self.pending_map_keys);
        push_blob(&mut self.pending_keys, Some(key));
        push_blob(&mut self.pending_map_keys, Some(&self.map_key));
        self.fetch_pending()?;
        Ok(self
            .pairs
            .find(key, &self.map_key)
            .expect("a fetched pair is cached"))
    }

    /// Writes `value` at (`key`, the encoded user key in `self.map_key`).
    fn write(&mut self, key: &[u8], value: Option<V>) {
        let (i, new) = self.pairs.insert(key, &self.map_key);
        self.slots.write(i, new, value);
    }

    /// Forgets every pair (none may be dirty).
    fn forget(&mut self) {
        self.slots.forget();
        self.pairs.clear();
    }
}

fn clear_blobs(blobs: &mut types::Blobs) {
    blobs.data.clear();
    blobs.lens.clear();
}

impl<V: Serialize + DeserializeOwned> Flush for RefCell<MapCache<V>> {
    fn flush(&self) -> Result<(), Error> {
        let mut guard = self.borrow_mut();
        let cache = &mut *guard;
        let (keys, map_keys, values) = (
            &mut cache.request_keys,
            &mut cache.request_map_keys,
            &mut cache.request_values,
        );
        clear_blobs(keys);
        clear_blobs(map_keys);
        clear_blobs(values);
        let mut result = Ok(());
        let (name, index) = (&cache.name, &cache.pairs);
        cache.slots.flush_each(&cache.fetched, |i, value, _| {
            if let Err(e) = push_value(name, value, values) {
                result = Err(e);
                return;
            }
            let (key, mk) = index.pair(i);
            push_blob(keys, Some(key));
            push_blob(map_keys, Some(mk));
        });
        if !keys.lens.is_empty() {
            cache.handle.put_many(keys, map_keys, values);
        }
        debug_assert_eq!(cache.pairs.len(), cache.slots.len());
        cache.fetched.clear();
        if cache.slots.end_call(result.is_err()) {
            cache.pairs.clear();
        }
        result
    }
}

/// A declared map state: per key, a map from user keys `K` to values `V`.
///
/// Batch reads with [`MapState::prefetch`] from [`crate::Operator::prefetch`]
/// so that a batch crosses to the host once, not once per event. Entries
/// read or written stay known from call to call, as in [`ValueState`]
/// (up to 65,536 of them); [`MapState::clear`] forgets them all.
pub struct MapState<K, V> {
    inner: Rc<RefCell<MapCache<V>>>,
    _key: PhantomData<fn(K)>,
}

impl<K, V> MapState<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + DeserializeOwned + Clone + 'static,
{
    pub(crate) fn open(name: &str) -> Result<Self, String> {
        let handle = host::MapState::open(name)?;
        Ok(MapState {
            inner: Rc::new(RefCell::new(MapCache {
                name: name.to_string(),
                handle,
                pairs: PairIndex::default(),
                slots: Slots::new(),
                map_key: Vec::new(),
                pending_keys: empty_blobs(),
                pending_map_keys: empty_blobs(),
                request_keys: empty_blobs(),
                request_map_keys: empty_blobs(),
                request_values: empty_blobs(),
                fetched: Vec::new(),
            })),
            _key: PhantomData,
        })
    }

    pub(crate) fn flusher(&self) -> Rc<dyn Flush> {
        self.inner.clone()
    }

    /// The handle's cache, to share with a later open of the same state.
    pub(crate) fn shared(&self) -> Rc<dyn std::any::Any> {
        self.inner.clone()
    }

    /// A handle on the cache of an earlier open, if it holds values of type `V`.
    pub(crate) fn from_shared(cache: Rc<dyn std::any::Any>) -> Option<Self> {
        let inner = cache.downcast::<RefCell<MapCache<V>>>().ok()?;
        Some(MapState {
            inner,
            _key: PhantomData,
        })
    }

    /// Fetches the values of many (key, user key) pairs in one call, so that
    /// later [`MapState::get`]s of them are answered from the cache.
    pub fn prefetch<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a K)>,
    ) -> Result<(), Error>
    where
        K: 'a,
    {
        let mut guard = self.inner.borrow_mut();
        let cache = &mut *guard;
        clear_blobs(&mut cache.pending_keys);
        clear_blobs(&mut cache.pending_map_keys);
        // Every user key is encoded before any is cached: an error leaves
        // the cache as it was.
        for (key, mk) in pairs {
            let start = cache.pending_map_keys.data.len();
            encode_into(&cache.name, mk, &mut cache.pending_map_keys.data)?;
            let len = cache.pending_map_keys.data.len() - start;
            cache.pending_map_keys.lens.push(len as i32);
            push_blob(&mut cache.pending_keys, Some(key));
        }
        cache.fetch_pending()
    }

    /// The value at `map_key` in the map of `key`, if any.
    pub fn get(&self, key: &[u8], map_key: &K) -> Result<Option<V>, Error> {
        let mut cache = self.inner.borrow_mut();
        cache.encode_map_key(map_key)?;
        let i = cache.find_or_fetch(key)?;
        Ok(cache.slots.value(i).clone())
    }

    /// Whether the map of `key` has `map_key`.
    pub fn contains(&self, key: &[u8], map_key: &K) -> Result<bool, Error> {
        Ok(self.get(key, map_key)?.is_some())
    }

    /// Sets `map_key` in the map of `key` to `value`.
    pub fn put(&self, key: &[u8], map_key: &K, value: V) -> Result<(), Error> {
        let mut cache = self.inner.borrow_mut();
        cache.encode_map_key(map_key)?;
        cache.write(key, Some(value));
        Ok(())
    }

    /// Removes `map_key` from the map of `key`.
    pub fn remove(&self, key: &[u8], map_key: &K) -> Result<(), Error> {
        let mut cache = self.inner.borrow_mut();
        cache.encode_map_key(map_key)?;
        cache.write(key, None);
        Ok(())
    }

    /// Every entry of the map of `key`, sorted by the stored (JSON) user key.
    pub fn entries(&self, key: &[u8]) -> Result<Vec<(K, V)>, Error> {
        Flush::flush(&*self.inner)?;
        let cache = self.inner.borrow();
        let (mks, values) = cache.handle.entries(key);
        let mks = split_blobs(&mks)?;
        let values = split_blobs(&values)?;
        mks.into_iter()
            .zip(values)
            .filter_map(|(mk, v)| Some((mk?, v?)))
            .map(|(mk, v)| Ok((decode(&cache.name, mk)?, decode(&cache.name, v)?)))
            .collect()
    }

    /// Removes the whole map of `key`.
    pub fn clear(&self, key: &[u8]) -> Result<(), Error> {
        Flush::flush(&*self.inner)?;
        let mut cache = self.inner.borrow_mut();
        cache.handle.clear(key);
        // The cache may know entries of `key`: forget them all.
        cache.forget();
        Ok(())
    }
}

struct ListCache {
    name: String,
    handle: host::ListState,
    keys: types::Blobs,
    values: types::Blobs,
}

impl Flush for RefCell<ListCache> {
    fn flush(&self) -> Result<(), Error> {
        let mut cache = self.borrow_mut();
        if !cache.keys.lens.is_empty() {
            let keys = std::mem::replace(&mut cache.keys, empty_blobs());
            let values = std::mem::replace(&mut cache.values, empty_blobs());
            cache.handle.add_many(&keys, &values);
        }
        Ok(())
    }
}

/// A declared list state: per key, an ordered list of values of type `T`.
///
/// Appends are buffered and sent in one call per operator call.
pub struct ListState<T> {
    inner: Rc<RefCell<ListCache>>,
    _value: PhantomData<fn(T)>,
}

impl<T: Serialize + DeserializeOwned + 'static> ListState<T> {
    pub(crate) fn open(name: &str) -> Result<Self, String> {
        let handle = host::ListState::open(name)?;
        Ok(ListState {
            inner: Rc::new(RefCell::new(ListCache {
                name: name.to_string(),
                handle,
                keys: empty_blobs(),
                values: empty_blobs(),
            })),
            _value: PhantomData,
        })
    }

    pub(crate) fn flusher(&self) -> Rc<dyn Flush> {
        self.inner.clone()
    }

    /// Appends `value` to the list of `key`.
    pub fn add(&self, key: &[u8], value: &T) -> Result<(), Error> {
        let mut cache = self.inner.borrow_mut();
        let bytes = encode(&cache.name, value)?;
        push_blob(&mut cache.keys, Some(key));
        push_blob(&mut cache.values, Some(&bytes));
        Ok(())
    }

    /// The whole list of `key`, oldest first.
    pub fn get(&self, key: &[u8]) -> Result<Vec<T>, Error> {
        Flush::flush(&*self.inner)?;
        let cache = self.inner.borrow();
        let values = cache.handle.get(key);
        split_blobs(&values)?
            .into_iter()
            .flatten()
            .map(|v| decode(&cache.name, v))
            .collect()
    }

    /// Replaces the list of `key` with `values` (empty removes it).
    pub fn update(&self, key: &[u8], values: &[T]) -> Result<(), Error> {
        Flush::flush(&*self.inner)?;
        let cache = self.inner.borrow();
        let mut blobs = empty_blobs();
        for v in values {
            push_blob(&mut blobs, Some(&encode(&cache.name, v)?));
        }
        cache.handle.update(key, &blobs);
        Ok(())
    }

    /// Removes the list of `key`.
    pub fn clear(&self, key: &[u8]) -> Result<(), Error> {
        self.update(key, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyIndex, Slots, STATE_CACHE_ENTRIES};

    /// Calls of `batch` lookups each over `keys` keys drawn at random (a
    /// fixed sequence), as a cache sees them: the sizes it has after each.
    fn cache_sizes(keys: u64, batch: usize, calls: usize) -> Vec<usize> {
        let mut slots: Slots<()> = Slots::new();
        let mut known = std::collections::HashSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut sizes = Vec::new();
        for _ in 0..calls {
            for _ in 0..batch {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                slots.looked_up(known.insert(x % keys));
            }
            if slots.end_call(false) {
                known.clear();
            }
            sizes.push(slots.len());
        }
        sizes
    }

    /// Over keys that it can hold, the cache warms up and keeps them all,
    /// although every call is mostly new at first; over far more, it
    /// forgets before it grows past a few batches.
    #[test]
    fn the_cache_keeps_keys_that_come_back_and_forgets_those_that_do_not() {
        for (keys, calls) in [(10_000, 60), (40_000, 200)] {
            let sizes = cache_sizes(keys, 1024, calls);
            // Never forgotten, and by the end nearly every key is known.
            assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{keys}: {sizes:?}");
            assert!(
                *sizes.last().unwrap() as u64 >= keys * 99 / 100,
                "{keys}: {sizes:?}"
            );
        }
        for keys in [200_000, 1_000_000] {
            let sizes = cache_sizes(keys, 1024, 60);
            assert!(sizes.iter().all(|&n| n <= 3 * 1024), "{keys}: {sizes:?}");
        }
        let sizes = cache_sizes(10 * STATE_CACHE_ENTRIES as u64, 1024, 60);
        assert!(sizes.contains(&0), "{sizes:?}");
    }

    /// Keys short enough to be kept in their records and longer ones kept
    /// in the arena are found, and given back, byte for byte.
    #[test]
    fn the_key_index_keeps_short_and_long_keys() {
        let keys: Vec<Vec<u8>> = (0..40u8)
            .flat_map(|n| [vec![b'k'; n as usize], (0..n).collect()])
            .collect();
        let mut index = KeyIndex::default();
        for round in 0..2 {
            for (i, key) in keys.iter().enumerate().skip(1) {
                assert_eq!(index.insert(key), (i as u32 - 1, round == 0), "{key:?}");
            }
            for (i, key) in keys.iter().enumerate().skip(1) {
                assert_eq!(index.find(key), Some(i as u32 - 1), "{key:?}");
                assert_eq!(index.key(i as u32 - 1), &key[..]);
            }
        }
        assert_eq!(index.find(b"not there"), None);
        index.clear();
        assert_eq!(index.len(), 0);
        assert_eq!(index.find(&keys[5]), None);
        assert_eq!(index.insert(&keys[5]), (0, true));
    }
}
