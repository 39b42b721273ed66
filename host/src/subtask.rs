//! The subtask loop: one running operator instance on a thread of its own,
//! reading its inputs, calling the operator, firing timers as the watermark
//! and the clock pass them, and routing the output downstream.
//!
//! Bad input: when the operator rejects event `i` of a batch, the output of
//! the events before it is forwarded, event `i` goes to the dead-letter
//! output, and the operator is called again with the events after it.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::batch::EventRef;
use crate::bindings::{Batch, Blobs, GuestError, TimeDomain, Timers};
use crate::coordinator::Ack;
use crate::dead_letter::{DeadLetter, DeadLetterTx};
use crate::host_timers::now_ms;
use crate::operator::OperatorInstance;
use crate::partition::Router;
use crate::stream::Barrier;
use crate::stream::{Inputs, Message, Received, StageError};

/// Most timers handed to one `on-timer` call.
const TIMERS_PER_CALL: usize = 4096;

/// One subtask, ready to run.
pub struct Subtask {
    /// The operator instance.
    pub op: Box<dyn OperatorInstance>,
    /// Its inputs.
    pub inputs: Inputs,
    /// Where its output goes.
    pub router: Router,
    /// Where rejected events go.
    pub dead_letters: DeadLetterTx,
    /// The operator ID.
    pub operator_id: String,
    /// The subtask index.
    pub subtask: u32,
    /// With checkpoints: where snapshots go, and this operator's index in the job.
    pub checkpointing: Option<(Sender<Ack>, usize)>,
    /// A stop barrier went through: end without advancing event time.
    pub stopped: bool,
}

impl Subtask {
    fn fail(&self, message: impl std::fmt::Display) -> StageError {
        StageError::Failed(format!(
            "operator `{}` subtask {}: {message}",
            self.operator_id, self.subtask
        ))
    }

    /// Runs until every input has ended (or the job fails).
    pub fn run(mut self) -> Result<(), StageError> {
        let span = tracing::debug_span!("subtask", operator_id = %self.operator_id, subtask = self.subtask);
        let _entered = span.enter();
        loop {
            let deadline = self.processing_deadline();
            match self.inputs.recv(deadline) {
                Received::Message(_, Message::Batch(batch)) => self.process(batch)?,
                Received::Message(_, Message::Watermark(_) | Message::End) => {
                    if !self.stopped {
                        self.advance_watermark()?
                    }
                }
                Received::Message(_, Message::Barrier(_)) => {}
                Received::Barrier(barrier) => self.snapshot(barrier)?,
                Received::Timeout => self.fire_processing_timers()?,
                Received::AllEnded => break,
                Received::Disconnected(_) => return Err(StageError::Cancelled),
            }
        }
        if self.stopped {
            // Stopped with a savepoint: timers and event time stay where the savepoint has them.
            self.router.send_end()?;
            return Ok(());
        }
        self.advance_watermark()?;
        if self.checkpointing.is_none() {
            // With checkpoints, due timers fired at the last barrier: output
            // after it could never be committed.
            self.fire_processing_timers()?;
        }
        self.router.send_end()?;
        Ok(())
    }

    fn process(&mut self, batch: Batch) -> Result<(), StageError> {
        let mut batch = batch;
        while !batch.is_empty() {
            match self.op.process(&batch).map_err(|e| self.fail(e))? {
                Ok(out) => {
                    self.forward(out)?;
                    break;
                }
                Err(GuestError::BadInput(rejected)) => {
                    let index = rejected.index as usize;
                    let Some(event) = batch.iter().nth(index) else {
                        return Err(self.fail(format!(
                            "rejected event {index} of a batch of {}",
                            batch.len()
                        )));
                    };
                    self.forward(rejected.output)?;
                    self.dead_letter(rejected.message, &event)?;
                    batch = batch.tail(index + 1);
                }
                Err(GuestError::Fatal(message)) => {
                    return Err(self.fail(format!("failed: {message}")))
                }
            }
        }
        Ok(())
    }

    /// Takes this subtask's part of a checkpoint at an aligned barrier: the
    /// changed (or all) state and the timers are copied and handed to the
    /// coordinator, which writes them while processing goes on.
    fn snapshot(&mut self, barrier: Barrier) -> Result<(), StageError> {
        if barrier.last && !barrier.stop {
            // Nothing but the end follows the last barrier: what the due
            // processing-time timers emit must belong to the final checkpoint.
            self.fire_processing_timers()?;
        }
        if let Some((acks, operator)) = &self.checkpointing {
            let ctx = self.op.ctx();
            let changes = if barrier.full {
                ctx.state.take_all()
            } else {
                ctx.state.take_changes()
            };
            let timers = ctx.timers.snapshot(ctx.max_parallelism);
            let keys = ctx.state.key_counts().iter().map(|(_, n)| *n as u64).sum();
            let state_bytes = ctx.state.bytes();
            let ack = Ack::Subtask {
                id: barrier.id,
                operator: *operator,
                subtask: self.subtask,
                key_groups: ctx.key_groups.clone(),
                changes,
                timers,
                watermark: ctx.watermark,
                keys,
                state_bytes,
            };
            acks.send(ack).map_err(|_| StageError::Cancelled)?;
        }
        self.router.send_barrier(barrier)?;
        if barrier.stop {
            self.stopped = true;
        }
        Ok(())
    }

    fn forward(&mut self, out: Batch) -> Result<(), StageError> {
        out.check()
            .map_err(|e| self.fail(format!("returned {e}")))?;
        self.router.send_batch(out)?;
        Ok(())
    }

    fn dead_letter(&mut self, error: String, event: &EventRef<'_>) -> Result<(), StageError> {
        match &self.dead_letters {
            Some(tx) => {
                let letter = DeadLetter::new(&self.operator_id, self.subtask, error, event);
                tx.send(letter).map_err(|_| StageError::Cancelled)
            }
            None => Err(self.fail(format!(
                "rejected an event as bad input ({error}) and the job has no [dead_letter] file to send it to"
            ))),
        }
    }

    fn advance_watermark(&mut self) -> Result<(), StageError> {
        let watermark = self.inputs.watermark();
        if watermark <= self.op.ctx().watermark {
            return Ok(());
        }
        self.op.ctx().watermark = watermark;
        self.fire_timers(TimeDomain::EventTime, watermark)?;
        self.router.send_watermark(watermark)?;
        Ok(())
    }

    fn processing_deadline(&mut self) -> Option<Instant> {
        let next = self.op.ctx().timers.next_processing_time()?;
        let wait = next.saturating_sub(now_ms()).max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }

    fn fire_processing_timers(&mut self) -> Result<(), StageError> {
        self.fire_timers(TimeDomain::ProcessingTime, now_ms())
    }

    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<(), StageError> {
        loop {
            let due = self.op.ctx().timers.pop_due(domain, time, TIMERS_PER_CALL);
            if due.is_empty() {
                return Ok(());
            }
            let mut keys = Blobs::with_capacity(due.len());
            let mut timestamps = Vec::with_capacity(due.len());
            for (ts, key) in &due {
                keys.push(key.as_deref());
                timestamps.push(*ts);
            }
            let fired = Timers {
                domain,
                keys,
                timestamps,
            };
            match self.op.on_timer(&fired).map_err(|e| self.fail(e))? {
                Ok(out) => self.forward(out)?,
                Err(GuestError::Fatal(message)) => {
                    return Err(self.fail(format!("failed in on_timer: {message}")))
                }
                Err(GuestError::BadInput(r)) => {
                    return Err(self.fail(format!(
                        "on_timer rejected timer {}: {}",
                        r.index, r.message
                    )))
                }
            }
        }
    }
}
