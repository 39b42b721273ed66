//! Savepoint surgery: what `weir savepoint edit` and `weir state
//! export|import` need beyond reading and writing whole savepoints: one
//! state's entries, an operator's files copied, or rewritten with one state
//! replaced. A new savepoint is always written next to the old one, never
//! over it.

use super::format::err;
use super::{
    DataFile, Record, SavedOperator, Savepoint, SavepointError, SavepointWriter, METADATA,
};
use crate::model::show_key;
use crate::state::checkpoint::TimerRecord;
use crate::state::keyed::{StateChange, StoredEntry};

/// `value`, `map` or `list`: the kind name of a stored entry, as `_metadata` writes it.
pub fn entry_kind(entry: &StoredEntry) -> &'static str {
    match entry {
        StoredEntry::Value(_) => "value",
        StoredEntry::Map(_) | StoredEntry::MapUpdate(_) => "map",
        StoredEntry::List(_) | StoredEntry::ListAppend(_) => "list",
        StoredEntry::Deleted => "deleted",
    }
}

/// Bytes of keys and values that `entry` of a `key_len`-byte key holds, as
/// [`SavedOperator::state_bytes`] counts them.
fn held_bytes(entry: &StoredEntry, key_len: usize) -> u64 {
    let body: usize = match entry {
        StoredEntry::Value(v) => v.len(),
        StoredEntry::Map(m) => m.iter().map(|(k, v)| k.len() + v.len()).sum(),
        StoredEntry::List(l) | StoredEntry::ListAppend(l) => l.iter().map(Vec::len).sum(),
        StoredEntry::MapUpdate(m) => m
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum(),
        StoredEntry::Deleted => return 0,
    };
    (body + key_len) as u64
}

impl Savepoint {
    /// Every key of state `state` of operator `op`, sorted by key bytes, with
    /// its entry. Each data file is checked first; a key stored twice, or an
    /// entry whose kind is not `kind` (`value`, `map` or `list`), is an error
    /// naming the data file.
    pub fn state_entries(
        &self,
        op: &str,
        state: &str,
        kind: &str,
    ) -> Result<std::collections::BTreeMap<Vec<u8>, StoredEntry>, SavepointError> {
        let mut out = std::collections::BTreeMap::new();
        self.load(op, 0..u32::MAX, |r| {
            let Record::State(change) = r else {
                return Ok(());
            };
            if change.state != state || matches!(change.entry, StoredEntry::Deleted) {
                return Ok(());
            }
            let found = entry_kind(&change.entry);
            if found != kind {
                return Err(format!(
                    "holds a {found} entry of state `{state}`, which `_metadata` declares a {kind} state"
                ));
            }
            let key = show_key(Some(&change.key));
            if out.insert(change.key, change.entry).is_some() {
                return Err(format!("holds {key} of state `{state}` twice"));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// What [`SavepointWriter::rewrite_state`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenState {
    /// The operator's new data files, in the order of the old ones.
    pub files: Vec<DataFile>,
    /// Keys the state holds now.
    pub keys: u64,
    /// Bytes of keys and values the state held before.
    pub bytes_before: u64,
    /// Bytes of keys and values the state holds now.
    pub bytes_after: u64,
}

impl SavepointWriter {
    /// Copies every data file of operator `op` of `from` unchanged (after
    /// checking each); returns their `_metadata` entries.
    pub fn copy_operator(
        &self,
        from: &Savepoint,
        op: &SavedOperator,
    ) -> Result<Vec<DataFile>, SavepointError> {
        op.files.iter().map(|f| self.copy_file(from, f)).collect()
    }

    /// Writes operator `op`'s data files of `from` anew, with the same names
    /// and key-group ranges, in which state `state` holds exactly `entries`
    /// (each key in the file whose range holds its key group, computed with
    /// [`crate::model::keygroup::key_group`]) and every other state and every timer
    /// is kept. Each old file is checked first. A key whose key group no file
    /// holds is an error.
    pub fn rewrite_state(
        &self,
        from: &Savepoint,
        op: &SavedOperator,
        state: &str,
        entries: std::collections::BTreeMap<Vec<u8>, StoredEntry>,
    ) -> Result<RewrittenState, SavepointError> {
        let manifest = from.dir.join(METADATA);
        let m = from.meta.max_parallelism;
        if m == 0 {
            return Err(err(&manifest, "says `max_parallelism` 0"));
        }
        // The new entries, by the file that will hold them.
        let mut placed: Vec<Vec<StateChange>> = vec![Vec::new(); op.files.len()];
        let mut bytes_after = 0;
        for (key, entry) in entries {
            if matches!(entry, StoredEntry::Deleted) {
                continue;
            }
            let kg = crate::model::keygroup::key_group(Some(&key), m);
            let Some(i) = op
                .files
                .iter()
                .position(|f| (f.key_groups[0]..f.key_groups[1]).contains(&kg))
            else {
                return Err(err(
                    &manifest,
                    format!(
                        "{} is in key group {kg}, which no data file of operator `{}` holds",
                        show_key(Some(&key)),
                        op.id
                    ),
                ));
            };
            bytes_after += held_bytes(&entry, key.len());
            placed[i].push(StateChange {
                state: state.to_string(),
                key_group: kg,
                key,
                entry,
            });
        }
        let mut files = Vec::with_capacity(op.files.len());
        let mut keys = 0;
        let mut bytes_before = 0;
        for (file, new) in op.files.iter().zip(placed) {
            let range = file.key_groups[0]..file.key_groups[1];
            let mut changes: Vec<StateChange> = Vec::new();
            let mut timers: Vec<(u32, Vec<TimerRecord>)> = Vec::new();
            from.check_file(file, range.clone(), |r| {
                match r {
                    Record::State(c) if c.state == state => {
                        bytes_before += held_bytes(&c.entry, c.key.len());
                    }
                    Record::State(c) => changes.push(c),
                    Record::Timer(kg, t) => match timers.last_mut() {
                        Some((last, records)) if *last == kg => records.push(t),
                        _ => timers.push((kg, vec![t])),
                    },
                }
                Ok(())
            })?;
            changes.extend(new);
            let (data, counts) = self.write_data(&file.file, range, &changes, &timers)?;
            keys += counts.get(state).copied().unwrap_or(0);
            files.push(data);
        }
        Ok(RewrittenState {
            files,
            keys,
            bytes_before,
            bytes_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SourcePosition, SourceState};
    use crate::state::savepoint::{encode_data, new_metadata, SavepointKind};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn saved(dir: &Path) -> Savepoint {
        let m = 8;
        let w = SavepointWriter::create_named(dir, "sp").unwrap();
        let mut meta = new_metadata(
            "j",
            1,
            SavepointKind::Triggered,
            0,
            m,
            false,
            SourceState {
                position: SourcePosition::Generator { next: 1 },
                max_timestamp: 0,
            },
            None,
            0,
        );
        let mut files = Vec::new();
        for (i, range) in [0..3u32, 3..8].into_iter().enumerate() {
            let mut changes = Vec::new();
            for key in ["a", "b", "c", "d", "e", "f"] {
                let kg = crate::model::keygroup::key_group(Some(key.as_bytes()), m);
                if range.contains(&kg) {
                    for state in ["keep", "swap"] {
                        changes.push(StateChange {
                            state: state.into(),
                            key_group: kg,
                            key: key.into(),
                            entry: StoredEntry::Value(format!("{state}-{key}").into_bytes()),
                        });
                    }
                }
            }
            let timers = vec![(range.start, vec![(0u8, 5i64, None)])];
            let (bytes, _) = encode_data(&changes, &timers);
            files.push(
                w.write_file(&format!("op0-sub{i}.state"), range, &bytes)
                    .unwrap(),
            );
        }
        meta.operators.push(SavedOperator {
            id: "op".into(),
            name: "n".into(),
            version: "1".into(),
            wasm_sha256: "00".into(),
            parallelism: 2,
            states: vec![],
            timers: 2,
            state_bytes: 0,
            files,
        });
        Savepoint::open(&w.finish(&meta).unwrap()).unwrap()
    }

    #[test]
    fn rewriting_a_state_keeps_the_others_and_the_timers() {
        let dir = tempfile::tempdir().unwrap();
        let sp = saved(dir.path());
        let before_keep = sp.state_entries("op", "keep", "value").unwrap();
        assert_eq!(before_keep.len(), 6);
        let new: BTreeMap<Vec<u8>, StoredEntry> = ["x", "y", "z", "a"]
            .iter()
            .map(|k| {
                (
                    k.as_bytes().to_vec(),
                    StoredEntry::List(vec![b"1".to_vec()]),
                )
            })
            .collect();
        let w = SavepointWriter::create_named(dir.path(), "sp2").unwrap();
        let op = sp.meta.operator("op").unwrap().clone();
        let r = w.rewrite_state(&sp, &op, "swap", new.clone()).unwrap();
        assert_eq!(r.keys, 4);
        assert_eq!(r.bytes_before, 6 * 7);
        assert_eq!(r.bytes_after, 4 * 2);
        let mut meta = sp.meta.clone();
        meta.operators[0].files = r.files;
        let sp2 = Savepoint::open(&w.finish(&meta).unwrap()).unwrap();
        sp2.verify().unwrap();
        assert_eq!(
            sp2.state_entries("op", "keep", "value").unwrap(),
            before_keep
        );
        assert_eq!(sp2.state_entries("op", "swap", "list").unwrap(), new);
        let mut timers = 0;
        sp2.load("op", 0..8, |r| {
            timers += usize::from(matches!(r, Record::Timer(..)));
            Ok(())
        })
        .unwrap();
        assert_eq!(timers, 2);
        let e = sp2.state_entries("op", "swap", "value").unwrap_err();
        assert!(e.to_string().contains("list entry"), "{e}");
    }
}
