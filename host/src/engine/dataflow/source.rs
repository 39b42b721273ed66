//! The source stage: runs a source connector ([`SourceReader`]) on its own
//! thread, as the head of the job's dataflow.
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
//! saturates (see [`crate::engine::channel::watermark_after`]), and `i64::MAX` is kept for the end of
//! the input: no event timestamp reaches it.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::engine::channel::{watermark_after, StageError};
use crate::engine::control::JobControl;
use crate::engine::coordinator::{Ack, Trigger};
use crate::engine::dataflow::partition::Router;
use crate::model::{SourcePosition, SourceReader, SourceState};

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

/// Runs a source subtask until its input ends; returns the number of
/// events read. With checkpointing, barriers are injected between batches
/// when the coordinator asks, and the input ends with the final checkpoint.
///
/// The watermark follows the reader's [`SourceReader::watermark_basis`]
/// when it has one (a Kafka source: the lowest of its partitions'), else
/// the highest timestamp read; an idle reader sends [`crate::engine::channel::Message::Idle`]
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
