//! The sink stage: runs a sink connector ([`SinkWriter`]) on its own thread,
//! as the tail of the job's dataflow. A sink pre-commits what came before a
//! barrier and publishes it when the checkpoint completes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::channel::{Inputs, Message, Received, StageError};
use crate::engine::control::JobControl;
use crate::engine::coordinator::{Ack, SinkNotice};
use crate::model::SinkWriter;

/// A sink's link to the checkpoint coordinator.
pub struct SinkCheckpointing {
    /// Where to acknowledge barriers.
    pub acks: Sender<Ack>,
    /// Completed and aborted checkpoints.
    pub commits: Receiver<SinkNotice>,
}

/// Publishes (commits) what completed checkpoint `id` covers, and tells
/// the coordinator how that went: a savepoint, the sources' consumer groups
/// and retention wait for the commit.
fn publish(writer: &mut dyn SinkWriter, cp: &SinkCheckpointing, id: u64) -> Result<(), StageError> {
    match writer.commit(id) {
        Ok(()) => {
            let _ = cp.acks.send(Ack::Committed { id });
            Ok(())
        }
        Err(e) => {
            let why = format!("cannot write to {}: {e}", writer.describe());
            let _ = cp.acks.send(Ack::CommitFailed {
                id,
                why: why.clone(),
            });
            Err(StageError::Failed(why))
        }
    }
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
    // Checkpoints aborted before their barrier reached the sink.
    let mut aborted = std::collections::BTreeSet::new();
    loop {
        if let Some(cp) = &checkpointing {
            // A sink that holds too much for a checkpoint to complete takes
            // no input until one completes or aborts.
            let mut wait = writer.backlogged();
            loop {
                let notice = if wait {
                    match cp.commits.recv_timeout(COMMIT_POLL) {
                        Ok(n) => n,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            wait = writer.backlogged();
                            if wait {
                                continue;
                            }
                            break;
                        }
                        Err(_) => return Err(StageError::Cancelled),
                    }
                } else {
                    match cp.commits.try_recv() {
                        Ok(n) => n,
                        Err(_) => break,
                    }
                };
                match notice {
                    SinkNotice::Complete(id) => {
                        publish(writer.as_mut(), cp, id)?;
                        committed = Some(id);
                    }
                    SinkNotice::Aborted(id) if last_barrier >= Some(id) => writer
                        .checkpoint_aborted(id)
                        .map_err(|e| fail(writer.as_ref(), e))?,
                    SinkNotice::Aborted(id) => {
                        aborted.insert(id);
                    }
                }
                wait = writer.backlogged();
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
                if aborted.remove(&barrier.id) {
                    writer
                        .checkpoint_aborted(barrier.id)
                        .map_err(|e| fail(writer.as_ref(), e))?;
                }
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
            match cp.commits.recv().map_err(|_| StageError::Cancelled)? {
                SinkNotice::Complete(id) => {
                    publish(writer.as_mut(), cp, id)?;
                    committed = Some(id);
                }
                SinkNotice::Aborted(id) => writer
                    .checkpoint_aborted(id)
                    .map_err(|e| fail(writer.as_ref(), e))?,
            }
        }
    }
    writer.finish().map_err(|e| fail(writer.as_ref(), e))?;
    Ok(events)
}
