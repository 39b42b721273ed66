//! A stand-in for the host's side of the imports (`state`, `timers`,
//! `logging`) under `cargo test`: it keeps state as the host does and
//! records every call, in order, in the shape of the vectors' `calls`
//! (`sdk/vectors/README.md`). The functions and methods have the
//! signatures of the generated ones, which are wasm imports and do not
//! link on the host; the types are the generated ones.

// The functions mirror the generated ones, documented in `wit/`.
#![allow(missing_docs)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::runtime::wit::types::{Blobs, TimeDomain};

/// What the host holds, and the calls it has seen.
#[derive(Default)]
pub(crate) struct Host {
    /// (state, key) -> value.
    pub(crate) values: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    /// (state, key, user key) -> value: a map's entries, sorted by user key.
    pub(crate) maps: BTreeMap<(String, Vec<u8>, Vec<u8>), Vec<u8>>,
    /// (state, key) -> list.
    pub(crate) lists: BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>>,
    pub(crate) watermark: i64,
    pub(crate) calls: Vec<Value>,
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

/// Starts over with `host`.
pub(crate) fn reset(host: Host) {
    HOST.set(host);
}

/// The calls recorded since the last `take_calls`.
pub(crate) fn take_calls() -> Vec<Value> {
    HOST.with_borrow_mut(|h| std::mem::take(&mut h.calls))
}

fn record(call: Value) {
    HOST.with_borrow_mut(|h| h.calls.push(call));
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn opt_text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, text)
}

fn split(blobs: &Blobs) -> Vec<Option<Vec<u8>>> {
    let mut at = 0usize;
    blobs
        .lens
        .iter()
        .map(|&len| {
            (len >= 0).then(|| {
                let part = blobs.data[at..at + len as usize].to_vec();
                at += len as usize;
                part
            })
        })
        .collect()
}

fn join(parts: impl IntoIterator<Item = Option<Vec<u8>>>) -> Blobs {
    let mut blobs = Blobs {
        data: Vec::new(),
        lens: Vec::new(),
    };
    for part in parts {
        match part {
            Some(p) => {
                blobs.lens.push(p.len() as i32);
                blobs.data.extend_from_slice(&p);
            }
            None => blobs.lens.push(-1),
        }
    }
    blobs
}

/// A map entry a put-many names: key, user key, value (none: removed).
type Entry = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

fn key_of(part: Option<Vec<u8>>) -> Vec<u8> {
    part.expect("the SDK passed an absent key to the host")
}

pub mod state {
    use super::*;

    /// A value state handle.
    pub struct ValueState {
        name: String,
    }

    impl ValueState {
        pub fn open(name: &str) -> Result<ValueState, String> {
            Ok(ValueState {
                name: name.to_string(),
            })
        }

        pub fn get_many(&self, keys: &Blobs) -> Blobs {
            let keys: Vec<Vec<u8>> = split(keys).into_iter().map(key_of).collect();
            record(json!({
                "call": "value.get-many",
                "state": self.name,
                "keys": keys.iter().map(|k| text(k)).collect::<Vec<_>>(),
            }));
            HOST.with_borrow(|h| {
                join(
                    keys.into_iter()
                        .map(|k| h.values.get(&(self.name.clone(), k)).cloned()),
                )
            })
        }

        /// Recorded as `value.put-many`: the places are the Rust SDK's
        /// optional hint, and the vectors do not look at them.
        pub fn put_many_placed(&self, keys: &Blobs, values: &Blobs, places: &[u64]) -> Vec<u64> {
            assert_eq!(places.len(), keys.lens.len(), "one place per key");
            let pairs: Vec<(Vec<u8>, Option<Vec<u8>>)> = split(keys)
                .into_iter()
                .map(key_of)
                .zip(split(values))
                .collect();
            record(json!({
                "call": "value.put-many",
                "state": self.name,
                "entries": pairs.iter().map(|(k, v)| json!([text(k), opt_text(v.as_deref())])).collect::<Vec<_>>(),
            }));
            HOST.with_borrow_mut(|h| {
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let slot = (self.name.clone(), k);
                        match v {
                            Some(v) => {
                                h.values.insert(slot.clone(), v);
                                h.values.keys().position(|s| *s == slot).unwrap() as u64
                            }
                            None => {
                                h.values.remove(&slot);
                                u64::MAX
                            }
                        }
                    })
                    .collect()
            })
        }
    }

    /// A map state handle.
    pub struct MapState {
        name: String,
    }

    impl MapState {
        pub fn open(name: &str) -> Result<MapState, String> {
            Ok(MapState {
                name: name.to_string(),
            })
        }

        pub fn get_many(&self, keys: &Blobs, map_keys: &Blobs) -> Blobs {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = split(keys)
                .into_iter()
                .map(key_of)
                .zip(split(map_keys).into_iter().map(key_of))
                .collect();
            record(json!({
                "call": "map.get-many",
                "state": self.name,
                "pairs": pairs.iter().map(|(k, m)| json!([text(k), text(m)])).collect::<Vec<_>>(),
            }));
            HOST.with_borrow(|h| {
                join(
                    pairs
                        .into_iter()
                        .map(|(k, m)| h.maps.get(&(self.name.clone(), k, m)).cloned()),
                )
            })
        }

        pub fn put_many(&self, keys: &Blobs, map_keys: &Blobs, values: &Blobs) {
            let entries: Vec<Entry> = split(keys)
                .into_iter()
                .map(key_of)
                .zip(split(map_keys).into_iter().map(key_of))
                .zip(split(values))
                .map(|((k, m), v)| (k, m, v))
                .collect();
            record(json!({
                "call": "map.put-many",
                "state": self.name,
                "entries": entries.iter().map(|(k, m, v)| json!([text(k), text(m), opt_text(v.as_deref())])).collect::<Vec<_>>(),
            }));
            HOST.with_borrow_mut(|h| {
                for (k, m, v) in entries {
                    let slot = (self.name.clone(), k, m);
                    match v {
                        Some(v) => h.maps.insert(slot, v),
                        None => h.maps.remove(&slot),
                    };
                }
            })
        }

        pub fn entries(&self, key: &[u8]) -> (Blobs, Blobs) {
            record(json!({"call": "map.entries", "state": self.name, "key": text(key)}));
            HOST.with_borrow(|h| {
                let (mks, values): (Vec<_>, Vec<_>) = h
                    .maps
                    .iter()
                    .filter(|((s, k, _), _)| *s == self.name && k == key)
                    .map(|((_, _, m), v)| (Some(m.clone()), Some(v.clone())))
                    .unzip();
                (join(mks), join(values))
            })
        }

        pub fn clear(&self, key: &[u8]) {
            record(json!({"call": "map.clear", "state": self.name, "key": text(key)}));
            HOST.with_borrow_mut(|h| {
                h.maps.retain(|(s, k, _), _| !(*s == self.name && k == key));
            })
        }
    }

    /// A list state handle.
    pub struct ListState {
        name: String,
    }

    impl ListState {
        pub fn open(name: &str) -> Result<ListState, String> {
            Ok(ListState {
                name: name.to_string(),
            })
        }

        pub fn get(&self, key: &[u8]) -> Blobs {
            record(json!({"call": "list.get", "state": self.name, "key": text(key)}));
            HOST.with_borrow(|h| {
                let list = h.lists.get(&(self.name.clone(), key.to_vec()));
                join(list.into_iter().flatten().cloned().map(Some))
            })
        }

        pub fn add_many(&self, keys: &Blobs, values: &Blobs) {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = split(keys)
                .into_iter()
                .map(key_of)
                .zip(split(values).into_iter().map(key_of))
                .collect();
            record(json!({
                "call": "list.add-many",
                "state": self.name,
                "entries": entries.iter().map(|(k, v)| json!([text(k), text(v)])).collect::<Vec<_>>(),
            }));
            HOST.with_borrow_mut(|h| {
                for (k, v) in entries {
                    h.lists.entry((self.name.clone(), k)).or_default().push(v);
                }
            })
        }

        pub fn update(&self, key: &[u8], values: &Blobs) {
            let values: Vec<Vec<u8>> = split(values).into_iter().map(key_of).collect();
            record(json!({
                "call": "list.update",
                "state": self.name,
                "key": text(key),
                "values": values.iter().map(|v| text(v)).collect::<Vec<_>>(),
            }));
            HOST.with_borrow_mut(|h| {
                let slot = (self.name.clone(), key.to_vec());
                if values.is_empty() {
                    h.lists.remove(&slot);
                } else {
                    h.lists.insert(slot, values);
                }
            })
        }
    }
}

pub mod timers {
    use super::*;

    fn changes(kind: &str, domain: TimeDomain, keys: &Blobs, timestamps: &[i64]) {
        let domain = match domain {
            TimeDomain::EventTime => "event-time",
            TimeDomain::ProcessingTime => "processing-time",
        };
        let entries: Vec<Value> = split(keys)
            .into_iter()
            .zip(timestamps)
            .map(|(k, &t)| json!([opt_text(k.as_deref()), t]))
            .collect();
        record(json!({"call": format!("timers.{kind}"), "domain": domain, "entries": entries}));
    }

    pub fn register_many(domain: TimeDomain, keys: &Blobs, timestamps: &[i64]) {
        changes("register-many", domain, keys, timestamps)
    }

    pub fn delete_many(domain: TimeDomain, keys: &Blobs, timestamps: &[i64]) {
        changes("delete-many", domain, keys, timestamps)
    }

    pub fn current_watermark() -> i64 {
        record(json!({"call": "timers.current-watermark"}));
        HOST.with_borrow(|h| h.watermark)
    }

    pub fn processing_time() -> i64 {
        record(json!({"call": "timers.processing-time"}));
        0
    }
}

pub mod logging {
    pub use crate::runtime::wit::types::Level;

    pub fn log(_level: Level, _message: &str) {}
}
