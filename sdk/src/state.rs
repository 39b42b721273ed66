//! Typed handles on declared state, cached for the length of one batch.
//!
//! Values are stored as JSON (see the crate docs). Reads that miss the cache
//! go to the host; writes are buffered and sent in one call per state when the
//! operator call ends.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Error;
use crate::runtime::wit::{state as host, types};
use crate::runtime::BATCH_KEYS;

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

fn decode<T: DeserializeOwned>(state: &str, bytes: &[u8]) -> Result<T, Error> {
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
            blobs.data.extend_from_slice(b);
            blobs.lens.push(b.len() as i32);
        }
        None => blobs.lens.push(-1),
    }
}

struct Slot<T> {
    value: Option<T>,
    dirty: bool,
}

/// The distinct keys one batch touches, in one flat arena, indexed by a
/// hash table of positions: finding or adding a key allocates nothing once
/// the buffers have grown, and the key just used is found without hashing.
#[derive(Default)]
pub(crate) struct KeyIndex {
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
    table: hashbrown::HashTable<u32>,
    last: Option<u32>,
}

fn hash_key(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

impl KeyIndex {
    /// Key number `i`.
    pub(crate) fn key(&self, i: u32) -> &[u8] {
        let (start, len) = self.spans[i as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    /// The number of `key`, if it is there.
    pub(crate) fn find(&mut self, key: &[u8]) -> Option<u32> {
        if let Some(i) = self.last {
            if self.key(i) == key {
                return Some(i);
            }
        }
        let (arena, spans) = (&self.arena, &self.spans);
        let found = self
            .table
            .find(hash_key(key), |&i| {
                let (start, len) = spans[i as usize];
                &arena[start as usize..(start + len) as usize] == key
            })
            .copied();
        if found.is_some() {
            self.last = found;
        }
        found
    }

    /// The number of `key`, added if new (then `true`).
    pub(crate) fn insert(&mut self, key: &[u8]) -> (u32, bool) {
        if let Some(i) = self.find(key) {
            return (i, false);
        }
        let i = self.spans.len() as u32;
        self.spans.push((self.arena.len() as u32, key.len() as u32));
        self.arena.extend_from_slice(key);
        let (arena, spans) = (&self.arena, &self.spans);
        self.table.insert_unique(hash_key(key), i, |&j| {
            let (start, len) = spans[j as usize];
            hash_key(&arena[start as usize..(start + len) as usize])
        });
        self.last = Some(i);
        (i, true)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Forgets every key, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.table.clear();
        self.last = None;
    }
}

struct ValueCache<T> {
    name: String,
    handle: host::ValueState,
    /// The keys of this batch; `slots[i]` is key `i`'s value.
    keys: KeyIndex,
    slots: Vec<Slot<T>>,
    prefetched: bool,
    /// Reused buffers of a fetch.
    request: types::Blobs,
    fetched: Vec<u32>,
    /// Key number of each event of the call (after the batch's prefetch).
    positions: Vec<u32>,
}

const NO_KEY: u32 = u32::MAX;

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
    /// Fetches `keys` (flat, possibly repeated, -1: none) that the cache
    /// does not hold yet; with `batch`, they are the call's keys in order,
    /// and each position's key number is remembered.
    fn fetch(&mut self, data: &[u8], lens: &[i32], batch: bool) -> Result<(), Error> {
        self.request.data.clear();
        self.request.lens.clear();
        self.fetched.clear();
        let mut at = 0usize;
        for &len in lens {
            if len < 0 {
                if batch {
                    self.positions.push(NO_KEY);
                }
                continue;
            }
            let key = &data[at..at + len as usize];
            at += len as usize;
            let (i, new) = self.keys.insert(key);
            if batch {
                self.positions.push(i);
            }
            if new {
                self.slots.push(Slot {
                    value: None,
                    dirty: false,
                });
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
                self.slots[i as usize].value = Some(decode(&self.name, bytes)?);
            }
        }
        Ok(())
    }
}

/// A declared value state: one value of type `T` per key.
///
/// Reads and writes are cached for the length of one operator call; the first
/// read in a batch fetches the values of all the batch's keys in one call.
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
                slots: Vec::new(),
                prefetched: false,
                request: empty_blobs(),
                fetched: Vec::new(),
                positions: Vec::new(),
            })),
        })
    }

    pub(crate) fn flusher(&self) -> Rc<dyn Flush> {
        self.inner.clone()
    }

    /// The value stored for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<T>, Error> {
        let mut cache = self.inner.borrow_mut();
        if !cache.prefetched {
            cache.prefetched = true;
            BATCH_KEYS.with_borrow(|keys| cache.fetch(&keys.data, &keys.lens, true))?;
        }
        let i = match cache.find(key) {
            Some(i) => i,
            None => {
                cache.fetch(key, &[key.len() as i32], false)?;
                cache.keys.find(key).expect("just fetched")
            }
        };
        Ok(cache.slots[i as usize].value.clone())
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
        if new {
            cache.slots.push(Slot { value, dirty: true });
        } else {
            let slot = &mut cache.slots[i as usize];
            slot.value = value;
            slot.dirty = true;
        }
    }
}

impl<T: Serialize + DeserializeOwned> Flush for RefCell<ValueCache<T>> {
    fn flush(&self) -> Result<(), Error> {
        let mut guard = self.borrow_mut();
        let cache = &mut *guard;
        let mut keys = empty_blobs();
        let mut values = empty_blobs();
        let mut result = Ok(());
        for (i, slot) in cache.slots.iter().enumerate() {
            if !slot.dirty {
                continue;
            }
            match &slot.value {
                Some(v) => {
                    // Encode straight into the flat buffer: no allocation per value.
                    let start = values.data.len();
                    if let Err(e) = serde_json::to_writer(&mut values.data, v) {
                        values.data.truncate(start);
                        result = Err(Error::fatal(format!(
                            "cannot encode a value of state `{}`: {e}",
                            cache.name
                        )));
                        continue;
                    }
                    values.lens.push((values.data.len() - start) as i32);
                }
                None => values.lens.push(-1),
            }
            push_blob(&mut keys, Some(cache.keys.key(i as u32)));
        }
        if !keys.lens.is_empty() {
            cache.handle.put_many(&keys, &values);
        }
        debug_assert_eq!(cache.keys.len(), cache.slots.len());
        cache.keys.clear();
        cache.slots.clear();
        cache.positions.clear();
        cache.prefetched = false;
        result
    }
}

struct MapCache<V> {
    name: String,
    handle: host::MapState,
    /// key -> encoded user key -> slot
    entries: FxHashMap<Vec<u8>, FxHashMap<Vec<u8>, Slot<V>>>,
}

impl<V: Serialize + DeserializeOwned> MapCache<V> {
    fn fetch(&mut self, pairs: &[(&[u8], Vec<u8>)]) -> Result<(), Error> {
        let mut keys = empty_blobs();
        let mut map_keys = empty_blobs();
        for (key, mk) in pairs {
            let inner = self.entries.entry(key.to_vec()).or_default();
            if !inner.contains_key(mk) {
                inner.insert(
                    mk.clone(),
                    Slot {
                        value: None,
                        dirty: false,
                    },
                );
                push_blob(&mut keys, Some(key));
                push_blob(&mut map_keys, Some(mk));
            }
        }
        if keys.lens.is_empty() {
            return Ok(());
        }
        let values = self.handle.get_many(&keys, &map_keys);
        let parts = split_blobs(&values)?;
        let ks = split_blobs(&keys)?;
        let mks = split_blobs(&map_keys)?;
        for ((key, mk), value) in ks.into_iter().zip(mks).zip(parts) {
            if let (Some(key), Some(mk), Some(bytes)) = (key, mk, value) {
                let decoded = decode(&self.name, bytes)?;
                if let Some(slot) = self.entries.get_mut(key).and_then(|m| m.get_mut(mk)) {
                    slot.value = Some(decoded);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, key: &[u8], mk: Vec<u8>, value: Option<V>) {
        self.entries
            .entry(key.to_vec())
            .or_default()
            .insert(mk, Slot { value, dirty: true });
    }
}

impl<V: Serialize + DeserializeOwned> Flush for RefCell<MapCache<V>> {
    fn flush(&self) -> Result<(), Error> {
        let mut cache = self.borrow_mut();
        let mut keys = empty_blobs();
        let mut map_keys = empty_blobs();
        let mut values = empty_blobs();
        let mut result = Ok(());
        for (key, inner) in &cache.entries {
            for (mk, slot) in inner.iter().filter(|(_, s)| s.dirty) {
                let encoded = match &slot.value {
                    Some(v) => match encode(&cache.name, v) {
                        Ok(bytes) => Some(bytes),
                        Err(e) => {
                            result = Err(e);
                            continue;
                        }
                    },
                    None => None,
                };
                push_blob(&mut keys, Some(key));
                push_blob(&mut map_keys, Some(mk));
                push_blob(&mut values, encoded.as_deref());
            }
        }
        if !keys.lens.is_empty() {
            cache.handle.put_many(&keys, &map_keys, &values);
        }
        cache.entries.clear();
        result
    }
}

/// A declared map state: per key, a map from user keys `K` to values `V`.
///
/// Reads are cached for the length of one operator call; batch them with
/// [`MapState::prefetch`] from [`crate::Operator::prefetch`] so that a batch
/// crosses to the host once, not once per event.
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
                entries: FxHashMap::default(),
            })),
            _key: PhantomData,
        })
    }

    pub(crate) fn flusher(&self) -> Rc<dyn Flush> {
        self.inner.clone()
    }

    fn encode_key(&self, map_key: &K) -> Result<Vec<u8>, Error> {
        encode(&self.inner.borrow().name, map_key)
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
        let encoded = pairs
            .into_iter()
            .map(|(key, mk)| Ok((key, self.encode_key(mk)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        self.inner.borrow_mut().fetch(&encoded)
    }

    /// The value at `map_key` in the map of `key`, if any.
    pub fn get(&self, key: &[u8], map_key: &K) -> Result<Option<V>, Error> {
        let mk = self.encode_key(map_key)?;
        let mut cache = self.inner.borrow_mut();
        let cached = cache.entries.get(key).and_then(|m| m.get(&mk));
        if let Some(slot) = cached {
            return Ok(slot.value.clone());
        }
        cache.fetch(&[(key, mk.clone())])?;
        Ok(cache
            .entries
            .get(key)
            .and_then(|m| m.get(&mk))
            .and_then(|s| s.value.clone()))
    }

    /// Whether the map of `key` has `map_key`.
    pub fn contains(&self, key: &[u8], map_key: &K) -> Result<bool, Error> {
        Ok(self.get(key, map_key)?.is_some())
    }

    /// Sets `map_key` in the map of `key` to `value`.
    pub fn put(&self, key: &[u8], map_key: &K, value: V) -> Result<(), Error> {
        let mk = self.encode_key(map_key)?;
        self.inner.borrow_mut().write(key, mk, Some(value));
        Ok(())
    }

    /// Removes `map_key` from the map of `key`.
    pub fn remove(&self, key: &[u8], map_key: &K) -> Result<(), Error> {
        let mk = self.encode_key(map_key)?;
        self.inner.borrow_mut().write(key, mk, None);
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
        self.inner.borrow().handle.clear(key);
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
