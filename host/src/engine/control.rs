//! The control plane's handle on a running job: savepoint and stop requests
//! (which enter the data path only through the checkpoint coordinator), and
//! the status, metrics and savepoint results that the REST API reports.
//!
//! One [`JobControl`] lives for the whole `weir run` process, across
//! restarts: a request made while the job restarts is taken by the next
//! run's coordinator. Its requests have a file each: savepoints, stops and
//! the shutdown on a signal ([`savepoints`]), live swaps ([`swaps`]); this
//! file holds the handle itself and the job's status.
//!
//! The queue of requests is bounded: at most [`MAX_REQUESTS_IN_PROGRESS`]
//! savepoint requests may be in progress (queued or being taken) at once; one
//! more is refused with HTTP 429 until one of them completes or fails, so a
//! caller that keeps asking while a checkpoint is stuck cannot pile up work
//! (Flink bounds its pending savepoint triggers the same way). Finished
//! requests are remembered for `GET`, the newest [`MAX_REQUESTS_KEPT`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use crate::engine::errors::{refused, Refusal, RefusalKind};
use crate::engine::upgrades::swap::SwapOrder;
use crate::model::now_ms;
use crate::model::LogicId;
use crate::state::checkpoint::CheckpointStore;

pub mod savepoints;
pub mod swaps;

pub use savepoints::{
    SavepointRequest, SavepointState, SavepointStatus, MAX_REQUESTS_IN_PROGRESS, MAX_REQUESTS_KEPT,
};
pub use swaps::{SwapContext, SwapRequest, SwapState, SwapStatus};

/// The job's lifecycle, as the REST API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Loading operators, restoring state.
    Initializing,
    /// Processing.
    Running,
    /// Failed; waiting to restart.
    Restarting,
    /// A stop-with-savepoint is under way.
    Stopping,
    /// Reached the end of its input.
    Finished,
    /// Stopped with a savepoint.
    Stopped,
    /// Gave up.
    Failed,
}

/// An operator of the job, as the REST API reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OperatorStatus {
    /// The operator ID.
    pub id: String,
    /// The logic it runs.
    #[serde(flatten)]
    pub logic: LogicId,
    /// Subtasks.
    pub parallelism: u32,
}

/// The last failed checkpoint, as the REST API reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointFailure {
    /// Its ID.
    pub id: u64,
    /// When it failed (ms since the Unix epoch).
    pub failed_at_ms: i64,
    /// Why: timed out, or its storage write failed.
    pub reason: String,
}

/// The last completed checkpoint, as the REST API reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckpointSummary {
    /// Its ID.
    pub id: u64,
    /// When it completed (ms since the Unix epoch).
    pub completed_at_ms: i64,
    /// How long it took from trigger to completion.
    pub duration_ms: i64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Whether it was a full checkpoint.
    pub full: bool,
}

struct Status {
    state: JobState,
    attempt: u32,
    failure: Option<String>,
    last_checkpoint: Option<CheckpointSummary>,
    last_failed_checkpoint: Option<CheckpointFailure>,
    /// Checkpoints that failed, over the life of the process.
    failed_checkpoints: u64,
    /// (time ms, events in, events out) one second ago or so, for throughput.
    sample: (i64, u64, u64),
    rate: (f64, f64),
}

/// The job's status, as the control plane reports it.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// The job's name (its ID).
    pub job: String,
    /// Where it is.
    pub state: JobState,
    /// When this process started it (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// Restarts after failures so far.
    pub attempt: u32,
    /// The last failure, in one line.
    pub last_failure: Option<String>,
    /// Events read by the source.
    pub events_in: u64,
    /// Events written by the sink.
    pub events_out: u64,
    /// Events in and out per second, over the last second or so.
    pub rate: (f64, f64),
    /// The last completed checkpoint.
    pub last_checkpoint: Option<CheckpointSummary>,
    /// Checkpoints that failed, over the life of the process.
    pub failed_checkpoints: u64,
    /// The last checkpoint that failed.
    pub last_failed_checkpoint: Option<CheckpointFailure>,
    /// The job takes checkpoints.
    pub checkpointing: bool,
}

/// Counters the stages update as they go.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events read by the source.
    pub events_in: AtomicU64,
    /// Events written by the sink.
    pub events_out: AtomicU64,
}

/// The control plane's handle on the job of this process.
pub struct JobControl {
    /// The job's name (its ID in the REST API).
    pub job: String,
    /// The operators, with the logic each runs now.
    operators: Mutex<Vec<OperatorStatus>>,
    /// Live counters.
    pub metrics: Metrics,
    /// Latencies a `latency = true` blackhole sink recorded, when it ends.
    pub latency: crate::connectors::latency::LatencySlot,
    /// Shadow runs of candidate logic ([`crate::engine::upgrades::shadow`]).
    pub shadow: Arc<crate::engine::upgrades::shadow::ShadowControl>,
    started_at_ms: i64,
    base_dir: PathBuf,
    default_target: Option<PathBuf>,
    replayable: bool,
    store: Mutex<Option<CheckpointStore>>,
    requests: (Sender<SavepointRequest>, Receiver<SavepointRequest>),
    savepoints: Mutex<BTreeMap<String, SavepointStatus>>,
    status: Mutex<Status>,
    stopping: AtomicBool,
    stop_reported: AtomicBool,
    next_request: AtomicU64,
    /// What a live swap request is checked against, once the job runs.
    swap_ctx: Mutex<Option<SwapContext>>,
    /// Every swap asked for, oldest first.
    swaps: Mutex<Vec<SwapStatus>>,
    swap_orders: (Sender<Arc<SwapOrder>>, Receiver<Arc<SwapOrder>>),
    /// The order of the swap under way, for its logic once it completes.
    swap_order: Mutex<Option<Arc<SwapOrder>>>,
    /// A swap that ended, whose outcome no one has read yet.
    swap_unread: Mutex<Option<String>>,
    /// Held through a swap request: one is checked and queued at a time.
    swap_requesting: Mutex<()>,
}

impl JobControl {
    /// A handle for job `job`. Relative savepoint directories are relative
    /// to `base_dir` (the job file's directory); `default_target` is the job
    /// file's `[savepoint] dir`; `replayable`: the source can seek back, so
    /// savepoints can be taken. The checkpoint store is set once opened.
    pub fn new(
        job: &str,
        operators: Vec<OperatorStatus>,
        base_dir: &Path,
        default_target: Option<PathBuf>,
        replayable: bool,
    ) -> Self {
        let now = now_ms();
        JobControl {
            job: job.to_string(),
            operators: Mutex::new(operators),
            metrics: Metrics::default(),
            latency: Default::default(),
            shadow: Default::default(),
            started_at_ms: now,
            base_dir: base_dir.to_path_buf(),
            default_target,
            replayable,
            store: Mutex::new(None),
            requests: crossbeam_channel::unbounded(),
            savepoints: Mutex::new(BTreeMap::new()),
            status: Mutex::new(Status {
                state: JobState::Initializing,
                attempt: 0,
                failure: None,
                last_checkpoint: None,
                last_failed_checkpoint: None,
                failed_checkpoints: 0,
                sample: (now, 0, 0),
                rate: (0.0, 0.0),
            }),
            stopping: AtomicBool::new(false),
            stop_reported: AtomicBool::new(false),
            next_request: AtomicU64::new(1),
            swap_ctx: Mutex::new(None),
            swaps: Mutex::new(Vec::new()),
            swap_orders: crossbeam_channel::unbounded(),
            swap_order: Mutex::new(None),
            swap_unread: Mutex::new(None),
            swap_requesting: Mutex::new(()),
        }
    }

    /// Starts a shadow run (see [`crate::engine::upgrades::shadow::ShadowControl::start`]);
    /// refused once the job has ended.
    pub fn start_shadow(
        &self,
        request: &crate::engine::upgrades::shadow::ShadowRequest,
    ) -> Result<crate::engine::upgrades::shadow::LiveStatus, Refusal> {
        self.refuse_once_ended("no shadow run can start")?;
        self.shadow.start(request)
    }

    /// Refuses a request once the job has ended (finished, stopped or
    /// failed): `the job is finished: {what}`.
    pub(crate) fn refuse_once_ended(&self, what: &str) -> Result<(), Refusal> {
        let state = self.state();
        if matches!(
            state,
            JobState::Finished | JobState::Stopped | JobState::Failed
        ) {
            return Err(refused(
                RefusalKind::Conflict,
                format!("the job is {state:?}: {what}").to_lowercase(),
            ));
        }
        Ok(())
    }

    /// Sets the job's checkpoint database, once it is open.
    pub fn set_store(&self, store: CheckpointStore) {
        *self.store.lock().expect("store lock") = Some(store);
    }

    /// Whether a stop was requested and its result has been read (or there
    /// was no REST API to read it from).
    pub fn stop_reported(&self) -> bool {
        self.stop_reported.load(Ordering::SeqCst)
    }

    /// The job's state.
    pub fn state(&self) -> JobState {
        self.status.lock().expect("status lock").state
    }

    /// Sets the job's state.
    pub fn set_state(&self, state: JobState) {
        self.status.lock().expect("status lock").state = state;
    }

    /// Records a restart after `failure`.
    pub fn restarting(&self, attempt: u32, failure: &str) {
        let mut s = self.status.lock().expect("status lock");
        s.state = JobState::Restarting;
        s.attempt = attempt;
        s.failure = Some(failure.to_string());
    }

    /// Records the job's final failure.
    pub fn failed(&self, failure: &str) {
        let mut s = self.status.lock().expect("status lock");
        s.state = JobState::Failed;
        s.failure = Some(failure.to_string());
    }

    /// Records a completed checkpoint.
    pub fn checkpoint_completed(&self, summary: CheckpointSummary) {
        self.status.lock().expect("status lock").last_checkpoint = Some(summary);
    }

    /// Records a failed checkpoint (timed out, or not stored).
    pub fn checkpoint_failed(&self, id: u64, reason: &str) {
        let mut s = self.status.lock().expect("status lock");
        s.failed_checkpoints += 1;
        s.last_failed_checkpoint = Some(CheckpointFailure {
            id,
            failed_at_ms: now_ms(),
            reason: reason.to_string(),
        });
    }

    /// Updates the throughput from the counters (called about once a second).
    pub fn sample(&self) {
        let now = now_ms();
        let ins = self.metrics.events_in.load(Ordering::Relaxed);
        let outs = self.metrics.events_out.load(Ordering::Relaxed);
        let mut s = self.status.lock().expect("status lock");
        let (t, i, o) = s.sample;
        let secs = (now - t) as f64 / 1000.0;
        if secs > 0.0 {
            s.rate = (
                ins.saturating_sub(i) as f64 / secs,
                outs.saturating_sub(o) as f64 / secs,
            );
            s.sample = (now, ins, outs);
        }
    }

    /// The operators and the logic each runs.
    pub fn operators(&self) -> Vec<OperatorStatus> {
        self.operators.lock().expect("operators lock").clone()
    }

    /// The job's status now.
    pub fn status(&self) -> JobStatus {
        let s = self.status.lock().expect("status lock");
        JobStatus {
            job: self.job.clone(),
            state: s.state,
            started_at_ms: self.started_at_ms,
            attempt: s.attempt,
            last_failure: s.failure.clone(),
            events_in: self.metrics.events_in.load(Ordering::Relaxed),
            events_out: self.metrics.events_out.load(Ordering::Relaxed),
            rate: s.rate,
            last_checkpoint: s.last_checkpoint.clone(),
            failed_checkpoints: s.failed_checkpoints,
            last_failed_checkpoint: s.last_failed_checkpoint.clone(),
            checkpointing: self.store.lock().expect("store lock").is_some(),
        }
    }

    /// The job's checkpoint store, once open (none: it takes no checkpoints).
    pub fn store(&self) -> Option<CheckpointStore> {
        self.store.lock().expect("store lock").clone()
    }
}
