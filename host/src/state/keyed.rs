//! The keyed state backend: declared states held in memory, sharded by key
//! group, snapshotted without a pause and incrementally.
//!
//! Every state of a subtask keeps, for each key group the subtask owns, a
//! few `Shard`s (more per key group when the subtask owns few, so that a
//! state has at least 256 shards): flat hash tables whose keys and values
//! live in one arena, so that an entry costs no allocation of its own (a
//! `u64` count under a 10-byte key takes about 50 bytes). A key's shard is
//! found from the same 64-bit hash as its key group (`xxh3`): the key group
//! from it modulo `max_parallelism`, the shard within the key group from
//! bits 24.., and the table's hash from the top 32 bits. A map state's entry
//! is keyed by the event key and the user key together (as Flink keys a map
//! state's entries by key, namespace and user key), with a list per event
//! key of its entries for `entries` and `clear`; a list state's list is one
//! value of length-prefixed elements.
//!
//! **Snapshots** ([`StateBackend::snapshot`]) are copy-on-write, as Flink's
//! heap backend: each shard is held in an `Arc`; a snapshot takes a second
//! reference to the shards it needs, in O(shards), and hands them to the
//! checkpoint coordinator, which turns them into records on its own thread
//! ([`StateSnapshot::changes`]). The first write to a shard that a snapshot
//! still holds copies that shard (a few `memcpy`s of at most a few thousand
//! entries), so processing never waits for a snapshot, full or not, however
//! large the state is.
//!
//! **Incremental snapshots** write what changed at the finest grain the
//! kinds have: each entry records the snapshot epoch of its last change,
//! and each shard the entries first changed in this epoch and the keys
//! removed in it. A delta holds a value state's changed values, a map
//! state's changed and removed *entries* (not whole maps,
//! [`StoredEntry::MapUpdate`]), and for a list what was appended since the
//! last snapshot ([`StoredEntry::ListAppend`]), or the whole list when it
//! was replaced. A full snapshot holds every key's whole state (what
//! savepoints store).
//!
//! A key outside the subtask's key groups is refused: keyed state needs the
//! events routed by key (`input = "key"`), or a parallelism of 1. State has
//! no key-less form: the WIT takes a key for every access, and the host
//! refuses an absent one (there is no key group to keep it in).
//!
//! The backend counts, as it goes, the bytes of keys and values it holds and
//! the number of entries (keys, map entries, list elements); a subtask's
//! state memory budget (`[operators.limits] state_memory`) is held against
//! [`StateBackend::memory`], bytes plus [`ENTRY_OVERHEAD`] per entry, so
//! that ever new small keys are not free. No call walks the state to count.

use std::ops::Range;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::keygroup;
use crate::model::{StateKind, StateSpec};
use crate::state::shard::{list_elements, Shard, ShardFull, NONE};

/// Bytes charged to the state memory budget for each key, map entry and list
/// element held, beside its bytes: more than the backend spends to hold one
/// (about 40), so that the budget errs on the side of the machine.
pub const ENTRY_OVERHEAD: u64 = 64;

/// A state has at least this many shards (a shard is what one write after
/// a snapshot copies).
const MIN_SHARDS: usize = 256;

/// Why a state access was refused (the guest traps with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The key is not in this subtask's key groups.
    #[error("state `{state}` was used with {key} (key group {key_group}), which subtask {subtask} does not own (it owns key groups {owned:?}): an operator may use keyed state only under the keys routed to it, with `input = \"key\"` (or parallelism 1)")]
    ForeignKey {
        /// The state's name.
        state: String,
        /// The key, as [`crate::model::show_key`] shows it.
        key: String,
        /// The key's key group.
        key_group: u32,
        /// This subtask.
        subtask: u32,
        /// The key groups it owns.
        owned: Range<u32>,
    },
    /// A shard's arena would pass 4 GiB.
    #[error("state `{state}` holds over 4 GiB in key group {key_group}: more than one subtask can keep; raise the operator's parallelism")]
    Full {
        /// The state's name.
        state: String,
        /// The key group.
        key_group: u32,
    },
}

/// A stored state entry: the whole state of one key (in one key group) of one
/// declared state, a change to it, or its deletion. Checkpoints store these;
/// savepoints only the whole forms (`Value`, `Map`, `List`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoredEntry {
    /// A value state's value.
    Value(Vec<u8>),
    /// A map state's entries, sorted by user key.
    Map(Vec<(Vec<u8>, Vec<u8>)>),
    /// A list state's values.
    List(Vec<Vec<u8>>),
    /// The key has no state (any more).
    Deleted,
    /// Changes to a map state's entries, in order: set (`Some`) or removed.
    MapUpdate(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    /// Values appended to a list state's list.
    ListAppend(Vec<Vec<u8>>),
}

/// The state of one key of one declared state, as a checkpoint stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The declared state's name.
    pub state: String,
    /// The key's key group.
    pub key_group: u32,
    /// The key.
    pub key: Vec<u8>,
    /// Its state now (or what changed in it).
    pub entry: StoredEntry,
}

/// One shard of a state, and what changed in it since the last snapshot.
#[derive(Debug, Default)]
struct Cell {
    data: Arc<Shard>,
    /// A snapshot may hold `data`: the next write copies it first.
    shared: bool,
    /// Slots first changed in this epoch.
    dirty: Vec<u32>,
    /// Keys removed in this epoch: (event key length, key length, key bytes)...
    removed: Vec<u8>,
}

impl Cell {
    /// The shard to write, copied first if a snapshot may hold it.
    fn write(&mut self) -> &mut Shard {
        self.parts().0
    }

    /// The shard to write ([`Cell::write`]) and the slots changed in this
    /// epoch, for a write that records its change: one check of the
    /// shard's owners (an atomic operation) rather than one per step.
    fn parts(&mut self) -> (&mut Shard, &mut Vec<u32>) {
        let Cell {
            data,
            shared,
            dirty,
            ..
        } = self;
        let shard = if std::mem::take(shared) {
            Arc::make_mut(data)
        } else {
            Arc::get_mut(data).expect("a shard not shared has one owner")
        };
        (shard, dirty)
    }
}

/// Records a removed key: its event key's length, its length, its bytes.
fn record_removed(removed: &mut Vec<u8>, event_key: usize, key: &[u8]) {
    removed.extend_from_slice(&(event_key as u32).to_le_bytes());
    removed.extend_from_slice(&(key.len() as u32).to_le_bytes());
    removed.extend_from_slice(key);
}

/// The removed keys a cell recorded: (event key length, key).
fn removed_keys(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let word = |i: usize| -> Option<usize> {
            Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
        };
        let (klen, len) = (word(at)?, word(at + 4)?);
        let key = bytes.get(at + 8..at + 8 + len)?;
        at += 8 + len;
        Some((klen, key))
    })
}

/// A declared state and its shards.
#[derive(Debug)]
struct DeclaredState {
    spec: StateSpec,
    cells: Vec<Cell>,
    /// Keys held (a map state's event keys).
    keys: usize,
}

/// Where a key (and, in a map state, a user key) lives: its shard and
/// hashes, found once by [`StateBackend::locate`] for a batch.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    cell: usize,
    /// The key's hash.
    hash: u32,
    /// A map entry's hash (key and user key); 0 for other kinds.
    entry: u32,
    /// The entry's slot when a read found it ([`NONE`] otherwise): a write
    /// that follows the read finds it there without hashing or probing,
    /// once it has checked that the slot still holds the very key.
    slot: u32,
}

impl Place {
    /// Whether a read found the entry (the place can serve as a write's hint).
    pub fn found(&self) -> bool {
        self.slot != NONE
    }

    /// Where the entry is stored (its shard and slot) as one number, for an
    /// operator to give back with a later write of the same key; `u64::MAX`
    /// when it is not stored.
    pub fn code(&self) -> u64 {
        if self.slot == NONE {
            u64::MAX
        } else {
            ((self.cell as u64) << 32) | u64::from(self.slot)
        }
    }

    /// A place an operator gave back ([`Place::code`]; `u64::MAX`: none):
    /// a hint only, which [`StateBackend::relocate`] uses once it has
    /// checked that the slot holds the very key, and otherwise ignores.
    pub fn from_code(code: u64) -> Place {
        Place {
            cell: (code >> 32) as usize,
            hash: 0,
            entry: 0,
            slot: code as u32,
        }
    }
}

/// All declared states of one subtask.
#[derive(Debug)]
pub struct StateBackend {
    subtask: u32,
    max_parallelism: u32,
    key_groups: Range<u32>,
    /// Shards per key group (a power of two).
    subs: usize,
    states: Vec<DeclaredState>,
    /// Recording changes, for incremental snapshots.
    tracking: bool,
    /// The current snapshot epoch (1 and up; 0 marks entries never tracked).
    epoch: u32,
    /// Bytes of keys and values held, over all states.
    bytes: i64,
    /// Keys, map entries and list elements held, over all states.
    entries: i64,
}

impl StateBackend {
    /// An empty backend for the subtask that owns `key_groups` of `max_parallelism`.
    pub fn new(subtask: u32, max_parallelism: u32, key_groups: Range<u32>) -> Self {
        let groups = key_groups.len().max(1);
        StateBackend {
            subtask,
            max_parallelism,
            key_groups,
            subs: MIN_SHARDS.div_ceil(groups).next_power_of_two(),
            states: Vec::new(),
            tracking: false,
            epoch: 1,
            bytes: 0,
            entries: 0,
        }
    }

    /// Starts recording which keys change, for incremental snapshots.
    pub fn track_changes(&mut self) {
        self.tracking = true;
    }

    /// Declares the states of an operator (from its `describe`), empty.
    pub fn declare(&mut self, specs: &[StateSpec]) -> Result<(), String> {
        let cells = self.key_groups.len() * self.subs;
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_empty() {
                return Err("a declared state has an empty name".to_string());
            }
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(format!("state `{}` is declared twice", spec.name));
            }
            self.states.push(DeclaredState {
                spec: spec.clone(),
                cells: (0..cells).map(|_| Cell::default()).collect(),
                keys: 0,
            });
        }
        Ok(())
    }

    /// Declares the states of new logic swapped in live: a state declared
    /// before keeps its entries and takes the new spec (its version; the
    /// caller migrates the values), a new one starts empty. Every state
    /// declared before must still be (the swap's plan checked it).
    pub fn redeclare(&mut self, specs: &[StateSpec]) -> Result<(), String> {
        for s in &self.states {
            if !specs.iter().any(|n| n.name == s.spec.name) {
                return Err(format!(
                    "state `{}` is not declared by the new logic",
                    s.spec.name
                ));
            }
        }
        let mut fresh = Vec::new();
        for spec in specs {
            match self.states.iter_mut().find(|s| s.spec.name == spec.name) {
                Some(s) if s.spec.kind != spec.kind => {
                    return Err(format!(
                        "state `{}` changes its kind from {} to {}",
                        spec.name,
                        kind_name(s.spec.kind),
                        kind_name(spec.kind)
                    ))
                }
                Some(s) => s.spec = spec.clone(),
                None => fresh.push(spec.clone()),
            }
        }
        self.declare(&fresh)
    }

    /// The declared states' specs.
    pub fn specs(&self) -> impl Iterator<Item = &StateSpec> {
        self.states.iter().map(|s| &s.spec)
    }

    /// The index of the declared state `name` of kind `kind`.
    pub fn find(&self, name: &str, kind: StateKind) -> Result<u32, String> {
        match self.states.iter().position(|s| s.spec.name == name) {
            None => Err(format!(
                "state `{name}` is not declared by the operator's describe()"
            )),
            Some(i) if self.states[i].spec.kind != kind => Err(format!(
                "state `{name}` is declared as {} state, not {}",
                kind_name(self.states[i].spec.kind),
                kind_name(kind)
            )),
            Some(i) => Ok(i as u32),
        }
    }

    /// Where `key` of state `state` lives; refuses a key of another subtask.
    fn place(&self, state: usize, key: &[u8]) -> Result<Place, StateError> {
        let h = xxhash_rust::xxh3::xxh3_64(key);
        let kg = (h % self.max_parallelism as u64) as u32;
        if !self.key_groups.contains(&kg) {
            return Err(StateError::ForeignKey {
                state: self.states[state].spec.name.clone(),
                key: crate::model::show_key(Some(key)),
                key_group: kg,
                subtask: self.subtask,
                owned: self.key_groups.clone(),
            });
        }
        debug_assert_eq!(kg, keygroup::key_group(Some(key), self.max_parallelism));
        let sub = (h >> 24) as usize & (self.subs - 1);
        Ok(Place {
            cell: (kg - self.key_groups.start) as usize * self.subs + sub,
            hash: (h >> 32) as u32,
            entry: 0,
            slot: NONE,
        })
    }

    /// [`StateBackend::place`] of `key`, with the entry hash of `map_key` in a map state.
    fn place_of(
        &self,
        state: usize,
        key: &[u8],
        map_key: Option<&[u8]>,
    ) -> Result<Place, StateError> {
        let mut p = self.place(state, key)?;
        if let Some(mk) = map_key {
            p.entry = Self::entry_hash(p, mk);
        }
        Ok(p)
    }

    fn full_error(&self, state: usize, cell: usize) -> StateError {
        StateError::Full {
            state: self.states[state].spec.name.clone(),
            key_group: self.key_groups.start + (cell / self.subs) as u32,
        }
    }

    /// Records slot `i` of `cell` as changed in this epoch (list state: as
    /// it was before this change, `whole` when it is new or replaced).
    fn touch(
        tracking: bool,
        epoch: u32,
        (shard, dirty): (&mut Shard, &mut Vec<u32>),
        i: u32,
        list: Option<bool>,
    ) -> Result<(), ()> {
        if !tracking {
            return Ok(());
        }
        let slot = &mut shard.slots[i as usize];
        let first = slot.epoch != epoch;
        slot.epoch = epoch;
        match list {
            Some(whole) if first || whole => shard.set_base(i, whole),
            _ => {}
        }
        if first {
            dirty.push(i);
        }
        Ok(())
    }

    /// Replaces the value of slot `i` of cell `c` of state `s`, recording the change.
    fn overwrite(&mut self, s: usize, c: usize, i: u32, v: &[u8]) -> Result<(), StateError> {
        let (tracking, epoch) = (self.tracking, self.epoch);
        let (shard, dirty) = self.states[s].cells[c].parts();
        let old = shard.slots[i as usize].vlen as i64;
        if shard.set_value(i, v).is_err() {
            return Err(self.full_error(s, c));
        }
        let _ = Self::touch(tracking, epoch, (shard, dirty), i, None);
        self.bytes += v.len() as i64 - old;
        Ok(())
    }

    /// Adds an entry (key `parts`, value `v`) to cell `c` of state `s`,
    /// recording it (`list`: as a whole new list); its slot. Counters are
    /// the caller's.
    fn add(
        &mut self,
        s: usize,
        c: usize,
        hash: u32,
        parts: [&[u8]; 2],
        v: &[u8],
        list: bool,
    ) -> Result<u32, StateError> {
        let (tracking, epoch) = (self.tracking, self.epoch);
        let cell = &mut self.states[s].cells[c];
        let shard = cell.write();
        let tag = if tracking { epoch } else { 0 };
        let Ok(i) = shard.insert(hash, parts, v, tag) else {
            return Err(self.full_error(s, c));
        };
        if tracking {
            if list {
                shard.set_base(i, true);
            }
            cell.dirty.push(i);
        }
        Ok(i)
    }

    // ---- value state ----

    /// Finds where each of `keys` (with `map_keys`, for a map state) of
    /// state `state` lives, and loads the lines their lookups will touch,
    /// the index first, then the entries, so that the cache misses of a
    /// batch overlap instead of each lookup waiting for its own (with
    /// `prefetch`: a write of keys just read finds them in the cache, and
    /// loading them again costs more than it saves). A key of another
    /// subtask is refused.
    pub fn locate(
        &self,
        state: u32,
        keys: &[&[u8]],
        map_keys: Option<&[&[u8]]>,
        prefetch: bool,
        places: &mut Vec<Place>,
    ) -> Result<(), StateError> {
        let s = state as usize;
        places.clear();
        for (i, key) in keys.iter().enumerate() {
            places.push(self.place_of(s, key, map_keys.map(|m| m[i]))?);
        }
        if !prefetch {
            return Ok(());
        }
        let cells = &self.states[s].cells;
        let lookup = |p: &Place| if map_keys.is_some() { p.entry } else { p.hash };
        for p in places.iter() {
            cells[p.cell].data.touch(lookup(p), false);
        }
        for p in places.iter() {
            cells[p.cell].data.touch(lookup(p), true);
        }
        Ok(())
    }

    /// Where `key` (with `map_key`, in a map state) of state `state` lives,
    /// given `hint`, a place an earlier read found (of this entry, or of
    /// another): the hint itself when its slot still holds exactly this
    /// entry (no hashing, no probing), else the place found anew. A key of
    /// another subtask is refused.
    pub fn relocate(
        &self,
        state: u32,
        hint: Place,
        key: &[u8],
        map_key: Option<&[u8]>,
    ) -> Result<Place, StateError> {
        let s = state as usize;
        if hint.slot != NONE {
            let cell = self.states[s].cells.get(hint.cell);
            if cell.is_some_and(|c| c.data.holds(hint.slot, key, map_key)) {
                return Ok(hint);
            }
        }
        self.place_of(s, key, map_key)
    }

    /// The places of a write of `keys` (with `map_keys`, in a map state):
    /// with `hinted`, `places` holds what a read of at most as many keys
    /// just found, the hints for the first keys of the write, each kept or
    /// found anew ([`StateBackend::relocate`]), and the keys past them are
    /// found; otherwise they are all found (without loading ahead, as
    /// [`StateBackend::locate`] can: a write's keys were mostly just read).
    pub fn locate_for_write(
        &self,
        state: u32,
        keys: &[&[u8]],
        map_keys: Option<&[&[u8]]>,
        hinted: bool,
        places: &mut Vec<Place>,
    ) -> Result<(), StateError> {
        if !hinted {
            places.clear();
        }
        places.truncate(keys.len());
        let hints = places.len();
        for (i, key) in keys.iter().enumerate() {
            let map_key = map_keys.map(|m| m[i]);
            if i < hints {
                places[i] = self.relocate(state, places[i], key, map_key)?;
            } else {
                places.push(self.place_of(state as usize, key, map_key)?);
            }
        }
        Ok(())
    }

    /// Value state: the value of `key`.
    pub fn value_get(&self, state: u32, key: &[u8]) -> Result<Option<&[u8]>, StateError> {
        let mut p = self.place(state as usize, key)?;
        Ok(self.value_get_at(state, &mut p, key))
    }

    /// Value state: the value of `key`, found at `p` ([`StateBackend::locate`]);
    /// `p` notes the entry's slot, for a write that follows.
    pub fn value_get_at(&self, state: u32, p: &mut Place, key: &[u8]) -> Option<&[u8]> {
        let shard = &self.states[state as usize].cells[p.cell].data;
        let found = shard.find_key(p.hash, key);
        p.slot = found.unwrap_or(NONE);
        found.map(|i| shard.value(i))
    }

    /// Value state: sets (`Some`) or deletes (`None`) the value of `key`.
    pub fn value_put(
        &mut self,
        state: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let p = self.place(state as usize, key)?;
        self.value_put_at(state, p, key, value).map(|_| ())
    }

    /// Value state: [`StateBackend::value_put`] of a key found at `p`
    /// (from [`StateBackend::locate`], [`StateBackend::locate_for_write`]
    /// or [`StateBackend::relocate`]); where the key is stored now (no slot
    /// when it was deleted), a hint for its next write.
    pub fn value_put_at(
        &mut self,
        state: u32,
        p: Place,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Place, StateError> {
        let s = state as usize;
        let tracking = self.tracking;
        let declared = &mut self.states[s];
        let cell = &mut declared.cells[p.cell];
        let found = if p.slot != NONE {
            debug_assert!(cell.data.holds(p.slot, key, None));
            Some(p.slot)
        } else {
            cell.data.find_key(p.hash, key)
        };
        let slot = match (found, value) {
            (Some(i), Some(v)) => {
                self.overwrite(s, p.cell, i, v)?;
                i
            }
            (None, Some(v)) => {
                let i = self.add(s, p.cell, p.hash, [key, &[]], v, false)?;
                self.states[s].keys += 1;
                self.bytes += (key.len() + v.len()) as i64;
                self.entries += 1;
                i
            }
            (Some(i), None) => {
                let shard = cell.write();
                let old = shard.slots[i as usize].vlen as i64;
                shard.remove(i);
                if tracking {
                    record_removed(&mut cell.removed, key.len(), key);
                }
                declared.keys -= 1;
                self.bytes -= key.len() as i64 + old;
                self.entries -= 1;
                NONE
            }
            (None, None) => NONE,
        };
        Ok(Place { slot, ..p })
    }

    // ---- map state ----

    /// The map entry (event key, user key) in the shard of `p`.
    fn map_slot(&self, s: usize, p: Place, key: &[u8], map_key: &[u8], h: u32) -> Option<u32> {
        let shard = &self.states[s].cells[p.cell].data;
        shard.find(h, |shard, i| shard.is_entry(i, key, map_key))
    }

    fn entry_hash(p: Place, map_key: &[u8]) -> u32 {
        (xxhash_rust::xxh3::xxh3_64_with_seed(map_key, p.hash as u64) >> 32) as u32
    }

    /// Map state: the value at `map_key` in the map of `key`.
    pub fn map_get(
        &self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<&[u8]>, StateError> {
        let mut p = self.place_of(state as usize, key, Some(map_key))?;
        Ok(self.map_get_at(state, &mut p, key, map_key))
    }

    /// Map state: [`StateBackend::map_get`] of an entry found at `p`; `p`
    /// notes the entry's slot, for a write that follows.
    pub fn map_get_at(
        &self,
        state: u32,
        p: &mut Place,
        key: &[u8],
        map_key: &[u8],
    ) -> Option<&[u8]> {
        let s = state as usize;
        let shard = &self.states[s].cells[p.cell].data;
        let found = self.map_slot(s, *p, key, map_key, p.entry);
        p.slot = found.unwrap_or(NONE);
        found.map(|i| shard.value(i))
    }

    /// Map state: sets or removes `map_key` in the map of `key`.
    pub fn map_put(
        &mut self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let p = self.place_of(state as usize, key, Some(map_key))?;
        self.map_put_at(state, p, key, map_key, value)
    }

    /// Map state: [`StateBackend::map_put`] of an entry found at `p`
    /// (from [`StateBackend::locate`] or [`StateBackend::locate_for_write`]).
    pub fn map_put_at(
        &mut self,
        state: u32,
        p: Place,
        key: &[u8],
        map_key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let s = state as usize;
        let h = p.entry;
        let found = if p.slot != NONE {
            debug_assert!(self.states[s].cells[p.cell]
                .data
                .holds(p.slot, key, Some(map_key)));
            Some(p.slot)
        } else {
            self.map_slot(s, p, key, map_key, h)
        };
        match (found, value) {
            (Some(i), Some(v)) => self.overwrite(s, p.cell, i, v)?,
            (None, Some(v)) => {
                let i = self.add(s, p.cell, h, [key, map_key], v, false)?;
                let declared = &mut self.states[s];
                let new_key = declared.cells[p.cell]
                    .write()
                    .link(i, key.len() as u32, p.hash);
                self.bytes += (map_key.len() + v.len()) as i64;
                self.entries += 1;
                if new_key {
                    declared.keys += 1;
                    self.bytes += key.len() as i64;
                    self.entries += 1;
                }
            }
            (Some(i), None) => self.map_remove(s, p.cell, i, key.len()),
            (None, None) => {}
        }
        Ok(())
    }

    /// Removes map entry `i` of cell `c` of state `s` (its event key has
    /// `klen` bytes), recording it, and counts what went: the entry, and
    /// the event key with its last entry.
    fn map_remove(&mut self, s: usize, c: usize, i: u32, klen: usize) {
        let tracking = self.tracking;
        let declared = &mut self.states[s];
        let cell = &mut declared.cells[c];
        if tracking {
            record_removed(&mut cell.removed, klen, cell.data.key(i));
        }
        let shard = cell.write();
        let removed = (shard.slots[i as usize].klen as usize - klen) as i64
            + shard.slots[i as usize].vlen as i64;
        let last = shard.unlink(i);
        shard.remove(i);
        self.bytes -= removed;
        self.entries -= 1;
        if last {
            declared.keys -= 1;
            self.bytes -= klen as i64;
            self.entries -= 1;
        }
    }

    /// Map state: every entry of the map of `key`, sorted by user key.
    pub fn map_entries(&self, state: u32, key: &[u8]) -> Result<Vec<MapEntry<'_>>, StateError> {
        let s = state as usize;
        let p = self.place(s, key)?;
        let shard = &self.states[s].cells[p.cell].data;
        let Some((head, _)) = shard.head(p.hash, key) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(&[u8], &[u8])> = shard
            .chain(head)
            .map(|i| (shard.user_key(i), shard.value(i)))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(out)
    }

    /// Map state: removes the map of `key`.
    pub fn map_clear(&mut self, state: u32, key: &[u8]) -> Result<(), StateError> {
        let s = state as usize;
        let p = self.place(s, key)?;
        let shard = &self.states[s].cells[p.cell].data;
        let Some((head, _)) = shard.head(p.hash, key) else {
            return Ok(());
        };
        let slots: Vec<u32> = shard.chain(head).collect();
        for i in slots {
            self.map_remove(s, p.cell, i, key.len());
        }
        Ok(())
    }

    // ---- list state ----

    /// List state: the list of `key`.
    pub fn list_get(&self, state: u32, key: &[u8]) -> Result<Vec<&[u8]>, StateError> {
        let s = state as usize;
        let p = self.place(s, key)?;
        let shard = &self.states[s].cells[p.cell].data;
        Ok(shard
            .find_key(p.hash, key)
            .map(|i| list_elements(shard.value(i)).collect())
            .unwrap_or_default())
    }

    /// List state: appends `value` to the list of `key`.
    pub fn list_add(&mut self, state: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let s = state as usize;
        let p = self.place(s, key)?;
        let (tracking, epoch) = (self.tracking, self.epoch);
        let declared = &mut self.states[s];
        let cell = &mut declared.cells[p.cell];
        let len = (value.len() as u32).to_le_bytes();
        match cell.data.find_key(p.hash, key) {
            Some(i) => {
                // Recorded before the append: the delta is what follows.
                let (shard, dirty) = cell.parts();
                let _ = Self::touch(tracking, epoch, (&mut *shard, dirty), i, Some(false));
                if shard.append_value(i, &[&len, value]).is_err() {
                    return Err(self.full_error(s, p.cell));
                }
                self.bytes += value.len() as i64;
                self.entries += 1;
            }
            None => {
                let mut first = Vec::with_capacity(4 + value.len());
                first.extend_from_slice(&len);
                first.extend_from_slice(value);
                self.add(s, p.cell, p.hash, [key, &[]], &first, true)?;
                self.states[s].keys += 1;
                self.bytes += (key.len() + value.len()) as i64;
                self.entries += 2;
            }
        }
        Ok(())
    }

    /// List state: replaces the list of `key` (empty removes it).
    pub fn list_update(
        &mut self,
        state: u32,
        key: &[u8],
        values: Vec<Vec<u8>>,
    ) -> Result<(), StateError> {
        let s = state as usize;
        let p = self.place(s, key)?;
        let (tracking, epoch) = (self.tracking, self.epoch);
        let declared = &mut self.states[s];
        let cell = &mut declared.cells[p.cell];
        let found = cell.data.find_key(p.hash, key);
        if let Some(i) = found {
            let old = &cell.data;
            let (n, bytes) = list_elements(old.value(i))
                .fold((0i64, 0i64), |(n, b), e| (n + 1, b + e.len() as i64));
            self.bytes -= bytes + key.len() as i64;
            self.entries -= n + 1;
            if values.is_empty() {
                cell.write().remove(i);
                if tracking {
                    record_removed(&mut cell.removed, key.len(), key);
                }
                declared.keys -= 1;
                return Ok(());
            }
        } else if values.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(values.iter().map(|v| v.len() + 4).sum());
        for v in &values {
            encoded.extend_from_slice(&(v.len() as u32).to_le_bytes());
            encoded.extend_from_slice(v);
        }
        match found {
            Some(i) => {
                let (shard, dirty) = cell.parts();
                if shard.set_value(i, &encoded).is_err() {
                    return Err(self.full_error(s, p.cell));
                }
                let _ = Self::touch(tracking, epoch, (shard, dirty), i, Some(true));
            }
            None => {
                self.add(s, p.cell, p.hash, [key, &[]], &encoded, true)?;
                self.states[s].keys += 1;
            }
        }
        self.bytes += list_bytes(&values) + key.len() as i64;
        self.entries += values.len() as i64 + 1;
        Ok(())
    }

    // ---- snapshots ----

    /// Takes a snapshot: of every key (`full`) or of what changed since the
    /// previous one. Costs O(shards) here; the records are made from it
    /// later, on another thread ([`StateSnapshot::changes`]), while writes
    /// go on (the first write to a shard it holds copies that shard).
    pub fn snapshot(&mut self, full: bool) -> StateSnapshot {
        let mut states = Vec::with_capacity(self.states.len());
        for declared in &mut self.states {
            let mut shards = Vec::new();
            for (index, cell) in declared.cells.iter_mut().enumerate() {
                let dirty = std::mem::take(&mut cell.dirty);
                let removed = std::mem::take(&mut cell.removed);
                let wanted = if full {
                    cell.data.len() > 0
                } else {
                    !dirty.is_empty() || !removed.is_empty()
                };
                if wanted {
                    cell.shared = true;
                    shards.push(ShardSnapshot {
                        index,
                        data: Arc::clone(&cell.data),
                        dirty,
                        removed,
                    });
                }
            }
            states.push(StateSnapshotPart {
                name: declared.spec.name.clone(),
                kind: declared.spec.kind,
                shards,
            });
        }
        self.epoch += 1;
        StateSnapshot {
            full,
            key_group_start: self.key_groups.start,
            subs: self.subs,
            states,
        }
    }

    /// The state of every key written since the previous snapshot (deleted
    /// keys as [`StoredEntry::Deleted`]), and forgets that they changed.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        if !self.tracking {
            return Vec::new();
        }
        self.snapshot(false).changes()
    }

    /// The state of every key (a full snapshot), and forgets what changed.
    pub fn take_all(&mut self) -> Vec<StateChange> {
        self.snapshot(true).changes()
    }

    /// Puts restored state back (changes are not recorded). The key group
    /// must be one of this subtask's, the state declared, and the entry of
    /// the state's kind.
    pub fn restore(&mut self, change: StateChange) -> Result<(), String> {
        let Some(state) = self.states.iter().position(|s| s.spec.name == change.state) else {
            return Err(format!(
                "the checkpoint has state `{}`, which the operator does not declare",
                change.state
            ));
        };
        if !self.key_groups.contains(&change.key_group) {
            return Err(format!(
                "key group {} does not belong to this subtask",
                change.key_group
            ));
        }
        let kind = self.states[state].spec.kind;
        let tracking = std::mem::replace(&mut self.tracking, false);
        let result = self.apply(state as u32, kind, &change);
        self.tracking = tracking;
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "state `{}` is {} state, but the checkpoint holds {} state for it",
                change.state,
                kind_name(kind),
                stored_kind(&change.entry)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Applies a restored entry; `false` when its kind does not match.
    fn apply(&mut self, s: u32, kind: StateKind, c: &StateChange) -> Result<bool, StateError> {
        let key = &c.key;
        match (kind, &c.entry) {
            (StateKind::Value, StoredEntry::Value(v)) => self.value_put(s, key, Some(v))?,
            (StateKind::Value, StoredEntry::Deleted) => self.value_put(s, key, None)?,
            (StateKind::Map, StoredEntry::Map(entries)) => {
                self.map_clear(s, key)?;
                for (mk, v) in entries {
                    self.map_put(s, key, mk, Some(v))?;
                }
            }
            (StateKind::Map, StoredEntry::MapUpdate(changes)) => {
                for (mk, v) in changes {
                    self.map_put(s, key, mk, v.as_deref())?;
                }
            }
            (StateKind::Map, StoredEntry::Deleted) => self.map_clear(s, key)?,
            (StateKind::List, StoredEntry::List(values)) => {
                self.list_update(s, key, values.clone())?
            }
            (StateKind::List, StoredEntry::ListAppend(values)) => {
                for v in values {
                    self.list_add(s, key, v)?;
                }
            }
            (StateKind::List, StoredEntry::Deleted) => self.list_update(s, key, Vec::new())?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Every stored value of state `name`, with its key: a value state's
    /// values, each value of a map state's maps, each element of a list
    /// state's lists; in an order that [`StateBackend::replace_values`]
    /// takes back. For migrating them.
    pub fn values_of(&self, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(declared) = self.states.iter().find(|s| s.spec.name == name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for cell in &declared.cells {
            let shard = &cell.data;
            for i in shard.live_slots() {
                match declared.spec.kind {
                    StateKind::Value => out.push((shard.key(i).to_vec(), shard.value(i).to_vec())),
                    StateKind::Map => out.push((shard.owner(i).to_vec(), shard.value(i).to_vec())),
                    StateKind::List => out.extend(
                        list_elements(shard.value(i)).map(|e| (shard.key(i).to_vec(), e.to_vec())),
                    ),
                }
            }
        }
        out
    }

    /// Puts back the values [`StateBackend::values_of`] gave, changed, in
    /// the same order (nothing else may have changed in between).
    pub fn replace_values(&mut self, name: &str, values: Vec<Vec<u8>>) -> Result<(), String> {
        let Some(s) = self.states.iter().position(|s| s.spec.name == name) else {
            return Ok(());
        };
        let kind = self.states[s].spec.kind;
        let mut values = values.into_iter();
        let mut delta = 0i64;
        let cells = self.states[s].cells.len();
        for c in 0..cells {
            let cell = &mut self.states[s].cells[c];
            let live: Vec<u32> = cell.data.live_slots().collect();
            if live.is_empty() {
                continue;
            }
            let shard = cell.write();
            for i in live {
                let new = match kind {
                    StateKind::Value | StateKind::Map => {
                        let v = values.next().ok_or("fewer values than stored")?;
                        delta += v.len() as i64 - shard.value(i).len() as i64;
                        v
                    }
                    StateKind::List => {
                        let n = list_elements(shard.value(i)).count();
                        let mut encoded = Vec::new();
                        for e in list_elements(shard.value(i)) {
                            delta -= e.len() as i64;
                        }
                        for _ in 0..n {
                            let v = values.next().ok_or("fewer values than stored")?;
                            delta += v.len() as i64;
                            encoded.extend_from_slice(&(v.len() as u32).to_le_bytes());
                            encoded.extend_from_slice(&v);
                        }
                        encoded
                    }
                };
                shard
                    .set_value(i, &new)
                    .map_err(|ShardFull| "a shard passed 4 GiB".to_string())?;
            }
        }
        self.bytes += delta;
        Ok(())
    }

    /// Bytes of keys and values held, over all states.
    pub fn bytes(&self) -> u64 {
        self.bytes.max(0) as u64
    }

    /// Keys, map entries and list elements held, over all states.
    pub fn entries(&self) -> u64 {
        self.entries.max(0) as u64
    }

    /// What the state memory budget holds the state to: the bytes of keys
    /// and values, and [`ENTRY_OVERHEAD`] for each entry.
    pub fn memory(&self) -> u64 {
        self.bytes()
            .saturating_add(self.entries().saturating_mul(ENTRY_OVERHEAD))
    }

    /// Number of keys held for each declared state.
    pub fn key_counts(&self) -> Vec<(String, usize)> {
        self.states
            .iter()
            .map(|s| (s.spec.name.clone(), s.keys))
            .collect()
    }

    /// Number of keys held, over all states.
    pub fn keys(&self) -> u64 {
        self.states.iter().map(|s| s.keys as u64).sum()
    }
}

/// A shard as a snapshot holds it.
#[derive(Debug)]
struct ShardSnapshot {
    index: usize,
    data: Arc<Shard>,
    dirty: Vec<u32>,
    removed: Vec<u8>,
}

/// A state's part of a snapshot.
#[derive(Debug)]
struct StateSnapshotPart {
    name: String,
    kind: StateKind,
    shards: Vec<ShardSnapshot>,
}

/// A snapshot of a subtask's state at a barrier (see
/// [`StateBackend::snapshot`]): shared shards and what changed in them,
/// turned into records off the data path.
#[derive(Debug)]
pub struct StateSnapshot {
    full: bool,
    key_group_start: u32,
    subs: usize,
    states: Vec<StateSnapshotPart>,
}

impl StateSnapshot {
    /// An empty snapshot (of an operator with no state).
    pub fn empty(full: bool) -> Self {
        StateSnapshot {
            full,
            key_group_start: 0,
            subs: 1,
            states: Vec::new(),
        }
    }

    /// Whether it holds every key.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The records: every key's whole state (full), or what changed:
    /// removals first, then changed keys, per shard.
    pub fn changes(&self) -> Vec<StateChange> {
        let mut out = Vec::new();
        self.visit(&mut |key_group, state, key, entry| {
            out.push(StateChange {
                state: state.to_string(),
                key_group,
                key: key.to_vec(),
                entry: entry.to_owned(),
            })
        });
        out
    }

    /// Every record, borrowed, in order of key group (then state, as
    /// declared): `f(key group, state, key, entry)`.
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(u32, &'a str, &'a [u8], EntryRef<'a>)) {
        // Each state's shards are in order of shard index, so of key group.
        let mut next = vec![0usize; self.states.len()];
        let groups = self
            .states
            .iter()
            .flat_map(|p| p.shards.last())
            .map(|s| s.index / self.subs + 1)
            .max()
            .unwrap_or(0);
        for local in 0..groups {
            let key_group = self.key_group_start + local as u32;
            for (part, at) in self.states.iter().zip(next.iter_mut()) {
                while let Some(snap) = part
                    .shards
                    .get(*at)
                    .filter(|s| s.index / self.subs == local)
                {
                    *at += 1;
                    let mut emit =
                        |key: &'a [u8], entry: EntryRef<'a>| f(key_group, &part.name, key, entry);
                    if self.full {
                        full_records(part.kind, &snap.data, &mut emit);
                    } else {
                        delta_records(part.kind, snap, &mut emit);
                    }
                }
            }
        }
    }
}

/// A map state's entry: user key and value.
pub type MapEntry<'a> = (&'a [u8], &'a [u8]);

/// A change to a map state's entry: user key, and its value or `None` (removed).
type EntryChange<'a> = (&'a [u8], Option<&'a [u8]>);

/// A stored entry borrowed from a snapshot's shards: it encodes exactly as
/// the [`StoredEntry`] it stands for (same variants, in the same order), so
/// checkpoints are written without copying each key and value first.
#[derive(Debug, serde::Serialize)]
pub enum EntryRef<'a> {
    /// [`StoredEntry::Value`].
    Value(&'a [u8]),
    /// [`StoredEntry::Map`].
    Map(Vec<(&'a [u8], &'a [u8])>),
    /// [`StoredEntry::List`].
    List(Vec<&'a [u8]>),
    /// [`StoredEntry::Deleted`].
    Deleted,
    /// [`StoredEntry::MapUpdate`].
    MapUpdate(Vec<(&'a [u8], Option<&'a [u8]>)>),
    /// [`StoredEntry::ListAppend`].
    ListAppend(Vec<&'a [u8]>),
}

impl StoredEntry {
    /// The entry, borrowed (it encodes as the entry does).
    pub fn as_ref(&self) -> EntryRef<'_> {
        fn all(l: &[Vec<u8>]) -> Vec<&[u8]> {
            l.iter().map(Vec::as_slice).collect()
        }
        match self {
            StoredEntry::Value(v) => EntryRef::Value(v),
            StoredEntry::Map(m) => EntryRef::Map(m.iter().map(|(k, v)| (&k[..], &v[..])).collect()),
            StoredEntry::List(l) => EntryRef::List(all(l)),
            StoredEntry::Deleted => EntryRef::Deleted,
            StoredEntry::MapUpdate(m) => {
                EntryRef::MapUpdate(m.iter().map(|(k, v)| (&k[..], v.as_deref())).collect())
            }
            StoredEntry::ListAppend(l) => EntryRef::ListAppend(all(l)),
        }
    }
}

impl EntryRef<'_> {
    /// The owned entry.
    pub fn to_owned(&self) -> StoredEntry {
        let all = |l: &Vec<&[u8]>| l.iter().map(|v| v.to_vec()).collect();
        match self {
            EntryRef::Value(v) => StoredEntry::Value(v.to_vec()),
            EntryRef::Map(m) => {
                StoredEntry::Map(m.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
            }
            EntryRef::List(l) => StoredEntry::List(all(l)),
            EntryRef::Deleted => StoredEntry::Deleted,
            EntryRef::MapUpdate(m) => StoredEntry::MapUpdate(
                m.iter()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect(),
            ),
            EntryRef::ListAppend(l) => StoredEntry::ListAppend(all(l)),
        }
    }

    /// Bytes of user keys and values it holds (a size estimate for chunking).
    pub fn size(&self) -> usize {
        match self {
            EntryRef::Value(v) => v.len(),
            EntryRef::Map(m) => m.iter().map(|(k, v)| k.len() + v.len() + 8).sum(),
            EntryRef::List(l) | EntryRef::ListAppend(l) => l.iter().map(|v| v.len() + 4).sum(),
            EntryRef::MapUpdate(m) => m
                .iter()
                .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 9)
                .sum(),
            EntryRef::Deleted => 0,
        }
    }
}

/// Every key's whole state in `shard`.
fn full_records<'a>(
    kind: StateKind,
    shard: &'a Shard,
    emit: &mut dyn FnMut(&'a [u8], EntryRef<'a>),
) {
    match kind {
        StateKind::Value => {
            for i in shard.live_slots() {
                emit(shard.key(i), EntryRef::Value(shard.value(i)));
            }
        }
        StateKind::List => {
            for i in shard.live_slots() {
                emit(
                    shard.key(i),
                    EntryRef::List(list_elements(shard.value(i)).collect()),
                );
            }
        }
        StateKind::Map => {
            for (head, _) in shard.heads() {
                let mut entries: Vec<(&[u8], &[u8])> = shard
                    .chain(head)
                    .map(|i| (shard.user_key(i), shard.value(i)))
                    .collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                emit(shard.owner(head), EntryRef::Map(entries));
            }
        }
    }
}

/// What changed in a shard since the snapshot before.
fn delta_records<'a>(
    kind: StateKind,
    snap: &'a ShardSnapshot,
    emit: &mut dyn FnMut(&'a [u8], EntryRef<'a>),
) {
    let shard = &*snap.data;
    // A slot first changed in this epoch may have been removed (and reused)
    // since; the removal is recorded, and a reused slot holds its new key.
    let changed = snap.dirty.iter().copied().filter(|&i| shard.live(i));
    match kind {
        StateKind::Value | StateKind::List => {
            for (_, key) in removed_keys(&snap.removed) {
                emit(key, EntryRef::Deleted);
            }
            for i in changed {
                let value = shard.value(i);
                let entry = if kind == StateKind::Value {
                    EntryRef::Value(value)
                } else {
                    match shard.base_of(i) {
                        NONE => EntryRef::List(list_elements(value).collect()),
                        base => {
                            EntryRef::ListAppend(list_elements(&value[base as usize..]).collect())
                        }
                    }
                };
                emit(shard.key(i), entry);
            }
        }
        StateKind::Map => {
            // Per event key, in order: removals, then entries set.
            let mut by_key: FxHashMap<&[u8], Vec<EntryChange<'_>>> = FxHashMap::default();
            let mut order: Vec<&[u8]> = Vec::new();
            let mut push = |key: &'a [u8], change| {
                let slot = by_key.entry(key).or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                });
                slot.push(change);
            };
            for (klen, key) in removed_keys(&snap.removed) {
                push(&key[..klen], (&key[klen..], None));
            }
            for i in changed {
                push(shard.owner(i), (shard.user_key(i), Some(shard.value(i))));
            }
            for key in order {
                let changes = by_key.remove(key).unwrap_or_default();
                emit(key, EntryRef::MapUpdate(changes));
            }
        }
    }
}

fn list_bytes(l: &[Vec<u8>]) -> i64 {
    l.iter().map(|v| v.len() as i64).sum()
}

fn stored_kind(entry: &StoredEntry) -> &'static str {
    match entry {
        StoredEntry::Value(_) => "value",
        StoredEntry::Map(_) | StoredEntry::MapUpdate(_) => "map",
        StoredEntry::List(_) | StoredEntry::ListAppend(_) => "list",
        StoredEntry::Deleted => "no",
    }
}

/// The job-file word for a state kind.
pub fn kind_name(kind: StateKind) -> &'static str {
    match kind {
        StateKind::Value => "value",
        StateKind::Map => "map",
        StateKind::List => "list",
    }
}

/// The kind [`kind_name`] names `name`, if any.
pub fn kind_from_name(name: &str) -> Option<StateKind> {
    [StateKind::Value, StateKind::Map, StateKind::List]
        .into_iter()
        .find(|k| kind_name(*k) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: StateKind) -> StateSpec {
        StateSpec {
            name: name.to_string(),
            kind,
            version: 1,
        }
    }

    #[test]
    fn value_map_list_roundtrip() {
        let mut b = backend();
        let v = b.find("v", StateKind::Value).unwrap();
        let m = b.find("m", StateKind::Map).unwrap();
        let l = b.find("l", StateKind::List).unwrap();
        assert!(b.find("v", StateKind::Map).is_err());
        assert!(b.find("nope", StateKind::Value).is_err());

        b.value_put(v, b"k", Some(b"1")).unwrap();
        assert_eq!(b.value_get(v, b"k").unwrap(), Some(&b"1"[..]));
        b.value_put(v, b"k", None).unwrap();
        assert_eq!(b.value_get(v, b"k").unwrap(), None);

        b.map_put(m, b"k", b"b", Some(b"2")).unwrap();
        b.map_put(m, b"k", b"a", Some(b"1")).unwrap();
        let keys: Vec<_> = b
            .map_entries(m, b"k")
            .unwrap()
            .iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        b.map_put(m, b"k", b"a", None).unwrap();
        b.map_put(m, b"k", b"b", None).unwrap();
        assert!(b.map_entries(m, b"k").unwrap().is_empty());

        b.list_add(l, b"k", b"x").unwrap();
        b.list_add(l, b"k", b"y").unwrap();
        assert_eq!(b.bytes(), 3);
        assert_eq!(b.list_get(l, b"k").unwrap().len(), 2);
        b.list_update(l, b"k", vec![]).unwrap();
        assert!(b.list_get(l, b"k").unwrap().is_empty());
        assert_eq!(b.key_counts()[0].1, 0);
        assert_eq!(b.bytes(), 0, "everything was removed");
        assert_eq!(b.entries(), 0, "everything was removed");
        b.value_put(v, b"ab", Some(b"123")).unwrap();
        b.value_put(v, b"ab", Some(b"1")).unwrap();
        b.map_put(m, b"k", b"mk", Some(b"vv")).unwrap();
        assert_eq!(b.bytes(), 3 + 5);
        assert_eq!(b.entries(), 1 + 2, "a value's key; a map's key and entry");
        assert_eq!(b.memory(), 3 + 5 + 3 * ENTRY_OVERHEAD);
        b.list_update(l, b"k", vec![b"x".to_vec(), b"y".to_vec()])
            .unwrap();
        b.list_add(l, b"k", b"z").unwrap();
        assert_eq!(b.entries(), 3 + 4);
        b.list_update(l, b"k", vec![b"x".to_vec()]).unwrap();
        assert_eq!(b.entries(), 3 + 2);
        b.list_update(l, b"k", vec![]).unwrap();
        b.map_clear(m, b"k").unwrap();
        assert_eq!(b.bytes(), 3);
        assert_eq!(b.entries(), 1);
    }

    #[test]
    fn changes_snapshot_and_restore() {
        let mut b = StateBackend::new(0, 8, 0..8);
        b.declare(&[spec("v", StateKind::Value), spec("m", StateKind::Map)])
            .unwrap();
        b.track_changes();
        b.value_put(0, b"a", Some(b"1")).unwrap();
        b.value_put(0, b"b", Some(b"2")).unwrap();
        b.map_put(1, b"a", b"x", Some(b"9")).unwrap();
        assert_eq!(b.take_changes().len(), 3);
        assert!(
            b.take_changes().is_empty(),
            "changes are forgotten once taken"
        );
        b.value_put(0, b"a", None).unwrap();
        let changes = b.take_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].entry, StoredEntry::Deleted);
        // A key written again after a snapshot is recorded again.
        b.value_put(0, b"b", Some(b"3")).unwrap();
        b.value_put(0, b"b", Some(b"4")).unwrap();
        let changes = b.take_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].entry, StoredEntry::Value(b"4".to_vec()));
        b.value_put(0, b"b", Some(b"2")).unwrap();
        assert_eq!(b.take_changes().len(), 1);
        let all = b.take_all();
        assert_eq!(all.len(), 2);
        b.value_put(0, b"b", Some(b"2")).unwrap();
        assert_eq!(b.take_changes().len(), 1, "take_all resets the flags too");

        let mut r = StateBackend::new(0, 8, 0..8);
        r.declare(&[spec("v", StateKind::Value), spec("m", StateKind::Map)])
            .unwrap();
        b.map_put(1, b"a", b"y", Some(b"8")).unwrap();
        let all = b.take_all();
        for c in all {
            r.restore(c).unwrap();
        }
        assert_eq!((r.bytes(), r.entries()), (b.bytes(), b.entries()));
        assert_eq!(r.value_get(0, b"b").unwrap(), Some(&b"2"[..]));
        assert_eq!(r.map_get(1, b"a", b"x").unwrap(), Some(&b"9"[..]));
        // Restoring over a key replaces what it held.
        r.restore(StateChange {
            state: "m".into(),
            key_group: keygroup::key_group(Some(b"a"), 8),
            key: b"a".to_vec(),
            entry: StoredEntry::Deleted,
        })
        .unwrap();
        assert_eq!(r.entries(), b.entries() - 3);
        let wrong = StateChange {
            state: "v".into(),
            key_group: 0,
            key: b"k".to_vec(),
            entry: StoredEntry::List(vec![]),
        };
        assert!(r.restore(wrong).unwrap_err().contains("value state"));
    }

    #[test]
    fn foreign_keys_are_refused() {
        let m = 8;
        let mut b = StateBackend::new(0, m, keygroup::range_for(0, m, 2));
        b.declare(&[spec("v", StateKind::Value)]).unwrap();
        let foreign = (0..1000u32)
            .map(|i| i.to_string().into_bytes())
            .find(|k| keygroup::key_group(Some(k), m) >= 4)
            .unwrap();
        assert!(matches!(
            b.value_put(0, &foreign, Some(b"1")),
            Err(StateError::ForeignKey { .. })
        ));
    }

    /// What a backend should hold: per state, key -> whole entry.
    type Model = [std::collections::BTreeMap<Vec<u8>, StoredEntry>; 3];

    fn check(b: &StateBackend, model: &Model, keys: &[Vec<u8>], what: &str) {
        let (mut bytes, mut entries) = (0u64, 0u64);
        for key in keys {
            let v = b.value_get(0, key).unwrap().map(<[u8]>::to_vec);
            let want = model[0].get(key).map(|e| match e {
                StoredEntry::Value(v) => v.clone(),
                _ => unreachable!(),
            });
            assert_eq!(v, want, "{what}: value of {key:?}");
            let m: Vec<(Vec<u8>, Vec<u8>)> = b
                .map_entries(1, key)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            let want = match model[1].get(key) {
                Some(StoredEntry::Map(m)) => m.clone(),
                _ => Vec::new(),
            };
            assert_eq!(m, want, "{what}: map of {key:?}");
            for (mk, v) in &want {
                assert_eq!(b.map_get(1, key, mk).unwrap(), Some(&v[..]));
            }
            let l: Vec<Vec<u8>> = b
                .list_get(2, key)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
            let want = match model[2].get(key) {
                Some(StoredEntry::List(l)) => l.clone(),
                _ => Vec::new(),
            };
            assert_eq!(l, want, "{what}: list of {key:?}");
        }
        for state in model {
            for (k, e) in state {
                let (b2, n) = match e {
                    StoredEntry::Value(v) => (v.len(), 1),
                    StoredEntry::Map(m) => {
                        (m.iter().map(|(a, b)| a.len() + b.len()).sum(), m.len() + 1)
                    }
                    StoredEntry::List(l) => (l.iter().map(Vec::len).sum(), l.len() + 1),
                    _ => unreachable!(),
                };
                bytes += (k.len() + b2) as u64;
                entries += n as u64;
            }
        }
        assert_eq!(
            (b.bytes(), b.entries()),
            (bytes, entries),
            "{what}: counters"
        );
        let keys: usize = model.iter().map(|m| m.len()).sum();
        assert_eq!(b.keys() as usize, keys, "{what}: keys");
    }

    /// A write of more keys than a read found places for takes the hints
    /// for its first keys and finds the places of the others; each write
    /// lands at its own key.
    #[test]
    fn a_write_past_its_hints_finds_the_rest() {
        let mut b = backend();
        let v = b.find("v", StateKind::Value).unwrap();
        b.value_put(v, b"a", Some(b"1")).unwrap();
        b.value_put(v, b"c", Some(b"3")).unwrap();
        let mut places = Vec::new();
        b.locate(v, &[&b"a"[..]], None, true, &mut places).unwrap();
        let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
        b.locate_for_write(v, &keys, None, true, &mut places)
            .unwrap();
        assert_eq!(places.len(), 3);
        for (key, (p, value)) in keys.iter().zip(places.iter().zip(["10", "20", "30"])) {
            b.value_put_at(v, *p, key, Some(value.as_bytes())).unwrap();
        }
        for (key, value) in keys.iter().zip(["10", "20", "30"]) {
            assert_eq!(b.value_get(v, key).unwrap(), Some(value.as_bytes()));
        }
        // Hints out of step with the keys (the write's first key is another
        // than the read's): found anew, nothing lands at the wrong key.
        b.locate(v, &[&b"c"[..]], None, true, &mut places).unwrap();
        b.locate_for_write(v, &keys, None, true, &mut places)
            .unwrap();
        for (key, (p, value)) in keys.iter().zip(places.iter().zip(["11", "21", "31"])) {
            b.value_put_at(v, *p, key, Some(value.as_bytes())).unwrap();
        }
        for (key, value) in keys.iter().zip(["11", "21", "31"]) {
            assert_eq!(b.value_get(v, key).unwrap(), Some(value.as_bytes()));
        }
    }

    /// A write takes the place a read found as a hint only while the slot
    /// still holds the very entry: after the entry moved, or for another
    /// key, it finds the place anew.
    #[test]
    fn writes_take_a_read_place_as_a_hint_only_while_it_holds() {
        let mut b = backend();
        let (v, m) = (
            b.find("v", StateKind::Value).unwrap(),
            b.find("m", StateKind::Map).unwrap(),
        );
        b.value_put(v, b"a", Some(b"1")).unwrap();
        b.map_put(m, b"a", b"x", Some(b"10")).unwrap();
        let keys: [&[u8]; 2] = [b"a", b"b"];
        let mut places = Vec::new();
        b.locate(v, &keys, None, true, &mut places).unwrap();
        assert_eq!(b.value_get_at(v, &mut places[0], b"a"), Some(&b"1"[..]));
        assert_eq!(b.value_get_at(v, &mut places[1], b"b"), None);
        assert!(places[0].found() && !places[1].found());
        // The same key: the hint serves.
        let p = b.relocate(v, places[0], b"a", None).unwrap();
        b.value_put_at(v, p, b"a", Some(b"2")).unwrap();
        assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"2"[..]));
        // Another key given a's hint: found anew, a untouched.
        let p = b.relocate(v, places[0], b"b", None).unwrap();
        b.value_put_at(v, p, b"b", Some(b"7")).unwrap();
        assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"2"[..]));
        assert_eq!(b.value_get(v, b"b").unwrap(), Some(&b"7"[..]));
        // a removed, its slot reused by c: a's old hint no longer holds a.
        b.value_put(v, b"a", None).unwrap();
        b.value_put(v, b"c", Some(b"3")).unwrap();
        let p = b.relocate(v, places[0], b"a", None).unwrap();
        b.value_put_at(v, p, b"a", Some(b"4")).unwrap();
        assert_eq!(b.value_get(v, b"c").unwrap(), Some(&b"3"[..]));
        assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"4"[..]));
        // Map entries: the hint holds only for the same key and user key.
        let mks: [&[u8]; 1] = [b"x"];
        b.locate(m, &keys[..1], Some(&mks), true, &mut places)
            .unwrap();
        assert_eq!(
            b.map_get_at(m, &mut places[0], b"a", b"x"),
            Some(&b"10"[..])
        );
        let p = b.relocate(m, places[0], b"a", Some(b"y")).unwrap();
        b.map_put_at(m, p, b"a", b"y", Some(b"20")).unwrap();
        let p = b.relocate(m, places[0], b"a", Some(b"x")).unwrap();
        b.map_put_at(m, p, b"a", b"x", None).unwrap();
        let entries = b.map_entries(m, b"a").unwrap();
        assert_eq!(entries, vec![(&b"y"[..], &b"20"[..])]);
    }

    /// The place a write returns, given back as a number (as an operator
    /// does with `put-many-placed`), serves the key's next write; any other
    /// number (another key's, a slot reused since, a shard or slot past the
    /// end, none) is only a hint that fails its check: the key is found and
    /// nothing lands at the wrong key.
    #[test]
    fn a_place_given_back_serves_only_the_key_it_holds() {
        let mut b = backend();
        let v = b.find("v", StateKind::Value).unwrap();
        let put = |b: &mut StateBackend, code: u64, key: &[u8], value: Option<&[u8]>| {
            let p = b.relocate(v, Place::from_code(code), key, None).unwrap();
            b.value_put_at(v, p, key, value).unwrap().code()
        };
        let a = put(&mut b, u64::MAX, b"a", Some(b"1"));
        let bb = put(&mut b, u64::MAX, b"b", Some(b"2"));
        assert_ne!(a, u64::MAX);
        assert_eq!(put(&mut b, a, b"a", Some(b"3")), a);
        assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"3"[..]));
        // b's place given with a: a is found, b untouched.
        assert_eq!(put(&mut b, bb, b"a", Some(b"4")), a);
        assert_eq!(b.value_get(v, b"b").unwrap(), Some(&b"2"[..]));
        for wild in [0, 1 << 32, (1 << 32) | 7, u64::MAX - 1, a ^ 1] {
            put(&mut b, wild, b"b", Some(b"5"));
            assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"4"[..]));
            assert_eq!(b.value_get(v, b"b").unwrap(), Some(&b"5"[..]));
        }
        // a deleted (no place), its slot reused by c: a's old place no
        // longer holds a.
        assert_eq!(put(&mut b, a, b"a", None), u64::MAX);
        put(&mut b, u64::MAX, b"c", Some(b"6"));
        put(&mut b, a, b"a", Some(b"7"));
        assert_eq!(b.value_get(v, b"c").unwrap(), Some(&b"6"[..]));
        assert_eq!(b.value_get(v, b"a").unwrap(), Some(&b"7"[..]));
        assert_eq!(b.keys(), 3);
    }

    fn backend() -> StateBackend {
        let mut b = StateBackend::new(0, 16, 0..16);
        b.declare(&[
            spec("v", StateKind::Value),
            spec("m", StateKind::Map),
            spec("l", StateKind::List),
        ])
        .unwrap();
        b
    }

    /// Random operations on every kind, against a model: the live state, and
    /// the state restored from the chain of full and incremental snapshots
    /// (some turned into records only after more writes: copy-on-write).
    #[test]
    fn matches_a_model_through_snapshots_and_restores() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let keys: Vec<Vec<u8>> = (0..60).map(|i| format!("k{i}").into_bytes()).collect();
        let mut b = backend();
        b.track_changes();
        let mut model: Model = Default::default();
        let mut chain: Vec<Vec<StateChange>> = Vec::new();
        let mut held: Option<(StateSnapshot, Model)> = None;
        for step in 0..30_000u64 {
            let key = keys[rand(keys.len() as u64) as usize].clone();
            let value: Vec<u8> = (0..rand(40))
                .map(|i| (i as u8).wrapping_add(step as u8))
                .collect();
            match rand(9) {
                0 | 1 => {
                    b.value_put(0, &key, Some(&value)).unwrap();
                    model[0].insert(key, StoredEntry::Value(value));
                }
                2 => {
                    b.value_put(0, &key, None).unwrap();
                    model[0].remove(&key);
                }
                3 | 4 => {
                    let mk = format!("u{}", rand(8)).into_bytes();
                    let remove = rand(3) == 0;
                    b.map_put(1, &key, &mk, (!remove).then_some(&value[..]))
                        .unwrap();
                    let mut m = match model[1].remove(&key) {
                        Some(StoredEntry::Map(m)) => m,
                        _ => Vec::new(),
                    };
                    m.retain(|(k, _)| *k != mk);
                    if !remove {
                        m.push((mk, value));
                        m.sort();
                    }
                    if !m.is_empty() {
                        model[1].insert(key, StoredEntry::Map(m));
                    }
                }
                5 => {
                    b.map_clear(1, &key).unwrap();
                    model[1].remove(&key);
                }
                6 | 7 => {
                    b.list_add(2, &key, &value).unwrap();
                    let mut l = match model[2].remove(&key) {
                        Some(StoredEntry::List(l)) => l,
                        _ => Vec::new(),
                    };
                    l.push(value);
                    model[2].insert(key, StoredEntry::List(l));
                }
                _ => {
                    let n = rand(3) as usize;
                    let l: Vec<Vec<u8>> = (0..n)
                        .map(|i| value[..value.len().min(i * 3)].to_vec())
                        .collect();
                    b.list_update(2, &key, l.clone()).unwrap();
                    if l.is_empty() {
                        model[2].remove(&key);
                    } else {
                        model[2].insert(key, StoredEntry::List(l));
                    }
                }
            }
            if step % 500 == 499 {
                // The snapshot held since the last round is turned into
                // records now, after a round of writes.
                if let Some((snap, at)) = held.take() {
                    let changes = snap.changes();
                    if snap.is_full() {
                        chain.clear();
                    }
                    chain.push(changes);
                    let mut r = backend();
                    for c in chain.iter().flatten() {
                        r.restore(c.clone()).unwrap();
                    }
                    check(&r, &at, &keys, &format!("restored at step {step}"));
                }
                let full = chain.is_empty() || rand(5) == 0;
                held = Some((b.snapshot(full), model.clone()));
                check(&b, &model, &keys, &format!("live at step {step}"));
            }
        }
        assert!(chain.len() > 3, "deltas were taken");
    }
}
