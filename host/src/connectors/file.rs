//! The file source (JSON lines or raw lines) and the file sink.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::json::{decode_line, encode_event};
use super::{SinkWriter, SourceReader};
use crate::bindings::Batch;
use crate::job::Format;

/// Reads events from any line-oriented reader.
pub struct LineSource<R> {
    reader: R,
    name: String,
    format: Format,
    batch_size: usize,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead + Send> LineSource<R> {
    /// A source over `reader`; `name` is how messages refer to it.
    pub fn new(reader: R, name: String, format: Format, batch_size: usize) -> Self {
        LineSource {
            reader,
            name,
            format,
            batch_size,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Reads one line into `self.buf` (without its line ending); false at the end.
    pub fn read_line(&mut self) -> Result<bool, String> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("cannot read {}: {e}", self.name))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(true)
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
    fn next_batch(&mut self) -> Result<Option<Batch>, String> {
        let mut batch = Batch::with_capacity(self.batch_size, 0);
        while batch.len() < self.batch_size {
            if !self.read_line()? {
                break;
            }
            self.decode(&mut batch)?;
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

/// Opens the file source at `path`.
pub fn open_source(
    path: &Path,
    format: Format,
    batch_size: usize,
) -> Result<Box<dyn SourceReader>, String> {
    let file = File::open(path)
        .map_err(|e| format!("cannot open source file `{}`: {e}", path.display()))?;
    Ok(Box::new(LineSource::new(
        BufReader::with_capacity(1 << 18, file),
        format!("source file `{}`", path.display()),
        format,
        batch_size,
    )))
}

/// Writes events to a file, one line each.
pub struct FileSink {
    path: PathBuf,
    format: Format,
    out: BufWriter<File>,
    line: Vec<u8>,
}

impl FileSink {
    /// Creates (or truncates) the file at `path`, creating its directory.
    pub fn create(path: &Path, format: Format) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "cannot create the directory of sink file `{}`: {e}",
                    path.display()
                )
            })?;
        }
        let file = File::create(path)
            .map_err(|e| format!("cannot create sink file `{}`: {e}", path.display()))?;
        Ok(FileSink {
            path: path.to_path_buf(),
            format,
            out: BufWriter::with_capacity(1 << 18, file),
            line: Vec::new(),
        })
    }
}

impl SinkWriter for FileSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.line.clear();
        for event in batch.iter() {
            encode_event(self.format, &event, &mut self.line);
        }
        self.out.write_all(&self.line)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    fn describe(&self) -> String {
        format!("sink file `{}`", self.path.display())
    }
}
