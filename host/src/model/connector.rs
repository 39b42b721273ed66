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
    /// The timestamp its watermark follows, for a source that tracks event
    /// time per partition: the lowest, over its partitions that are not
    /// idle, of the highest timestamp read from each (`i64::MIN`: none
    /// yet). `None` (the default): the engine follows the highest timestamp
    /// of the batches it reads. The engine subtracts the watermark delay.
    fn watermark_basis(&self) -> Option<i64> {
        None
    }
    /// Whether the source has nothing to read for now (every partition it
    /// reads has been idle longer than its idle timeout, or it reads none):
    /// its watermark then holds back no one downstream until it reads again.
    fn idle(&self) -> bool {
        false
    }
    /// Since the last call, the stage spent `spent` blocked sending
    /// downstream (the next stage is slower: back-pressure). A source that
    /// times out idle partitions does not count that time: a partition is
    /// idle only when it had nothing to read.
    fn blocked(&mut self, spent: std::time::Duration) {
        let _ = spent;
    }
    /// Checkpoint `id`, taken at `position` (what [`SourceReader::position`]
    /// returned at its barrier), is complete: a Kafka source commits those
    /// offsets to its consumer group, for lag monitoring.
    fn checkpoint_complete(&mut self, id: u64, position: &SourcePosition) {
        let _ = (id, position);
    }
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
    /// Checkpoint `id`, pre-committed by this sink, was aborted (it timed
    /// out or could not be stored): what it covers is published with the
    /// next checkpoint that completes instead.
    fn checkpoint_aborted(&mut self, id: u64) -> std::io::Result<()> {
        let _ = id;
        Ok(())
    }
    /// Whether the sink holds so much, waiting for a checkpoint to complete,
    /// that it must not take more input until one completes or aborts.
    fn backlogged(&self) -> bool {
        false
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
