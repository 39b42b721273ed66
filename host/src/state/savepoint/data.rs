//! Data files: the frames that hold an operator subtask's state and timers
//! (see the format in the module doc of [`crate::state::savepoint`]),
//! encoded in canonical order and decoded as they stream, through readers
//! and writers that count and hash the bytes that pass.

use std::io::{BufReader, Read, Write};
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::DATA_MAGIC;
use crate::state::checkpoint::TimerRecord;
use crate::state::keyed::{StateChange, StoredEntry};

const KIND_VALUE: u8 = 1;
const KIND_MAP: u8 = 2;
const KIND_LIST: u8 = 3;
const KIND_TIMERS: u8 = 4;

/// Frames are cut at about this many payload bytes.
const FRAME_BYTES: usize = 1 << 20;
/// The buffer of a full (checked) read of a data file.
pub(super) const READ_BUFFER: usize = 1 << 16;

/// One decoded record of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A key's state.
    State(StateChange),
    /// A timer, in its key group.
    Timer(u32, TimerRecord),
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
pub(super) fn encode_into<'a, W: Write>(
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
pub(super) struct Tally<R> {
    inner: R,
    pub(super) sha: Option<Sha256>,
    pub(super) read: u64,
}

impl<R> Tally<R> {
    pub(super) fn new(inner: R, hash: bool) -> Self {
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
pub(super) struct HashingWriter<W> {
    pub(super) inner: W,
    pub(super) sha: Sha256,
    pub(super) written: u64,
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
pub(super) trait DataSource: Read + Sized {
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
pub(super) struct DecodeRange {
    /// The key groups the file may hold (any other is an error).
    pub(super) allowed: Range<u32>,
    /// The key groups whose records are handed out (the others are skipped).
    pub(super) groups: Range<u32>,
    /// Stop at the first frame past `groups` (frames are in key-group order).
    pub(super) stop_early: bool,
}

/// Decodes a data file of `len` bytes from `src`, handing every record in
/// `r.groups` to `f`. The error says where the bytes stopped making sense.
pub(super) fn decode<S: DataSource>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StateKind, StateSpec};
    use crate::state::keyed::StateBackend;
    use crate::state::savepoint::SavepointWriter;

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
}
