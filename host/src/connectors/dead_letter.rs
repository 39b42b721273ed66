//! The dead-letter output: events an operator rejected as bad input, written
//! as JSON lines to the `[dead_letter] path` of the job:
//! `{"operator": "count", "subtask": 0, "error": "...", "key": ..., "value": ..., "timestamp": ...}`
//! (`key`/`value` as in the JSON-lines format, `_b64` when not UTF-8).
//!
//! A job without `[dead_letter]` fails on the first bad input instead of
//! dropping it, so that nothing is lost silently.
//!
//! The file is at-least-once: a run that resumes from a checkpoint appends to
//! it, so a bad event after that checkpoint may be written again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crossbeam_channel::{Receiver, Sender};

use crate::model::batch::EventRef;
use crate::model::json::json_bytes_field;

/// One rejected event.
#[derive(Debug)]
pub struct DeadLetter {
    /// The operator ID that rejected it.
    pub operator_id: String,
    /// The subtask.
    pub subtask: u32,
    /// The operator's message.
    pub error: String,
    /// The event's key.
    pub key: Option<Vec<u8>>,
    /// The event's value.
    pub value: Vec<u8>,
    /// The event's timestamp.
    pub timestamp: i64,
}

impl DeadLetter {
    /// A dead letter for `event`.
    pub fn new(operator_id: &str, subtask: u32, error: String, event: &EventRef<'_>) -> Self {
        DeadLetter {
            operator_id: operator_id.to_string(),
            subtask,
            error,
            key: event.key.map(<[u8]>::to_vec),
            value: event.value.to_vec(),
            timestamp: event.timestamp,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"operator\":");
        serde_json::to_writer(&mut *out, &self.operator_id).expect("writing to a Vec cannot fail");
        out.extend_from_slice(format!(",\"subtask\":{},\"error\":", self.subtask).as_bytes());
        serde_json::to_writer(&mut *out, &self.error).expect("writing to a Vec cannot fail");
        out.push(b',');
        json_bytes_field(out, "key", self.key.as_deref());
        out.push(b',');
        json_bytes_field(out, "value", Some(&self.value));
        out.extend_from_slice(format!(",\"timestamp\":{}}}\n", self.timestamp).as_bytes());
    }
}

/// Where a subtask sends its dead letters: a writer, or nowhere (then bad input fails the job).
pub type DeadLetterTx = Option<Sender<DeadLetter>>;

/// Writes dead letters to `path` until every sender is gone; returns how many.
pub fn write_dead_letters(
    mut out: BufWriter<File>,
    path: &Path,
    rx: Receiver<DeadLetter>,
) -> Result<u64, String> {
    let mut n = 0u64;
    let mut line = Vec::new();
    let fail =
        |e: std::io::Error| format!("cannot write dead-letter file `{}`: {e}", path.display());
    for letter in rx {
        line.clear();
        letter.encode(&mut line);
        out.write_all(&line).map_err(fail)?;
        n += 1;
    }
    out.flush().map_err(fail)?;
    out.get_ref().sync_data().map_err(fail)?;
    Ok(n)
}

/// Opens the dead-letter file: appending when the run resumes from a
/// checkpoint, else created empty.
pub fn open(path: &Path, append: bool) -> Result<BufWriter<File>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the directory of dead-letter file `{}`: {e}",
                path.display()
            )
        })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map(BufWriter::new)
        .map_err(|e| format!("cannot create dead-letter file `{}`: {e}", path.display()))
}
