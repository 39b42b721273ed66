//! The checkpoint coordinator: triggers checkpoints at the source, collects
//! every subtask's and the sink's acknowledgement, writes the snapshots to
//! the [`CheckpointStore`] as they arrive (on its own thread, so processing
//! never waits for storage), marks a checkpoint complete only when all have
//! acknowledged, then tells the sink to publish and applies retention.
//!
//! At the end of a bounded input the source asks for a final checkpoint;
//! when it completes, everything is published and the job may end.
//!
//! Savepoints enter here too: a request from the control plane
//! ([`JobControl`]) waits for any checkpoint in flight, then rides on a full
//! barrier (a full checkpoint too, when the job takes checkpoints); as each
//! subtask acknowledges, its state is also written as a savepoint data file,
//! and when all have, the savepoint's `_metadata` is written and the
//! directory renamed into place, before the sink publishes. A stop request's
//! barrier is the last: the source ends after it (after a final watermark
//! of +∞ first, with `drain`), and the job ends when it completes.
//!
//! Without a `[checkpoint]` table the coordinator still runs, with no
//! store: it takes only savepoints and the final barrier of a bounded input.
//!
//! ## Failures and timeouts (as Flink's `CheckpointCoordinator`)
//!
//! One barrier is in flight at a time. A checkpoint or savepoint that has not
//! completed `[checkpoint] timeout` after it was triggered (default 10
//! minutes) is aborted: the trees it wrote are dropped from the store, a
//! savepoint's partial directory is removed and its request answered
//! FAILED, the failure is reported (log, REST `last-failed-checkpoint`) with
//! the stages that had not acknowledged, and the next barrier (a waiting
//! savepoint or stop first) is triggered. The aborted barrier still flows
//! through the job; its late acknowledgements are ignored. Because subtasks
//! hand over only their changes since the previous barrier, the checkpoint
//! after an aborted one is always full. The final barrier of a job without
//! `[checkpoint]` (no checkpoint, no savepoint) has no timeout.
//!
//! A *checkpoint failure* is a checkpoint that timed out or whose storage
//! write failed. `[checkpoint] tolerable_failures` of them in a row are
//! tolerated (the count restarts at every completed checkpoint and at every
//! run); one more fails the run, through the restart strategy, with one line
//! naming the checkpoint and the reason. Savepoint failures are never
//! counted and never fail the job (as in Flink): a data file or `_metadata`
//! that cannot be written fails only that savepoint, which is removed, and
//! the checkpoint that carries it goes on; a barrier that carries a savepoint
//! and times out fails the savepoint without counting. A stop-with-savepoint
//! whose savepoint cannot be written ends this run (its barrier ended the
//! source) but not the job: the checkpoint it carries completes and the job
//! resumes from it at once, without using a restart attempt
//! ([`CoordinatorEnd::Resume`]); a job without `[checkpoint]` has nothing to
//! resume from and fails over. A last barrier that times out (a stop whose
//! barrier is stuck, or the final checkpoint at the end of the input) fails
//! the run over through the restart strategy: the source ends when it takes
//! that barrier, so the run cannot go on.
//!
//! ## Its parts
//!
//! The loop and the completion of a checkpoint are here. Its collaborators
//! each have a file and unit tests: the barrier in flight (`pending`), the
//! incremental chain (`chain`), tolerable failures (`failures`), what to
//! trigger next (`requests`), what waits for the sink's commit
//! (`publishing`) and what happens when it comes (`commits`), the
//! savepoints a barrier carries (`savepoints`), and the messages with the
//! stages (`messages`); `tests` drives the whole coordinator as a run does.
//!
//! For crash tests, `WEIR_TEST_CHECKPOINT_PAUSE_MS` makes the coordinator
//! wait that long between writing a checkpoint's data and marking it
//! complete, so that a kill lands in the middle of checkpoint writes.

mod chain;
mod commits;
mod failures;
mod messages;
mod pending;
mod publishing;
mod requests;
mod savepoints;

pub use messages::{Ack, SinkNotice, Trigger};
pub use pending::BarrierKind;
pub use publishing::{PublishQueue, Publishing};

use chain::Chain;
use failures::FailureCount;
use pending::{Pending, PendingSavepoint};
use requests::Requests;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::channel::Barrier;
use crate::engine::control::{CheckpointSummary, JobControl};
use crate::engine::upgrades::swap::{Probation, SwapBoard, SwapOrder};
use crate::model::{now_ms, LogicId};
use crate::state::checkpoint::{
    CheckpointLogic, CheckpointMeta, CheckpointStore, OperatorLogic, OperatorMeta, FORMAT_VERSION,
};
use crate::state::savepoint::{self};

/// The job's operators, as checkpoint metadata describes them.
#[derive(Debug, Clone)]
pub struct OperatorRecord {
    /// The operator ID.
    pub id: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// Declared states: name, kind, version.
    pub states: Vec<(String, String, u32)>,
    /// The logic it runs.
    pub logic: LogicId,
    /// Hex SHA-256 of the `.wasm` the job file names (see [`OperatorLogic`]).
    pub job_wasm_sha256: String,
}

impl OperatorRecord {
    /// What a checkpoint records of it.
    fn logic(&self) -> OperatorLogic {
        OperatorLogic {
            id: self.id.clone(),
            name: self.logic.name.clone(),
            version: self.logic.version.clone(),
            wasm_sha256: self.logic.wasm_sha256.clone(),
            job_wasm_sha256: self.job_wasm_sha256.clone(),
        }
    }
}

/// The coordinator's side of a live swap ([`crate::engine::upgrades::swap`]).
#[derive(Default)]
pub struct SwapTrack {
    /// An accepted swap waiting for its barrier.
    waiting: Option<Arc<SwapOrder>>,
    /// The swap on probation: its order, its barrier, and when that was triggered.
    probation: Option<(Arc<SwapOrder>, u64, i64)>,
    /// The next checkpoint is full (after a swap, whose states may have migrated).
    force_full: bool,
}

/// The coordinator of one run of a job.
pub struct Coordinator {
    /// Where checkpoints go; `None` when the job takes none (savepoints only).
    pub store: Option<CheckpointStore>,
    /// The job's name.
    pub job: String,
    /// The job's key groups.
    pub max_parallelism: u32,
    /// The operators, in job order, as their logic is now (a live swap changes it).
    pub operators: RefCell<Vec<OperatorRecord>>,
    /// Time between checkpoints; `None`: only the final one.
    pub interval: Option<Duration>,
    /// Completed checkpoints to keep (besides the one the sink's last
    /// commit names, which is always kept).
    pub retain: usize,
    /// Completed checkpoints whose sink commit has not been acknowledged
    /// yet, and the last one committed (as far as this run knows: the
    /// restored one; 0: none of this store's).
    pub publishing: RefCell<PublishQueue>,
    /// Where an exactly-once sink records its commits (savepoints say so).
    pub sink_commit: Option<savepoint::SinkCommit>,
    /// The chain of the checkpoint this run restored from (empty: none).
    pub parent_chain: Vec<u64>,
    /// Acknowledgements from the stages.
    pub acks: Receiver<Ack>,
    /// Triggers to each source subtask.
    pub triggers: Vec<Sender<Trigger>>,
    /// Completed checkpoint IDs, to each source subtask (a Kafka source
    /// commits its offsets to its consumer group then).
    pub source_completions: Vec<Sender<u64>>,
    /// Completed and aborted checkpoints, to the sink.
    pub commits: Sender<SinkNotice>,
    /// Closed (its sender dropped) when the run fails: stop at once.
    pub cancel: Receiver<()>,
    /// Savepoint and stop requests, and where results are reported.
    pub control: Arc<JobControl>,
    /// The lowest ID this run may use (above the restored snapshot's).
    pub first_id: u64,
    /// How long a checkpoint or savepoint may take before it is aborted.
    pub timeout: Duration,
    /// Consecutive checkpoint failures tolerated before the run fails.
    pub tolerable_failures: u32,
    /// Where the subtasks learn of a live swap's barrier.
    pub swaps: Arc<SwapBoard>,
    /// The live swap under way.
    pub swap: RefCell<SwapTrack>,
}

/// Why a barrier was not triggered.
enum Untriggered {
    /// The stages are gone: the run is over.
    Gone,
    /// The source still holds the barriers of earlier (aborted) checkpoints;
    /// the savepoint, if any, comes back.
    Busy(Option<Box<PendingSavepoint>>),
}

/// How a run's checkpointing ended.
pub enum CoordinatorEnd {
    /// The final checkpoint completed: the input is done.
    Finished,
    /// A stop-with-savepoint completed: the job stops, its savepoint is here.
    StoppedWithSavepoint(PathBuf),
    /// The stages went away first (the run failed or was stopped).
    Stopped,
    /// A shutdown (a signal) stopped the job at this last checkpoint.
    ShutDown(u64),
    /// A stop-with-savepoint failed, but its checkpoint completed: the job
    /// resumes from it (the stop barrier ended this run's source). The
    /// message says why the savepoint failed.
    Resume(String),
}

impl Coordinator {
    /// When pending barrier `p` times out ([`Pending::expiry`]).
    fn expiry(&self, p: &Pending) -> Option<Instant> {
        p.expiry(self.store.is_some(), self.timeout)
    }

    /// Each operator's ID and parallelism, in job order.
    fn operator_ids(&self) -> Vec<(String, u32)> {
        self.operators
            .borrow()
            .iter()
            .map(|o| (o.id.clone(), o.parallelism))
            .collect()
    }

    fn subtasks(&self) -> usize {
        self.operators
            .borrow()
            .iter()
            .map(|o| o.parallelism as usize)
            .sum()
    }

    /// Runs until the final checkpoint completes or the stages go away. A
    /// savepoint that could not complete is reported failed, and its
    /// partial directory removed.
    pub fn run(self) -> Result<CoordinatorEnd, String> {
        let mut pending: Option<Pending> = None;
        let mut requests = Requests::new(self.triggers.len());
        let result = self.run_until_done(&mut pending, &mut requests);
        let why = match &result {
            Err(e) => format!("the job failed: {e}"),
            Ok(_) => "the job stopped before the savepoint completed".to_string(),
        };
        if let Some(sp) = pending.and_then(|p| p.savepoint) {
            self.control.savepoint_failed(&sp.request.id, &why);
            sp.writer.abort();
        }
        self.unpublished(&format!("{why}, before the sink committed its output"));
        for request in requests.into_waiting() {
            self.control.savepoint_failed(&request.id, &why);
        }
        result
    }

    fn run_until_done(
        &self,
        pending: &mut Option<Pending>,
        requests: &mut Requests,
    ) -> Result<CoordinatorEnd, String> {
        let mut chain = Chain::restored(self.store.as_ref(), &self.parent_chain);
        let mut next_id = self
            .store
            .as_ref()
            .map_or(1, CheckpointStore::next_id)
            .max(self.first_id);
        let mut next_trigger = self.interval.map(|i| Instant::now() + i);
        let mut failures = FailureCount::new(self.tolerable_failures);
        let control_requests = self.control.requests();
        let swap_orders = self.control.swap_orders();
        loop {
            if let Some(expiry) = pending.as_ref().and_then(|p| self.expiry(p)) {
                if Instant::now() >= expiry {
                    let p = pending.take().expect("checked");
                    let reason = p.timed_out(&self.operator_ids(), self.timeout);
                    self.abort(p, &reason, &mut chain, &mut failures)?;
                    next_trigger = self.interval.map(|i| Instant::now() + i);
                }
            }
            let swapping = {
                let t = self.swap.borrow();
                t.waiting.is_some() || t.probation.is_some()
            };
            if let Some(next) = pending.is_none().then(|| requests.next(swapping)).flatten() {
                for (r, why) in &next.failed {
                    self.control.savepoint_failed(&r.id, why);
                }
                // A requested savepoint goes first; the final checkpoint carries one if asked.
                let savepoint = next
                    .savepoint
                    .clone()
                    .and_then(|r| self.prepare_savepoint(r, next_id));
                let prepared = savepoint.as_ref().map(|s| s.request.stop);
                if let Some(kind) = next.barrier(prepared) {
                    let stop = kind.shutdown || prepared.is_some_and(|stop| stop.is_some());
                    match self.trigger(next_id, kind, savepoint, &chain) {
                        Ok(p) => {
                            *pending = Some(p);
                            requests.triggered(stop);
                        }
                        Err(Untriggered::Gone) => return Ok(CoordinatorEnd::Stopped),
                        // A shutdown is tried again at the next round.
                        Err(Untriggered::Busy(sp)) => self.source_busy(sp),
                    }
                    next_id += 1;
                } else if self.swap.borrow().waiting.is_some() {
                    // A swap rides on the next checkpoint barrier, now.
                    match self.trigger(next_id, BarrierKind::default(), None, &chain) {
                        Ok(p) => *pending = Some(p),
                        Err(Untriggered::Gone) => return Ok(CoordinatorEnd::Stopped),
                        Err(Untriggered::Busy(_)) => {}
                    }
                    next_id += 1;
                }
            }
            let deadline = match pending.as_ref() {
                None => next_trigger,
                Some(p) => self.expiry(p),
            };
            let timeout = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            let ack = crossbeam_channel::select! {
                recv(self.acks) -> msg => match msg {
                    Ok(ack) => Some(ack),
                    Err(_) => return Ok(CoordinatorEnd::Stopped),
                },
                recv(self.cancel) -> _ => return Ok(CoordinatorEnd::Stopped),
                recv(swap_orders) -> order => {
                    if let Ok(order) = order {
                        self.swap.borrow_mut().waiting = Some(order);
                    }
                    continue;
                }
                recv(control_requests) -> request => {
                    if let Some((refused, why)) = request.ok().and_then(|r| requests.request(r)) {
                        self.control.savepoint_failed(&refused.id, why);
                    }
                    continue;
                }
                default(timeout) => {
                    if deadline.is_none() || pending.is_some() {
                        // Nothing due, or a timeout: the top of the loop sees to it.
                        continue;
                    }
                    None
                }
            };
            let Some(ack) = ack else {
                match self.trigger(next_id, BarrierKind::default(), None, &chain) {
                    Ok(p) => *pending = Some(p),
                    Err(Untriggered::Gone) => return Ok(CoordinatorEnd::Stopped),
                    Err(Untriggered::Busy(sp)) => {
                        self.source_busy(sp);
                        next_trigger = self.interval.map(|i| Instant::now() + i);
                    }
                }
                next_id += 1;
                continue;
            };
            match ack {
                Ack::Committed { id } => self.published(id),
                Ack::CommitFailed { id, why } => self.publish_failed(id, &why),
                Ack::EndOfInput => requests.source_ended(),
                Ack::Source { id, subtask, state } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.source_acked(subtask, state);
                    }
                }
                Ack::Sink { id, state } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.sink_acked(state);
                    }
                }
                Ack::Subtask {
                    id,
                    operator,
                    subtask,
                    key_groups,
                    state,
                    timers,
                    watermark,
                    keys,
                    state_bytes,
                    swapped_events,
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.swapped_events += swapped_events;
                        let op = &self.operators.borrow()[operator].id.clone();
                        // All timers, for a full checkpoint and a savepoint.
                        let records = timers.is_full().then(|| timers.records());
                        if let Some(store) = &self.store {
                            let written = store.write_snapshot(id, op, &state).and_then(|a| {
                                Ok(a + match &records {
                                    Some(r) => store.write_timers(id, op, r)?,
                                    None => store.write_timer_deltas(id, op, &timers.delta())?,
                                })
                            });
                            match written {
                                Ok(bytes) => {
                                    p.bytes += bytes;
                                    p.op_bytes[operator] += bytes;
                                }
                                Err(e) => {
                                    let p = pending.take().expect("matched");
                                    let reason = format!("{} could not be stored: {e}", p.what());
                                    self.abort(p, &reason, &mut chain, &mut failures)?;
                                    next_trigger = self.interval.map(|i| Instant::now() + i);
                                    continue;
                                }
                            }
                        }
                        if let Some(sp) = p.savepoint.as_mut() {
                            let name = format!("op{operator}-sub{subtask}.state");
                            let changes = state.changes();
                            let records = records.unwrap_or_else(|| timers.records());
                            match sp.writer.write_data(&name, key_groups, &changes, &records) {
                                Ok((file, state_keys)) => {
                                    sp.files[operator].push(file);
                                    for (state, n) in state_keys {
                                        *sp.keys[operator].entry(state).or_default() += n;
                                    }
                                    sp.timers[operator] += timers.len();
                                }
                                Err(e) => {
                                    // Only the savepoint fails; its checkpoint goes on.
                                    let sp = p.savepoint.take().expect("matched");
                                    p.stop_failed =
                                        self.savepoint_write_failed(sp, p.id, &e.to_string())?;
                                }
                            }
                        }
                        p.subtask_acked(operator, subtask, keys, state_bytes, watermark);
                    }
                }
            }
            let complete = pending
                .as_ref()
                .is_some_and(|p| p.is_complete(self.subtasks()));
            if complete {
                let p = pending.take().expect("complete implies pending");
                if let Some(end) = self.complete(p, &mut chain, &mut failures)? {
                    return Ok(end);
                }
                next_trigger = self.interval.map(|i| Instant::now() + i);
            }
        }
    }

    /// Completes a checkpoint (and its savepoint): durable first, then published.
    fn complete(
        &self,
        mut p: Pending,
        chain: &mut Chain,
        failures: &mut FailureCount,
    ) -> Result<Option<CoordinatorEnd>, String> {
        chain.completed(p.id, p.bytes, p.full);
        let source = p.take_source();
        let sink = p.sink.take().expect("checked");
        let meta = CheckpointMeta {
            format: FORMAT_VERSION,
            id: p.id,
            chain: chain.ids().to_vec(),
            job: self.job.clone(),
            max_parallelism: self.max_parallelism,
            triggered_at_ms: p.triggered_at_ms,
            completed_at_ms: now_ms(),
            bytes_written: p.bytes,
            finished: p.finished,
            source,
            sink,
            watermark: p.watermark,
            operators: self
                .operators
                .borrow()
                .iter()
                .enumerate()
                .map(|(i, o)| OperatorMeta {
                    id: o.id.clone(),
                    parallelism: o.parallelism,
                    states: o.states.clone(),
                    keys: p.keys[i],
                    state_bytes: p.state_bytes[i],
                    bytes_written: p.op_bytes[i],
                })
                .collect(),
        };
        if let Some(pause) = test_pause() {
            std::thread::sleep(pause);
        }
        // A checkpoint after a swap barrier is on probation until the window has passed.
        let (probation_of, ends_probation) = match &self.swap.borrow().probation {
            Some((order, barrier, since_ms)) if p.id > *barrier => {
                let passed = match order.probation {
                    Probation::Time(d) => p.triggered_at_ms - since_ms >= d.as_millis() as i64,
                    Probation::Events(n) => p.swapped_events >= n,
                };
                if passed || p.last {
                    (None, true)
                } else {
                    (Some(*barrier), false)
                }
            }
            _ => (None, false),
        };
        let logic = CheckpointLogic {
            operators: self
                .operators
                .borrow()
                .iter()
                .map(OperatorRecord::logic)
                .collect(),
            probation_of,
            swaps: self.control.swap_history(),
        };
        if let Some(store) = &self.store {
            if let Err(e) = store.complete_with(&meta, &logic) {
                let reason = format!("{} could not be stored: {e}", p.what());
                self.abort(p, &reason, chain, failures)?;
                return Ok(None);
            }
            failures.completed();
            tracing::info!(
                checkpoint_id = p.id,
                bytes = p.bytes,
                full = p.full,
                "checkpoint {} complete in {:.1} ms ({} bytes{})",
                p.id,
                p.started.elapsed().as_secs_f64() * 1e3,
                p.bytes,
                if p.full { ", full" } else { "" }
            );
            self.control.checkpoint_completed(CheckpointSummary {
                id: p.id,
                completed_at_ms: meta.completed_at_ms,
                duration_ms: meta.completed_at_ms - meta.triggered_at_ms,
                bytes_written: p.bytes,
                full: p.full,
            });
        }
        let mut stopped_at = None;
        let mut saved = None;
        if let Some(sp) = p.savepoint.take() {
            let request_id = sp.request.id.clone();
            let stop = sp.request.stop.is_some();
            match self.finish_savepoint(sp, &meta, &p) {
                Ok(dir) => {
                    tracing::info!(
                        checkpoint_id = p.id,
                        "savepoint {} written in {:.1} ms: {}; it is complete once the sink has committed its output",
                        p.id,
                        p.started.elapsed().as_secs_f64() * 1e3,
                        dir.display()
                    );
                    if stop {
                        stopped_at = Some(dir.clone());
                    }
                    saved = Some((request_id, dir));
                }
                Err(e) => {
                    self.control.savepoint_failed(&request_id, &e);
                    if stop {
                        if self.store.is_none() {
                            // No checkpoint to resume from: the job cannot go on.
                            return Err(format!("stop-with-savepoint failed: {e}"));
                        }
                        p.stop_failed = Some(e);
                    } else {
                        tracing::warn!("savepoint {} failed: {e}; the job goes on", p.id);
                    }
                }
            }
        }
        if let Some(order) = p.swap.take() {
            self.swapped(&order, p.id, p.triggered_at_ms);
            self.control.swap_on_probation(&order.request_id, p.id);
        }
        if ends_probation {
            if let Some((order, barrier, _)) = self.swap.borrow_mut().probation.take() {
                let why = if p.last {
                    format!("the input ended during its probation ({})", order.probation)
                } else {
                    format!("it passed its probation ({})", order.probation)
                };
                tracing::info!(
                    checkpoint_id = p.id,
                    "the swap of operator `{}` at barrier {barrier} completed, {why}: checkpoint {} publishes its output",
                    order.operator_id,
                    p.id
                );
                self.swaps.clear();
                self.control.swap_completed(&order.request_id, p.id);
            }
        }
        if probation_of.is_some() {
            // On probation: the sink keeps what it staged since the swap
            // barrier, and nothing is committed, so the sources' consumer
            // groups hear nothing of it either.
            let _ = self.commits.send(SinkNotice::Aborted(p.id));
            return Ok(None);
        }
        // The sink publishes what the checkpoint covers; it may be gone if the job failed.
        self.publishing.borrow_mut().push(p.id, saved);
        let _ = self.commits.send(SinkNotice::Complete(p.id));
        let last = stopped_at.is_some() || p.stop_failed.is_some() || p.last;
        if last && !self.await_published(p.id) {
            // The sink failed (its commit, or before it): the run fails, and
            // the savepoint this stop carried was failed with it.
            return Ok(Some(CoordinatorEnd::Stopped));
        }
        if let Some(dir) = stopped_at {
            return Ok(Some(CoordinatorEnd::StoppedWithSavepoint(dir)));
        }
        if let Some(why) = p.stop_failed {
            tracing::warn!(
                checkpoint_id = p.id,
                "stop-with-savepoint {} failed: {why}; the job resumes from checkpoint {}",
                p.id,
                p.id
            );
            return Ok(Some(CoordinatorEnd::Resume(why)));
        }
        if p.last && p.shutdown {
            return Ok(Some(CoordinatorEnd::ShutDown(p.id)));
        }
        if p.last {
            return Ok(Some(CoordinatorEnd::Finished));
        }
        Ok(None)
    }

    /// The subtasks of `order`'s operator swapped at barrier `id`
    /// (triggered at `at_ms`): later checkpoints record the new logic, the
    /// next is full, and the swap is on probation.
    fn swapped(&self, order: &Arc<SwapOrder>, id: u64, at_ms: i64) {
        {
            let mut ops = self.operators.borrow_mut();
            let info = &mut ops[order.operator];
            let spec = order.logic.spec();
            info.logic = order.logic.logic_id();
            info.states = crate::state::restore::recorded(&spec.states);
        }
        let mut track = self.swap.borrow_mut();
        track.probation = Some((order.clone(), id, at_ms));
        track.force_full = true;
    }

    fn trigger(
        &self,
        id: u64,
        kind: BarrierKind,
        savepoint: Option<PendingSavepoint>,
        chain: &Chain,
    ) -> Result<Pending, Untriggered> {
        let BarrierKind {
            last,
            input_ended,
            shutdown,
        } = kind;
        let n_ops = self.operators.borrow().len();
        let swap = if last {
            None
        } else {
            self.swap.borrow().waiting.clone()
        };
        let full = savepoint.is_some()
            || (self.store.is_some() && chain.next_is_full())
            || std::mem::take(&mut self.swap.borrow_mut().force_full);
        let drain = savepoint
            .as_ref()
            .is_some_and(|s| s.request.stop == Some(true));
        let stop = !input_ended
            && (shutdown
                || savepoint
                    .as_ref()
                    .is_some_and(|s| s.request.stop == Some(false)));
        tracing::debug!(
            checkpoint_id = id,
            full,
            last,
            stop,
            drain,
            "triggering barrier {id}"
        );
        let trigger = Trigger {
            barrier: Barrier {
                id,
                full,
                last,
                stop,
            },
            drain,
        };
        if input_ended {
            // The sources wait for this barrier and take it.
            for triggers in &self.triggers {
                triggers.send(trigger).map_err(|_| Untriggered::Gone)?;
            }
        } else {
            // Never block: a source held up by back-pressure may not have
            // taken the barriers of aborted checkpoints yet. Every source
            // subtask gets the barrier or none does (this thread is the only
            // sender, so room seen is room kept).
            if self.triggers.iter().any(|t| t.is_full()) {
                return Err(Untriggered::Busy(savepoint.map(Box::new)));
            }
            if let Some(order) = &swap {
                // Armed before the barrier exists: every subtask sees it there.
                self.swaps.arm(id, order.clone());
                self.swap.borrow_mut().waiting = None;
                self.control.swap_barrier(&order.request_id, id);
            }
            for triggers in &self.triggers {
                triggers.send(trigger).map_err(|_| Untriggered::Gone)?;
            }
        }
        Ok(Pending::new(
            id,
            full,
            kind,
            self.triggers.len(),
            n_ops,
            savepoint,
            swap,
        ))
    }

    /// Aborts pending barrier `p` for `reason`: drops what it stored,
    /// fails and removes its savepoint, and counts a checkpoint failure.
    /// Errs when the run cannot go on: a last barrier, or one failure more
    /// than `tolerable_failures`.
    fn abort(
        &self,
        p: Pending,
        reason: &str,
        chain: &mut Chain,
        failures: &mut FailureCount,
    ) -> Result<(), String> {
        if let Some(store) = &self.store {
            if let Err(e) = store.abort(p.id) {
                tracing::warn!(
                    checkpoint_id = p.id,
                    "cannot drop aborted checkpoint {}: {e}",
                    p.id
                );
            }
            // Its changes are lost with it: the next checkpoint starts a chain.
            chain.broken();
        }
        // What the sink pre-committed (or will, when the barrier reaches
        // it) goes with the next checkpoint.
        let _ = self.commits.send(SinkNotice::Aborted(p.id));
        if let Some(order) = &p.swap {
            // The subtasks swap at the barrier all the same; a rollback
            // goes back to the checkpoint before it.
            self.swapped(order, p.id, p.triggered_at_ms);
            self.control.swap_on_probation(&order.request_id, p.id);
        }
        let carried_savepoint = p.savepoint.is_some();
        if let Some(sp) = p.savepoint {
            self.control.savepoint_failed(&sp.request.id, reason);
            sp.writer.abort();
        }
        if p.last {
            tracing::error!(checkpoint_id = p.id, "{reason}");
            // The source ends after a last barrier (or will, once it takes it).
            return Err(format!(
                "{reason}; the job cannot go on past a last barrier"
            ));
        }
        if carried_savepoint || self.store.is_none() {
            // Savepoint failures are not counted.
            tracing::warn!(checkpoint_id = p.id, "{reason}; the job goes on");
            return Ok(());
        }
        self.control.checkpoint_failed(p.id, reason);
        match failures.failed(reason) {
            Ok(tolerated) => tracing::warn!(checkpoint_id = p.id, "{tolerated}"),
            Err(fails) => {
                tracing::error!(checkpoint_id = p.id, "{fails}: failing the job");
                return Err(fails);
            }
        }
        Ok(())
    }
}

fn test_pause() -> Option<Duration> {
    std::env::var("WEIR_TEST_CHECKPOINT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests;
