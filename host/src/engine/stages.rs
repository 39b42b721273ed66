//! The source and sink stages: each runs a connector ([`SourceReader`],
//! [`SinkWriter`]) on its own thread as part of the job's dataflow.
//!
//! A source is read on its own thread: batches go to the first operator
//! through the partitioner, each followed by the watermark when it advanced.
//! At the end of a bounded input the source sends the final watermark,
//! `i64::MAX`, so that every pending event-time timer fires, and then the end
//! marker.
//!
//! A watermark `W` promises that no event with a timestamp `<= W` follows it.
//! With the highest timestamp seen `max` and `watermark_delay` `d`, events
//! may still come at `max - d` (they are only `d` behind the newest), so the
//! watermark is `max - d - 1`: Flink's bounded-out-of-orderness watermark.
//! With a delay of 0, an event stamped like the newest one is therefore on
//! time, and a stream in timestamp order never has a late event. An event is
//! late when its timestamp is `<= W`; an event-time timer for `t` fires when
//! `t <= W`, so a window `[s, s + size)` (timer at `s + size - 1`) fires once
//! an event at `s + size + d` or later has been seen. The arithmetic
//! saturates (see [`watermark_after`]), and `i64::MAX` is kept for the end of
//! the input: no event timestamp reaches it.
//!
//! A sink pre-commits what came before a barrier and publishes it when the
//! checkpoint completes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::control::JobControl;
use crate::engine::coordinator::{Ack, SinkNotice, Trigger};
use crate::engine::partition::Router;
use crate::engine::stream::{Inputs, Message, Received, StageError};
use crate::model::{SinkWriter, SourcePosition, SourceReader, SourceState};

/// A source subtask's link to the checkpoint coordinator.
pub struct SourceCheckpointing {
    /// Which source subtask this is.
    pub subtask: u32,
    /// Barriers to inject.
    pub triggers: Receiver<Trigger>,
    /// Completed checkpoints.
    pub completions: Receiver<u64>,
    /// Where to acknowledge them.
    pub acks: Sender<Ack>,
    /// The highest timestamp seen before the restored position.
    pub restored_max_timestamp: i64,
}

/// A sink's link to the checkpoint coordinator.
pub struct SinkCheckpointing {
    /// Where to acknowledge barriers.
    pub acks: Sender<Ack>,
    /// Completed and aborted checkpoints.
    pub commits: Receiver<SinkNotice>,
}

/// Injects a barrier: acknowledges it with the reader's position (kept in
/// `taken` until its checkpoint completes), then sends it downstream.
fn inject(
    reader: &dyn SourceReader,
    router: &mut Router,
    cp: &SourceCheckpointing,
    trigger: Trigger,
    max_timestamp: i64,
    taken: &mut Vec<(u64, SourcePosition)>,
) -> Result<(), StageError> {
    let position = reader.position();
    if let Some(p) = &position {
        taken.push((trigger.barrier.id, p.clone()));
    }
    let state = position.map(|position| SourceState {
        position,
        max_timestamp,
    });
    cp.acks
        .send(Ack::Source {
            id: trigger.barrier.id,
            subtask: cp.subtask,
            state,
        })
        .map_err(|_| StageError::Cancelled)?;
    router.send_barrier(trigger.barrier)?;
    Ok(())
}

/// Tells the reader about checkpoints that completed since it last looked
/// (a Kafka source commits their offsets to its consumer group).
fn completed(
    reader: &mut dyn SourceReader,
    cp: &SourceCheckpointing,
    taken: &mut Vec<(u64, SourcePosition)>,
) {
    while let Ok(id) = cp.completions.try_recv() {
        complete(reader, id, taken);
    }
}

/// Checkpoint `id` is complete: the reader hears of it with the position
/// its barrier was taken at, and older positions are forgotten.
fn complete(reader: &mut dyn SourceReader, id: u64, taken: &mut Vec<(u64, SourcePosition)>) {
    if let Some(i) = taken.iter().position(|(t, _)| *t == id) {
        reader.checkpoint_complete(id, &taken[i].1);
        taken.drain(..=i);
    }
}

/// The watermark once the highest timestamp seen is `max_ts`, with a
/// watermark delay of `delay_ms`: `max_ts - delay_ms - 1`, saturating at
/// `i64::MIN` (no watermark yet). It is below `i64::MAX` for every
/// `max_ts`, since `i64::MAX` means the end of the input.
pub fn watermark_after(max_ts: i64, delay_ms: i64) -> i64 {
    if max_ts == i64::MIN {
        return i64::MIN;
    }
    max_ts.saturating_sub(delay_ms.max(0)).saturating_sub(1)
}

/// Runs a source subtask until its input ends; returns the number of
/// events read. With checkpointing, barriers are injected between batches
/// when the coordinator asks, and the input ends with the final checkpoint.
///
/// The watermark follows the reader's [`SourceReader::watermark_basis`]
/// when it has one (a Kafka source: the lowest of its partitions'), else
/// the highest timestamp read; an idle reader sends [`Message::Idle`]
/// once, so that it holds back no one, until it reads again.
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
    let mut idle = false;
    let mut events = 0u64;
    let mut taken: Vec<(u64, SourcePosition)> = Vec::new();
    loop {
        if let Some(cp) = &checkpointing {
            completed(reader.as_mut(), cp, &mut taken);
            while let Ok(trigger) = cp.triggers.try_recv() {
                // A last barrier is a stop-with-savepoint: nothing more is
                // read (after a watermark of +∞, when it drains).
                if trigger.barrier.last && trigger.drain {
                    router.send_watermark(i64::MAX)?;
                }
                inject(
                    reader.as_ref(),
                    &mut router,
                    cp,
                    trigger,
                    max_ts,
                    &mut taken,
                )?;
                if trigger.barrier.last {
                    router.send_end()?;
                    return Ok(events);
                }
            }
        }
        let mut offsets = Vec::new();
        let Some(batch) = reader
            .next_batch(&mut offsets)
            .map_err(StageError::Failed)?
        else {
            break;
        };
        if !batch.is_empty() {
            events += batch.len() as u64;
            if let Some(m) = metrics {
                m.events_in
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(&m) = batch.timestamps.iter().max() {
                max_ts = max_ts.max(m);
            }
            router.send_batch(batch, Some(offsets))?;
            idle = false;
        }
        let blocked = router.take_blocked();
        if !blocked.is_zero() {
            reader.blocked(blocked);
        }
        let basis = reader.watermark_basis().unwrap_or(max_ts);
        let wm = watermark_after(basis, delay);
        if wm > watermark {
            watermark = wm;
            router.send_watermark(watermark)?;
            idle = false;
        }
        if !idle && reader.idle() {
            router.send_idle()?;
            idle = true;
        }
    }
    router.send_watermark(i64::MAX)?;
    if let Some(cp) = &checkpointing {
        cp.acks
            .send(Ack::EndOfInput)
            .map_err(|_| StageError::Cancelled)?;
        loop {
            let trigger = crossbeam_channel::select! {
                recv(cp.triggers) -> t => t.map_err(|_| StageError::Cancelled)?,
                recv(cp.completions) -> id => {
                    complete(reader.as_mut(), id.map_err(|_| StageError::Cancelled)?, &mut taken);
                    continue;
                }
            };
            inject(
                reader.as_ref(),
                &mut router,
                cp,
                trigger,
                max_ts,
                &mut taken,
            )?;
            if trigger.barrier.last {
                break;
            }
        }
    }
    router.send_end()?;
    Ok(events)
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

#[cfg(test)]
mod tests {
    use super::watermark_after;

    #[test]
    fn the_watermark_is_one_below_the_highest_timestamp_less_the_delay() {
        // An event at the newest timestamp may still come: it must not be behind the watermark.
        assert_eq!(watermark_after(1999, 0), 1998);
        assert_eq!(watermark_after(5000, 2000), 2999);
        assert_eq!(watermark_after(0, 0), -1);
        assert_eq!(watermark_after(-5, 10), -16);
    }

    #[test]
    fn the_watermark_saturates_and_never_reaches_the_end_of_input() {
        // Nothing seen yet: no watermark.
        assert_eq!(watermark_after(i64::MIN, 0), i64::MIN);
        assert_eq!(watermark_after(i64::MIN, 1000), i64::MIN);
        // Just above the minimum: saturates rather than wrapping.
        assert_eq!(watermark_after(i64::MIN + 1, 0), i64::MIN);
        assert_eq!(watermark_after(i64::MIN + 1, 1000), i64::MIN);
        assert_eq!(watermark_after(0, i64::MAX), i64::MIN);
        assert_eq!(watermark_after(i64::MAX, i64::MAX), -1);
        // `i64::MAX` is the end of the input; an event stamped with it does not claim it.
        assert_eq!(watermark_after(i64::MAX, 0), i64::MAX - 1);
        // A negative delay cannot come from a duration; it counts as none.
        assert_eq!(watermark_after(10, -5), 9);
    }
}
