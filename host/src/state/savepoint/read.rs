//! Reading a savepoint: [`Savepoint::open`] reads and checks `_metadata`,
//! [`Savepoint::verify`] checks every data file, and [`Savepoint::load`]
//! hands a restoring subtask the records of its key groups, each file read
//! whole and checked, or in part (see the module doc of
//! [`crate::state::savepoint`]).

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use super::data::{decode, DecodeRange, Tally, READ_BUFFER};
use super::format::{check_file_name, check_manifest_sum, err};
use super::{
    DataFile, Metadata, Record, SavepointError, FORMAT, FORMAT_VERSION, METADATA, METADATA_SHA256,
};

/// The buffer of a partial read (a restoring subtask that owns part of a
/// file's key groups): small, since a seek past other key groups drops it.
const PARTIAL_READ_BUFFER: usize = 1 << 14;

/// A savepoint on disk whose `_metadata` was read and checked.
#[derive(Debug, Clone)]
pub struct Savepoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub meta: Metadata,
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
    pub(super) fn open_file(&self, file: &DataFile) -> Result<(PathBuf, File), SavepointError> {
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
    pub(super) fn check_sum(
        path: &Path,
        tally: Tally<File>,
        file: &DataFile,
    ) -> Result<(), SavepointError> {
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

/// Reads `dir/_metadata` just far enough to tell whether `dir` is a weir
/// savepoint, of any format version (which this weir may not read); returns
/// that version. Its data files are not looked at.
pub fn manifest_format_version(dir: &Path) -> Result<u32, SavepointError> {
    read_manifest(dir).map(|(_, _, version)| version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SinkState, SourcePosition, SourceState};
    use crate::state::keyed::{StateChange, StoredEntry};
    use crate::state::savepoint::{
        encode_data, new_metadata, sha256_hex, SavedOperator, SavepointKind, SavepointWriter,
    };

    fn change(state: &str, kg: u32, key: &str, entry: StoredEntry) -> StateChange {
        StateChange {
            state: state.into(),
            key_group: kg,
            key: key.as_bytes().to_vec(),
            entry,
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
