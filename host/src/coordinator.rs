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
//! For crash tests, `WEIR_TEST_CHECKPOINT_PAUSE_MS` makes the coordinator
//! wait that long between writing a checkpoint's data and marking it
//! complete, so that a kill lands in the middle of checkpoint writes.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::{
    CheckpointMeta, CheckpointStore, OperatorMeta, SinkState, SourceState, TimerRecord,
    FORMAT_VERSION,
};
use crate::control::{CheckpointSummary, JobControl, SavepointRequest};
use crate::host_timers::now_ms;
use crate::savepoint::{self, DataFile, SavedOperator, SavedState, SavepointKind, SavepointWriter};
use crate::state::StateChange;
use crate::stream::Barrier;

/// What a stage tells the coordinator.
pub enum Ack {
    /// The source injected barrier `id` at this position.
    Source {
        /// Checkpoint ID.
        id: u64,
        /// Its position; `None` for a source that cannot seek (stdin), which
        /// takes part only in the final barrier of a job without checkpoints.
        state: Option<SourceState>,
    },
    /// A subtask's snapshot at barrier `id`.
    Subtask {
        /// Checkpoint ID.
        id: u64,
        /// Index of the operator in the job.
        operator: usize,
        /// Index of the subtask.
        subtask: u32,
        /// The key groups it owns.
        key_groups: Range<u32>,
        /// Changed (or, for a full checkpoint, all) state.
        changes: Vec<StateChange>,
        /// Timers by key group.
        timers: Vec<(u32, Vec<TimerRecord>)>,
        /// Its watermark.
        watermark: i64,
        /// Keys it holds.
        keys: u64,
        /// Bytes of keys and values it holds.
        state_bytes: u64,
    },
    /// The sink pre-committed everything before barrier `id`.
    Sink {
        /// Checkpoint ID.
        id: u64,
        /// Its state, if it takes part in checkpoints.
        state: Option<SinkState>,
    },
    /// The source has read its whole input and waits for the final checkpoint.
    EndOfInput,
}

/// A request to the source to inject a barrier.
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    /// The barrier.
    pub barrier: Barrier,
    /// For a last barrier while input remains (a stop): first send a
    /// watermark of +∞, so that every event-time timer fires.
    pub drain: bool,
}

/// The job's operators, as checkpoint metadata describes them.
#[derive(Debug, Clone)]
pub struct OperatorInfo {
    /// The operator ID.
    pub id: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// Declared states: name, kind, version.
    pub states: Vec<(String, String, u32)>,
    /// The logic's name, from `describe()`.
    pub name: String,
    /// The logic's version.
    pub version: String,
    /// Hex SHA-256 of the `.wasm`.
    pub wasm_sha256: String,
}

/// The coordinator of one run of a job.
pub struct Coordinator {
    /// Where checkpoints go; `None` when the job takes none (savepoints only).
    pub store: Option<CheckpointStore>,
    /// The job's name.
    pub job: String,
    /// The job's key groups.
    pub max_parallelism: u32,
    /// The operators, in job order.
    pub operators: Vec<OperatorInfo>,
    /// Time between checkpoints; `None`: only the final one.
    pub interval: Option<Duration>,
    /// Completed checkpoints to keep.
    pub retain: usize,
    /// The chain of the checkpoint this run restored from (empty: none).
    pub parent_chain: Vec<u64>,
    /// Acknowledgements from the stages.
    pub acks: Receiver<Ack>,
    /// Triggers to the source.
    pub triggers: Sender<Trigger>,
    /// Completed checkpoint IDs, to the sink.
    pub commits: Sender<u64>,
    /// Closed (its sender dropped) when the run fails: stop at once.
    pub cancel: Receiver<()>,
    /// Savepoint and stop requests, and where results are reported.
    pub control: Arc<JobControl>,
    /// The lowest ID this run may use (above the restored snapshot's).
    pub first_id: u64,
}

/// A savepoint riding on a pending barrier.
struct PendingSavepoint {
    request: SavepointRequest,
    writer: SavepointWriter,
    /// Per operator: data files, keys per state, timers.
    files: Vec<Vec<DataFile>>,
    keys: Vec<std::collections::BTreeMap<String, u64>>,
    timers: Vec<u64>,
}

struct Pending {
    id: u64,
    full: bool,
    last: bool,
    triggered_at_ms: i64,
    started: Instant,
    source: Option<Option<SourceState>>,
    sink: Option<Option<SinkState>>,
    subtasks: usize,
    bytes: u64,
    watermark: i64,
    keys: Vec<u64>,
    state_bytes: Vec<u64>,
    op_bytes: Vec<u64>,
    savepoint: Option<PendingSavepoint>,
    /// The input had ended: the last barrier finishes the job.
    finished: bool,
}

/// How a run's checkpointing ended.
pub enum CoordinatorEnd {
    /// The final checkpoint completed: the input is done.
    Finished,
    /// A stop-with-savepoint completed: the job stops, its savepoint is here.
    StoppedWithSavepoint(PathBuf),
    /// The stages went away first (the run failed or was stopped).
    Stopped,
}

impl Coordinator {
    fn subtasks(&self) -> usize {
        self.operators.iter().map(|o| o.parallelism as usize).sum()
    }

    /// Full when starting a chain, else when the chain's deltas add up to
    /// more than its full checkpoint (or it is long): restores stay cheap.
    fn next_is_full(&self, chain: &[u64], chain_bytes: &[u64]) -> bool {
        if self.store.is_none() {
            return false;
        }
        if chain.is_empty() || chain.len() >= 32 {
            return true;
        }
        let full = chain_bytes.first().copied().unwrap_or(0);
        let deltas: u64 = chain_bytes.iter().skip(1).sum();
        deltas > full.max(1 << 20)
    }

    /// Runs until the final checkpoint completes or the stages go away. A
    /// savepoint that could not complete is reported failed, and its
    /// partial directory removed.
    pub fn run(self) -> Result<CoordinatorEnd, String> {
        let mut pending: Option<Pending> = None;
        let mut waiting: VecDeque<SavepointRequest> = VecDeque::new();
        let result = self.run_until_done(&mut pending, &mut waiting);
        let why = match &result {
            Err(e) => format!("the job failed: {e}"),
            Ok(_) => "the job stopped before the savepoint completed".to_string(),
        };
        if let Some(sp) = pending.and_then(|p| p.savepoint) {
            self.control.savepoint_failed(&sp.request.id, &why);
            sp.writer.abort();
        }
        for request in waiting {
            self.control.savepoint_failed(&request.id, &why);
        }
        result
    }

    fn run_until_done(
        &self,
        pending: &mut Option<Pending>,
        waiting: &mut VecDeque<SavepointRequest>,
    ) -> Result<CoordinatorEnd, String> {
        let mut chain = self.parent_chain.clone();
        let mut chain_bytes: Vec<u64> = Vec::new();
        if let (Some(&last), Some(store)) = (chain.last(), &self.store) {
            if let Ok(Some(meta)) = store.get(last) {
                for id in &meta.chain {
                    let b = store
                        .get(*id)
                        .ok()
                        .flatten()
                        .map(|m| m.bytes_written)
                        .unwrap_or(0);
                    chain_bytes.push(b);
                }
            }
        }
        let mut next_id = self
            .store
            .as_ref()
            .map_or(1, CheckpointStore::next_id)
            .max(self.first_id);
        let mut end_requested = false;
        let mut stopping = false;
        let mut next_trigger = self.interval.map(|i| Instant::now() + i);
        let requests = self.control.requests();
        loop {
            if pending.is_none() && !stopping {
                // A requested savepoint goes first; the final checkpoint carries one if asked.
                let savepoint = waiting
                    .pop_front()
                    .and_then(|r| self.prepare_savepoint(r, next_id));
                if end_requested || savepoint.is_some() {
                    stopping = savepoint.as_ref().is_some_and(|s| s.request.stop.is_some());
                    let last = end_requested || stopping;
                    match self.trigger(
                        next_id,
                        last,
                        savepoint,
                        &chain,
                        &chain_bytes,
                        end_requested,
                    ) {
                        Some(p) => *pending = Some(p),
                        None => return Ok(CoordinatorEnd::Stopped),
                    }
                    next_id += 1;
                }
            }
            let deadline = if pending.is_none() {
                next_trigger
            } else {
                None
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
                recv(requests) -> request => {
                    if let Ok(request) = request {
                        if stopping {
                            self.control.savepoint_failed(&request.id, "the job is stopping");
                        } else {
                            waiting.push_back(request);
                        }
                    }
                    continue;
                }
                default(timeout) => {
                    if deadline.is_none() {
                        continue;
                    }
                    None
                }
            };
            let Some(ack) = ack else {
                match self.trigger(next_id, false, None, &chain, &chain_bytes, false) {
                    Some(p) => *pending = Some(p),
                    None => return Ok(CoordinatorEnd::Stopped),
                }
                next_id += 1;
                continue;
            };
            match ack {
                Ack::EndOfInput => end_requested = true,
                Ack::Source { id, state } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.source = Some(state);
                    }
                }
                Ack::Sink { id, state } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        p.sink = Some(state);
                    }
                }
                Ack::Subtask {
                    id,
                    operator,
                    subtask,
                    key_groups,
                    changes,
                    timers,
                    watermark,
                    keys,
                    state_bytes,
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        let op = &self.operators[operator].id;
                        if let Some(store) = &self.store {
                            let bytes = store
                                .write_changes(id, op, &changes)
                                .map_err(|e| e.to_string())?
                                + store
                                    .write_timers(id, op, &timers)
                                    .map_err(|e| e.to_string())?;
                            p.bytes += bytes;
                            p.op_bytes[operator] += bytes;
                        }
                        if let Some(sp) = p.savepoint.as_mut() {
                            let name = format!("op{operator}-sub{subtask}.state");
                            let (file, state_keys) = sp
                                .writer
                                .write_data(&name, key_groups, &changes, &timers)
                                .map_err(|e| e.to_string())?;
                            sp.files[operator].push(file);
                            for (state, n) in state_keys {
                                *sp.keys[operator].entry(state).or_default() += n;
                            }
                            sp.timers[operator] +=
                                timers.iter().map(|(_, t)| t.len() as u64).sum::<u64>();
                        }
                        p.keys[operator] += keys;
                        p.state_bytes[operator] += state_bytes;
                        p.watermark = p.watermark.min(watermark);
                        p.subtasks += 1;
                    }
                }
            }
            let complete = pending.as_ref().is_some_and(|p| {
                p.source.is_some() && p.sink.is_some() && p.subtasks == self.subtasks()
            });
            if complete {
                let p = pending.take().expect("complete implies pending");
                if let Some(end) = self.complete(p, &mut chain, &mut chain_bytes)? {
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
        chain: &mut Vec<u64>,
        chain_bytes: &mut Vec<u64>,
    ) -> Result<Option<CoordinatorEnd>, String> {
        if p.full {
            chain.clear();
            chain_bytes.clear();
        }
        chain.push(p.id);
        chain_bytes.push(p.bytes);
        let source = p.source.take().expect("checked").unwrap_or(SourceState {
            position: crate::checkpoint::SourcePosition::Generator { next: 0 },
            max_timestamp: i64::MIN,
        });
        let sink = p.sink.take().expect("checked");
        let meta = CheckpointMeta {
            format: FORMAT_VERSION,
            id: p.id,
            chain: chain.clone(),
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
        if let Some(store) = &self.store {
            store.complete(&meta).map_err(|e| e.to_string())?;
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
        if let Some(sp) = p.savepoint.take() {
            let request_id = sp.request.id.clone();
            let stop = sp.request.stop.is_some();
            match self.finish_savepoint(sp, &meta, &p) {
                Ok(dir) => {
                    tracing::info!(
                        checkpoint_id = p.id,
                        "savepoint {} complete in {:.1} ms: {}",
                        p.id,
                        p.started.elapsed().as_secs_f64() * 1e3,
                        dir.display()
                    );
                    self.control.savepoint_completed(&request_id, &dir);
                    if stop {
                        stopped_at = Some(dir);
                    }
                }
                Err(e) => {
                    self.control.savepoint_failed(&request_id, &e);
                    if stop {
                        // The stop barrier has gone through: the job cannot go on.
                        return Err(format!("stop-with-savepoint failed: {e}"));
                    }
                    tracing::warn!("savepoint {} failed: {e}", p.id);
                }
            }
        }
        // The sink publishes what the checkpoint covers; it may be gone if the job failed.
        let _ = self.commits.send(p.id);
        if let Some(store) = &self.store {
            store
                .retain(self.retain, false)
                .map_err(|e| e.to_string())?;
        }
        if let Some(dir) = stopped_at {
            return Ok(Some(CoordinatorEnd::StoppedWithSavepoint(dir)));
        }
        if p.last {
            return Ok(Some(CoordinatorEnd::Finished));
        }
        Ok(None)
    }

    fn finish_savepoint(
        &self,
        sp: PendingSavepoint,
        meta: &CheckpointMeta,
        p: &Pending,
    ) -> Result<PathBuf, String> {
        let kind = match sp.request.stop {
            None => SavepointKind::Triggered,
            Some(false) => SavepointKind::Stop,
            Some(true) => SavepointKind::StopDrain,
        };
        let mut manifest = savepoint::new_metadata(
            &self.job,
            p.id,
            kind,
            p.triggered_at_ms,
            self.max_parallelism,
            meta.finished,
            meta.source.clone(),
            meta.sink.clone(),
            meta.watermark,
        );
        for (i, o) in self.operators.iter().enumerate() {
            let mut files = sp.files[i].clone();
            files.sort_by_key(|f| f.key_groups);
            manifest.operators.push(SavedOperator {
                id: o.id.clone(),
                name: o.name.clone(),
                version: o.version.clone(),
                wasm_sha256: o.wasm_sha256.clone(),
                parallelism: o.parallelism,
                states: o
                    .states
                    .iter()
                    .map(|(name, kind, version)| SavedState {
                        name: name.clone(),
                        kind: kind.clone(),
                        version: *version,
                        keys: sp.keys[i].get(name).copied().unwrap_or(0),
                    })
                    .collect(),
                timers: sp.timers[i],
                state_bytes: p.state_bytes[i],
                files,
            });
        }
        sp.writer.finish(&manifest).map_err(|e| e.to_string())
    }

    /// Starts writing a requested savepoint; on failure (say, a directory
    /// that cannot be created) the request fails and the job goes on.
    fn prepare_savepoint(&self, request: SavepointRequest, id: u64) -> Option<PendingSavepoint> {
        let n_ops = self.operators.len();
        match SavepointWriter::create(&request.target, &self.job, id, now_ms()) {
            Ok(writer) => Some(PendingSavepoint {
                request,
                writer,
                files: vec![Vec::new(); n_ops],
                keys: vec![Default::default(); n_ops],
                timers: vec![0; n_ops],
            }),
            Err(e) => {
                tracing::warn!("savepoint request {} failed: {e}", request.id);
                self.control.savepoint_failed(&request.id, &e.to_string());
                None
            }
        }
    }

    fn trigger(
        &self,
        id: u64,
        last: bool,
        savepoint: Option<PendingSavepoint>,
        chain: &[u64],
        chain_bytes: &[u64],
        input_ended: bool,
    ) -> Option<Pending> {
        let n_ops = self.operators.len();
        let full = savepoint.is_some() || self.next_is_full(chain, chain_bytes);
        let drain = savepoint
            .as_ref()
            .is_some_and(|s| s.request.stop == Some(true));
        let stop = !input_ended
            && savepoint
                .as_ref()
                .is_some_and(|s| s.request.stop == Some(false));
        tracing::debug!(
            checkpoint_id = id,
            full,
            last,
            stop,
            drain,
            "triggering barrier {id}"
        );
        self.triggers
            .send(Trigger {
                barrier: Barrier {
                    id,
                    full,
                    last,
                    stop,
                },
                drain,
            })
            .ok()?;
        Some(Pending {
            id,
            full,
            last,
            triggered_at_ms: now_ms(),
            started: Instant::now(),
            source: None,
            sink: None,
            subtasks: 0,
            bytes: 0,
            watermark: i64::MAX,
            keys: vec![0; n_ops],
            state_bytes: vec![0; n_ops],
            op_bytes: vec![0; n_ops],
            savepoint,
            finished: last && input_ended,
        })
    }
}

fn test_pause() -> Option<Duration> {
    std::env::var("WEIR_TEST_CHECKPOINT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}
