//! The standard-input source and the standard-output sink.
//!
//! Standard input is read line by line on a thread of its own; a batch is
//! sent when it is full or when no new line has arrived for
//! [`STDIN_FLUSH`], so that events typed by hand flow through promptly.
//! Lines are read as the file source reads them ([`super::file::read_line`]):
//! one longer than `max_line_size` fails the job, naming its line.

use std::io::{BufWriter, Stdout, Write};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::file::{line_too_long, read_line, Line};
use super::json::{decode_line, encode_event};
use crate::connectors::file::max_line_size_field;
use crate::connectors::json::format_field;
use crate::connectors::json::Format;
use crate::connectors::registry::{
    other_kind, Sink, SinkKind, SinkOpen, Source, SourceKind, SourceOpen,
};
use crate::model::config::{Fields, JobError, Table};
use crate::model::Batch;
use crate::model::SourcePosition;
use crate::model::{SinkWriter, SourceReader};

/// `[source] type = "stdin"`: events read from standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdinConfig {
    /// How each line is decoded.
    pub format: Format,
    /// Longest line, in bytes without its line ending; a longer one fails the job.
    pub max_line_size: usize,
}

impl SourceKind for StdinConfig {
    /// The fields of its table, besides those every source has.
    const FIELDS: &'static [&'static str] = &["format", "max_line_size"];

    /// Reads its fields of the `[source]` table.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields) -> Result<Self, JobError> {
        Ok(StdinConfig {
            format: format_field(t, &f.take("format"))?,
            max_line_size: max_line_size_field(t, &f.take("max_line_size"))?,
        })
    }
}

/// `[sink] type = "stdout"`: events written to standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutConfig {
    /// How each event is encoded.
    pub format: Format,
}

impl SinkKind for StdoutConfig {
    /// The fields of its table.
    const FIELDS: &'static [&'static str] = &["format"];

    /// Reads its fields of the `[sink]` table.
    fn from_table(t: &Table<'_, '_>, f: &mut Fields, _job_name: &str) -> Result<Self, JobError> {
        Ok(StdoutConfig {
            format: format_field(t, &f.take("format"))?,
        })
    }
}

/// How long a partial batch from standard input waits for more lines.
pub const STDIN_FLUSH: Duration = Duration::from_millis(20);

/// Events from standard input.
pub struct StdinSource {
    lines: Receiver<Result<Vec<u8>, String>>,
    format: Format,
    batch_size: usize,
    line: u64,
    done: bool,
}

impl StdinSource {
    /// Starts reading standard input; a line longer than `max_line_size`
    /// bytes is an error.
    pub fn start(format: Format, batch_size: usize, max_line_size: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(batch_size.max(1024));
        std::thread::Builder::new()
            .name("weir-stdin".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                let mut lock = stdin.lock();
                let mut line = 0u64;
                loop {
                    let mut buf = Vec::new();
                    line += 1;
                    match read_line(&mut lock, &mut buf, max_line_size) {
                        Ok(Line::End) => break,
                        Ok(Line::Read(_)) => {
                            if tx.send(Ok(buf)).is_err() {
                                break;
                            }
                        }
                        Ok(Line::TooLong) => {
                            let _ =
                                tx.send(Err(line_too_long("standard input", line, max_line_size)));
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(format!("cannot read standard input: {e}")));
                            break;
                        }
                    }
                }
            })
            .expect("spawning the stdin reader thread");
        StdinSource {
            lines: rx,
            format,
            batch_size,
            line: 0,
            done: false,
        }
    }

    fn add(&mut self, line: Result<Vec<u8>, String>, batch: &mut Batch) -> Result<(), String> {
        let line = line?;
        self.line += 1;
        if self.format == Format::Json && line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        decode_line(self.format, &line, batch)
            .map_err(|e| format!("standard input line {}: {e}", self.line))
    }
}

impl SourceReader for StdinSource {
    fn position(&self) -> Option<crate::model::SourcePosition> {
        None
    }

    fn next_batch(&mut self, offsets: &mut Vec<u64>) -> Result<Option<Batch>, String> {
        let mut batch = Batch::with_capacity(self.batch_size, 0);
        let base = offsets.len();
        while !self.done && batch.len() < self.batch_size {
            let next = if batch.is_empty() {
                self.lines
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.lines.recv_timeout(STDIN_FLUSH)
            };
            match next {
                Ok(line) => {
                    self.add(line, &mut batch)?;
                    offsets.resize(base + batch.len(), self.line - 1);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

/// Events written to standard output, one line each.
pub struct StdoutSink {
    format: Format,
    out: BufWriter<Stdout>,
    line: Vec<u8>,
}

impl StdoutSink {
    /// A sink writing to standard output in `format`.
    pub fn new(format: Format) -> Self {
        StdoutSink {
            format,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            line: Vec::new(),
        }
    }
}

impl SinkWriter for StdoutSink {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.line.clear();
        for event in batch.iter() {
            encode_event(self.format, &event, &mut self.line);
        }
        self.out.write_all(&self.line)?;
        // Flush each batch: a reader of standard output sees events as they come.
        self.out.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn describe(&self) -> String {
        "standard output".to_string()
    }
}

impl Source for StdinConfig {
    fn replayable(&self) -> bool {
        false
    }

    fn reads(&self) -> &'static str {
        "stdin"
    }

    fn open(&self, o: &SourceOpen<'_>) -> Result<Box<dyn SourceReader>, String> {
        Ok(Box::new(StdinSource::start(
            self.format,
            o.batch_size,
            self.max_line_size,
        )))
    }

    fn resumes_from(
        &self,
        position: &SourcePosition,
        what: &str,
        job_file: &std::path::Path,
    ) -> Result<(), String> {
        Err(other_kind(self, position, what, job_file))
    }

    fn locate(&self, offset: u64) -> String {
        format!(
            "offset {offset} (line {} of standard input)",
            offset.saturating_add(1)
        )
    }

    fn json_lines(&self) -> Option<(Format, usize)> {
        Some((self.format, self.max_line_size))
    }
}

impl Sink for StdoutConfig {
    fn open(&self, _o: &SinkOpen<'_>) -> Result<Box<dyn SinkWriter>, String> {
        Ok(Box::new(StdoutSink::new(self.format)))
    }
}
