//! What a connector is to the engine: a [`SourceReader`] that yields batches
//! and reports a position to seek back to, and a [`SinkWriter`] that takes
//! part in checkpoints (pre-commit at a barrier, commit when the checkpoint
//! is complete). The engine drives both; connectors implement them.

use super::batch::Batch;
use super::position::{SinkState, SourcePosition};

/// A source of events, read a batch at a time.
pub trait SourceReader: Send {
    /// The next batch, or `None` at the end of the input; appends each of
    /// its events' offsets to `offsets` (the 0-based line of a file, the
    /// index of a generated event: what failure messages name).
    fn next_batch(&mut self, offsets: &mut Vec<u64>) -> Result<Option<Batch>, String>;
    /// Where the next batch starts, for a source that can seek back to it.
    fn position(&self) -> Option<SourcePosition>;
}

/// A sink of events.
pub trait SinkWriter: Send {
    /// Writes a batch.
    fn write(&mut self, batch: &Batch) -> std::io::Result<()>;
    /// Makes everything written so far durable, as part of checkpoint `id`;
    /// returns the state to store with the checkpoint.
    fn pre_commit(&mut self, id: u64) -> std::io::Result<Option<SinkState>> {
        let _ = id;
        self.flush()?;
        Ok(None)
    }
    /// Publishes what checkpoint `id` covers, now that it is complete.
    fn commit(&mut self, id: u64) -> std::io::Result<()> {
        let _ = id;
        Ok(())
    }
    /// Flushes everything written.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Flushes everything written, at the end of the job.
    fn finish(&mut self) -> std::io::Result<()> {
        self.flush()
    }
    /// A description for messages, e.g. ``sink file `out.jsonl` ``.
    fn describe(&self) -> String;
}
