//! Checkpoint storage: a sled database under the job's state directory.
//!
//! A checkpoint is written as:
//! - a tree `delta-<id>` with the state of every key that changed since its
//!   parent checkpoint (or of every key, for a *full* checkpoint), packed per
//!   key group into records of about 1 MiB keyed by
//!   `operator ID | key group | chunk`, so that a subtask restores exactly its
//!   key groups at any parallelism (and sled stores a few large records, not
//!   millions of small ones);
//! - a tree `timers-<id>` with every subtask's timers by key group: all of
//!   them (a list of records per key group) for a full checkpoint; for a
//!   delta, a [`TimerDelta`] per key group that changed (times cleared,
//!   timers removed, timers added) and a marker record saying so (a tree
//!   without it holds full lists, as an older weir wrote for every
//!   checkpoint; restoring such a tree replaces the timers before it);
//! - its [`CheckpointLogic`] in the `logic` tree (JSON): which `.wasm` each
//!   operator ran at its barrier, whether it was taken while a live swap was
//!   on probation, and the job's swaps so far (see [`crate::engine::upgrades::swap`]);
//!   a store written before live swaps has none, and reads as the job
//!   file's logic;
//! - last, its [`CheckpointMeta`] in the `meta` tree, after sled has flushed
//!   the trees: a checkpoint without its meta entry is incomplete and ignored
//!   (and removed at the next start), so a crash while writing leaves the
//!   previous checkpoint intact. A checkpoint the coordinator aborts (timed
//!   out, or a write failed) has its trees dropped at once ([`CheckpointStore::abort`]).
//!
//! Every checkpoint's meta lists its chain: the full checkpoint it builds on
//! and every delta since. Restoring applies the chain in order. Retention
//! keeps the `retain` newest completed checkpoints, those it is told to pin
//! (the one a sink's last commit names), and every delta tree their chains
//! still need, and frees the rest. Checkpoints forgotten because their
//! output never committed keep their IDs taken. The store also keeps a
//! [`SinkRecord`]: which transactional sink prefix its checkpoints commit
//! under, and whether one ever did. Stored formats carry
//! [`FORMAT_VERSION`]; values are bincode of the types here.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{SinkState, SourceState};
use crate::state::keyed::{EntryRef, StateChange, StateSnapshot, StoredEntry};
use crate::state::timers::TimerDelta;

/// Version of everything this module stores. Version 2 added changes to
/// map entries and list appends ([`StoredEntry::MapUpdate`],
/// [`StoredEntry::ListAppend`]) and timer trees that hold deltas; a
/// version-1 store holds none of them and is read as it is, while a weir
/// that reads only version 1 refuses a version-2 store in one line rather
/// than misreading it.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest version this weir reads.
const OLDEST_FORMAT: u32 = 1;

/// Why checkpoint storage failed. The message is one line naming the directory.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint storage `{dir}`: {message}")]
pub struct CheckpointError {
    /// The state directory.
    pub dir: String,
    /// What went wrong.
    pub message: String,
}

/// An operator's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMeta {
    /// The operator ID.
    pub id: String,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// Declared states: name, kind, version.
    pub states: Vec<(String, String, u32)>,
    /// Keys held, over all states, when the checkpoint was taken.
    pub keys: u64,
    /// Bytes of keys and values held then (the state's size in memory, without overhead).
    pub state_bytes: u64,
    /// Bytes this checkpoint wrote for the operator.
    pub bytes_written: u64,
}

/// What a completed checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] when written.
    pub format: u32,
    /// Its ID, increasing.
    pub id: u64,
    /// The checkpoints whose delta trees make up its state, oldest (a full
    /// checkpoint) first, itself last.
    pub chain: Vec<u64>,
    /// The job's name.
    pub job: String,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// When it was triggered (ms since the Unix epoch).
    pub triggered_at_ms: i64,
    /// When it completed.
    pub completed_at_ms: i64,
    /// Bytes written (keys and values of its trees).
    pub bytes_written: u64,
    /// Taken at the end of a bounded input: the job had finished.
    pub finished: bool,
    /// The source's position.
    pub source: SourceState,
    /// The sink's state, for a sink that takes part.
    pub sink: Option<SinkState>,
    /// The lowest watermark of the operators when it was taken.
    pub watermark: i64,
    /// Each operator.
    pub operators: Vec<OperatorMeta>,
}

impl CheckpointMeta {
    /// Whether it is a full checkpoint (its chain is itself).
    pub fn is_full(&self) -> bool {
        self.chain.len() == 1
    }
}

/// One timer as stored: domain (0 event time, 1 processing time), time, key.
pub type TimerRecord = (u8, i64, Option<Vec<u8>>);

/// The lowest ID a new checkpoint may take (IDs forgotten stay taken).
const ID_FLOOR: &[u8] = b"id-floor";

/// The key of the [`SinkRecord`].
const SINK_RECORD: &[u8] = b"sink";

/// What a state directory records of the transactional sink (an
/// exactly-once Kafka sink) that its checkpoints commit to: recovery reads
/// the sink's commit records, and must know whether finding none of its own
/// is news (nothing committed yet) or a loss (the records are gone, or the
/// sink was renamed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkRecord {
    /// The sink's transactional id prefix.
    pub prefix: String,
    /// Whether a checkpoint of this directory has been committed under it.
    pub committed: bool,
}

/// The completed checkpoints (oldest first) that retention keeps: the
/// `retain` newest, and those in `pinned`.
pub fn retained<'a>(
    completed: &'a [CheckpointMeta],
    retain: usize,
    pinned: &[u64],
) -> Vec<&'a CheckpointMeta> {
    let cut = completed.len().saturating_sub(retain.max(1));
    completed
        .iter()
        .enumerate()
        .filter(|(i, m)| *i >= cut || pinned.contains(&m.id))
        .map(|(_, m)| m)
        .collect()
}

/// The checkpoint database of one job.
#[derive(Clone)]
pub struct CheckpointStore {
    db: sled::Db,
    meta: sled::Tree,
    logic: sled::Tree,
    dir: PathBuf,
}

fn delta_name(id: u64) -> String {
    format!("delta-{id:020}")
}

fn timers_name(id: u64) -> String {
    format!("timers-{id:020}")
}

fn tree_id(name: &[u8]) -> Option<u64> {
    let name = std::str::from_utf8(name).ok()?;
    let digits = name
        .strip_prefix("delta-")
        .or_else(|| name.strip_prefix("timers-"))?;
    digits.parse().ok()
}

fn meta_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// `operator ID | key group`: the prefix of an operator's entries in a key group.
fn group_prefix(op: &str, key_group: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(op.len() + 6);
    k.extend_from_slice(&(op.len() as u16).to_be_bytes());
    k.extend_from_slice(op.as_bytes());
    k.extend_from_slice(&key_group.to_be_bytes());
    k
}

fn chunk_key(op: &str, key_group: u32, chunk: u32) -> Vec<u8> {
    let mut k = group_prefix(op, key_group);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Parses the key group out of a record key.
fn parse_group(op: &str, k: &[u8]) -> Option<u32> {
    let rest = k.get(2 + op.len()..)?;
    Some(u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?))
}

/// The record marking `op`'s part of a timer tree as deltas: its key is
/// past every key group's prefix.
fn delta_marker(op: &str) -> Vec<u8> {
    group_prefix(op, u32::MAX)
}

/// sled's page cache, in bytes.
const CACHE_BYTES: u64 = 32 << 20;

/// Records of a key group are cut at about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// The logic an operator ran when a checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLogic {
    /// The operator ID.
    pub id: String,
    /// The logic's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Hex SHA-256 of the `.wasm` it ran (stored as `sha256`).
    #[serde(rename = "sha256")]
    pub wasm_sha256: String,
    /// Hex SHA-256 of the `.wasm` the job file named then (stored as
    /// `job_sha256`): when it differs from `wasm_sha256`, the logic came
    /// from a live swap, and a copy of it is kept in the state directory
    /// ([`CheckpointStore::wasm_path`]).
    #[serde(rename = "job_sha256")]
    pub job_wasm_sha256: String,
}

/// What a checkpoint records of the logic behind it (the `logic` tree).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointLogic {
    /// Each operator's logic at the barrier.
    pub operators: Vec<OperatorLogic>,
    /// Taken while the live swap at barrier `N` was on probation: not to be
    /// restored (a restart goes back to that barrier with the old logic).
    pub probation_of: Option<u64>,
    /// The job's swaps so far, oldest first (JSON objects, as `GET /jobs/{id}` shows them).
    #[serde(default)]
    pub swaps: Vec<serde_json::Value>,
}

/// One stored entry: state name, key, entry.
type PackedEntry = (String, Vec<u8>, StoredEntry);

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encoding to a Vec cannot fail")
}

/// Decodes a record, with bincode's limit at 1 GiB so that a damaged length
/// field cannot make the decoder claim unbounded memory.
fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    const LIMIT: usize = 1 << 30;
    if bytes.len() > LIMIT {
        return Err(format!("a record of {} bytes is over 1 GiB", bytes.len()));
    }
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
        .map(|(v, _)| v)
        .map_err(|e| format!("undecodable record: {e}"))
}

thread_local! {
    /// A panic inside sled on this thread is being caught ([`CheckpointStore::open`]).
    static SLED_PANIC_CAUGHT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a panic on this thread is one the checkpoint store catches and
/// reports as an error (sled asserts on some damaged files): a panic hook
/// stays silent for it.
pub fn panic_is_caught() -> bool {
    SLED_PANIC_CAUGHT.with(|c| c.get())
}

impl CheckpointStore {
    fn err(&self, message: impl std::fmt::Display) -> CheckpointError {
        CheckpointError {
            dir: self.dir.display().to_string(),
            message: message.to_string(),
        }
    }

    /// Opens (or creates) the checkpoint database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let fail = |message: String| CheckpointError {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
        // sled asserts (panics) on some damaged files rather than erring:
        // such a panic is caught here and reported as the damage it is.
        SLED_PANIC_CAUGHT.with(|c| c.set(true));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sled::Config::new()
                .path(dir.join("checkpoints.sled"))
                // Checkpoints are written once and read back only to restore:
                // sled's default 1 GiB page cache would only hold memory.
                .cache_capacity(CACHE_BYTES)
                .open()
        }));
        SLED_PANIC_CAUGHT.with(|c| c.set(false));
        let db = match opened {
            Ok(db) => db.map_err(|e| fail(format!("cannot open the database: {e}")))?,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("sled failed");
                let first = why.lines().next().unwrap_or_default();
                return Err(fail(format!(
                    "cannot open the database: it is damaged ({first})"
                )));
            }
        };
        let meta = db.open_tree("meta").map_err(|e| fail(e.to_string()))?;
        let logic = db.open_tree("logic").map_err(|e| fail(e.to_string()))?;
        Ok(CheckpointStore {
            db,
            meta,
            logic,
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name for this store, made once when it is first asked for and
    /// kept in it: a sink that records in an external system which of this
    /// store's checkpoints it committed (Kafka's commit markers) tells its
    /// own records from those of another store (a deleted state directory,
    /// another job using the same transactional IDs).
    pub fn instance(&self) -> Result<String, CheckpointError> {
        const KEY: &[u8] = b"instance";
        if let Some(v) = self.db.get(KEY).map_err(|e| self.err(e))? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(now_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(self.dir.display().to_string().as_bytes());
        let name = crate::model::hex(&h.finalize()[..16]);
        self.db
            .insert(KEY, name.as_bytes())
            .map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(name)
    }

    /// An ID above every checkpoint's, complete or not.
    pub fn next_id(&self) -> u64 {
        let trees = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|n| tree_id(&n))
            .max();
        let metas = self
            .meta
            .last()
            .ok()
            .flatten()
            .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes));
        let floor = self
            .db
            .get(ID_FLOOR)
            .ok()
            .flatten()
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(1);
        (trees.max(metas).unwrap_or(0) + 1).max(floor)
    }

    /// Writes the state changes of one subtask for checkpoint `id`; returns the bytes written.
    pub fn write_changes(
        &self,
        id: u64,
        op: &str,
        changes: &[StateChange],
    ) -> Result<u64, CheckpointError> {
        // By key group, in order within each, as a snapshot visits them.
        let mut sorted: Vec<&StateChange> = changes.iter().collect();
        sorted.sort_by_key(|c| c.key_group);
        self.write_records(id, op, |f| {
            for c in sorted {
                f(c.key_group, &c.state, &c.key, c.entry.as_ref());
            }
        })
    }

    /// Writes a subtask's state snapshot for checkpoint `id`, records
    /// borrowed from its shards; returns the bytes written.
    pub fn write_snapshot(
        &self,
        id: u64,
        op: &str,
        snapshot: &StateSnapshot,
    ) -> Result<u64, CheckpointError> {
        self.write_records(id, op, |f| snapshot.visit(f))
    }

    /// Packs the records `visit` gives (in order of key group) into chunks
    /// of about [`CHUNK_BYTES`] per key group, written in one batch.
    fn write_records<'a>(
        &self,
        id: u64,
        op: &str,
        visit: impl FnOnce(&mut dyn FnMut(u32, &'a str, &'a [u8], EntryRef<'a>)),
    ) -> Result<u64, CheckpointError> {
        let tree = self.db.open_tree(delta_name(id)).map_err(|e| self.err(e))?;
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        let mut chunk: Vec<(&str, &[u8], EntryRef<'_>)> = Vec::new();
        let (mut group, mut n, mut size) = (None::<u32>, 0u32, 0usize);
        let mut flush = |chunk: &mut Vec<(&str, &[u8], EntryRef<'_>)>, kg: u32, n: &mut u32| {
            let k = chunk_key(op, kg, *n);
            let v = encode(&*chunk);
            bytes += (k.len() + v.len()) as u64;
            batch.insert(k, v);
            chunk.clear();
            *n += 1;
        };
        visit(&mut |kg, state, key, entry| {
            if let Some(g) = group.filter(|&g| g != kg) {
                if !chunk.is_empty() {
                    flush(&mut chunk, g, &mut n);
                }
                (n, size) = (0, 0);
            }
            group = Some(kg);
            size += key.len() + state.len() + entry.size() + 8;
            chunk.push((state, key, entry));
            if size >= CHUNK_BYTES {
                flush(&mut chunk, kg, &mut n);
                size = 0;
            }
        });
        if let (Some(g), false) = (group, chunk.is_empty()) {
            flush(&mut chunk, g, &mut n);
        }
        tree.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(bytes)
    }

    /// Writes one subtask's timers, by key group, for checkpoint `id`.
    pub fn write_timers(
        &self,
        id: u64,
        op: &str,
        timers: &[(u32, Vec<TimerRecord>)],
    ) -> Result<u64, CheckpointError> {
        self.write_timer_groups(id, op, timers, false)
    }

    /// Writes one subtask's timer changes since the previous checkpoint, by
    /// key group, for checkpoint `id` (a delta).
    pub fn write_timer_deltas(
        &self,
        id: u64,
        op: &str,
        deltas: &[(u32, TimerDelta)],
    ) -> Result<u64, CheckpointError> {
        self.write_timer_groups(id, op, deltas, true)
    }

    /// Writes one record per key group into the timers tree of checkpoint
    /// `id`, after the marker of a delta when `delta`.
    fn write_timer_groups<T: Serialize>(
        &self,
        id: u64,
        op: &str,
        groups: &[(u32, T)],
        delta: bool,
    ) -> Result<u64, CheckpointError> {
        let tree = self
            .db
            .open_tree(timers_name(id))
            .map_err(|e| self.err(e))?;
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        if delta {
            let marker = delta_marker(op);
            bytes += marker.len() as u64;
            batch.insert(marker, &[]);
        }
        for (kg, records) in groups {
            let k = group_prefix(op, *kg);
            let v = encode(records);
            bytes += (k.len() + v.len()) as u64;
            batch.insert(k, v);
        }
        tree.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(bytes)
    }

    /// Marks checkpoint `meta.id` complete: flushes its trees, then writes its
    /// meta entry and flushes again. Only then is it acknowledged.
    pub fn complete(&self, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
        self.complete_with(meta, &CheckpointLogic::default())
    }

    /// [`CheckpointStore::complete`], with what it records of the logic.
    pub fn complete_with(
        &self,
        meta: &CheckpointMeta,
        logic: &CheckpointLogic,
    ) -> Result<(), CheckpointError> {
        let logic = serde_json::to_vec(logic).map_err(|e| self.err(e))?;
        self.logic
            .insert(meta_key(meta.id), logic)
            .map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        self.meta
            .insert(meta_key(meta.id), encode(meta))
            .map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Drops what checkpoint `id` wrote before it was aborted (timed out,
    /// or a write failed): its delta and timer trees. It has no meta entry,
    /// so nothing ever restores it; this frees its space at once.
    pub fn abort(&self, id: u64) -> Result<(), CheckpointError> {
        for name in [delta_name(id), timers_name(id)] {
            self.db
                .drop_tree(name.as_bytes())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The logic record of checkpoint `id` (`None`: written by a weir
    /// before live swaps, or no such checkpoint).
    pub fn logic(&self, id: u64) -> Result<Option<CheckpointLogic>, CheckpointError> {
        match self.logic.get(meta_key(id)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("the logic record of checkpoint {id}: {e}"))),
        }
    }

    /// Forgets the checkpoints taken while a live swap was on probation
    /// after the newest checkpoint that was not (a probation that never
    /// ended: the process died or the swap rolled back); their trees go at
    /// the next retention. Returns how many.
    pub fn drop_probation(&self) -> Result<usize, CheckpointError> {
        let mut dropped = 0;
        for meta in self.list()?.into_iter().rev() {
            match self.logic(meta.id)? {
                Some(l) if l.probation_of.is_some() => {
                    self.forget(meta.id)?;
                    dropped += 1;
                }
                _ => break,
            }
        }
        if dropped > 0 {
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(dropped)
    }

    /// Removes checkpoint `id`'s meta and logic records: it is no longer
    /// complete; its trees go when no kept chain needs them.
    fn forget(&self, id: u64) -> Result<(), CheckpointError> {
        self.meta.remove(meta_key(id)).map_err(|e| self.err(e))?;
        self.logic.remove(meta_key(id)).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Where the copy of the `.wasm` with SHA-256 `sha256` is kept.
    pub fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("wasm").join(format!("{sha256}.wasm"))
    }

    /// Keeps a durable copy of a `.wasm` swapped in live, so that a restart
    /// runs it whatever the job file names ([`CheckpointLogic`]).
    pub fn keep_wasm(&self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, CheckpointError> {
        let path = self.wasm_path(sha256);
        if path.is_file() {
            return Ok(path);
        }
        let dir = self.dir.join("wasm");
        let fail = |e: std::io::Error| self.err(format!("cannot keep a copy of the .wasm: {e}"));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let tmp = dir.join(format!(".{sha256}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            f.write_all(bytes).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &path).map_err(fail)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
        Ok(path)
    }

    /// Every completed checkpoint, oldest first.
    pub fn list(&self) -> Result<Vec<CheckpointMeta>, CheckpointError> {
        let mut out = Vec::new();
        for item in self.meta.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let meta: CheckpointMeta =
                decode(&v).map_err(|e| self.err(format!("checkpoint record {k:?}: {e}")))?;
            if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&meta.format) {
                return Err(self.err(format!(
                    "checkpoint {} has format version {}, this weir reads {OLDEST_FORMAT} to {FORMAT_VERSION}",
                    meta.id, meta.format
                )));
            }
            out.push(meta);
        }
        Ok(out)
    }

    /// The completed checkpoint `id`, if there is one.
    pub fn get(&self, id: u64) -> Result<Option<CheckpointMeta>, CheckpointError> {
        Ok(self.list()?.into_iter().find(|m| m.id == id))
    }

    /// Applies the state of `op` in key groups `groups` at checkpoint `meta`
    /// to `restore`, chain in order (later entries replace earlier ones).
    pub fn load_state(
        &self,
        meta: &CheckpointMeta,
        op: &str,
        groups: Range<u32>,
        mut restore: impl FnMut(StateChange) -> Result<(), String>,
    ) -> Result<(), CheckpointError> {
        for &id in &meta.chain {
            let tree = self.db.open_tree(delta_name(id)).map_err(|e| self.err(e))?;
            let range = group_prefix(op, groups.start)..group_prefix(op, groups.end);
            for item in tree.range(range) {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let key_group = parse_group(op, &k)
                    .ok_or_else(|| self.err(format!("checkpoint {id}: malformed record key")))?;
                let entries: Vec<PackedEntry> =
                    decode(&v).map_err(|e| self.err(format!("checkpoint {id}: {e}")))?;
                for (state, key, entry) in entries {
                    restore(StateChange {
                        state,
                        key_group,
                        key,
                        entry,
                    })
                    .map_err(|e| {
                        self.err(format!("restoring checkpoint {id} of operator `{op}`: {e}"))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The timers of `op` in key groups `groups` at checkpoint `meta`: its
    /// chain's timer trees in order, a full one replacing what is before it.
    pub fn load_timers(
        &self,
        meta: &CheckpointMeta,
        op: &str,
        groups: Range<u32>,
    ) -> Result<Vec<TimerRecord>, CheckpointError> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut by_group: BTreeMap<u32, BTreeSet<TimerRecord>> = BTreeMap::new();
        for &id in &meta.chain {
            let tree = self
                .db
                .open_tree(timers_name(id))
                .map_err(|e| self.err(e))?;
            let is_delta = id != meta.chain[0]
                && tree
                    .contains_key(delta_marker(op))
                    .map_err(|e| self.err(e))?;
            if !is_delta {
                by_group.clear();
            }
            for item in tree.range(group_prefix(op, groups.start)..group_prefix(op, groups.end)) {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let kg = parse_group(op, &k)
                    .ok_or_else(|| self.err(format!("checkpoint {id}: malformed record key")))?;
                let timers = by_group.entry(kg).or_default();
                if is_delta {
                    let delta: TimerDelta =
                        decode(&v).map_err(|e| self.err(format!("checkpoint {id}: {e}")))?;
                    delta.apply(timers);
                } else {
                    let records: Vec<TimerRecord> =
                        decode(&v).map_err(|e| self.err(format!("checkpoint {id}: {e}")))?;
                    timers.extend(records);
                }
            }
        }
        Ok(by_group.into_values().flatten().collect())
    }

    /// Whether operator `op` has any state entry in the chain of `meta`.
    pub fn has_operator(&self, meta: &CheckpointMeta, op: &str) -> bool {
        meta.operators.iter().any(|o| o.id == op)
    }

    /// Keeps the `retain` newest completed checkpoints, the checkpoints in
    /// `pinned` (the one a sink's last commit names: recovery needs it
    /// whatever came after), and what all their chains need; frees the rest.
    /// Trees newer than the newest completed checkpoint (one being written)
    /// are left alone unless `incomplete_too`.
    pub fn retain(
        &self,
        retain: usize,
        incomplete_too: bool,
        pinned: &[u64],
    ) -> Result<(), CheckpointError> {
        let completed = self.list()?;
        let newest = completed.last().map(|m| m.id).unwrap_or(0);
        let keep: Vec<&CheckpointMeta> = retained(&completed, retain, pinned);
        let keep_ids: Vec<u64> = keep.iter().map(|m| m.id).collect();
        let needed: Vec<u64> = keep.iter().flat_map(|m| m.chain.iter().copied()).collect();
        for meta in &completed {
            if !keep_ids.contains(&meta.id) {
                self.forget(meta.id)?;
            }
        }
        for name in self.db.tree_names() {
            let Some(id) = tree_id(&name) else { continue };
            if id > newest && !incomplete_too {
                continue;
            }
            // Timer trees, like delta trees, are needed by every chain they are in.
            if !needed.contains(&id) {
                self.db.drop_tree(&name).map_err(|e| self.err(e))?;
            }
        }
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets every completed checkpoint above `id` (their output was never
    /// committed, and a run restored `id`): the next retention frees their
    /// trees, and their IDs are never used again. Returns the IDs forgotten.
    pub fn forget_above(&self, id: u64) -> Result<Vec<u64>, CheckpointError> {
        let above: Vec<u64> = self
            .list()?
            .into_iter()
            .map(|m| m.id)
            .filter(|m| *m > id)
            .collect();
        if let Some(&top) = above.last() {
            for &m in &above {
                self.forget(m)?;
            }
            // The IDs stay taken: a sink's commit record names a checkpoint
            // by ID, and a later checkpoint must not be mistaken for these.
            self.db
                .insert(ID_FLOOR, &(top + 1).to_be_bytes())
                .map_err(|e| self.err(e))?;
            self.db.flush().map_err(|e| self.err(e))?;
        }
        Ok(above)
    }

    /// What this state directory records of the transactional sink its
    /// checkpoints commit to (`None`: no such sink has run on it, or a weir
    /// that did not record it).
    pub fn sink_record(&self) -> Result<Option<SinkRecord>, CheckpointError> {
        match self.db.get(SINK_RECORD).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("the sink record: {e}"))),
        }
    }

    /// Records (durably) the transactional sink this state directory's
    /// checkpoints commit to.
    pub fn set_sink_record(&self, record: &SinkRecord) -> Result<(), CheckpointError> {
        let v = serde_json::to_vec(record).map_err(|e| self.err(e))?;
        self.db.insert(SINK_RECORD, v).map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keygroup::key_group;
    use crate::model::SourcePosition;

    fn change(kg: u32, key: &str, value: Option<&str>) -> StateChange {
        StateChange {
            state: "count".into(),
            key_group: kg,
            key: key.as_bytes().to_vec(),
            entry: match value {
                Some(v) => StoredEntry::Value(v.as_bytes().to_vec()),
                None => StoredEntry::Deleted,
            },
        }
    }

    fn meta(id: u64, chain: Vec<u64>) -> CheckpointMeta {
        CheckpointMeta {
            format: FORMAT_VERSION,
            id,
            chain,
            job: "j".into(),
            max_parallelism: 8,
            triggered_at_ms: 0,
            completed_at_ms: 0,
            bytes_written: 0,
            finished: false,
            source: SourceState {
                position: SourcePosition::Generator { next: id },
                max_timestamp: 0,
            },
            sink: None,
            watermark: 0,
            operators: vec![],
        }
    }

    fn load(
        store: &CheckpointStore,
        m: &CheckpointMeta,
        groups: Range<u32>,
    ) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = std::collections::BTreeMap::new();
        store
            .load_state(m, "op", groups, |c| {
                let v = match c.entry {
                    StoredEntry::Value(v) => Some(v),
                    _ => None,
                };
                out.insert(String::from_utf8(c.key).unwrap(), v);
                Ok(())
            })
            .unwrap();
        out.into_iter().collect()
    }

    #[test]
    fn chains_restore_by_key_group_and_retention_keeps_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.next_id(), 1);
        store
            .write_changes(
                1,
                "op",
                &[change(0, "a", Some("1")), change(5, "b", Some("1"))],
            )
            .unwrap();
        store.complete(&meta(1, vec![1])).unwrap();
        store
            .write_changes(2, "op", &[change(0, "a", Some("2"))])
            .unwrap();
        store.complete(&meta(2, vec![1, 2])).unwrap();
        store
            .write_changes(3, "op", &[change(5, "b", None)])
            .unwrap();
        store.complete(&meta(3, vec![1, 2, 3])).unwrap();
        // An incomplete checkpoint 4 is ignored.
        store
            .write_changes(4, "op", &[change(0, "a", Some("9"))])
            .unwrap();
        assert_eq!(store.next_id(), 5);

        let m3 = store.get(3).unwrap().unwrap();
        assert_eq!(
            load(&store, &m3, 0..8),
            vec![("a".into(), Some(b"2".to_vec())), ("b".into(), None)]
        );
        assert_eq!(
            load(&store, &m3, 0..4),
            vec![("a".into(), Some(b"2".to_vec()))]
        );

        store.retain(1, true, &[]).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        // Checkpoint 3 still restores: its chain's trees were kept.
        assert_eq!(
            load(&store, &m3, 0..8),
            vec![("a".into(), Some(b"2".to_vec())), ("b".into(), None)]
        );
        assert!(
            store.db.tree_names().iter().all(|n| tree_id(n) != Some(4)),
            "incomplete tree dropped"
        );
        drop(store);
        // sled's flusher thread lets go of the database's file lock a moment
        // after the last handle is dropped (under load, not at once).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let reopened = loop {
            match CheckpointStore::open(dir.path()) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("reopening: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(reopened.list().unwrap()[0].id, 3);
    }

    #[test]
    fn a_chain_of_timer_deltas_restores_what_a_full_checkpoint_holds() {
        use crate::model::TimeDomain::{EventTime as ET, ProcessingTime as PT};
        use crate::state::timers::TimerService;
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let mut t = TimerService::new(8);
        let key = |i: u32| format!("k{i}").into_bytes();
        for i in 0..100 {
            t.register(ET, Some(&key(i)), i64::from(i % 5));
        }
        t.register(PT, Some(b"p"), 1000);
        let full = t.snapshot(true);
        assert!(full.is_full());
        store.write_timers(1, "op", &full.records()).unwrap();
        // Another operator's timers in the same trees stay apart.
        store
            .write_timers(1, "other", &[(0, vec![(0, 1, Some(b"x".to_vec()))])])
            .unwrap();
        store.complete(&meta(1, vec![1])).unwrap();
        for id in 2..5u64 {
            t.pop_due(ET, id as i64 - 1, 30);
            for i in (0..100).step_by(7) {
                t.delete(ET, Some(&key(i)), i64::from(i % 5));
            }
            for i in 0..20 {
                t.register(ET, Some(&key(i + 100 * id as u32)), 10 + id as i64);
            }
            let delta = t.snapshot(false);
            store.write_timer_deltas(id, "op", &delta.delta()).unwrap();
            store.complete(&meta(id, (1..=id).collect())).unwrap();
        }
        let now = t.snapshot(true).records();
        let expected: std::collections::BTreeSet<TimerRecord> =
            now.iter().flat_map(|(_, r)| r.clone()).collect();
        let m4 = store.get(4).unwrap().unwrap();
        let chained: std::collections::BTreeSet<TimerRecord> = store
            .load_timers(&m4, "op", 0..8)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(chained, expected);
        // As a full checkpoint of the same timers restores.
        store.write_timers(5, "op", &now).unwrap();
        store.complete(&meta(5, vec![5])).unwrap();
        let m5 = store.get(5).unwrap().unwrap();
        let full: std::collections::BTreeSet<TimerRecord> = store
            .load_timers(&m5, "op", 0..8)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(full, expected);
        // Part of the key groups: exactly the timers of those.
        let part: std::collections::BTreeSet<TimerRecord> = store
            .load_timers(&m4, "op", 2..5)
            .unwrap()
            .into_iter()
            .collect();
        let want: std::collections::BTreeSet<TimerRecord> = expected
            .iter()
            .filter(|(_, _, k)| (2..5).contains(&key_group(k.as_deref(), 8)))
            .cloned()
            .collect();
        assert!(!want.is_empty() && want.len() < expected.len());
        assert_eq!(part, want);
        // Retention keeps the timer trees a chain needs.
        store.retain(1, true, &[]).unwrap();
        store.write_timer_deltas(6, "op", &[]).unwrap();
        store.complete(&meta(6, vec![5, 6])).unwrap();
        store.retain(1, true, &[]).unwrap();
        let m6 = store.get(6).unwrap().unwrap();
        let kept: std::collections::BTreeSet<TimerRecord> = store
            .load_timers(&m6, "op", 0..8)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn an_older_weirs_delta_checkpoint_holds_all_timers_in_each_tree() {
        // Before timer deltas every checkpoint's timer tree held all timers.
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let a = (0u8, 5i64, Some(b"a".to_vec()));
        let b = (0u8, 6i64, Some(b"b".to_vec()));
        let kg = |r: &TimerRecord| key_group(r.2.as_deref(), 8);
        store
            .write_timers(
                1,
                "op",
                &[(kg(&a), vec![a.clone()]), (kg(&b), vec![b.clone()])],
            )
            .unwrap();
        store.complete(&meta(1, vec![1])).unwrap();
        store
            .write_timers(2, "op", &[(kg(&b), vec![b.clone()])])
            .unwrap();
        store.complete(&meta(2, vec![1, 2])).unwrap();
        let m2 = store.get(2).unwrap().unwrap();
        assert_eq!(store.load_timers(&m2, "op", 0..8).unwrap(), vec![b]);
    }

    #[test]
    fn version_1_stores_are_read_and_unknown_versions_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store
            .complete(&CheckpointMeta {
                format: 1,
                ..meta(1, vec![1])
            })
            .unwrap();
        assert_eq!(
            store.list().unwrap().len(),
            1,
            "a version-1 checkpoint is read"
        );
        store
            .complete(&CheckpointMeta {
                format: 9,
                ..meta(2, vec![2])
            })
            .unwrap();
        let e = store.list().unwrap_err().to_string();
        assert!(
            e.contains("checkpoint 2 has format version 9, this weir reads 1 to 2"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn retention_keeps_the_newest_and_the_pinned_with_their_chains() {
        // (retain, pinned, completed (id, chain)), kept IDs.
        type Case = (
            usize,
            &'static [u64],
            &'static [(u64, &'static [u64])],
            &'static [u64],
        );
        let cases: &[Case] = &[
            // No pin: the newest `retain`.
            (1, &[], &[(1, &[1]), (2, &[1, 2]), (3, &[1, 2, 3])], &[3]),
            (2, &[], &[(1, &[1]), (2, &[1, 2]), (3, &[1, 2, 3])], &[2, 3]),
            // The committed checkpoint 1 stays though two newer ones completed.
            (1, &[1], &[(1, &[1]), (2, &[2]), (3, &[2, 3])], &[1, 3]),
            (
                2,
                &[1],
                &[(1, &[1]), (2, &[2]), (3, &[3]), (4, &[3, 4])],
                &[1, 3, 4],
            ),
            // A pin among the newest changes nothing.
            (3, &[2], &[(1, &[1]), (2, &[2]), (3, &[3])], &[1, 2, 3]),
            // A pin that is not there (forgotten) keeps nothing more.
            (1, &[9], &[(1, &[1]), (2, &[2])], &[2]),
        ];
        for (retain, pinned, completed, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let store = CheckpointStore::open(dir.path()).unwrap();
            for (id, chain) in *completed {
                store
                    .write_changes(*id, "op", &[change(0, &format!("k{id}"), Some("1"))])
                    .unwrap();
                store.complete(&meta(*id, chain.to_vec())).unwrap();
            }
            store.retain(*retain, true, pinned).unwrap();
            let kept: Vec<u64> = store.list().unwrap().iter().map(|m| m.id).collect();
            assert_eq!(&kept, want, "retain {retain}, pinned {pinned:?}");
            // Every kept checkpoint still restores: its chain's trees are there.
            for m in store.list().unwrap() {
                let keys: Vec<String> =
                    load(&store, &m, 0..8).into_iter().map(|(k, _)| k).collect();
                let wanted: Vec<String> = m.chain.iter().map(|c| format!("k{c}")).collect();
                assert_eq!(keys, wanted, "checkpoint {}", m.id);
            }
        }
    }

    #[test]
    fn forgotten_checkpoints_keep_their_ids_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        for id in 1..=4 {
            store.complete(&meta(id, vec![id])).unwrap();
        }
        assert_eq!(store.forget_above(2).unwrap(), vec![3, 4]);
        store.retain(3, true, &[]).unwrap();
        let kept: Vec<u64> = store.list().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(kept, vec![1, 2]);
        assert_eq!(store.next_id(), 5, "IDs 3 and 4 are not used again");
        assert_eq!(store.forget_above(2).unwrap(), Vec::<u64>::new());
        assert_eq!(store.sink_record().unwrap(), None);
        let r = SinkRecord {
            prefix: "weir-x".into(),
            committed: true,
        };
        store.set_sink_record(&r).unwrap();
        assert_eq!(store.sink_record().unwrap(), Some(r));
    }

    #[test]
    fn an_aborted_checkpoint_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store
            .write_changes(1, "op", &[change(0, "a", Some("1"))])
            .unwrap();
        store.complete(&meta(1, vec![1])).unwrap();
        store
            .write_changes(2, "op", &[change(0, "a", Some("2"))])
            .unwrap();
        store.write_timers(2, "op", &[(0, Vec::new())]).unwrap();
        store.abort(2).unwrap();
        assert!(
            store.db.tree_names().iter().all(|n| tree_id(n) != Some(2)),
            "the aborted checkpoint's trees are dropped"
        );
        assert_eq!(store.list().unwrap().len(), 1);
        let m1 = store.get(1).unwrap().unwrap();
        assert_eq!(
            load(&store, &m1, 0..8),
            vec![("a".into(), Some(b"1".to_vec()))]
        );
    }
}
