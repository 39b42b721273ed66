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
//!                      size, SHA-256)
//!   op0-sub0.state     data files: one per operator subtask at the time
//!   op0-sub1.state     of the savepoint, each covering a range of key groups
//! ```
//!
//! Nothing in it names an absolute path: data files are named relative to
//! the directory, so a savepoint can be copied or moved anywhere. It does
//! not depend on the working state backend (sled checkpoints): a data file
//! is the magic `WEIRSPD1` followed by frames, all integers little-endian:
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
//! A savepoint is written into a hidden `.<name>.inprogress` directory and
//! renamed into place once its `_metadata` is durable, so a crash never
//! leaves something that looks like a complete savepoint. Opening one reads
//! and checks `_metadata`; [`Savepoint::verify`] checks every data file's
//! size and SHA-256, and every error names the file and what is wrong.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{SinkState, SourceState};
use crate::state::checkpoint::TimerRecord;
use crate::state::keyed::{StateChange, StoredEntry};

/// The `format` field of every savepoint's `_metadata`.
pub const FORMAT: &str = "weir-savepoint";
/// Version of the savepoint format this weir writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name.
pub const METADATA: &str = "_metadata";
/// The first bytes of every data file.
pub const DATA_MAGIC: &[u8; 8] = b"WEIRSPD1";

const KIND_VALUE: u8 = 1;
const KIND_MAP: u8 = 2;
const KIND_LIST: u8 = 3;
const KIND_TIMERS: u8 = 4;

/// Frames are cut at about this many payload bytes.
const FRAME_BYTES: usize = 1 << 20;

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

/// RFC 3339 (UTC, seconds) of a time in ms since the Unix epoch.
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `YYYYMMDD-HHMMSS` (UTC) of a time in ms since the Unix epoch.
fn compact_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// Calendar date and time (UTC) of ms since the Unix epoch (Howard Hinnant's algorithm).
fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
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

/// Encodes one data file: state entries and timers. Returns its bytes and
/// the number of keys of each state name.
pub fn encode_data<'a>(
    changes: impl IntoIterator<Item = &'a StateChange>,
    timers: &[(u32, Vec<TimerRecord>)],
) -> (Vec<u8>, std::collections::BTreeMap<String, u64>) {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(DATA_MAGIC);
    let mut keys: std::collections::BTreeMap<String, u64> = Default::default();
    let mut payload: Vec<u8> = Vec::with_capacity(FRAME_BYTES + (1 << 16));
    let mut count = 0u32;
    let mut current: Option<(u8, u32, String)> = None;
    let flush = |out: &mut Vec<u8>,
                 header: &Option<(u8, u32, String)>,
                 count: &mut u32,
                 payload: &mut Vec<u8>| {
        if let Some((kind, kg, name)) = header {
            if *count > 0 {
                out.push(*kind);
                out.extend_from_slice(&kg.to_le_bytes());
                out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                out.extend_from_slice(payload);
            }
        }
        *count = 0;
        payload.clear();
    };
    for change in changes {
        let kind = match &change.entry {
            StoredEntry::Value(_) => KIND_VALUE,
            StoredEntry::Map(_) => KIND_MAP,
            StoredEntry::List(_) => KIND_LIST,
            StoredEntry::Deleted => continue,
        };
        let same = matches!(&current, Some((k, g, n)) if *k == kind && *g == change.key_group && *n == change.state);
        if !same || payload.len() >= FRAME_BYTES {
            flush(&mut out, &current, &mut count, &mut payload);
            current = Some((kind, change.key_group, change.state.clone()));
        }
        put_bytes(&mut payload, &change.key);
        match &change.entry {
            StoredEntry::Value(v) => put_bytes(&mut payload, v),
            StoredEntry::Map(entries) => {
                payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (k, v) in entries {
                    put_bytes(&mut payload, k);
                    put_bytes(&mut payload, v);
                }
            }
            StoredEntry::List(values) => {
                payload.extend_from_slice(&(values.len() as u32).to_le_bytes());
                for v in values {
                    put_bytes(&mut payload, v);
                }
            }
            StoredEntry::Deleted => unreachable!("skipped above"),
        }
        count += 1;
        match keys.get_mut(&change.state) {
            Some(n) => *n += 1,
            None => {
                keys.insert(change.state.clone(), 1);
            }
        }
    }
    flush(&mut out, &current, &mut count, &mut payload);
    for (kg, records) in timers {
        if records.is_empty() {
            continue;
        }
        current = Some((KIND_TIMERS, *kg, String::new()));
        for (domain, time, key) in records {
            payload.push(*domain);
            payload.extend_from_slice(&time.to_le_bytes());
            match key {
                Some(k) => {
                    payload.push(1);
                    put_bytes(&mut payload, k);
                }
                None => payload.push(0),
            }
            count += 1;
        }
        flush(&mut out, &current, &mut count, &mut payload);
    }
    (out, keys)
}

/// A cursor over a data file's bytes that reports where it ran out.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(format!(
                "malformed at byte {}: {n} more bytes expected, {} left",
                self.at,
                self.bytes.len() - self.at
            )),
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Decodes a data file, handing every record in key groups `groups` to `f`.
/// The error says where the bytes stopped making sense.
pub fn decode_data(
    bytes: &[u8],
    groups: Range<u32>,
    mut f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    if bytes.len() < DATA_MAGIC.len() || &bytes[..DATA_MAGIC.len()] != DATA_MAGIC {
        return Err("not a weir savepoint data file (bad magic)".to_string());
    }
    let mut c = Cursor {
        bytes,
        at: DATA_MAGIC.len(),
    };
    while c.at < bytes.len() {
        let frame_at = c.at;
        let kind = c.u8()?;
        let kg = c.u32()?;
        let name_len = c.u16()? as usize;
        let name = std::str::from_utf8(c.take(name_len)?)
            .map_err(|_| format!("malformed at byte {frame_at}: a state name is not UTF-8"))?
            .to_string();
        let count = c.u32()?;
        let len = c.u32()? as usize;
        let payload = c.take(len)?;
        if !(KIND_VALUE..=KIND_TIMERS).contains(&kind) {
            return Err(format!(
                "malformed at byte {frame_at}: unknown frame kind {kind}"
            ));
        }
        if !groups.contains(&kg) {
            continue;
        }
        let mut p = Cursor {
            bytes: payload,
            at: 0,
        };
        let in_frame = |e: String| format!("frame at byte {frame_at}: {e}");
        for _ in 0..count {
            let record = match kind {
                KIND_TIMERS => {
                    let domain = p.u8().map_err(in_frame)?;
                    let time = p.i64().map_err(in_frame)?;
                    let key = match p.u8().map_err(in_frame)? {
                        0 => None,
                        _ => Some(p.bytes().map_err(in_frame)?),
                    };
                    Record::Timer(kg, (domain, time, key))
                }
                _ => {
                    let key = p.bytes().map_err(in_frame)?;
                    let entry = match kind {
                        KIND_VALUE => StoredEntry::Value(p.bytes().map_err(in_frame)?),
                        KIND_MAP => {
                            let n = p.u32().map_err(in_frame)?;
                            let mut entries = Vec::with_capacity(n.min(1 << 16) as usize);
                            for _ in 0..n {
                                let k = p.bytes().map_err(in_frame)?;
                                entries.push((k, p.bytes().map_err(in_frame)?));
                            }
                            StoredEntry::Map(entries)
                        }
                        _ => {
                            let n = p.u32().map_err(in_frame)?;
                            let mut values = Vec::with_capacity(n.min(1 << 16) as usize);
                            for _ in 0..n {
                                values.push(p.bytes().map_err(in_frame)?);
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
        if p.at != payload.len() {
            return Err(format!(
                "malformed frame at byte {frame_at}: {} bytes left over",
                payload.len() - p.at
            ));
        }
    }
    Ok(())
}

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

impl Savepoint {
    /// Reads and checks `dir/_metadata`: present, JSON of the expected shape,
    /// a weir savepoint of a format version this weir reads, with plain file names.
    pub fn open(dir: &Path) -> Result<Self, SavepointError> {
        let (path, text, version) = read_manifest(dir)?;
        if version != FORMAT_VERSION {
            return Err(err(
                &path,
                format!("has format version {version}; this weir reads version {FORMAT_VERSION}"),
            ));
        }
        let meta: Metadata = serde_json::from_slice(&text)
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

    /// Reads a data file and checks its size and checksum against `_metadata`.
    pub fn read_file(&self, file: &DataFile) -> Result<Vec<u8>, SavepointError> {
        let path = self.dir.join(&file.file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(&path, "is missing"))
            }
            Err(e) => return Err(err(&path, format!("cannot read it: {e}"))),
        };
        if bytes.len() as u64 != file.bytes {
            return Err(err(
                &path,
                format!(
                    "is {} ({} bytes, `_metadata` says {})",
                    if (bytes.len() as u64) < file.bytes {
                        "truncated"
                    } else {
                        "too long"
                    },
                    bytes.len(),
                    file.bytes
                ),
            ));
        }
        let sum = sha256_hex(&bytes);
        if sum != file.sha256 {
            return Err(err(
                &path,
                format!(
                    "is damaged: its SHA-256 is {sum}, `_metadata` says {}",
                    file.sha256
                ),
            ));
        }
        Ok(bytes)
    }

    /// Checks every data file (present, size, checksum, decodable); returns
    /// the number of files and bytes checked.
    pub fn verify(&self) -> Result<(usize, u64), SavepointError> {
        let mut files = 0;
        let mut bytes = 0;
        for op in &self.meta.operators {
            for f in &op.files {
                let data = self.read_file(f)?;
                let range = f.key_groups[0]..f.key_groups[1];
                decode_data(&data, 0..u32::MAX, |r| {
                    let kg = match &r {
                        Record::State(c) => c.key_group,
                        Record::Timer(kg, _) => *kg,
                    };
                    if range.contains(&kg) {
                        Ok(())
                    } else {
                        Err(format!("holds key group {kg}, outside {range:?}"))
                    }
                })
                .map_err(|e| err(&self.dir.join(&f.file), e))?;
                files += 1;
                bytes += f.bytes;
            }
        }
        Ok((files, bytes))
    }

    /// Every record of operator `op` in key groups `groups`, file by file.
    pub fn load(
        &self,
        op: &str,
        groups: Range<u32>,
        mut f: impl FnMut(Record) -> Result<(), String>,
    ) -> Result<(), SavepointError> {
        let Some(saved) = self.meta.operator(op) else {
            return Ok(());
        };
        for file in &saved.files {
            if file.key_groups[1] <= groups.start || file.key_groups[0] >= groups.end {
                continue;
            }
            let data = self.read_file(file)?;
            decode_data(&data, groups.clone(), &mut f)
                .map_err(|e| err(&self.dir.join(&file.file), e))?;
        }
        Ok(())
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
    std::fs::File::open(dir)?.sync_all()
}

fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
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

    /// Copies data file `file` of `from` unchanged (after checking it).
    pub fn copy_file(&self, from: &Savepoint, file: &DataFile) -> Result<DataFile, SavepointError> {
        let bytes = from.read_file(file)?;
        self.write_file(&file.file, file.key_groups[0]..file.key_groups[1], &bytes)
    }

    /// Writes `_metadata`, makes everything durable and renames the savepoint
    /// into place; returns its directory. If any step fails, what was written
    /// is removed (as [`SavepointWriter::abort`]) and nothing is left behind.
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
        let mut text = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        text.push(b'\n');
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
        StoredEntry::Map(_) => "map",
        StoredEntry::List(_) => "list",
        StoredEntry::Deleted => "deleted",
    }
}

/// Bytes of keys and values that `entry` of a `key_len`-byte key holds, as
/// [`SavedOperator::state_bytes`] counts them.
fn held_bytes(entry: &StoredEntry, key_len: usize) -> u64 {
    let body: usize = match entry {
        StoredEntry::Value(v) => v.len(),
        StoredEntry::Map(m) => m.iter().map(|(k, v)| k.len() + v.len()).sum(),
        StoredEntry::List(l) => l.iter().map(Vec::len).sum(),
        StoredEntry::Deleted => return 0,
    };
    (body + key_len) as u64
}

/// A key for an error message: its text if it is UTF-8, else its base64.
fn show_key(key: &[u8]) -> String {
    use base64::Engine as _;
    match std::str::from_utf8(key) {
        Ok(s) => format!("`{s}`"),
        Err(_) => format!(
            "(base64) `{}`",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
    }
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
            let key = show_key(&change.key);
            if out.insert(change.key, change.entry).is_some() {
                return Err(format!("holds key {key} of state `{state}` twice"));
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
                        "key {} is in key group {kg}, which no data file of operator `{}` holds",
                        show_key(&key),
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
            let data = from.read_file(file)?;
            let range = file.key_groups[0]..file.key_groups[1];
            let mut changes: Vec<StateChange> = Vec::new();
            let mut timers: Vec<(u32, Vec<TimerRecord>)> = Vec::new();
            decode_data(&data, 0..u32::MAX, |r| {
                let kg = match &r {
                    Record::State(c) => c.key_group,
                    Record::Timer(kg, _) => *kg,
                };
                if !range.contains(&kg) {
                    return Err(format!("holds key group {kg}, outside {range:?}"));
                }
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
            })
            .map_err(|e| err(&from.dir.join(&file.file), e))?;
            changes.extend(new);
            changes.sort_by(|a, b| {
                (a.key_group, &a.state, &a.key).cmp(&(b.key_group, &b.state, &b.key))
            });
            let (bytes, counts) = encode_data(&changes, &timers);
            keys += counts.get(state).copied().unwrap_or(0);
            files.push(self.write_file(&file.file, range, &bytes)?);
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
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
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
