//! Host side of the WIT `state` interface: declared keyed state, reached
//! through handles resolved once by name, read and written in flat batches.
//!
//! State is keyed only: a call with an absent key traps, at every
//! parallelism, with a line that says to use the event's key (state with no
//! key would have no key group to be checkpointed in and moved with). Every
//! write is held to the subtask's state budgets (`[operators.limits]
//! state_value_size` and `state_memory`); the backend counts what it holds
//! as it goes, so the check is a comparison.

use wasmtime::component::Resource;

use crate::model::batch::split_blobs;
use crate::model::{Blobs, StateKind};
use crate::state::keyed::Place;
use crate::wasm::bindings::{state, Blobs as WitBlobs};
use crate::wasm::operator::HostCtx;

/// The host's representation of a `value-state` handle (its rep is the state index).
pub struct ValueStateHandle;
/// The host's representation of a `map-state` handle (its rep is the state index).
pub struct MapStateHandle;
/// The host's representation of a `list-state` handle (its rep is the state index).
pub struct ListStateHandle;

/// A guest's blobs, split into entries (malformed lengths trap).
fn split(blobs: &WitBlobs) -> wasmtime::Result<Entries<'_>> {
    split_blobs(&blobs.data, &blobs.lens).map_err(trap)
}

/// A guest's blobs, split into entries (`None`: an absent entry).
type Entries<'a> = Vec<Option<&'a [u8]>>;

/// Two lists of a guest's blobs that go in pairs (keys and values, keys
/// and map keys), split; lists of different lengths trap with `message`.
fn split_pairs<'a>(
    a: &'a WitBlobs,
    b: &'a WitBlobs,
    message: &str,
) -> wasmtime::Result<(Entries<'a>, Entries<'a>)> {
    let (a, b) = (split(a)?, split(b)?);
    if a.len() != b.len() {
        return Err(trap(message));
    }
    Ok((a, b))
}

fn trap(e: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(e.to_string())
}

/// The trap for a state call `what` given no key.
/// The keys of a call, every one present.
fn present<'a>(keys: Entries<'a>, what: &str) -> wasmtime::Result<Vec<&'a [u8]>> {
    keys.into_iter()
        .map(|k| k.ok_or_else(|| no_key(what)))
        .collect()
}

/// The user keys of a map state call, every one present.
fn present_map_keys<'a>(map_keys: Entries<'a>, what: &str) -> wasmtime::Result<Vec<&'a [u8]>> {
    map_keys
        .into_iter()
        .map(|mk| mk.ok_or_else(|| trap(format!("{what}: a map key is absent"))))
        .collect()
}

fn no_key(what: &str) -> wasmtime::Error {
    trap(format!(
        "{what}: a key is absent; state is kept per key (in its key group, which checkpoints, savepoints and rescaling move), so use the event's key and reject events with no key as bad input"
    ))
}

impl HostCtx {
    /// Whether the places of the last `get-many` serve as hints for the
    /// first keys of a `put-many` of `n` keys of `state` ([`HostCtx::hinted`]):
    /// a cache that lasts from call to call reads only the keys it does not
    /// know, and writes those first, then the others. They serve once.
    fn take_hints(&mut self, state: u32, n: usize) -> bool {
        self.hinted.take() == Some(state) && self.places.len() <= n
    }

    /// Writes value state `state` (`put-many`, or `put-many-placed` with
    /// `given`, the places the operator gave back): each key's place is the
    /// one given when it still holds the key, else the hint of the last
    /// `get-many` for the first keys ([`HostCtx::take_hints`]), else found.
    /// Where each key is stored now ([`Place::code`]).
    fn put_values(
        &mut self,
        state: u32,
        keys: &WitBlobs,
        values: &WitBlobs,
        given: Option<&[u64]>,
    ) -> wasmtime::Result<Vec<u64>> {
        let (what, unpaired) = match given {
            None => (
                "value-state.put-many",
                "value-state.put-many: keys and values differ in number",
            ),
            Some(_) => (
                "value-state.put-many-placed",
                "value-state.put-many-placed: keys and values differ in number",
            ),
        };
        let (keys, values) = split_pairs(keys, values, unpaired)?;
        let keys = present(keys, what)?;
        if given.is_some_and(|g| g.len() != keys.len()) {
            return Err(trap(format!("{what}: keys and places differ in number")));
        }
        let hints = if self.take_hints(state, keys.len()) {
            self.places.len()
        } else {
            0
        };
        let mut stored = Vec::with_capacity(if given.is_some() { keys.len() } else { 0 });
        for (i, (key, value)) in keys.iter().zip(values).enumerate() {
            let hint = match given.map(|g| g[i]) {
                Some(code) if code != u64::MAX => Place::from_code(code),
                _ if i < hints => self.places[i],
                _ => Place::from_code(u64::MAX),
            };
            let p = self
                .sub
                .state
                .relocate(state, hint, key, None)
                .map_err(trap)?;
            self.sub.check_value_size(value)?;
            let before = self.sub.state.memory();
            let now = self
                .sub
                .state
                .value_put_at(state, p, key, value)
                .map_err(trap)?;
            self.sub.check_state_memory(before).map_err(trap)?;
            if given.is_some() {
                stored.push(now.code());
            }
        }
        Ok(stored)
    }
}

impl state::Host for HostCtx {}

impl state::HostValueState for HostCtx {
    fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<ValueStateHandle>, String>> {
        Ok(self
            .sub
            .state
            .find(&name, StateKind::Value)
            .map(Resource::new_own))
    }

    fn get_many(
        &mut self,
        handle: Resource<ValueStateHandle>,
        keys: WitBlobs,
    ) -> wasmtime::Result<WitBlobs> {
        let state = handle.rep();
        let keys = present(split(&keys)?, "value-state.get-many")?;
        let mut places = std::mem::take(&mut self.places);
        let located = self.sub.state.locate(state, &keys, None, true, &mut places);
        let mut out = Blobs::with_capacity(keys.len());
        if located.is_ok() {
            for (key, p) in keys.iter().zip(places.iter_mut()) {
                out.push(self.sub.state.value_get_at(state, p, key));
            }
        }
        self.places = places;
        self.hinted = located.is_ok().then_some(state);
        located.map_err(trap)?;
        Ok(out.into())
    }

    fn put_many(
        &mut self,
        handle: Resource<ValueStateHandle>,
        keys: WitBlobs,
        values: WitBlobs,
    ) -> wasmtime::Result<()> {
        self.put_values(handle.rep(), &keys, &values, None)
            .map(|_| ())
    }

    fn put_many_placed(
        &mut self,
        handle: Resource<ValueStateHandle>,
        keys: WitBlobs,
        values: WitBlobs,
        places: Vec<u64>,
    ) -> wasmtime::Result<Vec<u64>> {
        self.put_values(handle.rep(), &keys, &values, Some(&places))
    }

    fn drop(&mut self, _handle: Resource<ValueStateHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl state::HostMapState for HostCtx {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<MapStateHandle>, String>> {
        Ok(self
            .sub
            .state
            .find(&name, StateKind::Map)
            .map(Resource::new_own))
    }

    fn get_many(
        &mut self,
        handle: Resource<MapStateHandle>,
        keys: WitBlobs,
        map_keys: WitBlobs,
    ) -> wasmtime::Result<WitBlobs> {
        let state = handle.rep();
        let (keys, map_keys) = split_pairs(
            &keys,
            &map_keys,
            "map-state.get-many: keys and map keys differ in number",
        )?;
        let keys = present(keys, "map-state.get-many")?;
        let map_keys = present_map_keys(map_keys, "map-state.get-many")?;
        let mut places = std::mem::take(&mut self.places);
        let located = self
            .sub
            .state
            .locate(state, &keys, Some(&map_keys), true, &mut places);
        let mut out = Blobs::with_capacity(keys.len());
        if located.is_ok() {
            for ((key, mk), p) in keys.iter().zip(&map_keys).zip(places.iter_mut()) {
                out.push(self.sub.state.map_get_at(state, p, key, mk));
            }
        }
        self.places = places;
        self.hinted = located.is_ok().then_some(state);
        located.map_err(trap)?;
        Ok(out.into())
    }

    fn put_many(
        &mut self,
        handle: Resource<MapStateHandle>,
        keys: WitBlobs,
        map_keys: WitBlobs,
        values: WitBlobs,
    ) -> wasmtime::Result<()> {
        let state = handle.rep();
        const UNEVEN: &str = "map-state.put-many: keys, map keys and values differ in number";
        let (keys, map_keys) = split_pairs(&keys, &map_keys, UNEVEN)?;
        let values = split(&values)?;
        if values.len() != keys.len() {
            return Err(trap(UNEVEN));
        }
        let keys = present(keys, "map-state.put-many")?;
        let map_keys = present_map_keys(map_keys, "map-state.put-many")?;
        let hinted = self.take_hints(state, keys.len());
        let mut places = std::mem::take(&mut self.places);
        let result = (|| {
            self.sub
                .state
                .locate_for_write(state, &keys, Some(&map_keys), hinted, &mut places)
                .map_err(trap)?;
            for (((key, mk), value), p) in keys.iter().zip(&map_keys).zip(values).zip(&places) {
                self.sub.check_value_size(value)?;
                let before = self.sub.state.memory();
                self.sub
                    .state
                    .map_put_at(state, *p, key, mk, value)
                    .map_err(trap)?;
                self.sub.check_state_memory(before).map_err(trap)?;
            }
            Ok(())
        })();
        self.places = places;
        result
    }

    fn entries(
        &mut self,
        handle: Resource<MapStateHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<(WitBlobs, WitBlobs)> {
        let state = handle.rep();
        let entries = self.sub.state.map_entries(state, &key).map_err(trap)?;
        let n = entries.len();
        let mut keys = Blobs::with_capacity(n);
        let mut values = Blobs::with_capacity(n);
        for (mk, v) in entries {
            keys.push(Some(mk));
            values.push(Some(v));
        }
        Ok((keys.into(), values.into()))
    }

    fn clear(&mut self, handle: Resource<MapStateHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        self.sub.state.map_clear(handle.rep(), &key).map_err(trap)
    }

    fn drop(&mut self, _handle: Resource<MapStateHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl state::HostListState for HostCtx {
    fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<ListStateHandle>, String>> {
        Ok(self
            .sub
            .state
            .find(&name, StateKind::List)
            .map(Resource::new_own))
    }

    fn get(
        &mut self,
        handle: Resource<ListStateHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<WitBlobs> {
        let list = self.sub.state.list_get(handle.rep(), &key).map_err(trap)?;
        let mut out = Blobs::with_capacity(list.len());
        for v in list {
            out.push(Some(v));
        }
        Ok(out.into())
    }

    fn add_many(
        &mut self,
        handle: Resource<ListStateHandle>,
        keys: WitBlobs,
        values: WitBlobs,
    ) -> wasmtime::Result<()> {
        let state = handle.rep();
        let (keys, values) = split_pairs(
            &keys,
            &values,
            "list-state.add-many: keys and values differ in number",
        )?;
        for (key, value) in keys.into_iter().zip(values) {
            let key = key.ok_or_else(|| no_key("list-state.add-many"))?;
            let value = value.ok_or_else(|| trap("list-state.add-many: a value is absent"))?;
            self.sub.check_value_size(Some(value))?;
            let before = self.sub.state.memory();
            self.sub.state.list_add(state, key, value).map_err(trap)?;
            self.sub.check_state_memory(before).map_err(trap)?;
        }
        Ok(())
    }

    fn update(
        &mut self,
        handle: Resource<ListStateHandle>,
        key: Vec<u8>,
        values: WitBlobs,
    ) -> wasmtime::Result<()> {
        let values = split(&values)?;
        let mut list = Vec::with_capacity(values.len());
        for value in values {
            let value = value.ok_or_else(|| trap("list-state.update: a value is absent"))?;
            self.sub.check_value_size(Some(value))?;
            list.push(value.to_vec());
        }
        let before = self.sub.state.memory();
        self.sub
            .state
            .list_update(handle.rep(), &key, list)
            .map_err(trap)?;
        self.sub.check_state_memory(before).map_err(trap)
    }

    fn drop(&mut self, _handle: Resource<ListStateHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
