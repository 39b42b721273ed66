//! The subtask loop: one running operator instance on a thread of its own,
//! reading its inputs, calling the operator, firing timers as the watermark
//! and the clock pass them, and routing the output downstream.
//!
//! Bad input: when the operator rejects event `i` of a call, the output of
//! the events before it is forwarded, event `i` goes to the dead-letter
//! output, and the operator is called again with the events after it. Not
//! with all of them: a guest stops at the event it rejects, so handing it the
//! whole rest of the batch after every rejection would lift (and prefetch
//! state for) that rest again each time, quadratic in the batch when many
//! events are bad. Each call after a rejection gets at most twice as many
//! events as the call before it got through (at least one), so all calls for
//! a batch together hand the guest at most three times its events, however
//! many it rejects; with no rejection the batch is one call, as before.
//! Operators must not depend on where batches are cut (they never could: the
//! source's `batch_size` and the partitioner decide it too).
//!
//! Failure: when a call traps, overruns a budget, returns malformed output
//! or a fatal error, the subtask fails with a message that names the event
//! being processed: its key and its offset in the source (events straight
//! from the source carry their offsets; an upstream operator's output is
//! named by its place in its batch). The host does not see which event of a
//! batch the guest was on when it failed, so a failed call of several events
//! is re-run one event at a time in a fresh instance over the same state
//! ([`OperatorInstance::isolate`]), and the first event that fails on its
//! own is the one named. The job restarts from its last checkpoint after a
//! failure, so nothing this re-run does to state is kept; a guest granted
//! files or the network sees those calls again, as it does after any restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::connectors::dead_letter::{DeadLetter, DeadLetterTx};
use crate::engine::channel::Barrier;
use crate::engine::channel::{Inputs, Message, Offsets, Received, StageError};
use crate::engine::coordinator::Ack;
use crate::engine::dataflow::partition::Router;
use crate::engine::upgrades::shadow::ShadowTap;
use crate::engine::upgrades::swap::{ProbationCount, SwapBoard, SwapOrder};
use crate::job::SourceSpec;
use crate::model::batch::EventRef;
use crate::model::now_ms;
use crate::model::{Batch, Blobs, GuestError, TaskInfo, TimeDomain, Timers};
use crate::wasm::operator::{Call, OperatorInstance, Setup};

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
    /// The job's source, to name the offsets of events that fail.
    pub source: SourceSpec,
    /// Who it is, and its config, grants and budgets: what new logic
    /// swapped in live starts with.
    pub task: TaskInfo,
    /// See [`Subtask::task`].
    pub setup: Setup,
    /// The live swap under way, if any ([`crate::engine::upgrades::swap`]).
    pub swaps: Arc<SwapBoard>,
    /// Logic swapped in here, while on probation: what it has done.
    pub probation: Option<ProbationCount>,
    /// The link to shadow runs of this operator ([`crate::engine::upgrades::shadow`]).
    pub shadow: Option<ShadowTap>,
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
                Received::Message(_, Message::Batch(batch, offsets)) => {
                    self.process(batch, offsets)?
                }
                Received::Message(_, Message::Watermark(_) | Message::End) => {
                    if !self.stopped {
                        self.advance_watermark()?
                    }
                }
                Received::Message(_, Message::Idle) => {
                    if !self.stopped {
                        // Without the idle input, event time may move on.
                        self.advance_watermark()?;
                        if self.inputs.all_idle() {
                            self.router.send_idle()?;
                        }
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

    /// Calls the operator on `batch`, in one call unless it rejects an
    /// event; then in calls that grow from what the last one got through
    /// (see the module doc).
    fn process(&mut self, batch: Batch, offsets: Option<Offsets>) -> Result<(), StageError> {
        if let Some(s) = &mut self.shadow {
            s.begin_input(&batch, offsets.as_deref());
        }
        let mut batch = batch;
        let n = batch.len();
        if let Some(p) = self.probation.as_mut() {
            if self.swaps.on_probation() {
                p.events += n as u64;
            } else {
                self.probation = None;
            }
        }
        // Events `start..` are still to be processed; `at` is where event
        // `start` begins in `batch.data`; `chunk` is how many the next call gets.
        let (mut start, mut at, mut chunk) = (0, 0, n);
        while start < n {
            let end = start + chunk.clamp(1, n - start);
            let mut part;
            let call: &mut Batch = if start == 0 && end == n {
                &mut batch
            } else {
                part = batch.slice(start..end, at);
                &mut part
            };
            let failure = match self.op.process(call) {
                Ok(Ok(out)) => {
                    self.forward(out)?;
                    at += call.data.len();
                    chunk = 2 * (end - start);
                    start = end;
                    continue;
                }
                Ok(Err(GuestError::BadInput(rejected))) => {
                    let index = rejected.index as usize;
                    match call.iter().nth(index) {
                        Some(event) => {
                            self.forward(rejected.output)?;
                            self.dead_letter(rejected.message, &event)?;
                            at += call.data_len(0..index + 1);
                            start += index + 1;
                            chunk = 2 * (index + 1);
                            continue;
                        }
                        None => format!("rejected event {index} of a batch of {}", call.len()),
                    }
                }
                Ok(Err(GuestError::Fatal(message))) => format!("failed: {message}"),
                Err(e) => e,
            };
            let offsets = offsets.as_deref().and_then(|o| o.get(start..end));
            let at = self.locate_failure(&*call, offsets);
            return Err(self.fail(format!("{failure}; {at}")));
        }
        if let Some(s) = &mut self.shadow {
            s.end();
        }
        Ok(())
    }

    /// Which event of `batch` a failed `process` call failed at, for the
    /// failure message: ``at key `k`, offset 40 (line 41 of `in.jsonl`)``.
    fn locate_failure(&mut self, batch: &Batch, offsets: Option<&[u64]>) -> String {
        let n = batch.len();
        match self.op.isolate(Call::Process(batch)) {
            Some(i) => {
                let key = batch.iter().nth(i).and_then(|e| e.key);
                let place = match offsets.and_then(|o| o.get(i)) {
                    Some(&offset) => self.source.locate(offset),
                    None => format!(
                        "event {} of a batch of {n} from the operator upstream",
                        i + 1
                    ),
                };
                let what = match key {
                    Some(_) => crate::model::show_key(key),
                    None => "an event with no key".to_string(),
                };
                format!("at {what}, {place}")
            }
            None => {
                let range = match offsets {
                    Some([first, .., last]) => format!(
                        " from {} to {}",
                        self.source.locate(*first),
                        self.source.locate(*last)
                    ),
                    _ => String::new(),
                };
                format!("in a batch of {n} events{range}, no one of which fails on its own")
            }
        }
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
            // Copy-on-write: O(shards) here; the coordinator makes the records.
            let state = ctx.state.snapshot(barrier.full);
            let timers = ctx.timers.snapshot(barrier.full);
            let keys = ctx.state.keys();
            let state_bytes = ctx.state.bytes();
            let ack = Ack::Subtask {
                id: barrier.id,
                operator: *operator,
                subtask: self.subtask,
                key_groups: ctx.key_groups.clone(),
                state,
                timers,
                watermark: ctx.watermark,
                keys,
                state_bytes,
                swapped_events: self.probation.map_or(0, |p| p.events),
            };
            acks.send(ack).map_err(|_| StageError::Cancelled)?;
            if let Some(s) = &mut self.shadow {
                s.at_barrier(self.op.ctx(), barrier.id, barrier.last);
            }
        }
        self.router.send_barrier(barrier)?;
        if barrier.stop {
            self.stopped = true;
        }
        let order = self
            .checkpointing
            .as_ref()
            .and_then(|(_, operator)| self.swaps.order_at(barrier.id, *operator));
        if let Some(order) = order {
            self.swap(&order, barrier.id)?;
        }
        Ok(())
    }

    /// Swaps the new logic of `order` in at barrier `id`: the state and
    /// timers as of the barrier (already handed to the checkpoint) move to
    /// an instance of it, which migrates and opens; a failure fails the
    /// subtask, and the run loop rolls the swap back.
    fn swap(&mut self, order: &SwapOrder, id: u64) -> Result<(), StageError> {
        let sub = self.op.take_ctx();
        let spec = order.logic.spec();
        let what = format!(
            "{} {} ({})",
            spec.name,
            spec.version,
            &order.logic.sha256()[..12.min(order.logic.sha256().len())]
        );
        match order
            .logic
            .swap_in(self.task.clone(), sub, &self.setup, &order.plan)
        {
            Ok(op) => {
                self.op = op;
                self.probation = Some(ProbationCount {
                    events: 0,
                    dead_letters: 0,
                    max_share: order.max_dead_letter_share,
                });
                tracing::info!(
                    checkpoint_id = id,
                    "operator `{}` subtask {} runs {what} from barrier {id}",
                    self.operator_id,
                    self.subtask
                );
                Ok(())
            }
            Err(e) => Err(self.fail(format!(
                "the swapped-in logic {what} failed at barrier {id}: {e}"
            ))),
        }
    }

    /// Sends a call's output downstream (the operator instance has checked it).
    fn forward(&mut self, out: Batch) -> Result<(), StageError> {
        if let Some(s) = &mut self.shadow {
            s.collect(&out);
        }
        self.router.send_batch(out, None)?;
        Ok(())
    }

    fn dead_letter(&mut self, error: String, event: &EventRef<'_>) -> Result<(), StageError> {
        if let Some(p) = self.probation.as_mut() {
            if let Err(e) = p.dead_letter() {
                return Err(self.fail(e));
            }
        }
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
        if let Some(s) = &mut self.shadow {
            s.begin_fire(domain, time);
        }
        loop {
            let mut keys = Blobs::with_capacity(0);
            let mut timestamps = Vec::new();
            let timers = &mut self.op.ctx().timers;
            if timers.pop_due_with(domain, time, TIMERS_PER_CALL, |ts, key| {
                keys.push(key);
                timestamps.push(ts);
            }) == 0
            {
                if let Some(s) = &mut self.shadow {
                    s.end();
                }
                return Ok(());
            }
            let mut fired = Timers {
                domain,
                keys,
                timestamps,
            };
            let failure = match self.op.on_timer(&mut fired) {
                Ok(Ok(out)) => {
                    self.forward(out)?;
                    continue;
                }
                Ok(Err(GuestError::Fatal(message))) => format!("failed in on_timer: {message}"),
                Ok(Err(GuestError::BadInput(r))) => {
                    format!("on_timer rejected timer {}: {}", r.index, r.message)
                }
                Err(e) => e,
            };
            let at = match self.op.isolate(Call::Timers(&fired)) {
                Some(i) => {
                    let key = fired
                        .keys
                        .split()
                        .ok()
                        .and_then(|k| k.get(i).copied().flatten());
                    let time = fired.timestamps.get(i).copied().unwrap_or_default();
                    let domain = match domain {
                        TimeDomain::EventTime => "event-time",
                        TimeDomain::ProcessingTime => "processing-time",
                    };
                    format!(
                        "at the {domain} timer for {time} of {}",
                        crate::model::show_key(key)
                    )
                }
                None => format!(
                    "in a call with {} timers, no one of which fails on its own",
                    fired.timestamps.len()
                ),
            };
            return Err(self.fail(format!("{failure}; {at}")));
        }
    }
}
