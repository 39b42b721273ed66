//! The keyed state backend: declared states held in memory, sharded by key group.
//!
//! Every state of a subtask keeps one map per key group the subtask owns, so
//! that checkpoints can write, and restores can move, whole key groups. A key
//! outside the subtask's key groups is refused: keyed state needs the events
//! routed by key (`input = "key"`), or a parallelism of 1. State has no
//! key-less form: the WIT takes a key for every access, and the host refuses
//! an absent one (there is no key group to keep it in).
//!
//! The backend counts, as it goes, the bytes of keys and values it holds and
//! the number of entries (keys, map entries, list elements); a subtask's
//! state memory budget (`[operators.limits] state_memory`) is held against
//! [`StateBackend::memory`], bytes plus [`ENTRY_OVERHEAD`] per entry, so
//! that ever new small keys are not free. No call walks the state to count.

use std::collections::BTreeMap;
use std::ops::Range;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::keygroup;
use crate::model::{StateKind, StateSpec};

/// Bytes charged to the state memory budget for each key, map entry and list
/// element held, beside its bytes: about what the host's maps and vectors
/// spend to hold one.
pub const ENTRY_OVERHEAD: u64 = 64;

/// A user key's state of kind `map`: user keys, sorted, to values.
pub type MapEntries = BTreeMap<Vec<u8>, Vec<u8>>;

/// A value state's value, with whether it changed since the last snapshot
/// (so that a write to a key already changed costs no second lookup).
#[derive(Debug, Clone)]
pub struct ValueSlot {
    /// The value.
    pub value: Vec<u8>,
    /// Written since the last snapshot (and recorded as changed).
    pub dirty: bool,
}

/// The data of one declared state, one map per owned key group.
#[derive(Debug)]
pub enum StateData {
    /// Value state: key -> value.
    Value(Vec<FxHashMap<Vec<u8>, ValueSlot>>),
    /// Map state: key -> (user key -> value).
    Map(Vec<FxHashMap<Vec<u8>, MapEntries>>),
    /// List state: key -> values.
    List(Vec<FxHashMap<Vec<u8>, Vec<Vec<u8>>>>),
}

/// A declared state and its data.
#[derive(Debug)]
pub struct DeclaredState {
    /// What the operator declared.
    pub spec: StateSpec,
    /// The data, by local key group.
    pub data: StateData,
}

/// Why a state access was refused (the guest traps with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The key is not in this subtask's key groups.
    #[error("state `{state}` was used with key `{key}` (key group {key_group}), which subtask {subtask} does not own (it owns key groups {owned:?}): an operator may use keyed state only under the keys routed to it, with `input = \"key\"` (or parallelism 1)")]
    ForeignKey {
        /// The state's name.
        state: String,
        /// The key, escaped and cut to 100 characters.
        key: String,
        /// The key's key group.
        key_group: u32,
        /// This subtask.
        subtask: u32,
        /// The key groups it owns.
        owned: Range<u32>,
    },
}

/// A stored state entry: the whole state of one key (in one key group) of one
/// declared state, or its deletion. Checkpoints store these.
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
    /// Its state now.
    pub entry: StoredEntry,
}

/// All declared states of one subtask.
#[derive(Debug)]
pub struct StateBackend {
    subtask: u32,
    max_parallelism: u32,
    key_groups: Range<u32>,
    states: Vec<DeclaredState>,
    /// Keys written since the last snapshot, per state and local key group;
    /// `None` when no checkpoints are taken.
    changed: Option<Vec<Vec<FxHashSet<Vec<u8>>>>>,
    /// Bytes of keys and values held, over all states.
    bytes: i64,
    /// Keys, map entries and list elements held, over all states.
    entries: i64,
}

impl StateBackend {
    /// An empty backend for the subtask that owns `key_groups` of `max_parallelism`.
    pub fn new(subtask: u32, max_parallelism: u32, key_groups: Range<u32>) -> Self {
        StateBackend {
            subtask,
            max_parallelism,
            key_groups,
            states: Vec::new(),
            changed: None,
            bytes: 0,
            entries: 0,
        }
    }

    /// Starts recording which keys change, for incremental snapshots.
    pub fn track_changes(&mut self) {
        let groups = self.key_groups.len();
        self.changed = Some(
            self.states
                .iter()
                .map(|_| vec![FxHashSet::default(); groups])
                .collect(),
        );
    }

    fn mark(&mut self, state: usize, group: usize, key: &[u8]) {
        if let Some(changed) = &mut self.changed {
            let set = &mut changed[state][group];
            if !set.contains(key) {
                set.insert(key.to_vec());
            }
        }
    }

    fn entry_of(&self, state: usize, group: usize, key: &[u8]) -> StoredEntry {
        let found = match &self.states[state].data {
            StateData::Value(g) => g[group]
                .get(key)
                .map(|v| StoredEntry::Value(v.value.clone())),
            StateData::Map(g) => g[group]
                .get(key)
                .map(|m| StoredEntry::Map(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())),
            StateData::List(g) => g[group].get(key).map(|l| StoredEntry::List(l.clone())),
        };
        found.unwrap_or(StoredEntry::Deleted)
    }

    /// The state of every key written since the previous snapshot (deleted
    /// keys as [`StoredEntry::Deleted`]), and forgets that they changed.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        let Some(changed) = self.changed.as_mut() else {
            return Vec::new();
        };
        let taken: Vec<Vec<FxHashSet<Vec<u8>>>> = changed
            .iter_mut()
            .map(|groups| groups.iter_mut().map(std::mem::take).collect())
            .collect();
        let mut out = Vec::new();
        for (state, groups) in taken.into_iter().enumerate() {
            for (group, keys) in groups.into_iter().enumerate() {
                for key in keys {
                    let entry = self.entry_of(state, group, &key);
                    if let StateData::Value(g) = &mut self.states[state].data {
                        if let Some(slot) = g[group].get_mut(&key) {
                            slot.dirty = false;
                        }
                    }
                    out.push(StateChange {
                        state: self.states[state].spec.name.clone(),
                        key_group: self.key_groups.start + group as u32,
                        key,
                        entry,
                    });
                }
            }
        }
        out
    }

    /// The state of every key (a full snapshot), and forgets what changed.
    pub fn take_all(&mut self) -> Vec<StateChange> {
        if let Some(changed) = self.changed.as_mut() {
            changed.iter_mut().flatten().for_each(FxHashSet::clear);
        }
        for declared in &mut self.states {
            if let StateData::Value(groups) = &mut declared.data {
                groups
                    .iter_mut()
                    .flat_map(|m| m.values_mut())
                    .for_each(|slot| slot.dirty = false);
            }
        }
        let total: usize = self.key_counts().iter().map(|(_, n)| n).sum();
        let mut out = Vec::with_capacity(total);
        let start = self.key_groups.start;
        for declared in &self.states {
            let name = &declared.spec.name;
            let change = |group: usize, key: &Vec<u8>, entry: StoredEntry| StateChange {
                state: name.clone(),
                key_group: start + group as u32,
                key: key.clone(),
                entry,
            };
            match &declared.data {
                StateData::Value(groups) => {
                    for (g, map) in groups.iter().enumerate() {
                        out.extend(
                            map.iter()
                                .map(|(k, v)| change(g, k, StoredEntry::Value(v.value.clone()))),
                        );
                    }
                }
                StateData::Map(groups) => {
                    for (g, map) in groups.iter().enumerate() {
                        out.extend(map.iter().map(|(k, m)| {
                            let entries = m.iter().map(|(mk, v)| (mk.clone(), v.clone())).collect();
                            change(g, k, StoredEntry::Map(entries))
                        }));
                    }
                }
                StateData::List(groups) => {
                    for (g, map) in groups.iter().enumerate() {
                        out.extend(
                            map.iter()
                                .map(|(k, l)| change(g, k, StoredEntry::List(l.clone()))),
                        );
                    }
                }
            }
        }
        out
    }

    /// Puts restored state back. The key group must be one of this
    /// subtask's, the state declared, and the entry of the state's kind.
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
        let group = (change.key_group - self.key_groups.start) as usize;
        let kind = self.states[state].spec.kind;
        let old = self.entry_of(state, group, &change.key);
        self.bytes -= entry_bytes(&old, change.key.len());
        self.bytes += entry_bytes(&change.entry, change.key.len());
        self.entries += entry_count(&change.entry) - entry_count(&old);
        match (&mut self.states[state].data, change.entry) {
            (StateData::Value(g), StoredEntry::Value(v)) => {
                g[group].insert(
                    change.key,
                    ValueSlot {
                        value: v,
                        dirty: false,
                    },
                );
            }
            (StateData::Map(g), StoredEntry::Map(entries)) => {
                g[group].insert(change.key, entries.into_iter().collect());
            }
            (StateData::List(g), StoredEntry::List(values)) => {
                g[group].insert(change.key, values);
            }
            (StateData::Value(g), StoredEntry::Deleted) => {
                g[group].remove(&change.key);
            }
            (StateData::Map(g), StoredEntry::Deleted) => {
                g[group].remove(&change.key);
            }
            (StateData::List(g), StoredEntry::Deleted) => {
                g[group].remove(&change.key);
            }
            (_, entry) => {
                return Err(format!(
                    "state `{}` is {} state, but the checkpoint holds {} state for it",
                    change.state,
                    kind_name(kind),
                    stored_kind(&entry)
                ))
            }
        }
        Ok(())
    }

    /// Declares the states of an operator (from its `describe`), empty.
    pub fn declare(&mut self, specs: &[StateSpec]) -> Result<(), String> {
        let groups = self.key_groups.len();
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_empty() {
                return Err("a declared state has an empty name".to_string());
            }
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(format!("state `{}` is declared twice", spec.name));
            }
            let data = match spec.kind {
                StateKind::Value => StateData::Value(vec![FxHashMap::default(); groups]),
                StateKind::Map => StateData::Map(vec![FxHashMap::default(); groups]),
                StateKind::List => StateData::List(vec![FxHashMap::default(); groups]),
            };
            self.states.push(DeclaredState {
                spec: spec.clone(),
                data,
            });
        }
        Ok(())
    }

    /// Every stored value of state `name`, with its key: a value state's
    /// values, each value of a map state's maps, each element of a list
    /// state's lists. For migrating them in place.
    pub fn values_mut(&mut self, name: &str) -> Vec<(&[u8], &mut Vec<u8>)> {
        let Some(declared) = self.states.iter_mut().find(|s| s.spec.name == name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match &mut declared.data {
            StateData::Value(groups) => {
                for map in groups {
                    out.extend(map.iter_mut().map(|(k, v)| (k.as_slice(), &mut v.value)));
                }
            }
            StateData::Map(groups) => {
                for map in groups {
                    for (k, m) in map.iter_mut() {
                        out.extend(m.values_mut().map(|v| (k.as_slice(), v)));
                    }
                }
            }
            StateData::List(groups) => {
                for map in groups {
                    for (k, l) in map.iter_mut() {
                        out.extend(l.iter_mut().map(|v| (k.as_slice(), v)));
                    }
                }
            }
        }
        out
    }

    /// Accounts for values that [`StateBackend::values_mut`] resized.
    pub fn adjust_bytes(&mut self, delta: i64) {
        self.bytes += delta;
    }

    /// The declared states.
    pub fn states(&self) -> &[DeclaredState] {
        &self.states
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

    fn local_group(&self, state: usize, key: &[u8]) -> Result<usize, StateError> {
        if self.key_groups.start == 0 && self.key_groups.end == self.max_parallelism {
            // One subtask owns every key group: skip nothing, but avoid the range check.
            return Ok(keygroup::key_group(Some(key), self.max_parallelism) as usize);
        }
        let kg = keygroup::key_group(Some(key), self.max_parallelism);
        if !self.key_groups.contains(&kg) {
            return Err(StateError::ForeignKey {
                state: self.states[state].spec.name.clone(),
                key: crate::model::batch::show_bytes(key),
                key_group: kg,
                subtask: self.subtask,
                owned: self.key_groups.clone(),
            });
        }
        Ok((kg - self.key_groups.start) as usize)
    }

    /// Value state: the value of `key`.
    pub fn value_get(&self, state: u32, key: &[u8]) -> Result<Option<&[u8]>, StateError> {
        let s = state as usize;
        let g = self.local_group(s, key)?;
        match &self.states[s].data {
            StateData::Value(groups) => Ok(groups[g].get(key).map(|s| s.value.as_slice())),
            _ => unreachable!("state handles are typed by kind"),
        }
    }

    /// Value state: sets (`Some`) or deletes (`None`) the value of `key`.
    pub fn value_put(
        &mut self,
        state: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let s = state as usize;
        let g = self.local_group(s, key)?;
        let tracking = self.changed.is_some();
        let StateData::Value(groups) = &mut self.states[s].data else {
            unreachable!("state handles are typed by kind")
        };
        let map = &mut groups[g];
        // `first`: the key's first change since the last snapshot, to record.
        let (delta, entries, first) = match value {
            Some(v) => match map.get_mut(key) {
                Some(slot) => {
                    let old = slot.value.len() as i64;
                    slot.value.clear();
                    slot.value.extend_from_slice(v);
                    let first = tracking && !slot.dirty;
                    slot.dirty |= tracking;
                    (v.len() as i64 - old, 0, first)
                }
                None => {
                    let slot = ValueSlot {
                        value: v.to_vec(),
                        dirty: tracking,
                    };
                    map.insert(key.to_vec(), slot);
                    ((key.len() + v.len()) as i64, 1, tracking)
                }
            },
            None => match map.remove(key) {
                Some(old) => (-((key.len() + old.value.len()) as i64), -1, tracking),
                None => (0, 0, false),
            },
        };
        self.bytes += delta;
        self.entries += entries;
        if first {
            self.mark(s, g, key);
        }
        Ok(())
    }

    /// The per-key data of map state `state` in the key group of `key`; `write`
    /// records the key as changed.
    fn map_of(
        &mut self,
        state: u32,
        key: &[u8],
        write: bool,
    ) -> Result<&mut FxHashMap<Vec<u8>, MapEntries>, StateError> {
        let s = state as usize;
        let g = self.local_group(s, key)?;
        if write {
            self.mark(s, g, key);
        }
        match &mut self.states[s].data {
            StateData::Map(groups) => Ok(&mut groups[g]),
            _ => unreachable!("state handles are typed by kind"),
        }
    }

    /// Map state: the value at `map_key` in the map of `key`.
    pub fn map_get(
        &mut self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<&[u8]>, StateError> {
        Ok(self
            .map_of(state, key, false)?
            .get(key)
            .and_then(|m| m.get(map_key))
            .map(Vec::as_slice))
    }

    /// Map state: sets or removes `map_key` in the map of `key`.
    pub fn map_put(
        &mut self,
        state: u32,
        key: &[u8],
        map_key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        let maps = self.map_of(state, key, true)?;
        let entry = (map_key.len() + value.map_or(0, <[u8]>::len)) as i64;
        let (delta, entries) = match value {
            Some(v) => {
                let (new_key, m) = match maps.get_mut(key) {
                    Some(m) => ((0, 0), m),
                    None => ((key.len() as i64, 1), maps.entry(key.to_vec()).or_default()),
                };
                match m.insert(map_key.to_vec(), v.to_vec()) {
                    Some(old) => (v.len() as i64 - old.len() as i64, 0),
                    None => (new_key.0 + entry, new_key.1 + 1),
                }
            }
            None => match maps.get_mut(key) {
                Some(m) => {
                    let (removed, gone) = m
                        .remove(map_key)
                        .map_or((0, 0), |old| ((map_key.len() + old.len()) as i64, 1));
                    if m.is_empty() {
                        maps.remove(key);
                        (-removed - key.len() as i64, -gone - 1)
                    } else {
                        (-removed, -gone)
                    }
                }
                None => (0, 0),
            },
        };
        self.bytes += delta;
        self.entries += entries;
        Ok(())
    }

    /// Map state: every entry of the map of `key`, sorted by user key.
    pub fn map_entries(
        &mut self,
        state: u32,
        key: &[u8],
    ) -> Result<Option<&MapEntries>, StateError> {
        Ok(self.map_of(state, key, false)?.get(key))
    }

    /// Map state: removes the map of `key`.
    pub fn map_clear(&mut self, state: u32, key: &[u8]) -> Result<(), StateError> {
        if let Some(old) = self.map_of(state, key, true)?.remove(key) {
            self.bytes -= map_bytes(&old) + key.len() as i64;
            self.entries -= old.len() as i64 + 1;
        }
        Ok(())
    }

    /// The per-key data of list state `state` in the key group of `key`; `write`
    /// records the key as changed.
    fn list_of(
        &mut self,
        state: u32,
        key: &[u8],
        write: bool,
    ) -> Result<&mut FxHashMap<Vec<u8>, Vec<Vec<u8>>>, StateError> {
        let s = state as usize;
        let g = self.local_group(s, key)?;
        if write {
            self.mark(s, g, key);
        }
        match &mut self.states[s].data {
            StateData::List(groups) => Ok(&mut groups[g]),
            _ => unreachable!("state handles are typed by kind"),
        }
    }

    /// List state: the list of `key`.
    pub fn list_get(&mut self, state: u32, key: &[u8]) -> Result<&[Vec<u8>], StateError> {
        Ok(self
            .list_of(state, key, false)?
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or(&[]))
    }

    /// List state: appends `value` to the list of `key`.
    pub fn list_add(&mut self, state: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        let lists = self.list_of(state, key, true)?;
        let (delta, entries) = match lists.get_mut(key) {
            Some(list) => {
                list.push(value.to_vec());
                (value.len() as i64, 1)
            }
            None => {
                lists.insert(key.to_vec(), vec![value.to_vec()]);
                ((key.len() + value.len()) as i64, 2)
            }
        };
        self.bytes += delta;
        self.entries += entries;
        Ok(())
    }

    /// List state: replaces the list of `key` (empty removes it).
    pub fn list_update(
        &mut self,
        state: u32,
        key: &[u8],
        values: Vec<Vec<u8>>,
    ) -> Result<(), StateError> {
        let lists = self.list_of(state, key, true)?;
        let (new, new_entries) = if values.is_empty() {
            (0, 0)
        } else {
            (
                list_bytes(&values) + key.len() as i64,
                values.len() as i64 + 1,
            )
        };
        let old = if values.is_empty() {
            lists.remove(key)
        } else {
            lists.insert(key.to_vec(), values)
        };
        let (old, old_entries) = old.map_or((0, 0), |l| {
            (list_bytes(&l) + key.len() as i64, l.len() as i64 + 1)
        });
        self.bytes += new - old;
        self.entries += new_entries - old_entries;
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
            .map(|s| {
                let n = match &s.data {
                    StateData::Value(g) => g.iter().map(|m| m.len()).sum(),
                    StateData::Map(g) => g.iter().map(|m| m.len()).sum(),
                    StateData::List(g) => g.iter().map(|m| m.len()).sum(),
                };
                (s.spec.name.clone(), n)
            })
            .collect()
    }
}

fn map_bytes(m: &MapEntries) -> i64 {
    m.iter().map(|(k, v)| (k.len() + v.len()) as i64).sum()
}

fn list_bytes(l: &[Vec<u8>]) -> i64 {
    l.iter().map(|v| v.len() as i64).sum()
}

/// Bytes a stored entry of a key of `key_len` bytes holds (0 when deleted).
fn entry_bytes(entry: &StoredEntry, key_len: usize) -> i64 {
    let body = match entry {
        StoredEntry::Value(v) => v.len() as i64,
        StoredEntry::Map(m) => m.iter().map(|(k, v)| (k.len() + v.len()) as i64).sum(),
        StoredEntry::List(l) => list_bytes(l),
        StoredEntry::Deleted => return 0,
    };
    body + key_len as i64
}

/// Entries (the key, and each map entry or list element) a stored entry holds.
fn entry_count(entry: &StoredEntry) -> i64 {
    match entry {
        StoredEntry::Value(_) => 1,
        StoredEntry::Map(m) => m.len() as i64 + 1,
        StoredEntry::List(l) => l.len() as i64 + 1,
        StoredEntry::Deleted => 0,
    }
}

fn stored_kind(entry: &StoredEntry) -> &'static str {
    match entry {
        StoredEntry::Value(_) => "value",
        StoredEntry::Map(_) => "map",
        StoredEntry::List(_) => "list",
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
        let mut b = StateBackend::new(0, 16, 0..16);
        b.declare(&[
            spec("v", StateKind::Value),
            spec("m", StateKind::Map),
            spec("l", StateKind::List),
        ])
        .unwrap();
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
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        b.map_put(m, b"k", b"a", None).unwrap();
        b.map_put(m, b"k", b"b", None).unwrap();
        assert!(b.map_entries(m, b"k").unwrap().is_none());

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
}
