//! The file source (JSON lines or raw lines) and the file sink.
//!
//! With exactly-once checkpoints the file sink commits in two phases. Events
//! go to a segment file in the staging directory `.<name>.pending/` beside the
//! output; at a checkpoint barrier the segment is made durable and closed as
//! `<checkpoint id>-<output offset>.seg` (pre-commit); when the checkpoint
//! completes, its closed segments are appended to the output at their offset
//! and deleted (commit). Appending at a recorded offset makes a commit that a
//! crash interrupted safe to redo. Restoring a checkpoint commits its
//! segments, deletes later ones and truncates the output to the checkpoint's
//! length. With at-least-once checkpoints events are written straight to the
//! output, and a restore truncates it to the length the checkpoint recorded.
//!
//! A staging directory left by another run: a run without a restore deletes
//! it. A restore publishes the segments it finds up to its checkpoint only if
//! they continue the output without a gap or an overlap and end at the length
//! the checkpoint recorded; anything else came from another run (another job
//! writing the same path) and is refused, naming the segment, before anything
//! is changed: publishing it would put another run's events into the output.
//!
//! Lines are read with a size limit (`[source] max_line_size`, see
//! [`read_line`]): a longer line fails the job with one line naming the
//! source, the line number and the limit, having read at most the limit of
//! it, so no input line can take unbounded memory or time. Standard input
//! reads its lines the same way.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::json::{decode_line, encode_event};
use crate::connectors::json::format_field;
use crate::connectors::json::Format;
use crate::connectors::registry::{
    other_kind, Sink, SinkKind, SinkOpen, Source, SourceKind, SourceOpen,
};
use crate::model::config::{Field, Fields, JobError, Table};
use crate::model::Batch;
use crate::model::{SinkState, SourcePosition};
use crate::model::{SinkWriter, SourceReader};

/// Default longest line a file or stdin source reads (`max_line_size`): 1 MiB,
/// Kafka's default largest message, so an event that fits a default Kafka
/// topic fits a line.
pub const DEFAULT_MAX_LINE_SIZE: usize = 1 << 20;
/// Largest allowed `max_line_size`: 1 GiB (an event's lengths are 32-bit).
pub const MAX_MAX_LINE_SIZE: u64 = 1 << 30;

/// A line source's `max_line_size` field (file and stdin): a size of at most
/// [`MAX_MAX_LINE_SIZE`], [`DEFAULT_MAX_LINE_SIZE`] when absent.
pub fn max_line_size_field(s: &Table<'_, '_>, field: &Field) -> Result<usize, JobError> {
    Ok(s.opt(field, |v| {
        let size = s.size("max_line_size", v)?;
        if size > MAX_MAX_LINE_SIZE {
            return Err(s.fail(
                v.span(),
                format!("`max_line_size` must be at most 1GiB, found {size} bytes"),
            ));
        }
        Ok(size as usize)
    })?
    .unwrap_or(DEFAULT_MAX_LINE_SIZE))
}

/// `[source] type = "file"`: events read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// The file to read (absolute).
    pub path: PathBuf,
    /// How each line is decoded.
    pub format: Format,
    /// Longest line, in bytes without its line ending; a longer one fails the job.
    pub max_line_size: usize,
}

impl SourceKind for FileSourceConfig {
    /// The fields of its table, besides those every source has.
    const FIELDS: &'static [&'static str] = &["path", "format", "max_line_size"];

    /// Reads its fields of the `[source]` table.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        let path_field = f.take("path");
        let path_v = t.required("path", &path_field, " (required for a `file` source)")?;
        Ok(FileSourceConfig {
            path: t.path("path", path_v)?,
            format: format_field(t, &f.take("format"))?,
            max_line_size: max_line_size_field(t, &f.take("max_line_size"))?,
        })
    }
}

/// `[sink] type = "file"`: events written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// The file to write (absolute).
    pub path: PathBuf,
    /// How each event is encoded.
    pub format: Format,
}

impl SinkKind for FileSinkConfig {
    /// The fields of its table.
    const FIELDS: &'static [&'static str] = &["path", "format"];

    /// Reads its fields of the `[sink]` table.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields, _job_name: &str) -> Result<Self, JobError> {
        let path_field = f.take("path");
        let path_v = t.required("path", &path_field, " (required for a `file` sink)")?;
        Ok(FileSinkConfig {
            path: t.path("path", path_v)?,
            format: format_field(t, &f.take("format"))?,
        })
    }
}

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The end of the input: no byte was left.
    End,
    /// A line, of this many bytes in the input with its line ending.
    Read(usize),
    /// A line longer than the limit; what was read of it is left in the buffer.
    TooLong,
}

/// Reads one line from `reader` into `buf` (cleared first), without its line
/// ending (`\n` or `\r\n`; the last line may have none). A line of more than
/// `limit` bytes (without its ending) is [`Line::TooLong`], and no more than
/// `limit + 2` of its bytes are read or held: the work and memory a line
/// takes are bounded by the limit, however long the line is.
pub fn read_line<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    buf.clear();
    // Room for the line, a `\r` before its `\n`, and one byte to tell it is too long.
    let cap = limit.saturating_add(2);
    let mut consumed = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if consumed == 0 {
                return Ok(Line::End);
            }
            break;
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(available.len()).min(cap - buf.len());
        buf.extend_from_slice(&available[..take]);
        let used = if newline == Some(take) {
            take + 1
        } else {
            take
        };
        reader.consume(used);
        consumed += used;
        if newline == Some(take) {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            break;
        }
        if buf.len() > limit.saturating_add(1) {
            return Ok(Line::TooLong);
        }
    }
    Ok(if buf.len() > limit {
        Line::TooLong
    } else {
        Line::Read(consumed)
    })
}

/// The message for line `line` of `source` being longer than `limit` bytes.
pub fn line_too_long(source: &str, line: u64, limit: usize) -> String {
    format!(
        "{source} line {line}: the line is longer than {}, the limit (raise `[source] max_line_size` to read it)",
        crate::model::config::format_size(limit as u64)
    )
}

/// Reads events from any line-oriented reader.
pub struct LineSource<R> {
    reader: R,
    name: String,
    format: Format,
    batch_size: usize,
    max_line_size: usize,
    line: u64,
    offset: u64,
    buf: Vec<u8>,
}

impl<R: BufRead + Send> LineSource<R> {
    /// A source over `reader`; `name` is how messages refer to it; a line
    /// longer than `max_line_size` bytes is an error.
    pub fn new(
        reader: R,
        name: String,
        format: Format,
        batch_size: usize,
        max_line_size: usize,
    ) -> Self {
        LineSource {
            reader,
            name,
            format,
            batch_size,
            max_line_size,
            line: 0,
            offset: 0,
            buf: Vec::new(),
        }
    }

    /// Reads one line into `self.buf` (without its line ending); false at the end.
    pub fn read_line(&mut self) -> Result<bool, String> {
        let read = read_line(&mut self.reader, &mut self.buf, self.max_line_size)
            .map_err(|e| format!("cannot read {}: {e}", self.name))?;
        match read {
            Line::End => Ok(false),
            Line::Read(n) => {
                self.line += 1;
                self.offset += n as u64;
                Ok(true)
            }
            Line::TooLong => Err(line_too_long(&self.name, self.line + 1, self.max_line_size)),
        }
    }

    /// Decodes the line in `self.buf` into `batch`.
    pub fn decode(&self, batch: &mut Batch) -> Result<(), String> {
        if self.format == Format::Json && self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        decode_line(self.format, &self.buf, batch)
            .map_err(|e| format!("{} line {}: {e}", self.name, self.line))
    }
}

impl<R: BufRead + Send> SourceReader for LineSource<R> {
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::File {
            offset: self.offset,
            line: self.line,
        })
    }

    fn next_batch(&mut self, offsets: &mut Vec<u64>) -> Result<Option<Batch>, String> {
        let mut batch = Batch::with_capacity(self.batch_size, 0);
        let base = offsets.len();
        while batch.len() < self.batch_size {
            if !self.read_line()? {
                break;
            }
            self.decode(&mut batch)?;
            offsets.resize(base + batch.len(), self.line - 1);
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

/// Opens the file source at `path`, at `start` if given (a restored position).
pub fn open_source(
    path: &Path,
    format: Format,
    batch_size: usize,
    max_line_size: usize,
    start: Option<&SourcePosition>,
) -> Result<Box<dyn SourceReader>, String> {
    let mut file = File::open(path)
        .map_err(|e| format!("cannot open source file `{}`: {e}", path.display()))?;
    let (offset, line) = match start {
        Some(SourcePosition::File { offset, line }) => (*offset, *line),
        Some(other) => {
            return Err(format!(
                "the checkpoint holds a {other:?} position, not a file position"
            ))
        }
        None => (0, 0),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if offset > len {
        return Err(format!(
            "source file `{}` is shorter ({len} bytes) than the checkpoint's position ({offset} bytes): was it replaced?",
            path.display()
        ));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek in source file `{}`: {e}", path.display()))?;
    let mut source = LineSource::new(
        BufReader::with_capacity(1 << 18, file),
        format!("source file `{}`", path.display()),
        format,
        batch_size,
        max_line_size,
    );
    source.offset = offset;
    source.line = line;
    Ok(Box::new(source))
}

pub use crate::connectors::registry::SinkMode;

/// Writes events to a file, one line each.
pub struct FileSink {
    path: PathBuf,
    format: Format,
    mode: SinkMode,
    /// Direct and at-least-once: the output; exactly-once: the open segment.
    out: BufWriter<File>,
    /// Bytes written to `out`.
    written: u64,
    /// Exactly-once: the output length once every closed segment is published.
    closed_len: u64,
    line: Vec<u8>,
}

fn io(context: impl std::fmt::Display, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{context}: {e}"))
}

impl FileSink {
    /// The staging directory of exactly-once output to `path`.
    pub fn staging_dir(path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}.pending"))
    }

    /// Opens the sink. `restored`: the checkpoint or savepoint this run
    /// restores (its ID and the sink's state then): the output is cut back
    /// to its length then; with no sink state, the output is kept as it is
    /// and appended to. Without `restored` the output starts empty.
    pub fn open(
        path: &Path,
        format: Format,
        mode: SinkMode,
        restored: Option<(u64, Option<&SinkState>)>,
    ) -> Result<Self, String> {
        let shown = path.display();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the directory of sink file `{shown}`: {e}"))?;
        }
        let staging = Self::staging_dir(path);
        let restored_len = match (mode, restored) {
            (SinkMode::ExactlyOnce, Some((id, state))) => {
                recover_segments(path, &staging, id, state.map(|s| s.output_len))
                    .map_err(|e| format!("sink file `{shown}`: {e}"))?;
                state.map_or(0, |s| s.output_len)
            }
            (_, Some((_, state))) => state.map_or(0, |s| s.output_len),
            (_, None) => {
                if staging.exists() {
                    std::fs::remove_dir_all(&staging)
                        .map_err(|e| format!("cannot clear `{}`: {e}", staging.display()))?;
                }
                0
            }
        };
        let output = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot create sink file `{shown}`: {e}"))?;
        let len = output.metadata().map(|m| m.len()).unwrap_or(0);
        let restored_len = match restored {
            Some((_, None)) => len,
            _ => restored_len,
        };
        if restored.is_some() && len < restored_len {
            return Err(format!(
                "sink file `{shown}` is shorter ({len} bytes) than the checkpoint says ({restored_len} bytes): was it changed?"
            ));
        }
        output
            .set_len(restored_len)
            .map_err(|e| format!("cannot truncate sink file `{shown}`: {e}"))?;
        let out = match mode {
            SinkMode::ExactlyOnce => {
                std::fs::create_dir_all(&staging)
                    .map_err(|e| format!("cannot create `{}`: {e}", staging.display()))?;
                File::create(staging.join("open.seg")).map_err(|e| {
                    format!("cannot create a segment in `{}`: {e}", staging.display())
                })?
            }
            _ => {
                let mut output = output;
                output
                    .seek(SeekFrom::End(0))
                    .map_err(|e| format!("cannot seek in sink file `{shown}`: {e}"))?;
                output
            }
        };
        Ok(FileSink {
            path: path.to_path_buf(),
            format,
            mode,
            out: BufWriter::with_capacity(1 << 18, out),
            written: if mode == SinkMode::ExactlyOnce {
                0
            } else {
                restored_len
            },
            closed_len: restored_len,
            line: Vec::new(),
        })
    }

    /// Opens a sink that writes straight to `path` (no checkpoints).
    pub fn create(path: &Path, format: Format) -> Result<Self, String> {
        Self::open(path, format, SinkMode::Direct, None)
    }
}

/// Closed segments in `staging`: (checkpoint id, output offset, file), in order.
fn closed_segments(staging: &Path) -> std::io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut out = Vec::new();
    if !staging.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(staging)? {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
        else {
            continue;
        };
        if let Some((id, offset)) = stem.split_once('-') {
            if let (Ok(id), Ok(offset)) = (id.parse(), offset.parse()) {
                out.push((id, offset, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Appends a closed segment to the output at its offset, then deletes it.
fn publish(output: &Path, offset: u64, segment: &Path) -> std::io::Result<()> {
    let mut out = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(output)
        .map_err(|e| io(format!("opening `{}`", output.display()), e))?;
    out.set_len(offset)?;
    out.seek(SeekFrom::Start(offset))?;
    let mut seg =
        File::open(segment).map_err(|e| io(format!("opening `{}`", segment.display()), e))?;
    std::io::copy(&mut seg, &mut out)?;
    out.sync_data()?;
    std::fs::remove_file(segment)
}

/// After a crash: publishes the segments of checkpoints up to `restored`
/// (complete, perhaps not yet published) and deletes everything later.
///
/// The segments up to `restored` that are still there must be the tail of
/// this output's chain: the first starts at or before the output's end (a
/// publish the crash cut short is redone from its offset), each starts where
/// the one before ends, and the last ends at `expected_len`, the output's
/// length at `restored` when the checkpoint recorded it. Anything else was
/// left by another run (another job writing to the same path, a state
/// directory that was replaced): it is refused, naming the segment, before
/// anything is changed, since publishing it would overwrite the output with
/// another run's events or leave a hole of zero bytes in it.
fn recover_segments(
    output: &Path,
    staging: &Path,
    restored: u64,
    expected_len: Option<u64>,
) -> std::io::Result<()> {
    let (committed, later): (Vec<_>, Vec<_>) = closed_segments(staging)?
        .into_iter()
        .partition(|(id, _, _)| *id <= restored);
    let output_len = std::fs::metadata(output).map_or(0, |m| m.len());
    let mut end: Option<u64> = None;
    for (id, offset, seg) in &committed {
        let fits = match end {
            None => *offset <= output_len,
            Some(end) => *offset == end,
        };
        let expected = end.map_or_else(
            || format!("at most {output_len}, the output's length"),
            |e| e.to_string(),
        );
        if !fits {
            return Err(foreign_segment(seg, *id, *offset, &expected));
        }
        let len = std::fs::metadata(seg)
            .map_err(|e| io(format!("reading `{}`", seg.display()), e))?
            .len();
        end = Some(offset + len);
    }
    if let (Some(end), Some(expected)) = (end, expected_len) {
        if end != expected {
            let (id, offset, seg) = committed.last().expect("a segment ends the chain");
            return Err(std::io::Error::other(format!(
                "the staging folder holds `{}` (checkpoint {id}, bytes {offset}..{end}), but checkpoint {restored} recorded an output of {expected} bytes: it was left by another run; remove `{}` to drop it",
                seg.file_name().unwrap_or_default().to_string_lossy(),
                staging.display()
            )));
        }
    }
    for (_, offset, seg) in &committed {
        publish(output, *offset, seg)?;
    }
    for (_, _, seg) in &later {
        std::fs::remove_file(seg)?;
    }
    let open = staging.join("open.seg");
    if open.exists() {
        std::fs::remove_file(open)?;
    }
    Ok(())
}

/// The error for a committed segment that does not continue the output.
fn foreign_segment(seg: &Path, id: u64, offset: u64, expected: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "the staging folder holds `{}` (checkpoint {id}, at byte {offset}), which does not continue the output (expected an offset of {expected}): it was left by another run; remove `{}` to drop it",
        seg.file_name().unwrap_or_default().to_string_lossy(),
        seg.parent().unwrap_or(seg).display()
    ))
}

impl SinkWriter for FileSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.line.clear();
        for event in batch.iter() {
            encode_event(self.format, &event, &mut self.line);
        }
        self.written += self.line.len() as u64;
        self.out.write_all(&self.line)
    }

    fn pre_commit(&mut self, id: u64) -> std::io::Result<Option<SinkState>> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        match self.mode {
            SinkMode::Direct | SinkMode::AtLeastOnce => Ok(Some(SinkState {
                output_len: self.written,
            })),
            SinkMode::ExactlyOnce => {
                let staging = Self::staging_dir(&self.path);
                let closed = staging.join(format!("{id:020}-{:020}.seg", self.closed_len));
                std::fs::rename(staging.join("open.seg"), &closed)?;
                File::open(&staging)?.sync_all()?;
                self.closed_len += self.written;
                self.written = 0;
                self.out =
                    BufWriter::with_capacity(1 << 18, File::create(staging.join("open.seg"))?);
                Ok(Some(SinkState {
                    output_len: self.closed_len,
                }))
            }
        }
    }

    fn commit(&mut self, id: u64) -> std::io::Result<()> {
        if self.mode != SinkMode::ExactlyOnce {
            return Ok(());
        }
        for (seg_id, offset, seg) in closed_segments(&Self::staging_dir(&self.path))? {
            if seg_id <= id {
                publish(&self.path, offset, &seg)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        if self.mode == SinkMode::ExactlyOnce {
            // Everything was committed by the final checkpoint.
            let staging = Self::staging_dir(&self.path);
            let _ = std::fs::remove_file(staging.join("open.seg"));
            let _ = std::fs::remove_dir(&staging);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sink file `{}`", self.path.display())
    }
}

impl Source for FileSourceConfig {
    fn check(&self, job_file: &Path) -> Result<(), String> {
        if !self.path.is_file() {
            return Err(format!(
                "source file `{}` does not exist ({} [source] path)",
                self.path.display(),
                job_file.display()
            ));
        }
        Ok(())
    }

    fn reads(&self) -> &'static str {
        "a file"
    }

    fn open(&self, o: &SourceOpen<'_>) -> Result<Box<dyn SourceReader>, String> {
        open_source(
            &self.path,
            self.format,
            o.batch_size,
            self.max_line_size,
            o.position,
        )
    }

    fn resumes_from(
        &self,
        position: &SourcePosition,
        what: &str,
        job_file: &Path,
    ) -> Result<(), String> {
        let SourcePosition::File { offset, .. } = position else {
            return Err(other_kind(self, position, what, job_file));
        };
        let path = &self.path;
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if *offset > len {
            return Err(format!(
                "source file `{}` is shorter ({len} bytes) than the position in {what} ({offset} bytes): was it replaced?",
                path.display()
            ));
        }
        Ok(())
    }

    fn locate(&self, offset: u64) -> String {
        format!(
            "offset {offset} (line {} of `{}`)",
            offset.saturating_add(1),
            self.path.display()
        )
    }

    fn json_lines(&self) -> Option<(Format, usize)> {
        Some((self.format, self.max_line_size))
    }
}

impl Sink for FileSinkConfig {
    fn open(&self, o: &SinkOpen<'_>) -> Result<Box<dyn SinkWriter>, String> {
        let path = &self.path;
        let restored = o.restored.as_ref().map(|r| {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            let state = match r.state {
                // A savepoint restored where its output is not (a moved job,
                // a new output file): the output is appended to, not cut.
                Some(s) if r.savepoint && len < s.output_len => {
                    tracing::warn!(
                        "sink file `{}` is shorter ({len} bytes) than when the savepoint was taken ({} bytes): appending to it",
                        path.display(),
                        s.output_len
                    );
                    None
                }
                state => state,
            };
            (r.id, state)
        });
        Ok(Box::new(FileSink::open(
            path,
            self.format,
            o.mode,
            restored,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_carries_its_line_as_its_offset() {
        let text = "{\"value\":\"a\"}\n\n{\"value\":\"b\"}\r\n  \n{\"value\":\"c\"}";
        let mut source = LineSource::new(text.as_bytes(), "t".into(), Format::Json, 2, 100);
        let mut offsets = Vec::new();
        let mut values = Vec::new();
        while let Some(batch) = source.next_batch(&mut offsets).unwrap() {
            values.extend(batch.iter().map(|e| e.value.to_vec()));
        }
        assert_eq!(values, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        // Blank lines are skipped, and the offsets are the events' lines, from 0.
        assert_eq!(offsets, [0, 2, 4]);
    }

    /// The file sink's two-phase commit over real files in a temporary
    /// directory. A crash is a sink dropped without `finish`; the run after
    /// it is a new sink over the same directory that restores a checkpoint
    /// (its ID and the sink state `pre_commit` returned for it).
    mod two_phase {
        use super::*;

        fn batch(values: &[&str]) -> Batch {
            let mut b = Batch::with_capacity(values.len(), 0);
            for v in values {
                b.push(None, v.as_bytes(), 0);
            }
            b
        }

        fn sink(out: &Path, restored: Option<(u64, Option<&SinkState>)>) -> FileSink {
            FileSink::open(out, Format::Lines, SinkMode::ExactlyOnce, restored).unwrap()
        }

        fn read(out: &Path) -> String {
            std::fs::read_to_string(out).unwrap()
        }

        /// The names of the files in the staging folder, sorted.
        fn staged(out: &Path) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(FileSink::staging_dir(out))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }

        fn segment_name(id: u64, offset: u64) -> String {
            format!("{id:020}-{offset:020}.seg")
        }

        #[test]
        fn output_appears_only_when_its_checkpoint_completes() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let mut s = sink(&out, None);
            s.write(&batch(&["a", "b"])).unwrap();
            let state = s.pre_commit(1).unwrap().unwrap();
            assert_eq!(state.output_len, 4);
            // Pre-committed: durable in staging, not yet in the output.
            assert_eq!(read(&out), "");
            assert_eq!(staged(&out), [segment_name(1, 0), "open.seg".into()]);
            s.commit(1).unwrap();
            assert_eq!(read(&out), "a\nb\n");
            assert_eq!(staged(&out), ["open.seg"]);
            s.write(&batch(&["c"])).unwrap();
            assert_eq!(s.pre_commit(2).unwrap().unwrap().output_len, 6);
            // A checkpoint with nothing new closes an empty segment.
            assert_eq!(s.pre_commit(3).unwrap().unwrap().output_len, 6);
            s.commit(3).unwrap();
            assert_eq!(read(&out), "a\nb\nc\n");
            s.finish().unwrap();
            assert!(!FileSink::staging_dir(&out).exists());
        }

        #[test]
        fn a_completed_checkpoint_whose_publish_a_crash_prevented_is_published_on_restore() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let mut s = sink(&out, None);
            s.write(&batch(&["a"])).unwrap();
            s.pre_commit(1).unwrap();
            s.commit(1).unwrap();
            s.write(&batch(&["b"])).unwrap();
            let state2 = s.pre_commit(2).unwrap().unwrap();
            // Checkpoint 2 completed, then the crash came before its commit;
            // `c` was written after the barrier.
            s.write(&batch(&["c"])).unwrap();
            s.flush().unwrap();
            drop(s);
            assert_eq!(read(&out), "a\n");

            let mut s = sink(&out, Some((2, Some(&state2))));
            assert_eq!(read(&out), "a\nb\n");
            assert_eq!(staged(&out), ["open.seg"]);
            // The replayed `c` and what follows go on from there.
            s.write(&batch(&["c", "d"])).unwrap();
            assert_eq!(s.pre_commit(3).unwrap().unwrap().output_len, 8);
            s.commit(3).unwrap();
            assert_eq!(read(&out), "a\nb\nc\nd\n");
        }

        #[test]
        fn a_checkpoint_that_did_not_complete_is_rolled_back() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let mut s = sink(&out, None);
            s.write(&batch(&["a"])).unwrap();
            let state1 = s.pre_commit(1).unwrap().unwrap();
            s.commit(1).unwrap();
            s.write(&batch(&["b"])).unwrap();
            s.pre_commit(2).unwrap();
            drop(s);

            // Checkpoint 2 never completed: the run restores 1.
            let mut s = sink(&out, Some((1, Some(&state1))));
            assert_eq!(read(&out), "a\n");
            assert_eq!(staged(&out), ["open.seg"]);
            s.write(&batch(&["b"])).unwrap();
            s.pre_commit(2).unwrap();
            s.commit(2).unwrap();
            assert_eq!(read(&out), "a\nb\n");
        }

        #[test]
        fn a_publish_cut_short_is_redone_once_however_often_it_is_restored() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let mut s = sink(&out, None);
            s.write(&batch(&["a"])).unwrap();
            s.pre_commit(1).unwrap();
            s.commit(1).unwrap();
            s.write(&batch(&["bb", "cc"])).unwrap();
            let state2 = s.pre_commit(2).unwrap().unwrap();
            drop(s);
            // The crash came in the middle of publishing checkpoint 2: part of
            // its segment reached the output.
            std::fs::write(&out, "a\nbb").unwrap();
            for _ in 0..2 {
                // Restored, then the run crashes again before doing anything.
                drop(sink(&out, Some((2, Some(&state2)))));
                assert_eq!(read(&out), "a\nbb\ncc\n");
            }
            // The crash came after the copy, before the segment was deleted.
            let mut s = sink(&out, Some((2, Some(&state2))));
            s.write(&batch(&["d"])).unwrap();
            let state3 = s.pre_commit(3).unwrap().unwrap();
            drop(s);
            std::fs::write(&out, "a\nbb\ncc\nd\n").unwrap();
            drop(sink(&out, Some((3, Some(&state3)))));
            assert_eq!(read(&out), "a\nbb\ncc\nd\n");
        }

        #[test]
        fn a_fresh_run_clears_a_staging_folder_left_by_another_run() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let staging = FileSink::staging_dir(&out);
            std::fs::create_dir_all(&staging).unwrap();
            std::fs::write(staging.join(segment_name(1, 0)), "old\n").unwrap();
            std::fs::write(staging.join("open.seg"), "older\n").unwrap();
            std::fs::write(&out, "stale\n").unwrap();

            let mut s = sink(&out, None);
            assert_eq!(staged(&out), ["open.seg"]);
            assert_eq!(read(&out), "");
            s.write(&batch(&["new"])).unwrap();
            s.pre_commit(1).unwrap();
            s.commit(1).unwrap();
            assert_eq!(read(&out), "new\n");
        }

        #[test]
        fn a_restore_refuses_a_segment_left_by_another_run() {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.txt");
            let mut s = sink(&out, None);
            s.write(&batch(&["a", "b"])).unwrap();
            let state1 = s.pre_commit(1).unwrap().unwrap();
            s.commit(1).unwrap();
            s.finish().unwrap();
            assert_eq!(read(&out), "a\nb\n");
            let staging = FileSink::staging_dir(&out);

            // Another run's segments: one that would overwrite the output's
            // start, one that would leave a hole of zero bytes after its end.
            for (name, content) in [(segment_name(1, 0), "X\n"), (segment_name(1, 9), "Y\n")] {
                std::fs::create_dir_all(&staging).unwrap();
                std::fs::write(staging.join(&name), content).unwrap();
                let e = FileSink::open(
                    &out,
                    Format::Lines,
                    SinkMode::ExactlyOnce,
                    Some((1, Some(&state1))),
                )
                .err()
                .expect("a foreign segment is refused");
                assert!(e.contains(&name), "{e}");
                assert!(e.contains("left by another run"), "{e}");
                assert!(!e.contains('\n'), "{e:?}");
                // Nothing was changed.
                assert_eq!(read(&out), "a\nb\n");
                assert_eq!(staged(&out), [name]);
                std::fs::remove_dir_all(&staging).unwrap();
            }

            // With the folder removed, the restore goes on.
            drop(sink(&out, Some((1, Some(&state1)))));
            assert_eq!(read(&out), "a\nb\n");
        }
    }

    /// Every line of `text` as `read_line` sees it with `limit`, through a
    /// reader that hands out `chunk` bytes at a time.
    fn lines(text: &str, limit: usize, chunk: usize) -> Vec<Result<String, String>> {
        let mut reader = BufReader::with_capacity(chunk, text.as_bytes());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, &mut buf, limit).unwrap() {
                Line::End => return out,
                Line::Read(_) => out.push(Ok(String::from_utf8(buf.clone()).unwrap())),
                Line::TooLong => {
                    assert!(buf.len() <= limit + 2, "held {} bytes", buf.len());
                    out.push(Err(String::from_utf8(buf.clone()).unwrap()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn lines_up_to_the_limit_are_read_whole() {
        for chunk in [1, 2, 3, 64] {
            assert_eq!(
                lines("abcd\nab\r\n\r\nabcd\r\nx", 4, chunk),
                [Ok("abcd"), Ok("ab"), Ok(""), Ok("abcd"), Ok("x")]
                    .map(|r| r.map(str::to_string))
                    .to_vec(),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_line_over_the_limit_is_refused_after_reading_at_most_the_limit() {
        for chunk in [1, 3, 64] {
            let got = lines("ok\nabcde\nmore", 4, chunk);
            assert_eq!(got[0], Ok("ok".to_string()), "chunk {chunk}");
            assert!(got[1].is_err(), "chunk {chunk}: {got:?}");
            // At the end of the input too, and with a `\r` that does not end the line.
            assert!(lines("abcde", 4, chunk)[0].is_err());
            assert!(lines("abcd\re\n", 4, chunk)[0].is_err());
        }
        // A huge line costs no more than the limit.
        let huge = "x".repeat(10 << 20);
        let got = lines(&huge, 1000, 1 << 16);
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().is_err_and(|held| held.len() <= 1002));
    }

    #[test]
    fn the_source_names_the_line_over_the_limit() {
        let text = "{\"value\":\"a\"}\n{\"value\":\"too long\"}\n";
        let mut source = LineSource::new(
            text.as_bytes(),
            "source file `in`".into(),
            Format::Json,
            10,
            16,
        );
        let e = source.next_batch(&mut Vec::new()).unwrap_err();
        assert_eq!(
            e,
            "source file `in` line 2: the line is longer than 16 bytes, the limit (raise `[source] max_line_size` to read it)"
        );
    }
}
