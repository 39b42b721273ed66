//! Savepoints: the canonical, self-contained, relocatable snapshot of a job
//! that a user asks for and owns.
//!
//! A savepoint is a directory:
//!
//! ```text
//! savepoint-<job>-<id>-<YYYYMMDD-HHMMSS>/
//!   _metadata          JSON: format version, weir version, job, created-at,
//!                      source position, and for each operator ID its name,
//!                      version, `.wasm` SHA-256, declared states (kind,
//!                      version, key count) and data files (key groups,
//!                      size, SHA-256); last, `metadata_sha256`
//!   op0-sub0.state     data files: one per operator subtask at the time
//!   op0-sub1.state     of the savepoint, each covering a range of key groups
//! ```
//!
//! Nothing in it names an absolute path: data files are named relative to
//! the directory, so a savepoint can be copied or moved anywhere.
//!
//! **`_metadata` protects itself.** Its last field, `metadata_sha256`, is the
//! SHA-256 of every line above the line that holds it (so `head -n -2
//! _metadata | sha256sum` prints it), and the file ends with that line and
//! `}`. Opening a savepoint (what `verify`, `inspect`, `edit`, `state
//! export|import` and `run --from-savepoint` all do first) recomputes it: any
//! change to the file, down to a digit of the source position or a space, is
//! refused with one line naming `_metadata`. The tools that change a
//! savepoint write a new one, with its own checksum. A checksum over the raw
//! lines, not over re-serialized fields, keeps the file plain JSON that a
//! person can read and a shell can check, and does not depend on how a JSON
//! library orders or spells things. This is format version 2; version 1 had
//! no such checksum, and is refused (naming `_metadata` and the version)
//! rather than read with a warning: a manifest that cannot be checked is the
//! very thing that restored from a wrong source position, and weir has not
//! been released, so no one holds version-1 savepoints they cannot re-take.
//!
//! It does not depend on the working state backend (sled checkpoints): a data
//! file is the magic `WEIRSPD1` followed by frames, all integers little-endian:
//!
//! ```text
//! frame   := kind:u8 key_group:u32 name_len:u16 name count:u32 len:u32 payload[len]
//! kind 1  value state: count × (key value)
//! kind 2  map state:   count × (key n:u32 n × (map_key value))
//! kind 3  list state:  count × (key n:u32 n × value)
//! kind 4  timers (name empty): count × (domain:u8 time:i64 has_key:u8 [key])
//! key, value, map_key := len:u32 bytes
//! ```
//!
//! **Canonical.** The same state gives the same bytes, whatever the order
//! the working state's hash maps hold it in: frames are in ascending key
//! group; within a key group, the state frames by state name, each state's
//! entries by key bytes (map entries by map key; list values in list order),
//! then the key group's timers by (domain, time, key). A frame is cut at
//! about 1 MiB of payload, at the same entry every time.
//!
//! **Streamed.** Data files are written, checked and read through bounded
//! buffers, never whole: a writer encodes into the file through a hashing
//! writer (one frame's payload is buffered, to know its length); a full read
//! ([`Savepoint::verify`], the surgery tools, and a restoring subtask that
//! owns every key group of a file) decodes through a hashing reader, and
//! checks size and SHA-256 at its end. A restore at another parallelism
//! (a subtask owning part of a file's key groups) reads each file once in
//! all: since frames are in key-group order, a subtask reads frame headers,
//! seeks past the payloads of key groups before its own, decodes its own, and
//! stops at the first frame past them; so every payload byte is read by the
//! one subtask that owns it. We chose this over one reader per file handing
//! records to the subtasks that own them: subtasks restore on their own
//! threads, and a hand-over would tie them together (a subtask that fails
//! before it reads would stall the others) for no fewer bytes read. A
//! partial read cannot check the file's SHA-256; the runtime verifies every
//! file before any subtask restores, so a restore reads each file twice in
//! all (verify, then load), whatever the parallelism. A restore into
//! another `max_parallelism` cannot skip by key group (the saved key groups
//! say nothing of the new ones): each subtask reads every file of its
//! operator whole and keeps the keys it owns once re-hashed (see
//! [`crate::state::restore`]).
//!
//! A savepoint is written into a hidden `.<name>.inprogress` directory and
//! renamed into place once its `_metadata` is durable, so a crash never
//! leaves something that looks like a complete savepoint. Opening one reads
//! and checks `_metadata`; [`Savepoint::verify`] checks every data file's
//! size and SHA-256, and every error names the file and what is wrong.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{rfc3339, show_key, SinkState, SourceState};
use crate::state::checkpoint::TimerRecord;
use crate::state::keyed::{StateChange, StoredEntry};

/// The `format` field of every savepoint's `_metadata`.
pub const FORMAT: &str = "weir-savepoint";
/// Version of the savepoint format this weir writes and reads: 2, since
/// `_metadata` carries its own checksum and data files are canonical.
pub const FORMAT_VERSION: u32 = 2;
/// The manifest's file name.
pub const METADATA: &str = "_metadata";
/// The last field of `_metadata`: the SHA-256 of every line above its own.
pub const METADATA_SHA256: &str = "metadata_sha256";
/// The first bytes of every data file.
pub const DATA_MAGIC: &[u8; 8] = b"WEIRSPD1";

const KIND_VALUE: u8 = 1;
const KIND_MAP: u8 = 2;
const KIND_LIST: u8 = 3;
const KIND_TIMERS: u8 = 4;

/// Frames are cut at about this many payload bytes.
const FRAME_BYTES: usize = 1 << 20;
/// The buffer of a full (checked) read of a data file.
const READ_BUFFER: usize = 1 << 16;
/// The buffer of a partial read (a restoring subtask that owns part of a
/// file's key groups): small, since a seek past other key groups drops it.
const PARTIAL_READ_BUFFER: usize = 1 << 14;

/// Why a savepoint could not be written, read or used. One line naming the
/// savepoint file (or directory) and the problem.
#[derive(Debug, thiserror::Error)]
#[error("savepoint `{path}`: {message}")]
pub struct SavepointError {
    /// The file or directory concerned.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> SavepointError {
    SavepointError {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// How the savepoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointKind {
    /// Triggered; the job went on.
    Triggered,
    /// Stop-with-savepoint: the job stopped right after it.
    Stop,
    /// Stop-with-savepoint with `drain`: event time was advanced to the end first.
    StopDrain,
}

/// A data file, as `_metadata` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Its name, relative to the savepoint directory.
    pub file: String,
    /// The key groups it holds: `[first, end)`.
    pub key_groups: [u32; 2],
    /// Its size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// A declared state of an operator, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    /// The state's name.
    pub name: String,
    /// `value`, `map` or `list`.
    pub kind: String,
    /// Schema version of its values.
    pub version: u32,
    /// Keys that have this state.
    pub keys: u64,
}

/// An operator ID's part of a savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOperator {
    /// The operator ID: what state is restored by.
    pub id: String,
    /// The logic's name, from its `describe()`.
    pub name: String,
    /// The logic's version, from its `describe()`.
    pub version: String,
    /// Hex SHA-256 of the `.wasm` that wrote it.
    pub wasm_sha256: String,
    /// Its parallelism when saved.
    pub parallelism: u32,
    /// Its declared states.
    pub states: Vec<SavedState>,
    /// Timers registered.
    pub timers: u64,
    /// Bytes of keys and values held.
    pub state_bytes: u64,
    /// Its data files.
    pub files: Vec<DataFile>,
}

/// The `_metadata` manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The weir that wrote it.
    pub weir_version: String,
    /// The job's name.
    pub job: String,
    /// The barrier (checkpoint) ID it was taken at.
    pub id: u64,
    /// How it was taken.
    pub kind: SavepointKind,
    /// When it was taken, as RFC 3339 UTC.
    pub created_at: String,
    /// When it was taken, in ms since the Unix epoch.
    pub created_at_ms: i64,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Taken at the end of a bounded input: nothing is left to read.
    pub finished: bool,
    /// Where the source was.
    pub source: SourceState,
    /// The sink's state, for a sink that takes part in checkpoints.
    pub sink: Option<SinkState>,
    /// The lowest watermark of the operators.
    pub watermark: i64,
    /// Each operator ID with state.
    pub operators: Vec<SavedOperator>,
    /// With an exactly-once sink that commits outside the savepoint (Kafka
    /// transactions): where its commit of this savepoint's output is
    /// recorded, so that a restore can check that it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_commit: Option<SinkCommit>,
}

/// Where an exactly-once sink records the commit of a savepoint's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommit {
    /// The sink's transactional id prefix.
    pub transactional_id_prefix: String,
    /// The state directory's instance name, which its commit markers carry.
    pub store: String,
}

impl Metadata {
    /// The operator `id`.
    pub fn operator(&self, id: &str) -> Option<&SavedOperator> {
        self.operators.iter().find(|o| o.id == id)
    }
}

/// One decoded record of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A key's state.
    State(StateChange),
    /// A timer, in its key group.
    Timer(u32, TimerRecord),
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::model::hex(&Sha256::digest(bytes))
}

/// `YYYYMMDD-HHMMSS` (UTC) of a time in ms since the Unix epoch: its
/// [`rfc3339`] without the separators.
fn compact_time(ms: i64) -> String {
    rfc3339(ms)
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            'T' => Some('-'),
            _ => None,
        })
        .collect()
}

/// A name safe as part of a file name: letters, digits, `-` and `_`.
fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        "job".to_string()
    } else {
        s
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Writes frames to `out`, buffering one frame's payload (to know its length).
struct Encoder<W: Write> {
    out: W,
    header: Option<(u8, u32, String)>,
    count: u32,
    payload: Vec<u8>,
}

impl<W: Write> Encoder<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(DATA_MAGIC)?;
        Ok(Encoder {
            out,
            header: None,
            count: 0,
            payload: Vec::with_capacity(1 << 16),
        })
    }

    /// Writes the frame being built, if it has anything.
    fn flush_frame(&mut self) -> std::io::Result<()> {
        if let Some((kind, kg, name)) = &self.header {
            if self.count > 0 {
                let mut head = Vec::with_capacity(15 + name.len());
                head.push(*kind);
                head.extend_from_slice(&kg.to_le_bytes());
                head.extend_from_slice(&(name.len() as u16).to_le_bytes());
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(&self.count.to_le_bytes());
                head.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
                self.out.write_all(&head)?;
                self.out.write_all(&self.payload)?;
            }
        }
        self.count = 0;
        self.payload.clear();
        Ok(())
    }

    /// Makes the next record go into a frame `(kind, kg, name)`: the current
    /// one if it is that and not full, else a new one.
    fn frame(&mut self, kind: u8, kg: u32, name: &str) -> std::io::Result<()> {
        let same = matches!(&self.header, Some((k, g, n)) if *k == kind && *g == kg && n == name);
        if !same || self.payload.len() >= FRAME_BYTES {
            self.flush_frame()?;
            self.header = Some((kind, kg, name.to_string()));
        }
        Ok(())
    }

    fn state(&mut self, change: &StateChange) -> std::io::Result<()> {
        let kind = match &change.entry {
            StoredEntry::Value(_) => KIND_VALUE,
            StoredEntry::Map(_) => KIND_MAP,
            StoredEntry::List(_) => KIND_LIST,
            StoredEntry::Deleted => return Ok(()),
            StoredEntry::MapUpdate(_) | StoredEntry::ListAppend(_) => {
                return Err(std::io::Error::other(
                    "a savepoint stores whole states, not changes (a full snapshot was expected)",
                ))
            }
        };
        self.frame(kind, change.key_group, &change.state)?;
        let payload = &mut self.payload;
        put_bytes(payload, &change.key);
        match &change.entry {
            StoredEntry::Value(v) => put_bytes(payload, v),
            StoredEntry::Map(entries) => {
                payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (k, v) in entries {
                    put_bytes(payload, k);
                    put_bytes(payload, v);
                }
            }
            StoredEntry::List(values) => {
                payload.extend_from_slice(&(values.len() as u32).to_le_bytes());
                for v in values {
                    put_bytes(payload, v);
                }
            }
            StoredEntry::Deleted | StoredEntry::MapUpdate(_) | StoredEntry::ListAppend(_) => {}
        }
        self.count += 1;
        Ok(())
    }

    fn timers(&mut self, kg: u32, records: &[&TimerRecord]) -> std::io::Result<()> {
        for (domain, time, key) in records {
            self.frame(KIND_TIMERS, kg, "")?;
            self.payload.push(*domain);
            self.payload.extend_from_slice(&time.to_le_bytes());
            match key {
                Some(k) => {
                    self.payload.push(1);
                    put_bytes(&mut self.payload, k);
                }
                None => self.payload.push(0),
            }
            self.count += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.flush_frame()?;
        Ok(self.out)
    }
}

/// Encodes one data file into `out` in canonical order (see the module
/// doc): state entries (deleted ones skipped) and timers, whatever order they
/// come in. Returns `out` and the number of keys of each state name.
fn encode_into<'a, W: Write>(
    out: W,
    changes: impl IntoIterator<Item = &'a StateChange>,
    timers: &[(u32, Vec<TimerRecord>)],
) -> std::io::Result<(W, std::collections::BTreeMap<String, u64>)> {
    let mut entries: Vec<&StateChange> = changes
        .into_iter()
        .filter(|c| !matches!(c.entry, StoredEntry::Deleted))
        .collect();
    entries.sort_unstable_by(|a, b| {
        (a.key_group, &a.state, &a.key).cmp(&(b.key_group, &b.state, &b.key))
    });
    let mut by_group: std::collections::BTreeMap<u32, Vec<&TimerRecord>> = Default::default();
    for (kg, records) in timers {
        by_group.entry(*kg).or_default().extend(records);
    }
    let mut groups = by_group.into_iter().peekable();
    let mut keys: std::collections::BTreeMap<String, u64> = Default::default();
    let mut enc = Encoder::new(out)?;
    for change in entries {
        // A key group's timers follow its states.
        while let Some((kg, mut records)) = groups.next_if(|(kg, _)| *kg < change.key_group) {
            records.sort_unstable();
            enc.timers(kg, &records)?;
        }
        enc.state(change)?;
        match keys.get_mut(&change.state) {
            Some(n) => *n += 1,
            None => {
                keys.insert(change.state.clone(), 1);
            }
        }
    }
    for (kg, mut records) in groups {
        records.sort_unstable();
        enc.timers(kg, &records)?;
    }
    Ok((enc.finish()?, keys))
}

/// Encodes one data file: state entries and timers, in canonical order.
/// Returns its bytes and the number of keys of each state name.
pub fn encode_data<'a>(
    changes: impl IntoIterator<Item = &'a StateChange>,
    timers: &[(u32, Vec<TimerRecord>)],
) -> (Vec<u8>, std::collections::BTreeMap<String, u64>) {
    encode_into(Vec::with_capacity(1 << 16), changes, timers).expect("writing to memory")
}

/// A reader that counts, and may hash, the bytes that pass through it.
struct Tally<R> {
    inner: R,
    sha: Option<Sha256>,
    read: u64,
}

impl<R> Tally<R> {
    fn new(inner: R, hash: bool) -> Self {
        Tally {
            inner,
            sha: hash.then(Sha256::new),
            read: 0,
        }
    }
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(sha) = &mut self.sha {
            sha.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for Tally<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A writer that counts and hashes the bytes that pass through it.
struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where a data file's bytes come from: a reader that can also move on
/// without handing bytes out.
trait DataSource: Read + Sized {
    /// Moves `n` bytes on (by default, reading and dropping them).
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        skip_by_reading(self, n)
    }
}

fn skip_by_reading(r: &mut impl Read, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.take(n), &mut std::io::sink())?;
    if copied < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

impl DataSource for &[u8] {}

impl<R: Read> DataSource for BufReader<Tally<R>>
where
    Tally<R>: std::io::Seek,
{
    /// Seeks when nothing is hashed; a hashed read must see every byte.
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        if self.get_ref().sha.is_some() {
            skip_by_reading(self, n)
        } else {
            self.seek_relative(n as i64)
        }
    }
}

/// Reads a data file's fields from a [`DataSource`], checking each length
/// against what is left (of the file or of the frame) before it allocates,
/// so a damaged length never makes it allocate more than the file holds.
struct Decoder<'s, S> {
    src: &'s mut S,
    at: u64,
}

impl<S: DataSource> Decoder<'_, S> {
    fn need(&self, n: u64, end: u64) -> Result<(), String> {
        let left = end.saturating_sub(self.at);
        if n > left {
            return Err(format!(
                "malformed at byte {}: {n} more bytes expected, {left} left",
                self.at
            ));
        }
        Ok(())
    }
    fn io(&self, e: std::io::Error) -> String {
        format!("cannot read it at byte {}: {e}", self.at)
    }
    fn fill(&mut self, buf: &mut [u8], end: u64) -> Result<(), String> {
        self.need(buf.len() as u64, end)?;
        self.src.read_exact(buf).map_err(|e| self.io(e))?;
        self.at += buf.len() as u64;
        Ok(())
    }
    fn take(&mut self, n: usize, end: u64) -> Result<Vec<u8>, String> {
        self.need(n as u64, end)?;
        let mut buf = vec![0; n];
        self.fill(&mut buf, end)?;
        Ok(buf)
    }
    fn skip(&mut self, n: u64, end: u64) -> Result<(), String> {
        self.need(n, end)?;
        self.src.skip(n).map_err(|e| self.io(e))?;
        self.at += n;
        Ok(())
    }
    fn u8(&mut self, end: u64) -> Result<u8, String> {
        let mut b = [0; 1];
        self.fill(&mut b, end)?;
        Ok(b[0])
    }
    fn u16(&mut self, end: u64) -> Result<u16, String> {
        let mut b = [0; 2];
        self.fill(&mut b, end)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self, end: u64) -> Result<u32, String> {
        let mut b = [0; 4];
        self.fill(&mut b, end)?;
        Ok(u32::from_le_bytes(b))
    }
    fn i64(&mut self, end: u64) -> Result<i64, String> {
        let mut b = [0; 8];
        self.fill(&mut b, end)?;
        Ok(i64::from_le_bytes(b))
    }
    fn bytes(&mut self, end: u64) -> Result<Vec<u8>, String> {
        let n = self.u32(end)? as usize;
        self.take(n, end)
    }
    /// A count of items of at least `min` bytes each, as a capacity that the
    /// rest of the frame could hold.
    fn capacity(&self, n: u32, min: u64, end: u64) -> usize {
        (u64::from(n).min(end.saturating_sub(self.at) / min)) as usize
    }
}

/// How [`decode`] reads a data file.
struct DecodeRange {
    /// The key groups the file may hold (any other is an error).
    allowed: Range<u32>,
    /// The key groups whose records are handed out (the others are skipped).
    groups: Range<u32>,
    /// Stop at the first frame past `groups` (frames are in key-group order).
    stop_early: bool,
}

/// Decodes a data file of `len` bytes from `src`, handing every record in
/// `r.groups` to `f`. The error says where the bytes stopped making sense.
fn decode<S: DataSource>(
    src: &mut S,
    len: u64,
    r: &DecodeRange,
    mut f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    let mut d = Decoder { src, at: 0 };
    let mut magic = [0; 8];
    if d.fill(&mut magic, len).is_err() || &magic != DATA_MAGIC {
        return Err("not a weir savepoint data file (bad magic)".to_string());
    }
    let mut last_kg = 0;
    while d.at < len {
        let frame_at = d.at;
        let kind = d.u8(len)?;
        let kg = d.u32(len)?;
        let name_len = d.u16(len)? as usize;
        let name = String::from_utf8(d.take(name_len, len)?)
            .map_err(|_| format!("malformed at byte {frame_at}: a state name is not UTF-8"))?;
        let count = d.u32(len)?;
        let flen = u64::from(d.u32(len)?);
        d.need(flen, len)?;
        if !(KIND_VALUE..=KIND_TIMERS).contains(&kind) {
            return Err(format!(
                "malformed at byte {frame_at}: unknown frame kind {kind}"
            ));
        }
        if !r.allowed.contains(&kg) {
            return Err(format!(
                "holds key group {kg}, outside {:?} (frame at byte {frame_at})",
                r.allowed
            ));
        }
        if kg < last_kg {
            return Err(format!(
                "frame at byte {frame_at} is of key group {kg}, after key group {last_kg}: frames are not in key-group order"
            ));
        }
        last_kg = kg;
        if !r.groups.contains(&kg) {
            if r.stop_early && kg >= r.groups.end {
                return Ok(());
            }
            d.skip(flen, len)?;
            continue;
        }
        let end = d.at + flen;
        let in_frame = |e: String| format!("frame at byte {frame_at}: {e}");
        for _ in 0..count {
            let record = match kind {
                KIND_TIMERS => {
                    let domain = d.u8(end).map_err(in_frame)?;
                    let time = d.i64(end).map_err(in_frame)?;
                    let key = match d.u8(end).map_err(in_frame)? {
                        0 => None,
                        _ => Some(d.bytes(end).map_err(in_frame)?),
                    };
                    Record::Timer(kg, (domain, time, key))
                }
                _ => {
                    let key = d.bytes(end).map_err(in_frame)?;
                    let entry = match kind {
                        KIND_VALUE => StoredEntry::Value(d.bytes(end).map_err(in_frame)?),
                        KIND_MAP => {
                            let n = d.u32(end).map_err(in_frame)?;
                            let mut entries = Vec::with_capacity(d.capacity(n, 8, end));
                            for _ in 0..n {
                                let k = d.bytes(end).map_err(in_frame)?;
                                entries.push((k, d.bytes(end).map_err(in_frame)?));
                            }
                            StoredEntry::Map(entries)
                        }
                        _ => {
                            let n = d.u32(end).map_err(in_frame)?;
                            let mut values = Vec::with_capacity(d.capacity(n, 4, end));
                            for _ in 0..n {
                                values.push(d.bytes(end).map_err(in_frame)?);
                            }
                            StoredEntry::List(values)
                        }
                    };
                    Record::State(StateChange {
                        state: name.clone(),
                        key_group: kg,
                        key,
                        entry,
                    })
                }
            };
            f(record)?;
        }
        if d.at != end {
            return Err(format!(
                "malformed frame at byte {frame_at}: {} bytes left over",
                end - d.at
            ));
        }
    }
    Ok(())
}

/// Decodes a data file held in memory, handing every record in key groups
/// `groups` to `f`. The error says where the bytes stopped making sense.
pub fn decode_data(
    bytes: &[u8],
    groups: Range<u32>,
    f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    let range = DecodeRange {
        allowed: 0..u32::MAX,
        groups,
        stop_early: false,
    };
    decode(&mut &bytes[..], bytes.len() as u64, &range, f)
}

/// Decodes a data file of `len` bytes as it streams from `reader` (through a
/// buffer of its own: at most one record is held at a time), handing every
/// record in key groups `groups` to `f`.
pub fn decode_reader(
    reader: impl Read,
    len: u64,
    groups: Range<u32>,
    f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    let range = DecodeRange {
        allowed: 0..u32::MAX,
        groups,
        stop_early: false,
    };
    let mut src = StreamSource(BufReader::with_capacity(READ_BUFFER, reader));
    decode(&mut src, len, &range, f)
}

/// A plain reader as a [`DataSource`].
struct StreamSource<R>(R);

impl<R: Read> Read for StreamSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> DataSource for StreamSource<R> {}

/// A savepoint on disk whose `_metadata` was read and checked.
#[derive(Debug, Clone)]
pub struct Savepoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub meta: Metadata,
}

/// Checks that a data file name stays inside the savepoint directory.
fn check_file_name(dir: &Path, name: &str) -> Result<(), SavepointError> {
    let ok = !name.is_empty()
        && name != METADATA
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(err(
            &dir.join(METADATA),
            format!("data file name `{name}` is not a plain file name in the savepoint directory"),
        ))
    }
}

/// Reads `dir/_metadata` and checks that it names itself a weir savepoint;
/// returns its path, its bytes and its format version (any version).
fn read_manifest(dir: &Path) -> Result<(PathBuf, Vec<u8>, u32), SavepointError> {
    if !dir.is_dir() {
        return Err(err(
            dir,
            if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            },
        ));
    }
    let path = dir.join(METADATA);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                &path,
                "is missing: this is not a savepoint directory (or it is incomplete)",
            ))
        }
        Err(e) => return Err(err(&path, format!("cannot read it: {e}"))),
    };
    // The format fields first, so that a future version is named as such.
    #[derive(Deserialize)]
    struct Head {
        format: Option<String>,
        format_version: Option<u32>,
    }
    let head: Head =
        serde_json::from_slice(&text).map_err(|e| err(&path, format!("is not valid JSON: {e}")))?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(err(
            &path,
            format!("is not a weir savepoint manifest (its `format` is not \"{FORMAT}\")"),
        ));
    }
    let version = head
        .format_version
        .ok_or_else(|| err(&path, "has no `format_version`"))?;
    Ok((path, text, version))
}

/// The text of `_metadata`: `meta` as pretty JSON whose last field is
/// [`METADATA_SHA256`], the SHA-256 of every line above the one that holds it.
pub fn manifest_text(meta: &Metadata) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    // `{\n  ...\n}`: the last field gets a comma, and the checksum follows.
    if text.ends_with(b"\n}") {
        text.truncate(text.len() - 2);
    }
    text.extend_from_slice(b",\n");
    let sum = sha256_hex(&text);
    text.extend_from_slice(format!("  \"{METADATA_SHA256}\": \"{sum}\"\n}}\n").as_bytes());
    text
}

/// Checks `_metadata`'s own checksum (see the module doc).
fn check_manifest_sum(path: &Path, text: &[u8]) -> Result<(), SavepointError> {
    let fix = "it was changed by hand or damaged (change a savepoint with `weir savepoint edit` or `weir state import`, which write a new one)";
    let prefix = format!("  \"{METADATA_SHA256}\": \"");
    let line = text.strip_suffix(b"\"\n}\n").and_then(|t| {
        let start = t.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let claimed = t[start..].strip_prefix(prefix.as_bytes())?;
        Some((start, claimed))
    });
    let Some((start, claimed)) = line else {
        return Err(err(
            path,
            format!("does not end with its `{METADATA_SHA256}` line and `}}`: {fix}"),
        ));
    };
    let sum = sha256_hex(&text[..start]);
    if claimed != sum.as_bytes() {
        return Err(err(
            path,
            format!(
                "does not match its checksum: the SHA-256 of its lines above `{METADATA_SHA256}` is {sum}, the file says {}: {fix}",
                String::from_utf8_lossy(claimed)
            ),
        ));
    }
    Ok(())
}

impl Savepoint {
    /// Reads and checks `dir/_metadata`: present, a weir savepoint of a
    /// format version this weir reads, unchanged since written (its own
    /// checksum), JSON of the expected shape, with plain file names.
    pub fn open(dir: &Path) -> Result<Self, SavepointError> {
        let (path, text, version) = read_manifest(dir)?;
        if version == 1 {
            return Err(err(
                &path,
                format!("has format version 1, whose `_metadata` has no checksum of its own; this weir reads only version {FORMAT_VERSION} (restore it with the weir that wrote it, with checkpoints on, and take a new savepoint with this weir from those checkpoints)"),
            ));
        }
        if version != FORMAT_VERSION {
            return Err(err(
                &path,
                format!("has format version {version}; this weir reads version {FORMAT_VERSION}"),
            ));
        }
        check_manifest_sum(&path, &text)?;
        let mut value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| err(&path, format!("is not valid JSON: {e}")))?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove(METADATA_SHA256);
        }
        let meta: Metadata = serde_json::from_value(value)
            .map_err(|e| err(&path, format!("is not a valid manifest: {e}")))?;
        for op in &meta.operators {
            for f in &op.files {
                check_file_name(dir, &f.file)?;
                if f.key_groups[0] > f.key_groups[1] || f.key_groups[1] > meta.max_parallelism {
                    return Err(err(
                        &path,
                        format!(
                            "data file `{}` claims key groups {:?} outside 0..{}",
                            f.file, f.key_groups, meta.max_parallelism
                        ),
                    ));
                }
            }
        }
        Ok(Savepoint {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// Opens a data file and checks its size against `_metadata`.
    fn open_file(&self, file: &DataFile) -> Result<(PathBuf, File), SavepointError> {
        let path = self.dir.join(&file.file);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(&path, "is missing"))
            }
            Err(e) => return Err(err(&path, format!("cannot read it: {e}"))),
        };
        let len = f
            .metadata()
            .map_err(|e| err(&path, format!("cannot read it: {e}")))?
            .len();
        if len != file.bytes {
            return Err(err(
                &path,
                format!(
                    "is {} ({len} bytes, `_metadata` says {})",
                    if len < file.bytes {
                        "truncated"
                    } else {
                        "too long"
                    },
                    file.bytes
                ),
            ));
        }
        Ok((path, f))
    }

    /// Checks that what `tally` read is the whole of `file`, with its SHA-256.
    fn check_sum(path: &Path, tally: Tally<File>, file: &DataFile) -> Result<(), SavepointError> {
        let sum = crate::model::hex(&tally.sha.expect("a hashed read").finalize());
        if tally.read != file.bytes {
            return Err(err(
                path,
                format!(
                    "changed while it was read ({} bytes read, `_metadata` says {})",
                    tally.read, file.bytes
                ),
            ));
        }
        if sum != file.sha256 {
            return Err(err(
                path,
                format!(
                    "is damaged: its SHA-256 is {sum}, `_metadata` says {}",
                    file.sha256
                ),
            ));
        }
        Ok(())
    }

    /// Reads data file `file` whole, in a stream, and checks it: size,
    /// SHA-256, frames decodable and in key-group order, every key group in
    /// the file's range. Hands its records in key groups `groups` to `f` as
    /// they are read (so a checksum error comes after them: a caller keeps
    /// what it is given until this returns `Ok`). Returns the bytes read.
    pub fn check_file(
        &self,
        file: &DataFile,
        groups: Range<u32>,
        f: impl FnMut(Record) -> Result<(), String>,
    ) -> Result<u64, SavepointError> {
        let (path, handle) = self.open_file(file)?;
        let mut src = BufReader::with_capacity(READ_BUFFER, Tally::new(handle, true));
        let range = DecodeRange {
            allowed: file.key_groups[0]..file.key_groups[1],
            groups,
            stop_early: false,
        };
        let decoded = decode(&mut src, file.bytes, &range, f);
        // What is left goes through the checksum too: damage is named as
        // such, rather than as whatever the decoder made of it.
        let drained = std::io::copy(&mut src, &mut std::io::sink());
        let tally = src.into_inner();
        let read = tally.read;
        match drained {
            Ok(_) => Self::check_sum(&path, tally, file)?,
            Err(e) => return Err(err(&path, format!("cannot read it: {e}"))),
        }
        decoded.map_err(|e| err(&path, e))?;
        Ok(read)
    }

    /// Reads the records of `file` in key groups `groups`, a strict part of
    /// the file's: frame headers up to the first of `groups`, then their
    /// frames, seeking past the payloads of other key groups. The checksum
    /// is not checked (it takes the whole file): [`Savepoint::verify`] first.
    /// Returns the bytes read from the file.
    fn read_part(
        &self,
        file: &DataFile,
        groups: Range<u32>,
        f: impl FnMut(Record) -> Result<(), String>,
    ) -> Result<u64, SavepointError> {
        let (path, handle) = self.open_file(file)?;
        let mut src = BufReader::with_capacity(PARTIAL_READ_BUFFER, Tally::new(handle, false));
        let range = DecodeRange {
            allowed: file.key_groups[0]..file.key_groups[1],
            groups,
            stop_early: true,
        };
        decode(&mut src, file.bytes, &range, f).map_err(|e| err(&path, e))?;
        Ok(src.get_ref().read)
    }

    /// Checks every data file (present, size, checksum, decodable, frames in
    /// key-group order and in the file's key groups), each in one streamed
    /// read; returns the number of files and bytes checked.
    pub fn verify(&self) -> Result<(usize, u64), SavepointError> {
        let mut files = 0;
        let mut bytes = 0;
        for op in &self.meta.operators {
            for f in &op.files {
                self.check_file(f, 0..u32::MAX, |_| Ok(()))?;
                files += 1;
                bytes += f.bytes;
            }
        }
        Ok((files, bytes))
    }

    /// Hands every record of operator `op` in key groups `groups` to `f`,
    /// file by file, each read as a stream: a file whose key groups are all
    /// in `groups` whole and checked ([`Savepoint::check_file`]), a file
    /// that has only some of them in part (see the module doc), so that the
    /// subtasks of a restore at another parallelism read each byte once.
    /// Returns the bytes read from data files.
    pub fn load(
        &self,
        op: &str,
        groups: Range<u32>,
        mut f: impl FnMut(Record) -> Result<(), String>,
    ) -> Result<u64, SavepointError> {
        let Some(saved) = self.meta.operator(op) else {
            return Ok(0);
        };
        let mut read = 0;
        for file in &saved.files {
            let [first, end] = file.key_groups;
            if end <= groups.start || first >= groups.end || first == end {
                continue;
            }
            read += if groups.start <= first && end <= groups.end {
                self.check_file(file, groups.clone(), &mut f)?
            } else {
                self.read_part(file, groups.clone(), &mut f)?
            };
        }
        Ok(read)
    }
}

/// A savepoint being written: data files go into a hidden directory next to
/// where it will be; [`SavepointWriter::finish`] writes `_metadata` and renames it into place.
pub struct SavepointWriter {
    target: PathBuf,
    name: String,
    tmp: PathBuf,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl SavepointWriter {
    /// Starts a savepoint of `job` at barrier `id` in directory `target`
    /// (created if needed). Its name is `savepoint-<job>-<id>-<time>`.
    pub fn create(target: &Path, job: &str, id: u64, now_ms: i64) -> Result<Self, SavepointError> {
        std::fs::create_dir_all(target)
            .map_err(|e| err(target, format!("cannot create the directory: {e}")))?;
        let base = format!("savepoint-{}-{id}-{}", file_safe(job), compact_time(now_ms));
        let mut name = base.clone();
        let mut n = 1;
        while target.join(&name).exists() || target.join(format!(".{name}.inprogress")).exists() {
            n += 1;
            name = format!("{base}-{n}");
        }
        Self::create_named(target, &name)
    }

    /// Starts a savepoint that will be `target/name`, which must not exist.
    pub fn create_named(target: &Path, name: &str) -> Result<Self, SavepointError> {
        let final_dir = target.join(name);
        if final_dir.exists() {
            return Err(err(&final_dir, "already exists"));
        }
        let tmp = target.join(format!(".{name}.inprogress"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| err(&tmp, format!("cannot clear a leftover: {e}")))?;
        }
        std::fs::create_dir_all(&tmp)
            .map_err(|e| err(&tmp, format!("cannot create the directory: {e}")))?;
        Ok(SavepointWriter {
            target: target.to_path_buf(),
            name: name.to_string(),
            tmp,
        })
    }

    /// Writes data file `file` (a plain name); returns its `_metadata` entry.
    pub fn write_file(
        &self,
        file: &str,
        key_groups: Range<u32>,
        bytes: &[u8],
    ) -> Result<DataFile, SavepointError> {
        check_file_name(&self.tmp, file)?;
        let path = self.tmp.join(file);
        write_durable(&path, bytes).map_err(|e| err(&path, format!("cannot write it: {e}")))?;
        Ok(DataFile {
            file: file.to_string(),
            key_groups: [key_groups.start, key_groups.end],
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
    }

    /// Writes data file `file` (a plain name) of state entries and timers,
    /// in canonical order (see the module doc), streaming it to disk through
    /// a hashing writer; returns its `_metadata` entry and the number of
    /// keys of each state name.
    pub fn write_data<'a>(
        &self,
        file: &str,
        key_groups: Range<u32>,
        changes: impl IntoIterator<Item = &'a StateChange>,
        timers: &[(u32, Vec<TimerRecord>)],
    ) -> Result<(DataFile, std::collections::BTreeMap<String, u64>), SavepointError> {
        check_file_name(&self.tmp, file)?;
        let path = self.tmp.join(file);
        let io = |e: std::io::Error| err(&path, format!("cannot write it: {e}"));
        let out = HashingWriter {
            inner: File::create(&path).map_err(io)?,
            sha: Sha256::new(),
            written: 0,
        };
        let (out, keys) =
            encode_into(BufWriter::with_capacity(1 << 16, out), changes, timers).map_err(io)?;
        let out = out.into_inner().map_err(|e| io(e.into_error()))?;
        out.inner.sync_all().map_err(io)?;
        let data = DataFile {
            file: file.to_string(),
            key_groups: [key_groups.start, key_groups.end],
            bytes: out.written,
            sha256: crate::model::hex(&out.sha.finalize()),
        };
        Ok((data, keys))
    }

    /// Copies data file `file` of `from` unchanged, in a stream, checking
    /// its size and SHA-256 on the way (a damaged file is not copied).
    pub fn copy_file(&self, from: &Savepoint, file: &DataFile) -> Result<DataFile, SavepointError> {
        check_file_name(&self.tmp, &file.file)?;
        let (path, handle) = from.open_file(file)?;
        let mut src = Tally::new(handle, true);
        let to = self.tmp.join(&file.file);
        let write = |e: std::io::Error| err(&to, format!("cannot write it: {e}"));
        let mut out = File::create(&to).map_err(write)?;
        let copied = std::io::copy(&mut src, &mut out);
        let checked = match copied {
            Ok(_) => Savepoint::check_sum(&path, src, file),
            Err(e) => Err(err(&path, format!("cannot copy it: {e}"))),
        };
        if let Err(e) = checked {
            drop(out);
            let _ = std::fs::remove_file(&to);
            return Err(e);
        }
        out.sync_all().map_err(write)?;
        Ok(file.clone())
    }

    /// Writes `_metadata` (with its own checksum, [`manifest_text`]), makes
    /// everything durable and renames the savepoint into place; returns its
    /// directory. If any step fails, what was written is removed (as
    /// [`SavepointWriter::abort`]) and nothing is left behind.
    pub fn finish(self, meta: &Metadata) -> Result<PathBuf, SavepointError> {
        let final_dir = self.target.join(&self.name);
        let result = self.finish_in_place(meta);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&self.tmp);
            if final_dir.join(METADATA).is_file() && !self.tmp.exists() {
                // Renamed into place, but its directory entry is not durable.
                let _ = std::fs::remove_dir_all(&final_dir);
            }
        }
        result
    }

    fn finish_in_place(&self, meta: &Metadata) -> Result<PathBuf, SavepointError> {
        let path = self.tmp.join(METADATA);
        let text = manifest_text(meta);
        write_durable(&path, &text).map_err(|e| err(&path, format!("cannot write it: {e}")))?;
        sync_dir(&self.tmp).map_err(|e| err(&self.tmp, e))?;
        let final_dir = self.target.join(&self.name);
        std::fs::rename(&self.tmp, &final_dir)
            .map_err(|e| err(&final_dir, format!("cannot move it into place: {e}")))?;
        sync_dir(&self.target).map_err(|e| err(&self.target, e))?;
        Ok(final_dir)
    }

    /// Removes what was written (a savepoint that failed).
    pub fn abort(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// A new manifest with the fields every savepoint shares.
#[allow(clippy::too_many_arguments)]
pub fn new_metadata(
    job: &str,
    id: u64,
    kind: SavepointKind,
    created_at_ms: i64,
    max_parallelism: u32,
    finished: bool,
    source: SourceState,
    sink: Option<SinkState>,
    watermark: i64,
) -> Metadata {
    Metadata {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        weir_version: env!("CARGO_PKG_VERSION").to_string(),
        job: job.to_string(),
        id,
        kind,
        created_at: rfc3339(created_at_ms),
        created_at_ms,
        max_parallelism,
        finished,
        source,
        sink,
        watermark,
        operators: Vec::new(),
        sink_commit: None,
    }
}

// ---------------------------------------------------------------------------
// Savepoint surgery: what `weir savepoint delete|edit` and `weir state
// export|import` need beyond reading and writing whole savepoints. A new
// savepoint is always written next to the old one, never over it.
// ---------------------------------------------------------------------------

/// Reads `dir/_metadata` just far enough to tell whether `dir` is a weir
/// savepoint, of any format version (which this weir may not read); returns
/// that version. Its data files are not looked at.
pub fn manifest_format_version(dir: &Path) -> Result<u32, SavepointError> {
    read_manifest(dir).map(|(_, _, version)| version)
}

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
mod surgery_tests {
    use super::*;
    use crate::model::SourcePosition;
    use std::collections::BTreeMap;

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

    #[test]
    fn only_weir_manifests_are_savepoints() {
        let dir = tempfile::tempdir().unwrap();
        let e = manifest_format_version(dir.path()).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::write(dir.path().join(METADATA), "{\"format\": \"other\"}").unwrap();
        assert!(manifest_format_version(dir.path()).is_err());
        std::fs::write(
            dir.path().join(METADATA),
            "{\"format\": \"weir-savepoint\", \"format_version\": 99}",
        )
        .unwrap();
        assert_eq!(manifest_format_version(dir.path()).unwrap(), 99);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourcePosition;

    fn change(state: &str, kg: u32, key: &str, entry: StoredEntry) -> StateChange {
        StateChange {
            state: state.into(),
            key_group: kg,
            key: key.as_bytes().to_vec(),
            entry,
        }
    }

    #[test]
    fn data_files_round_trip_and_filter_by_key_group() {
        let changes = vec![
            change("count", 1, "a", StoredEntry::Value(b"1".to_vec())),
            change("count", 1, "b", StoredEntry::Value(b"2".to_vec())),
            change("gone", 2, "x", StoredEntry::Deleted),
            change(
                "m",
                2,
                "c",
                StoredEntry::Map(vec![(b"k".to_vec(), b"v".to_vec())]),
            ),
            change(
                "l",
                3,
                "d",
                StoredEntry::List(vec![b"1".to_vec(), vec![0xff]]),
            ),
        ];
        let timers = vec![(3, vec![(0u8, 5i64, Some(b"d".to_vec())), (1, 7, None)])];
        let (bytes, keys) = encode_data(&changes, &timers);
        assert_eq!(keys.get("count"), Some(&2));
        assert_eq!(keys.get("gone"), None);
        let mut all = Vec::new();
        decode_data(&bytes, 0..10, |r| {
            all.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], Record::State(changes[0].clone()));
        assert_eq!(all[3], Record::State(changes[4].clone()));
        assert_eq!(all[5], Record::Timer(3, (1, 7, None)));
        let mut some = 0;
        decode_data(&bytes, 2..3, |_| {
            some += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(some, 1);
        for cut in [3, 9, bytes.len() - 1] {
            assert!(decode_data(&bytes[..cut], 0..10, |_| Ok(())).is_err());
        }
    }

    #[test]
    fn written_savepoints_verify_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let w = SavepointWriter::create(dir.path(), "my job", 4, 0).unwrap();
        let (bytes, _) = encode_data(
            &[change("count", 0, "a", StoredEntry::Value(b"1".to_vec()))],
            &[],
        );
        let file = w.write_file("op0-sub0.state", 0..4, &bytes).unwrap();
        let mut meta = new_metadata(
            "my job",
            4,
            SavepointKind::Triggered,
            0,
            4,
            false,
            SourceState {
                position: SourcePosition::Generator { next: 3 },
                max_timestamp: 0,
            },
            None,
            0,
        );
        meta.operators.push(SavedOperator {
            id: "count".into(),
            name: "keyed-count".into(),
            version: "1".into(),
            wasm_sha256: "00".into(),
            parallelism: 1,
            states: vec![],
            timers: 0,
            state_bytes: 2,
            files: vec![file],
        });
        let sp_dir = w.finish(&meta).unwrap();
        assert!(sp_dir.ends_with("savepoint-my_job-4-19700101-000000"));
        let sp = Savepoint::open(&sp_dir).unwrap();
        assert_eq!(sp.verify().unwrap().0, 1);
        let data = sp_dir.join("op0-sub0.state");
        let mut b = std::fs::read(&data).unwrap();
        b[10] ^= 1;
        std::fs::write(&data, &b).unwrap();
        let e = sp.verify().unwrap_err().to_string();
        assert!(e.contains("op0-sub0.state") && e.contains("damaged"), "{e}");
        std::fs::write(&data, &b[..5]).unwrap();
        let e = sp.verify().unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::remove_file(&data).unwrap();
        let e = sp.verify().unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}

#[cfg(test)]
mod canonical_streamed_tests {
    use super::*;
    use crate::model::{SourcePosition, StateKind, StateSpec};
    use crate::state::keyed::StateBackend;

    fn metadata(m: u32) -> Metadata {
        new_metadata(
            "j",
            3,
            SavepointKind::Stop,
            1_700_000_000_000,
            m,
            false,
            SourceState {
                position: SourcePosition::Generator { next: 12345 },
                max_timestamp: 7,
            },
            Some(SinkState { output_len: 4321 }),
            5,
        )
    }

    /// A savepoint of operator `op` whose state `count` holds `keys` keys
    /// of `value_size` bytes over `m` key groups, in `files` key-group ranges.
    fn written(dir: &Path, m: u32, keys: u32, value_size: usize, files: &[Range<u32>]) -> PathBuf {
        let w = SavepointWriter::create_named(dir, "sp").unwrap();
        let mut meta = metadata(m);
        let mut data = Vec::new();
        for (i, range) in files.iter().enumerate() {
            let changes: Vec<StateChange> = (0..keys)
                .map(|k| format!("key-{k}").into_bytes())
                .filter(|k| {
                    range.contains(&crate::model::keygroup::key_group(Some(k.as_slice()), m))
                })
                .map(|k| StateChange {
                    state: "count".into(),
                    key_group: crate::model::keygroup::key_group(Some(k.as_slice()), m),
                    entry: StoredEntry::Value(vec![b'v'; value_size]),
                    key: k,
                })
                .collect();
            let timers = vec![(range.start, vec![(0u8, 9i64, None)])];
            let (file, _) = w
                .write_data(
                    &format!("op0-sub{i}.state"),
                    range.clone(),
                    &changes,
                    &timers,
                )
                .unwrap();
            data.push(file);
        }
        meta.operators.push(SavedOperator {
            id: "op".into(),
            name: "n".into(),
            version: "1".into(),
            wasm_sha256: "00".into(),
            parallelism: files.len() as u32,
            states: vec![],
            timers: files.len() as u64,
            state_bytes: 0,
            files: data,
        });
        w.finish(&meta).unwrap()
    }

    #[test]
    fn metadata_carries_its_own_checksum_and_any_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let whole = std::iter::once(0..8u32).collect::<Vec<_>>();
        let sp = written(dir.path(), 8, 20, 3, &whole);
        let text = std::fs::read_to_string(sp.join(METADATA)).unwrap();
        // Human-readable JSON; the last field is the checksum of the lines above it.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["source"]["position"]["generator"]["next"], 12345);
        let lines: Vec<&str> = text.lines().collect();
        let above = lines[..lines.len() - 2].join("\n") + "\n";
        assert_eq!(
            lines[lines.len() - 2],
            format!(
                "  \"metadata_sha256\": \"{}\"",
                sha256_hex(above.as_bytes())
            )
        );
        Savepoint::open(&sp).unwrap().verify().unwrap();
        // Moved elsewhere, it still opens.
        let moved = dir.path().join("a/b/moved");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&sp, &moved).unwrap();
        Savepoint::open(&moved).unwrap();
        // One digit of the source position, the sink's length, a space, the checksum itself.
        for (from, to) in [
            ("12345", "12346"),
            ("4321", "4320"),
            ("\"job\": \"j\"", "\"job\":  \"j\""),
            ("\"metadata_sha256\": \"", "\"metadata_sha256\": \"0"),
        ] {
            assert!(text.contains(from), "{from}");
            std::fs::write(moved.join(METADATA), text.replacen(from, to, 1)).unwrap();
            let e = Savepoint::open(&moved).unwrap_err().to_string();
            assert!(e.contains("_metadata") && e.contains("checksum"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        std::fs::write(moved.join(METADATA), text.trim_end()).unwrap();
        let e = Savepoint::open(&moved).unwrap_err().to_string();
        assert!(
            e.contains("_metadata") && e.contains("metadata_sha256"),
            "{e}"
        );
        // Format version 1 (no checksum) is refused by name.
        std::fs::write(
            moved.join(METADATA),
            text.replace("\"format_version\": 2", "\"format_version\": 1"),
        )
        .unwrap();
        let e = Savepoint::open(&moved).unwrap_err().to_string();
        assert!(
            e.contains("_metadata") && e.contains("format version 1") && !e.contains('\n'),
            "{e}"
        );
    }

    /// A backend over key groups 0..16 of 16 whose `count` holds key-0..key-499,
    /// after `extra` more keys came and went (which changes its hash maps' order).
    fn backend(extra: u32) -> StateBackend {
        let mut state = StateBackend::new(0, 16, 0..16);
        state
            .declare(&[
                StateSpec {
                    name: "count".into(),
                    kind: StateKind::Value,
                    version: 1,
                },
                StateSpec {
                    name: "alpha".into(),
                    kind: StateKind::Value,
                    version: 1,
                },
            ])
            .unwrap();
        // Another history, another order of the same keys in the backend.
        let order: Vec<u32> = if extra == 0 {
            (0..500).rev().collect()
        } else {
            (0..500 + extra).collect()
        };
        for i in order {
            let key = format!("key-{i}");
            state.value_put(0, key.as_bytes(), Some(b"1")).unwrap();
            state.value_put(1, key.as_bytes(), Some(b"a")).unwrap();
        }
        for i in 500..500 + extra {
            let key = format!("key-{i}");
            state.value_put(0, key.as_bytes(), None).unwrap();
            state.value_put(1, key.as_bytes(), None).unwrap();
        }
        state
    }

    #[test]
    fn equal_state_gives_byte_identical_data_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = backend(0);
        let mut b = backend(20_000);
        let changes_a = a.take_all();
        let changes_b = b.take_all();
        assert_ne!(
            changes_a, changes_b,
            "the test wants two orders of one state"
        );
        let timers_a = vec![(3, vec![(1u8, 5i64, None), (0, 9, Some(b"k".to_vec()))])];
        let timers_b = vec![(3, vec![(0u8, 9i64, Some(b"k".to_vec())), (1, 5, None)])];
        let w = SavepointWriter::create_named(dir.path(), "sp").unwrap();
        let (fa, keys_a) = w
            .write_data("a.state", 0..16, &changes_a, &timers_a)
            .unwrap();
        let (fb, keys_b) = w
            .write_data("b.state", 0..16, &changes_b, &timers_b)
            .unwrap();
        assert_eq!(keys_a, keys_b);
        assert_eq!(fa.sha256, fb.sha256);
        let tmp = dir.path().join(".sp.inprogress");
        let bytes = std::fs::read(tmp.join("a.state")).unwrap();
        assert_eq!(bytes, std::fs::read(tmp.join("b.state")).unwrap());
        assert_eq!(bytes, encode_data(&changes_b, &timers_a).0);
        // Key group by key group: states by name, keys by bytes, then timers.
        let mut order = Vec::new();
        decode_data(&bytes, 0..16, |r| {
            order.push(match r {
                Record::State(c) => (c.key_group, 0, c.state, c.key),
                Record::Timer(kg, (d, _, _)) => (kg, 1, String::new(), vec![d]),
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(order.len(), 1002);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }

    /// A reader of a data file made on the fly (frames of `frame_keys`
    /// value entries in key groups 0, 1, 2 ...), counting what it handed out.
    struct Generated {
        frames: u32,
        frame_keys: u32,
        current: Vec<u8>,
        at: usize,
        next_frame: u32,
        handed_out: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl Generated {
        fn frame(&self, kg: u32) -> Vec<u8> {
            let changes: Vec<StateChange> = (0..self.frame_keys)
                .map(|k| StateChange {
                    state: "s".into(),
                    key_group: kg,
                    key: format!("{kg}-{k:08}").into_bytes(),
                    entry: StoredEntry::Value(vec![7; 100]),
                })
                .collect();
            encode_data(&changes, &[]).0[DATA_MAGIC.len()..].to_vec()
        }
        fn len(&self) -> u64 {
            let frames: usize = (0..self.frames).map(|kg| self.frame(kg).len()).sum();
            (DATA_MAGIC.len() + frames) as u64
        }
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.current.len() {
                if self.next_frame == self.frames {
                    return Ok(0);
                }
                self.current = self.frame(self.next_frame);
                self.next_frame += 1;
                self.at = 0;
            }
            let n = buf.len().min(self.current.len() - self.at);
            buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
            self.at += n;
            self.handed_out.set(self.handed_out.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn data_files_are_decoded_as_they_stream() {
        let handed_out = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = Generated {
            frames: 64,
            frame_keys: 1000,
            current: DATA_MAGIC.to_vec(),
            at: 0,
            next_frame: 0,
            handed_out: handed_out.clone(),
        };
        let len = reader.len();
        assert!(len > 7_000_000, "{len}");
        let mut records = 0u64;
        let mut decoded = 0u64;
        let mut ahead = 0u64;
        decode_reader(reader, len, 0..u32::MAX, |r| {
            let Record::State(c) = r else {
                panic!("no timers here")
            };
            let StoredEntry::Value(v) = c.entry else {
                panic!("value state")
            };
            records += 1;
            decoded += (8 + c.key.len() + v.len()) as u64;
            // How far the reader is ahead of the records handed out.
            ahead = ahead.max(handed_out.get() - decoded);
            Ok(())
        })
        .unwrap();
        assert_eq!(records, 64_000);
        assert_eq!(handed_out.get(), len);
        // Never more than a read buffer (and the magic and frame headers) ahead.
        assert!(
            ahead <= READ_BUFFER as u64 + 8 + 64 * 16,
            "{ahead} bytes ahead"
        );
    }

    #[test]
    fn a_restore_at_another_parallelism_reads_each_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = 8;
        // Saved at parallelism 2, about 2 MB per file.
        let path = written(dir.path(), m, 20_000, 200, &[0..4, 4..8]);
        let sp = Savepoint::open(&path).unwrap();
        let total: u64 = sp.meta.operators[0].files.iter().map(|f| f.bytes).sum();
        assert!(total > 4_000_000, "{total}");
        let all = |groups: Range<u32>| {
            let mut keys = Vec::new();
            let read = sp
                .load("op", groups, |r| {
                    if let Record::State(c) = r {
                        keys.push(c.key);
                    }
                    Ok(())
                })
                .unwrap();
            (keys, read)
        };
        let (mut everything, whole) = all(0..m);
        assert_eq!(whole, total);
        everything.sort();
        for p in [1, 3, 5, 8] {
            let mut keys = Vec::new();
            let mut read = 0;
            for i in 0..p {
                let (k, r) = all(crate::model::keygroup::range_for(i, m, p));
                keys.extend(k);
                read += r;
            }
            keys.sort();
            assert_eq!(keys, everything, "parallelism {p}");
            // Each byte once, but for the frame headers and the buffer
            // refilled after each seek past a frame (one subtask reading
            // every file it overlaps whole would read 2 to 4 times `total`).
            assert!(
                read <= total + total / 5,
                "parallelism {p}: {read} bytes read of {total}"
            );
        }
    }
}
