//! Sources and sinks, and the drivers that run them as stages of the job.
//!
//! A source is read on its own thread: batches go to the first operator
//! through the partitioner, each followed by the watermark (highest event
//! timestamp seen minus `watermark_delay`) when it advanced. At the end of a
//! bounded input the source sends the final watermark, `i64::MAX`, so that
//! every pending event-time timer fires, and then the end marker.

pub mod blackhole;
pub mod file;
pub mod generator;
pub mod json;
pub mod stdio;

use std::time::Duration;

use crate::bindings::Batch;
use crate::partition::Router;
use crate::stream::{Inputs, Message, Received, StageError};

/// A source of events, read a batch at a time.
pub trait SourceReader: Send {
    /// The next batch, or `None` at the end of the input.
    fn next_batch(&mut self) -> Result<Option<Batch>, String>;
}

/// A sink of events.
pub trait SinkWriter: Send {
    /// Writes a batch.
    fn write(&mut self, batch: &Batch) -> std::io::Result<()>;
    /// Flushes everything written, at the end of the job.
    fn finish(&mut self) -> std::io::Result<()>;
    /// A description for messages, e.g. ``sink file `out.jsonl` ``.
    fn describe(&self) -> String;
}

/// Runs a source until its input ends; returns the number of events read.
pub fn run_source(
    mut reader: Box<dyn SourceReader>,
    mut router: Router,
    watermark_delay: Duration,
) -> Result<u64, StageError> {
    let delay = i64::try_from(watermark_delay.as_millis()).unwrap_or(i64::MAX);
    let mut max_ts = i64::MIN;
    let mut watermark = i64::MIN;
    let mut events = 0u64;
    while let Some(batch) = reader.next_batch().map_err(StageError::Failed)? {
        events += batch.len() as u64;
        if let Some(&m) = batch.timestamps.iter().max() {
            max_ts = max_ts.max(m);
        }
        router.send_batch(batch)?;
        let wm = max_ts.saturating_sub(delay);
        if wm > watermark {
            watermark = wm;
            router.send_watermark(watermark)?;
        }
    }
    router.send_watermark(i64::MAX)?;
    router.send_end()?;
    Ok(events)
}

/// Runs a sink until every input has ended; returns the number of events written.
pub fn run_sink(mut inputs: Inputs, mut writer: Box<dyn SinkWriter>) -> Result<u64, StageError> {
    let mut events = 0u64;
    loop {
        match inputs.recv(None) {
            Received::Message(_, Message::Batch(batch)) => {
                events += batch.len() as u64;
                writer.write(&batch).map_err(|e| {
                    StageError::Failed(format!("cannot write to {}: {e}", writer.describe()))
                })?;
            }
            Received::Message(_, _) => {}
            Received::AllEnded => break,
            Received::Disconnected(_) => return Err(StageError::Cancelled),
            Received::Timeout => {}
        }
    }
    writer
        .finish()
        .map_err(|e| StageError::Failed(format!("cannot write to {}: {e}", writer.describe())))?;
    Ok(events)
}
