//! The checkpoint coordinator: triggers checkpoints at the source, collects
//! every subtask's and the sink's acknowledgement, writes the snapshots to
//! the [`CheckpointStore`] as they arrive (on its own thread, so processing
//! never waits for storage), marks a checkpoint complete only when all have
//! acknowledged, then tells the sink to publish and applies retention.
//!
//! At the end of a bounded input the source asks for a final checkpoint;
//! when it completes, everything is published and the job may end.
//!
//! For crash tests, `WEIR_TEST_CHECKPOINT_PAUSE_MS` makes the coordinator
//! wait that long between writing a checkpoint's data and marking it
//! complete, so that a kill lands in the middle of checkpoint writes.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::{
    CheckpointMeta, CheckpointStore, OperatorMeta, SinkState, SourceState, TimerRecord,
    FORMAT_VERSION,
};
use crate::host_timers::now_ms;
use crate::state::StateChange;
use crate::stream::Barrier;

/// What a stage tells the coordinator.
pub enum Ack {
    /// The source injected barrier `id` at this position.
    Source {
        /// Checkpoint ID.
        id: u64,
        /// Its position.
        state: SourceState,
    },
    /// A subtask's snapshot at barrier `id`.
    Subtask {
        /// Checkpoint ID.
        id: u64,
        /// Index of the operator in the job.
        operator: usize,
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
    /// The last checkpoint of a finished input.
    pub last: bool,
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
}

/// The coordinator of one run of a job.
pub struct Coordinator {
    /// Where checkpoints go.
    pub store: CheckpointStore,
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
}

struct Pending {
    id: u64,
    full: bool,
    last: bool,
    triggered_at_ms: i64,
    started: Instant,
    source: Option<SourceState>,
    sink: Option<Option<SinkState>>,
    subtasks: usize,
    bytes: u64,
    watermark: i64,
    keys: Vec<u64>,
    state_bytes: Vec<u64>,
    op_bytes: Vec<u64>,
}

/// How a run's checkpointing ended.
pub enum CoordinatorEnd {
    /// The final checkpoint completed: the input is done.
    Finished,
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
        if chain.is_empty() || chain.len() >= 32 {
            return true;
        }
        let full = chain_bytes.first().copied().unwrap_or(0);
        let deltas: u64 = chain_bytes.iter().skip(1).sum();
        deltas > full.max(1 << 20)
    }

    /// Runs until the final checkpoint completes or the stages go away.
    pub fn run(self) -> Result<CoordinatorEnd, String> {
        let mut chain = self.parent_chain.clone();
        let mut chain_bytes: Vec<u64> = Vec::new();
        if let Some(&last) = chain.last() {
            if let Ok(Some(meta)) = self.store.get(last) {
                for id in &meta.chain {
                    let b = self
                        .store
                        .get(*id)
                        .ok()
                        .flatten()
                        .map(|m| m.bytes_written)
                        .unwrap_or(0);
                    chain_bytes.push(b);
                }
            }
        }
        let mut next_id = self.store.next_id();
        let mut pending: Option<Pending> = None;
        let mut end_requested = false;
        let mut next_trigger = self.interval.map(|i| Instant::now() + i);
        let n_ops = self.operators.len();
        loop {
            if pending.is_none() && end_requested {
                let Some(p) = self.trigger(next_id, false, true, &chain, &chain_bytes, n_ops)
                else {
                    return Ok(CoordinatorEnd::Stopped);
                };
                pending = Some(p);
                next_id += 1;
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
                default(timeout) => {
                    if deadline.is_none() {
                        continue;
                    }
                    None
                }
            };
            let Some(ack) = ack else {
                let Some(p) = self.trigger(next_id, false, false, &chain, &chain_bytes, n_ops)
                else {
                    return Ok(CoordinatorEnd::Stopped);
                };
                pending = Some(p);
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
                    changes,
                    timers,
                    watermark,
                    keys,
                    state_bytes,
                } => {
                    if let Some(p) = pending.as_mut().filter(|p| p.id == id) {
                        let op = &self.operators[operator].id;
                        let bytes = self
                            .store
                            .write_changes(id, op, &changes)
                            .map_err(|e| e.to_string())?
                            + self
                                .store
                                .write_timers(id, op, &timers)
                                .map_err(|e| e.to_string())?;
                        p.bytes += bytes;
                        p.op_bytes[operator] += bytes;
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
                if p.full {
                    chain.clear();
                    chain_bytes.clear();
                }
                chain.push(p.id);
                chain_bytes.push(p.bytes);
                let meta = CheckpointMeta {
                    format: FORMAT_VERSION,
                    id: p.id,
                    chain: chain.clone(),
                    job: self.job.clone(),
                    max_parallelism: self.max_parallelism,
                    triggered_at_ms: p.triggered_at_ms,
                    completed_at_ms: now_ms(),
                    bytes_written: p.bytes,
                    finished: p.last,
                    source: p.source.expect("checked"),
                    sink: p.sink.expect("checked"),
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
                self.store.complete(&meta).map_err(|e| e.to_string())?;
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
                // The sink publishes what the checkpoint covers; it may be gone if the job failed.
                let _ = self.commits.send(p.id);
                self.store
                    .retain(self.retain, false)
                    .map_err(|e| e.to_string())?;
                if p.last {
                    return Ok(CoordinatorEnd::Finished);
                }
                next_trigger = self.interval.map(|i| Instant::now() + i);
            }
        }
    }

    fn trigger(
        &self,
        id: u64,
        full: bool,
        last: bool,
        chain: &[u64],
        chain_bytes: &[u64],
        n_ops: usize,
    ) -> Option<Pending> {
        let full = full || self.next_is_full(chain, chain_bytes);
        tracing::debug!(checkpoint_id = id, full, last, "triggering checkpoint {id}");
        self.triggers
            .send(Trigger {
                barrier: Barrier { id, full, last },
                last,
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
        })
    }
}

fn test_pause() -> Option<Duration> {
    std::env::var("WEIR_TEST_CHECKPOINT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}
