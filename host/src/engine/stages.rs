//! The source and sink stages: each runs a connector ([`SourceReader`],
//! [`SinkWriter`]) on its own thread as part of the job's dataflow.
//!
//! A source is read on its own thread: batches go to the first operator
//! through the partitioner, each followed by the watermark (highest event
//! timestamp seen minus `watermark_delay`) when it advanced. At the end of a
//! bounded input the source sends the final watermark, `i64::MAX`, so that
//! every pending event-time timer fires, and then the end marker.
//!
//! A sink pre-commits what came before a barrier and publishes it when the
//! checkpoint completes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::control::JobControl;
use crate::engine::coordinator::{Ack, Trigger};
use crate::engine::partition::Router;
use crate::engine::stream::{Inputs, Message, Received, StageError};
use crate::model::{SinkWriter, SourceReader, SourceState};

/// A source's link to the checkpoint coordinator.
pub struct SourceCheckpointing {
    /// Barriers to inject.
    pub triggers: Receiver<Trigger>,
    /// Where to acknowledge them.
    pub acks: Sender<Ack>,
    /// The highest timestamp seen before the restored position.
    pub restored_max_timestamp: i64,
}

/// A sink's link to the checkpoint coordinator.
pub struct SinkCheckpointing {
    /// Where to acknowledge barriers.
    pub acks: Sender<Ack>,
    /// Completed checkpoints.
    pub commits: Receiver<u64>,
}

fn inject(
    reader: &dyn SourceReader,
    router: &mut Router,
    cp: &SourceCheckpointing,
    trigger: Trigger,
    max_timestamp: i64,
) -> Result<(), StageError> {
    let state = reader.position().map(|position| SourceState {
        position,
        max_timestamp,
    });
    cp.acks
        .send(Ack::Source {
            id: trigger.barrier.id,
            state,
        })
        .map_err(|_| StageError::Cancelled)?;
    router.send_barrier(trigger.barrier)?;
    Ok(())
}

/// Runs a source until its input ends; returns the number of events read.
/// With checkpointing, barriers are injected between batches when the
/// coordinator asks, and the input ends with the final checkpoint.
pub fn run_source(
    mut reader: Box<dyn SourceReader>,
    mut router: Router,
    watermark_delay: Duration,
    checkpointing: Option<SourceCheckpointing>,
    control: Option<Arc<JobControl>>,
) -> Result<u64, StageError> {
    let metrics = control.as_ref().map(|c| &c.metrics);
    let delay = i64::try_from(watermark_delay.as_millis()).unwrap_or(i64::MAX);
    let mut max_ts = checkpointing
        .as_ref()
        .map_or(i64::MIN, |c| c.restored_max_timestamp);
    let mut watermark = i64::MIN;
    let mut events = 0u64;
    loop {
        if let Some(cp) = &checkpointing {
            while let Ok(trigger) = cp.triggers.try_recv() {
                if trigger.barrier.last {
                    // Stop-with-savepoint: nothing more is read.
                    if trigger.drain {
                        router.send_watermark(i64::MAX)?;
                    }
                    inject(reader.as_ref(), &mut router, cp, trigger, max_ts)?;
                    router.send_end()?;
                    return Ok(events);
                }
                inject(reader.as_ref(), &mut router, cp, trigger, max_ts)?;
            }
        }
        let mut offsets = Vec::new();
        let Some(batch) = reader
            .next_batch(&mut offsets)
            .map_err(StageError::Failed)?
        else {
            break;
        };
        events += batch.len() as u64;
        if let Some(m) = metrics {
            m.events_in
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(&m) = batch.timestamps.iter().max() {
            max_ts = max_ts.max(m);
        }
        router.send_batch(batch, Some(offsets))?;
        let wm = max_ts.saturating_sub(delay);
        if wm > watermark {
            watermark = wm;
            router.send_watermark(watermark)?;
        }
    }
    router.send_watermark(i64::MAX)?;
    if let Some(cp) = &checkpointing {
        cp.acks
            .send(Ack::EndOfInput)
            .map_err(|_| StageError::Cancelled)?;
        loop {
            let trigger = cp.triggers.recv().map_err(|_| StageError::Cancelled)?;
            inject(reader.as_ref(), &mut router, cp, trigger, max_ts)?;
            if trigger.barrier.last {
                break;
            }
        }
    }
    router.send_end()?;
    Ok(events)
}

/// How often an idle sink looks for completed checkpoints to publish.
const COMMIT_POLL: Duration = Duration::from_millis(50);

/// Runs a sink until every input has ended; returns the number of events
/// written. With checkpointing, a barrier pre-commits what came before it and
/// a completed checkpoint publishes it; the sink ends after the final one.
pub fn run_sink(
    mut inputs: Inputs,
    mut writer: Box<dyn SinkWriter>,
    checkpointing: Option<SinkCheckpointing>,
    control: Option<Arc<JobControl>>,
) -> Result<u64, StageError> {
    let metrics = control.as_ref().map(|c| &c.metrics);
    let fail = |writer: &dyn SinkWriter, e: std::io::Error| {
        StageError::Failed(format!("cannot write to {}: {e}", writer.describe()))
    };
    let mut events = 0u64;
    let mut last_barrier = None;
    let mut committed = None;
    loop {
        if let Some(cp) = &checkpointing {
            while let Ok(id) = cp.commits.try_recv() {
                writer.commit(id).map_err(|e| fail(writer.as_ref(), e))?;
                committed = Some(id);
            }
        }
        let deadline = checkpointing.as_ref().map(|_| Instant::now() + COMMIT_POLL);
        match inputs.recv(deadline) {
            Received::Message(_, Message::Batch(batch, _)) => {
                events += batch.len() as u64;
                if let Some(m) = metrics {
                    m.events_out
                        .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                writer.write(&batch).map_err(|e| fail(writer.as_ref(), e))?;
            }
            Received::Barrier(barrier) => {
                let state = writer
                    .pre_commit(barrier.id)
                    .map_err(|e| fail(writer.as_ref(), e))?;
                if let Some(cp) = &checkpointing {
                    cp.acks
                        .send(Ack::Sink {
                            id: barrier.id,
                            state,
                        })
                        .map_err(|_| StageError::Cancelled)?;
                }
                last_barrier = Some(barrier.id);
            }
            Received::Message(_, _) | Received::Timeout => {}
            Received::AllEnded => break,
            Received::Disconnected(_) => return Err(StageError::Cancelled),
        }
    }
    if let Some(cp) = &checkpointing {
        // The input ended after the final barrier: wait until that checkpoint completes.
        while committed < last_barrier {
            let id = cp.commits.recv().map_err(|_| StageError::Cancelled)?;
            writer.commit(id).map_err(|e| fail(writer.as_ref(), e))?;
            committed = Some(id);
        }
    }
    writer.finish().map_err(|e| fail(writer.as_ref(), e))?;
    Ok(events)
}
