//! Writing a savepoint: a [`SavepointWriter`] writes data files into a
//! hidden `.<name>.inprogress` directory, then `_metadata`, makes them
//! durable and renames the directory into place, so that a crash never
//! leaves something that looks like a complete savepoint.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::data::{encode_into, HashingWriter, Tally};
use super::format::{check_file_name, err};
use super::{manifest_text, sha256_hex, DataFile, Metadata, Savepoint, SavepointError, METADATA};
use crate::model::rfc3339;
use crate::state::checkpoint::TimerRecord;
use crate::state::keyed::StateChange;

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
