//! The savepoint format's names and the manifest: the constants every
//! savepoint carries, the types `_metadata` holds, how its text is written
//! with its own checksum and how that checksum is checked, what a data
//! file's name may be, and the error every part of a savepoint's handling
//! returns.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{rfc3339, SinkState, SourceState};

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

/// A [`SavepointError`] about `path`.
pub(super) fn err(path: &Path, message: impl std::fmt::Display) -> SavepointError {
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

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::model::hex(&Sha256::digest(bytes))
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

/// Checks that a data file name stays inside the savepoint directory.
pub(super) fn check_file_name(dir: &Path, name: &str) -> Result<(), SavepointError> {
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
pub(super) fn check_manifest_sum(path: &Path, text: &[u8]) -> Result<(), SavepointError> {
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
