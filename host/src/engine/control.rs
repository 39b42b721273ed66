//! The control plane's handle on a running job: savepoint and stop requests
//! (which enter the data path only through the checkpoint coordinator), and
//! the status, metrics and savepoint results that the REST API reports.
//!
//! One [`JobControl`] lives for the whole `weir run` process, across
//! restarts: a request made while the job restarts is taken by the next
//! run's coordinator.
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
use crate::engine::upgrades::swap::{Probation, SwapOrder};
use crate::model::now_ms;
use crate::model::LogicId;
use crate::state::checkpoint::CheckpointStore;
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

/// Savepoint requests that may be in progress at once; more are refused (429).
pub const MAX_REQUESTS_IN_PROGRESS: usize = 8;

/// Finished savepoint requests remembered for `GET /jobs/{id}/savepoints`.
pub const MAX_REQUESTS_KEPT: usize = 256;

/// A request for a savepoint, perhaps followed by a stop.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    /// The request ID the caller polls.
    pub id: String,
    /// The directory the savepoint goes in (absolute).
    pub target: PathBuf,
    /// `Some(drain)`: stop the job right after the savepoint.
    pub stop: Option<bool>,
    /// No savepoint: stop at a last checkpoint (a graceful shutdown on a signal).
    pub checkpoint_only: bool,
}

/// Where a savepoint request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointState {
    /// Requested or being taken.
    InProgress,
    /// Written: `location` says where.
    Completed,
    /// Not taken: `failure` says why.
    Failed,
}

/// A savepoint request's status, as `GET /jobs/{id}/savepoints/{request-id}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointStatus {
    /// The request ID.
    pub request_id: String,
    /// Where it is.
    pub status: SavepointState,
    /// The savepoint directory, once completed.
    pub location: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The directory it was asked for in.
    pub target_directory: String,
    /// Whether the job stops after it.
    pub stop: bool,
    /// Whether event time is drained before it.
    pub drain: bool,
    /// When it was requested (ms since the Unix epoch).
    pub requested_at_ms: i64,
}

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

/// Where a live swap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SwapState {
    /// Accepted, waiting for its barrier (or at it).
    InProgress,
    /// The new logic runs; its output is held until the probation passes.
    Probation,
    /// The new logic passed its probation and runs on.
    Completed,
    /// The old logic is back: `reason` says why.
    RolledBack,
}

/// A live swap, as `GET /jobs/{id}/swaps/{request-id}` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SwapStatus {
    /// The request ID.
    pub request_id: String,
    /// The operator ID.
    pub operator: String,
    /// Where it is.
    pub status: SwapState,
    /// Why it rolled back.
    pub reason: Option<String>,
    /// The logic before.
    pub from: LogicId,
    /// The logic after.
    pub to: LogicId,
    /// Its probation (`30s`, `1000 events`).
    pub probation: String,
    /// The checkpoint barrier it swapped at.
    pub barrier: Option<u64>,
    /// The checkpoint that ended its probation.
    pub completed_at_checkpoint: Option<u64>,
    /// When it was asked for (ms since the Unix epoch).
    pub requested_at_ms: i64,
    /// When it completed or rolled back.
    pub ended_at_ms: Option<i64>,
}

/// What a swap request is checked against: set by the runtime once the job runs.
#[derive(Clone)]
pub struct SwapContext {
    /// The engine that loads and compiles the new `.wasm`.
    pub components: Arc<Components>,
    /// Each operator's logic now.
    pub logic: Vec<OperatorImpl>,
    /// The job takes periodic checkpoints into this store.
    pub store: Option<CheckpointStore>,
    /// How long a Kafka sink's transaction may stay open (exactly-once only).
    pub transaction_timeout: Option<std::time::Duration>,
    /// Each operator's config, grants and budgets.
    pub setups: Vec<crate::wasm::operator::Setup>,
    /// The job's key groups.
    pub max_parallelism: u32,
}

/// A swap asked for: the operator, its new `.wasm`, the probation, the dead-letter share.
#[derive(Debug, Clone)]
pub struct SwapRequest {
    /// The operator ID.
    pub operator: String,
    /// The new `.wasm` (absolute, or relative to the job file's directory).
    pub wasm: PathBuf,
    /// How long it is on probation.
    pub probation: Probation,
    /// Largest share of events (0 to 1) it may dead-letter on probation.
    pub max_dead_letter_share: f64,
}

/// When `plan` migrates state: runs the new logic's `migrate` over the
/// operator's state in its newest checkpoint (all key groups, in one
/// throw-away instance, without the state budgets), so that a value it
/// refuses is named before the swap's barrier. Keys written since that
/// checkpoint are migrated, and may still fail, at the barrier.
fn dry_migrate(
    ctx: &SwapContext,
    store: &CheckpointStore,
    index: usize,
    operator: &str,
    logic: &OperatorImpl,
    plan: &crate::state::restore::OperatorPlan,
) -> Result<(), String> {
    use crate::state::restore::{OperatorPlan, Restore, RestorePlan, RestoreSource, StatePlan};
    if !plan
        .states
        .values()
        .any(|s| matches!(s, StatePlan::Migrate { .. }))
    {
        return Ok(());
    }
    let newest = store
        .list()
        .map_err(|e| e.to_string())?
        .into_iter()
        .rev()
        .find(|m| m.operators.iter().any(|o| o.id == operator));
    let Some(meta) = newest else {
        return Ok(());
    };
    let id = meta.id;
    let mut operators = vec![OperatorPlan::default(); ctx.logic.len()];
    operators[index] = plan.clone();
    let restore = Restore {
        meta,
        source: RestoreSource::Checkpoint(store.clone()),
        plan: Arc::new(RestorePlan {
            operators,
            ..RestorePlan::default()
        }),
    };
    let task = crate::model::TaskInfo {
        operator_id: operator.to_string(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: ctx.max_parallelism,
        attempt: 0,
    };
    let mut setup = ctx.setups[index].clone();
    setup.limits.state_memory = u64::MAX;
    setup.limits.pending_timers = u64::MAX;
    logic
        .start(
            task,
            0..ctx.max_parallelism,
            &setup,
            Some((&restore, index)),
            false,
        )
        .map(drop)
        .map_err(|e| format!("checked against checkpoint {id}: {e}"))
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

    /// Asks for a savepoint in `target` (else the job file's default) and,
    /// with `stop = Some(drain)`, for the job to stop after it. Returns the request ID.
    pub fn request_savepoint(
        &self,
        target: Option<&str>,
        stop: Option<bool>,
    ) -> Result<String, Refusal> {
        if !self.replayable {
            return Err(refused(
                RefusalKind::Conflict,
                "savepoints need a source that can be read again (file or generator); this job reads stdin",
            ));
        }
        let target = match target {
            Some(t) if t.trim().is_empty() => {
                return Err(refused(RefusalKind::Invalid, "`target-directory` is empty"));
            }
            Some(t) => {
                let p = PathBuf::from(t);
                if p.is_absolute() {
                    p
                } else {
                    self.base_dir.join(p)
                }
            }
            None => self.default_target.clone().ok_or_else(|| {
                refused(
                    RefusalKind::Invalid,
                    "no `target-directory` given and the job file has no [savepoint] dir",
                )
            })?,
        };
        let state = self.state();
        if matches!(
            state,
            JobState::Finished | JobState::Stopped | JobState::Failed
        ) {
            return Err(refused(
                RefusalKind::Conflict,
                format!("the job is {state:?}: no savepoint can be taken").to_lowercase(),
            ));
        }
        if let Some(s) = self.swap_under_way() {
            return Err(refused(
                RefusalKind::Conflict,
                format!(
                    "swap {} of operator `{}` is under way: savepoints and stops wait until it completes or rolls back (GET /jobs/{}/swaps/{})",
                    s.request_id, s.operator, self.job, s.request_id
                ),
            ));
        }
        if stop.is_some() {
            if self.stopping.swap(true, Ordering::SeqCst) {
                return Err(refused(
                    RefusalKind::Conflict,
                    "the job is already stopping",
                ));
            }
        } else if self.stopping.load(Ordering::SeqCst) {
            return Err(refused(RefusalKind::Conflict, "the job is stopping"));
        }
        let mut all = self.savepoints.lock().expect("savepoints lock");
        let in_progress = all
            .values()
            .filter(|s| s.status == SavepointState::InProgress)
            .count();
        if in_progress >= MAX_REQUESTS_IN_PROGRESS {
            if stop.is_some() {
                self.stopping.store(false, Ordering::SeqCst);
            }
            return Err(refused(
                RefusalKind::Busy,
                format!("{in_progress} savepoint requests are in progress, the most this job queues: wait until one completes or fails (GET /jobs/{}/savepoints)", self.job),
            ));
        }
        if all.len() >= MAX_REQUESTS_KEPT {
            // Forget the oldest finished request.
            if let Some(oldest) = all
                .values()
                .filter(|s| s.status != SavepointState::InProgress)
                .min_by_key(|s| s.requested_at_ms)
                .map(|s| s.request_id.clone())
            {
                all.remove(&oldest);
            }
        }
        let n = self.next_request.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{}-{n}-{}", self.job, now_ms()).as_bytes())
        );
        let status = SavepointStatus {
            request_id: id.clone(),
            status: SavepointState::InProgress,
            location: None,
            failure: None,
            target_directory: target.display().to_string(),
            stop: stop.is_some(),
            drain: stop.unwrap_or(false),
            requested_at_ms: now_ms(),
        };
        all.insert(id.clone(), status);
        drop(all);
        if stop.is_some() {
            self.set_state(JobState::Stopping);
        }
        let request = SavepointRequest {
            id: id.clone(),
            target,
            stop,
            checkpoint_only: false,
        };
        self.requests
            .0
            .send(request)
            .expect("the receiver lives in self");
        Ok(id)
    }

    /// Asks the job to stop gracefully, as on SIGTERM: with `savepoint`, a
    /// stop-with-savepoint into the job file's `[savepoint] dir` (a stop at
    /// a last checkpoint when that is refused, say during a live swap);
    /// else a stop at a last checkpoint, whose output the sink commits
    /// before the job ends, and which the next start restores. Nobody waits
    /// to read the outcome. Fails when the job is not running (it starts,
    /// restarts or already stops).
    pub fn request_shutdown(&self, savepoint: bool) -> Result<String, String> {
        let state = self.state();
        if state == JobState::Stopping || self.stopping.load(Ordering::SeqCst) {
            // A stop under way (`weir stop`) ends the job: it is waited for.
            return Ok("a stop is already under way".to_string());
        }
        if state != JobState::Running {
            return Err(format!("the job is {state:?}").to_lowercase());
        }
        self.stop_reported.store(true, Ordering::SeqCst);
        if savepoint {
            match self.request_savepoint(None, Some(false)) {
                Ok(_) => {
                    return Ok(format!(
                        "stopping with a savepoint in `{}`",
                        self.default_target
                            .as_ref()
                            .map_or(String::new(), |d| d.display().to_string())
                    ))
                }
                Err(r) => tracing::warn!(
                    "cannot stop with a savepoint ({}): stopping at a last checkpoint instead",
                    r.message
                ),
            }
        }
        if self.stopping.swap(true, Ordering::SeqCst) {
            return Ok("a stop is already under way".to_string());
        }
        self.set_state(JobState::Stopping);
        self.requests
            .0
            .send(SavepointRequest {
                id: "shutdown".to_string(),
                target: PathBuf::new(),
                stop: Some(false),
                checkpoint_only: true,
            })
            .expect("the receiver lives in self");
        Ok("stopping at a last checkpoint".to_string())
    }

    /// Starts a shadow run (see [`crate::engine::upgrades::shadow::ShadowControl::start`]);
    /// refused once the job has ended.
    pub fn start_shadow(
        &self,
        request: &crate::engine::upgrades::shadow::ShadowRequest,
    ) -> Result<serde_json::Value, Refusal> {
        let state = self.state();
        if matches!(
            state,
            JobState::Finished | JobState::Stopped | JobState::Failed
        ) {
            return Err(refused(
                RefusalKind::Conflict,
                format!("the job is {state:?}: no shadow run can start").to_lowercase(),
            ));
        }
        self.shadow.start(request)
    }

    /// Sets the job's checkpoint database, once it is open.
    pub fn set_store(&self, store: CheckpointStore) {
        *self.store.lock().expect("store lock") = Some(store);
    }

    /// The requests, for the coordinator.
    pub fn requests(&self) -> Receiver<SavepointRequest> {
        self.requests.1.clone()
    }

    /// The status of savepoint request `id`. Reading the result of a
    /// completed stop lets the process exit.
    pub fn savepoint(&self, id: &str) -> Option<SavepointStatus> {
        let s = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .get(id)
            .cloned()?;
        if s.stop && s.status == SavepointState::Completed {
            self.stop_reported.store(true, Ordering::SeqCst);
        }
        Some(s)
    }

    /// Every savepoint request, oldest first.
    pub fn savepoints(&self) -> Vec<SavepointStatus> {
        let mut all: Vec<SavepointStatus> = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.requested_at_ms);
        all
    }

    /// Records that savepoint request `id` completed at `location`.
    pub fn savepoint_completed(&self, id: &str, location: &Path) {
        if let Some(s) = self.savepoints.lock().expect("savepoints lock").get_mut(id) {
            s.status = SavepointState::Completed;
            s.location = Some(location.display().to_string());
        }
    }

    /// Records that savepoint request `id` failed.
    pub fn savepoint_failed(&self, id: &str, why: &str) {
        let stop = {
            let mut all = self.savepoints.lock().expect("savepoints lock");
            let Some(s) = all.get_mut(id) else { return };
            s.status = SavepointState::Failed;
            s.failure = Some(why.to_string());
            s.stop
        };
        if stop {
            // The job goes on; another stop may be asked for.
            self.stopping.store(false, Ordering::SeqCst);
            if self.state() == JobState::Stopping {
                self.set_state(JobState::Running);
            }
        }
    }

    /// Fails every request not yet taken (the job ended first).
    pub fn fail_outstanding(&self, why: &str) {
        while self.requests.1.try_recv().is_ok() {}
        let ids: Vec<String> = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .values()
            .filter(|s| s.status == SavepointState::InProgress)
            .map(|s| s.request_id.clone())
            .collect();
        for id in ids {
            self.savepoint_failed(&id, why);
        }
    }

    /// Asks for a live swap ([`crate::engine::upgrades::swap`]): loads, compiles and
    /// checks the new logic now (a refusal says why, and nothing changes),
    /// then hands it to the coordinator for the next barrier. Returns the
    /// request ID. Compiles: call it off the async workers.
    pub fn request_swap(&self, request: SwapRequest) -> Result<String, Refusal> {
        let state = self.state();
        if state != JobState::Running {
            return Err(refused(
                RefusalKind::Conflict,
                format!("the job is {state:?}: no swap can start now").to_lowercase(),
            ));
        }
        if self.stopping.load(Ordering::SeqCst) {
            return Err(refused(RefusalKind::Conflict, "the job is stopping"));
        }
        if !(0.0..=1.0).contains(&request.max_dead_letter_share) {
            return Err(refused(
                RefusalKind::Invalid,
                format!(
                    "the largest share of dead letters must be from 0 to 1, not {}",
                    request.max_dead_letter_share
                ),
            ));
        }
        if matches!(request.probation, Probation::Events(0)) {
            return Err(refused(
                RefusalKind::Invalid,
                "a probation of 0 events: give at least 1",
            ));
        }
        let _one_at_a_time = self.swap_requesting.lock().expect("swap request lock");
        // A copy: loading, compiling and the dry-run migration take a
        // while, and the lock must not hold up a restart or a completion.
        let ctx = self.swap_ctx.lock().expect("swap lock").clone();
        let Some(ctx) = ctx.as_ref() else {
            return Err(refused(RefusalKind::Conflict, "the job is not running yet"));
        };
        let ops = self.operators.lock().expect("operators lock").clone();
        let Some(index) = ops.iter().position(|o| o.id == request.operator) else {
            let ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
            return Err(refused(
                RefusalKind::NotFound,
                format!(
                    "the job has no operator `{}` (its operators: {})",
                    request.operator,
                    ids.join(", ")
                ),
            ));
        };
        let Some(store) = &ctx.store else {
            return Err(refused(
                RefusalKind::Conflict,
                "a live swap needs periodic checkpoints ([checkpoint] interval): it happens at a checkpoint barrier, and rolls back to it",
            ));
        };
        if let (Probation::Time(d), Some(timeout)) = (request.probation, ctx.transaction_timeout) {
            if d * 2 >= timeout {
                return Err(refused(
                    RefusalKind::Invalid,
                    format!(
                        "a probation of {} holds the Kafka sink's transaction open that long; it must be under half its transaction_timeout ({})",
                        request.probation,
                        humantime::format_duration(timeout)
                    ),
                ));
            }
        }
        if let Some(s) = self.swap_under_way() {
            return Err(refused(
                RefusalKind::Conflict,
                format!(
                    "swap {} of operator `{}` is {:?}: one swap at a time",
                    s.request_id, s.operator, s.status
                )
                .replace("InProgress", "IN_PROGRESS")
                .replace("Probation", "on PROBATION"),
            ));
        }
        let path = if request.wasm.is_absolute() {
            request.wasm.clone()
        } else {
            self.base_dir.join(&request.wasm)
        };
        let loaded = ctx
            .components
            .load(&path)
            .map_err(|e| refused(RefusalKind::Invalid, e.to_string()))?;
        let current = &ctx.logic[index];
        if matches!(current, OperatorImpl::Native(..)) {
            return Err(refused(
                RefusalKind::Conflict,
                format!(
                    "operator `{}` runs native logic (a benchmark): it cannot be swapped",
                    request.operator
                ),
            ));
        }
        let saved = crate::state::restore::recorded(&current.spec().states);
        let what = format!(
            "swap of operator `{}` to `{}`",
            request.operator,
            path.display()
        );
        let plan = crate::engine::upgrades::shadow::plan_states(
            &what,
            &request.operator,
            Some(saved),
            &loaded.spec.states,
        )
        .map_err(|e| {
                refused(
                    RefusalKind::Invalid,
                    e.replace(
                        "pass --allow-non-restored-state to drop it",
                        "a live swap cannot drop state: take a savepoint and restore it with --allow-non-restored-state",
                    ),
                )
            })?
            .operators
            .remove(0);
        let loaded = OperatorImpl::Wasm(loaded);
        dry_migrate(ctx, store, index, &request.operator, &loaded, &plan)
            .map_err(|e| refused(RefusalKind::Invalid, format!("{what}: {e}")))?;
        let OperatorImpl::Wasm(loaded) = loaded else {
            unreachable!("loaded as a component just above")
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            refused(
                RefusalKind::Invalid,
                format!("cannot read `{}`: {e}", path.display()),
            )
        })?;
        // The copy kept under its SHA-256 must be what was checked.
        if crate::state::savepoint::sha256_hex(&bytes) != loaded.sha256 {
            return Err(refused(
                RefusalKind::Conflict,
                format!(
                    "`{}` changed while it was being checked: ask again",
                    path.display()
                ),
            ));
        }
        store
            .keep_wasm(&loaded.sha256, &bytes)
            .map_err(|e| refused(RefusalKind::Internal, e.to_string()))?;
        let n = self.next_request.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{}-swap-{n}-{}", self.job, now_ms()).as_bytes())
        );
        let from = ops[index].logic.clone();
        let to = OperatorImpl::Wasm(loaded.clone()).logic_id();
        tracing::info!(
            "swap {id}: operator `{}` goes from {} {} to {} {} ({}) at the next checkpoint barrier, on probation for {}",
            request.operator,
            from.name,
            from.version,
            to.name,
            to.version,
            path.display(),
            request.probation
        );
        self.swaps.lock().expect("swaps lock").push(SwapStatus {
            request_id: id.clone(),
            operator: request.operator.clone(),
            status: SwapState::InProgress,
            reason: None,
            from,
            to,
            probation: request.probation.to_string(),
            barrier: None,
            completed_at_checkpoint: None,
            requested_at_ms: now_ms(),
            ended_at_ms: None,
        });
        let order = SwapOrder {
            request_id: id.clone(),
            operator: index,
            operator_id: request.operator,
            logic: OperatorImpl::Wasm(loaded),
            plan,
            probation: request.probation,
            max_dead_letter_share: request.max_dead_letter_share,
        };
        let order = Arc::new(order);
        *self.swap_order.lock().expect("swap lock") = Some(order.clone());
        self.swap_orders
            .0
            .send(order)
            .expect("the receiver lives in self");
        Ok(id)
    }

    /// Each operator's logic now (after the swaps that completed), if the job ran.
    pub fn current_logic(&self) -> Option<Vec<OperatorImpl>> {
        self.swap_ctx
            .lock()
            .expect("swap lock")
            .as_ref()
            .map(|c| c.logic.clone())
    }

    /// Sets what swap requests are checked against (each run sets it anew).
    pub fn set_swap_context(&self, ctx: SwapContext) {
        *self.swap_ctx.lock().expect("swap lock") = Some(ctx);
    }

    /// Takes back the swaps of an earlier process (from the checkpoint restored).
    pub fn restore_swap_history(&self, history: &[serde_json::Value]) {
        let mut swaps = self.swaps.lock().expect("swaps lock");
        if swaps.is_empty() {
            swaps.extend(
                history
                    .iter()
                    .filter_map(|v| serde_json::from_value::<SwapStatus>(v.clone()).ok()),
            );
        }
    }

    /// The swaps so far, as checkpoints record them.
    pub fn swap_history(&self) -> Vec<serde_json::Value> {
        self.swaps
            .lock()
            .expect("swaps lock")
            .iter()
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect()
    }

    /// Accepted swaps, for the coordinator.
    pub fn swap_orders(&self) -> Receiver<Arc<SwapOrder>> {
        self.swap_orders.1.clone()
    }

    /// A swap's status. Reading the outcome of a swap that ended lets the
    /// process exit (see [`JobControl::swap_outcome_unread`]).
    pub fn swap(&self, id: &str) -> Option<SwapStatus> {
        let s = self
            .swaps
            .lock()
            .expect("swaps lock")
            .iter()
            .find(|s| s.request_id == id)
            .cloned()?;
        if matches!(s.status, SwapState::Completed | SwapState::RolledBack) {
            let mut unread = self.swap_unread.lock().expect("swap lock");
            if unread.as_deref() == Some(id) {
                *unread = None;
            }
        }
        Some(s)
    }

    /// Whether a swap ended and no one has read its outcome: a job that
    /// ends right after waits a little for `weir swap` to read it.
    pub fn swap_outcome_unread(&self) -> bool {
        self.swap_unread.lock().expect("swap lock").is_some()
    }

    /// Every swap, oldest first.
    pub fn swaps(&self) -> Vec<SwapStatus> {
        self.swaps.lock().expect("swaps lock").clone()
    }

    /// The swap in progress or on probation, if any.
    pub fn swap_under_way(&self) -> Option<SwapStatus> {
        self.swaps
            .lock()
            .expect("swaps lock")
            .iter()
            .find(|s| matches!(s.status, SwapState::InProgress | SwapState::Probation))
            .cloned()
    }

    fn update_swap(&self, id: &str, f: impl FnOnce(&mut SwapStatus)) {
        if let Some(s) = self
            .swaps
            .lock()
            .expect("swaps lock")
            .iter_mut()
            .find(|s| s.request_id == id)
        {
            f(s);
        }
    }

    /// A swap's barrier was triggered.
    pub fn swap_barrier(&self, id: &str, barrier: u64) {
        self.update_swap(id, |s| s.barrier = Some(barrier));
    }

    /// A swap's barrier went through: the new logic runs, on probation.
    pub fn swap_on_probation(&self, id: &str, barrier: u64) {
        self.update_swap(id, |s| {
            s.barrier = Some(barrier);
            s.status = SwapState::Probation;
        });
    }

    /// A swap passed its probation at checkpoint `checkpoint`.
    pub fn swap_completed(&self, id: &str, checkpoint: u64) {
        let mut done = None;
        *self.swap_unread.lock().expect("swap lock") = Some(id.to_string());
        self.update_swap(id, |s| {
            s.status = SwapState::Completed;
            s.completed_at_checkpoint = Some(checkpoint);
            s.ended_at_ms = Some(now_ms());
            done = Some((s.operator.clone(), s.to.clone()));
        });
        if let Some((op, to)) = done {
            self.set_logic(&op, &to);
            let order = self.swap_order.lock().expect("swap lock").take();
            if let (Some(order), Some(ctx)) =
                (order, self.swap_ctx.lock().expect("swap lock").as_mut())
            {
                ctx.logic[order.operator] = order.logic.clone();
                self.shadow.set_logic(&order.operator_id, &order.logic);
            }
            tracing::info!("swap {id} of operator `{op}` COMPLETED at checkpoint {checkpoint}");
        }
    }

    /// Sets the logic an operator runs, as reported.
    pub fn set_logic(&self, operator: &str, logic: &LogicId) {
        if let Some(o) = self
            .operators
            .lock()
            .expect("operators lock")
            .iter_mut()
            .find(|o| o.id == operator)
        {
            o.logic = logic.clone();
        }
    }

    /// The swap under way rolled back (or never reached its barrier): why.
    /// Returns it, if there was one.
    pub fn swap_rolled_back(&self, why: &str) -> Option<SwapStatus> {
        let id = self.swap_under_way()?.request_id;
        *self.swap_unread.lock().expect("swap lock") = Some(id.clone());
        self.update_swap(&id, |s| {
            s.status = SwapState::RolledBack;
            s.reason = Some(why.to_string());
            s.ended_at_ms = Some(now_ms());
        });
        // Orders the coordinator never took.
        while self.swap_orders.1.try_recv().is_ok() {}
        *self.swap_order.lock().expect("swap lock") = None;
        let s = self.swap(&id);
        if let Some(s) = &s {
            tracing::warn!("swap {id} of operator `{}` ROLLED_BACK: {why}", s.operator);
        }
        s
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
