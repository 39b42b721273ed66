//! Live shadow runs: one at a time per job, requested over REST
//! ([`ShadowControl`]), run on a thread of their own beside the live
//! subtasks ([`ShadowRun`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;

use serde::Serialize;

use crate::engine::errors::{refused, Refusal, RefusalKind};
use crate::job::{JobSpec, SourceSpec};
use crate::model::{Batch, StateSpec, TaskInfo, TimeDomain};
use crate::state::keyed::{StateChange, StateSnapshot};
use crate::state::restore::{self, OperatorPlan};
use crate::state::timers::TimerSnapshot;
use crate::wasm::component::{Components, LoadedOperator};
use crate::wasm::operator::{OperatorImpl, Setup, SubtaskCtx, WasmOperator};

use super::*;

/// A live shadow run's status, as `GET /jobs/{id}/shadow` shows it: its
/// report so far, its queue, and where each subtask is.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    /// The outcome so far.
    #[serde(flatten)]
    pub report: ShadowReport,
    /// Batches each subtask's queue holds.
    pub queue: usize,
    /// Each subtask of the operator.
    pub subtasks: Vec<SubtaskStatus>,
}

/// Where one subtask of a live shadow run is.
#[derive(Debug, Clone, Serialize)]
pub struct SubtaskStatus {
    /// Which subtask.
    pub subtask: u32,
    /// It joined the run.
    pub started: bool,
    /// The barrier it joined at.
    pub barrier: Option<u64>,
    /// It left the run.
    pub ended: bool,
    /// Outputs it compared.
    pub compared: u64,
}

/// Batches a subtask's shadow may fall behind by, unless asked otherwise.
pub const DEFAULT_QUEUE: usize = 1024;

/// What a live subtask hands its shadow.
pub(super) enum Item {
    /// An input batch, its source offsets, and what the live logic emitted for it.
    Input {
        batch: Batch,
        offsets: Option<Vec<u64>>,
        live: Vec<Batch>,
    },
    /// Timers of `domain` fired at `time` (event time: the watermark
    /// moved there), and what the live logic emitted.
    Fire {
        domain: TimeDomain,
        time: i64,
        live: Vec<Batch>,
    },
}

/// Where a live shadow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Waiting for the next checkpoint barrier of every subtask.
    Starting,
    /// Every subtask's shadow runs.
    Running,
    /// Stopped by request, or the live subtasks ended.
    Stopped,
    /// A subtask's queue was full: the shadow stopped rather than slow the job.
    FellBehind,
    /// The candidate trapped, overran a budget or failed.
    Failed,
}

impl RunState {
    pub(super) fn is_over(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::FellBehind | RunState::Failed
        )
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct SubtaskShadow {
    pub(super) joined: bool,
    pub(super) ended: bool,
    pub(super) barrier: Option<u64>,
    pub(super) counts: Counts,
    pub(super) first: Vec<Difference>,
    pub(super) rejected: u64,
}

pub(super) struct RunStatus {
    pub(super) state: RunState,
    pub(super) reason: Option<String>,
    pub(super) subtasks: Vec<SubtaskShadow>,
}

/// One live shadow run of a candidate beside operator `operator`.
pub struct ShadowRun {
    pub(super) operator: String,
    pub(super) parallelism: u32,
    pub(super) max_parallelism: u32,
    pub(super) candidate: LoadedOperator,
    pub(super) live: SideLogic,
    pub(super) plan: OperatorPlan,
    pub(super) setup: Setup,
    pub(super) queue: usize,
    pub(super) file: DiffFile,
    pub(super) source: SourceSpec,
    pub(super) over: AtomicBool,
    pub(super) status: Mutex<RunStatus>,
}

impl ShadowRun {
    pub(super) fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Ends the run in `state` with `reason`, unless it is over already.
    pub(super) fn end(&self, state: RunState, reason: String) {
        let mut s = self.status.lock().expect("shadow status lock");
        if s.state.is_over() {
            return;
        }
        s.state = state;
        s.reason = Some(reason);
        self.over.store(true, Ordering::SeqCst);
    }

    /// Subtask `subtask` takes part from barrier `barrier`, unless it already did.
    pub(super) fn join(&self, subtask: u32, barrier: u64) -> bool {
        let mut guard = self.status.lock().expect("shadow status lock");
        let s = &mut *guard;
        let Some(sub) = s.subtasks.get_mut(subtask as usize) else {
            return false;
        };
        if s.state.is_over() || sub.joined {
            return false;
        }
        sub.joined = true;
        sub.barrier = Some(barrier);
        if s.subtasks.iter().all(|t| t.joined) {
            s.state = RunState::Running;
        }
        true
    }

    pub(super) fn update(&self, subtask: u32, cmp: &Comparator, rejected: u64) {
        let mut s = self.status.lock().expect("shadow status lock");
        if let Some(sub) = s.subtasks.get_mut(subtask as usize) {
            sub.counts = cmp.counts;
            if sub.first.len() < cmp.first.len() {
                sub.first = cmp.first.clone();
            }
            sub.rejected = rejected;
        }
    }

    /// Subtask `subtask`'s live side ended (end of input, stop, restart).
    pub(super) fn ended(&self, subtask: u32) {
        let all = {
            let mut s = self.status.lock().expect("shadow status lock");
            if let Some(sub) = s.subtasks.get_mut(subtask as usize) {
                sub.ended = true;
            }
            s.subtasks.iter().all(|t| !t.joined || t.ended) && s.subtasks.iter().any(|t| t.joined)
        };
        if all {
            self.end(
                RunState::Stopped,
                "the live subtasks ended (end of input, a stop or a restart)".to_string(),
            );
        }
    }

    /// The candidate for subtask `subtask`, over a copy of the live
    /// subtask's state and timers at a barrier.
    pub(super) fn start_candidate(
        &self,
        subtask: u32,
        key_groups: std::ops::Range<u32>,
        state: &StateSnapshot,
        timers: &TimerSnapshot,
        watermark: i64,
    ) -> Result<Side, String> {
        let task = TaskInfo {
            operator_id: self.operator.clone(),
            subtask,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            attempt: 0,
        };
        let mut sub = SubtaskCtx::new(&self.operator, subtask, self.max_parallelism, key_groups);
        sub.state.declare(&self.candidate.spec.states)?;
        let mut failed = None;
        state.visit(&mut |key_group, name, key, entry| {
            if failed.is_some() || self.plan.dropped_states.iter().any(|d| d == name) {
                return;
            }
            let change = StateChange {
                state: name.to_string(),
                key_group,
                key: key.to_vec(),
                entry: entry.to_owned(),
            };
            if let Err(e) = sub.state.restore(change) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(format!("cannot copy the live state: {e}"));
        }
        sub.timers
            .restore(timers.records().into_iter().flat_map(|(_, r)| r).collect());
        sub.watermark = watermark;
        let op = WasmOperator::start_with(
            &self.candidate,
            task,
            sub,
            Some(&self.plan),
            &self.setup,
            false,
        )
        .map_err(|e| e.message)?;
        Ok(Side::new(Box::new(op)))
    }

    /// The run's status as `GET /jobs/{id}/shadow` shows it.
    pub fn status(&self) -> LiveStatus {
        let s = self.status.lock().expect("shadow status lock");
        let mut counts = Counts::default();
        let mut first = Vec::new();
        let mut rejected = 0;
        for sub in &s.subtasks {
            counts.add(&sub.counts);
            rejected += sub.rejected;
            first.extend(sub.first.iter().cloned());
        }
        first.truncate(DIFFERENCES_KEPT);
        let report = ShadowReport {
            operator: self.operator.clone(),
            state: serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            reason: s.reason.clone(),
            live: self.live.clone(),
            candidate: SideLogic::of(&self.candidate),
            counts,
            candidate_rejected: rejected,
            differences: first,
            diff_file: self.file.path().display().to_string(),
        };
        LiveStatus {
            report,
            queue: self.queue,
            subtasks: s
                .subtasks
                .iter()
                .enumerate()
                .map(|(i, t)| SubtaskStatus {
                    subtask: i as u32,
                    started: t.joined,
                    barrier: t.barrier,
                    ended: t.ended,
                    compared: t.counts.compared,
                })
                .collect(),
        }
    }
}

/// Runs one subtask's shadow: starts the candidate over the copied state,
/// then runs it on what the live subtask hands over and compares, until the
/// live subtask goes away or the run is over. A failure of the candidate
/// fails the run, never the job.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_shadow(
    run: Arc<ShadowRun>,
    subtask: u32,
    key_groups: std::ops::Range<u32>,
    state: StateSnapshot,
    timers: TimerSnapshot,
    watermark: i64,
    rx: Receiver<Item>,
) {
    let result = (|| -> Result<(), String> {
        let mut side = run.start_candidate(subtask, key_groups, &state, &timers, watermark)?;
        drop((state, timers));
        let mut cmp = Comparator::new(subtask, Some(run.source.clone()), Some(run.file.clone()));
        while let Ok(item) = rx.recv() {
            if run.is_over() {
                return Ok(());
            }
            match item {
                Item::Input {
                    batch,
                    offsets,
                    live,
                } => {
                    let c = side.process(&batch).map_err(|e| match &offsets {
                        Some(o) => format!("{e} (in a batch from {})", cmp.place_of(o)),
                        None => e,
                    })?;
                    let cause = Cause::Input {
                        batch: &batch,
                        offsets: offsets.as_deref(),
                    };
                    cmp.compare(cause, &live, &c)?;
                }
                Item::Fire { domain, time, live } => {
                    let c = match domain {
                        TimeDomain::EventTime => side.advance(time)?,
                        TimeDomain::ProcessingTime => side.fire(domain, time)?,
                    };
                    cmp.compare(Cause::Timers { domain, time }, &live, &c)?;
                }
            }
            run.update(subtask, &cmp, side.rejected);
        }
        Ok(())
    })();
    match result {
        Ok(()) => run.ended(subtask),
        Err(e) => {
            tracing::warn!(operator_id = %run.operator, subtask, "shadow run failed: {e}");
            run.end(
                RunState::Failed,
                format!("the candidate {e} (subtask {subtask}); the job goes on"),
            );
        }
    }
}

/// What the shadow control plane knows of the job's operators.
pub(super) struct JobInfo {
    pub(super) base_dir: PathBuf,
    pub(super) periodic: bool,
    pub(super) max_parallelism: u32,
    pub(super) source: SourceSpec,
    pub(super) operators: Vec<ShadowedOperator>,
}

pub(super) struct ShadowedOperator {
    pub(super) id: String,
    pub(super) parallelism: u32,
    pub(super) setup: Setup,
    pub(super) states: Vec<StateSpec>,
    pub(super) live: Option<SideLogic>,
}

/// The job's shadow runs: one at a time. Requests come from the REST API;
/// each live subtask reaches it through its [`ShadowTap`].
#[derive(Default)]
pub struct ShadowControl {
    pub(super) job: Mutex<Option<JobInfo>>,
    pub(super) run: Mutex<Option<Arc<ShadowRun>>>,
    /// The job's engine: a candidate compiles and runs where the live logic does.
    pub(super) components: Mutex<Option<Arc<Components>>>,
}

/// What a shadow run is asked for.
#[derive(Debug, Clone)]
pub struct ShadowRequest {
    /// The operator ID.
    pub operator: String,
    /// The candidate `.wasm` (relative: to the job file's directory).
    pub wasm: PathBuf,
    /// Batches each subtask's shadow may fall behind by.
    pub queue: Option<usize>,
    /// Where every difference goes.
    pub diff_file: Option<PathBuf>,
}

impl ShadowControl {
    /// Learns the job's engine, operators, budgets and checkpointing (once,
    /// before it runs).
    pub fn configure(&self, spec: &JobSpec, loaded: &[OperatorImpl], components: Arc<Components>) {
        *self.components.lock().expect("shadow lock") = Some(components);
        let operators = spec
            .operators
            .iter()
            .zip(loaded)
            .map(|(o, l)| ShadowedOperator {
                id: o.id.clone(),
                parallelism: o.parallelism,
                setup: o.setup(),
                states: l.spec().states.clone(),
                live: match l {
                    OperatorImpl::Wasm(w) => Some(SideLogic::of(w)),
                    OperatorImpl::Native(..) => None,
                },
            })
            .collect();
        *self.job.lock().expect("shadow job lock") = Some(JobInfo {
            base_dir: spec.base_dir.clone(),
            periodic: spec
                .checkpoint
                .as_ref()
                .is_some_and(|c| c.interval.is_some()),
            max_parallelism: spec.max_parallelism,
            source: spec.source.clone(),
            operators,
        });
    }

    /// Operator `id` runs `logic` now (a live swap completed): a later
    /// shadow run is checked against, and compared with, that.
    pub fn set_logic(&self, id: &str, logic: &OperatorImpl) {
        if let Some(job) = self.job.lock().expect("shadow job lock").as_mut() {
            if let Some(op) = job.operators.iter_mut().find(|o| o.id == id) {
                op.states = logic.spec().states.clone();
                op.live = match logic {
                    OperatorImpl::Wasm(w) => Some(SideLogic::of(w)),
                    OperatorImpl::Native(..) => None,
                };
            }
        }
    }

    /// Starts a shadow run: loads, compiles and checks the candidate (its
    /// world; its states against the live operator's, by the rules of a
    /// restore) before anything changes; the live subtasks join at their
    /// next checkpoint barrier. Returns the run's status.
    pub fn start(&self, request: &ShadowRequest) -> Result<LiveStatus, Refusal> {
        let job = self.job.lock().expect("shadow job lock");
        let Some(job) = job.as_ref() else {
            return Err(refused(
                RefusalKind::Conflict,
                "the job has not started yet".to_string(),
            ));
        };
        if !job.periodic {
            return Err(refused(
                RefusalKind::Conflict,
                "a shadow run starts at a checkpoint barrier and the job takes no periodic checkpoints: set `[checkpoint] interval` in its job file".to_string(),
            ));
        }
        let op = job
            .operators
            .iter()
            .find(|o| o.id == request.operator)
            .ok_or_else(|| {
                let ids: Vec<&str> = job.operators.iter().map(|o| o.id.as_str()).collect();
                refused(
                    RefusalKind::NotFound,
                    format!(
                        "the job has no operator `{}` (it has {})",
                        request.operator,
                        ids.join(", ")
                    ),
                )
            })?;
        let Some(live) = op.live.clone() else {
            return Err(refused(
                RefusalKind::Conflict,
                format!("operator `{}` runs native logic", op.id),
            ));
        };
        if let Some(run) = self.run.lock().expect("shadow run lock").as_ref() {
            if !run.is_over() {
                return Err(refused(
                    RefusalKind::Conflict,
                    format!(
                        "a shadow run of operator `{}` is already going on: stop it first (`weir shadow stop`)",
                        run.operator
                    ),
                ));
            }
        }
        let queue = request.queue.unwrap_or(DEFAULT_QUEUE);
        if queue == 0 {
            return Err(refused(
                RefusalKind::Invalid,
                "`queue` must be at least 1 batch".to_string(),
            ));
        }
        let wasm = if request.wasm.is_absolute() {
            request.wasm.clone()
        } else {
            job.base_dir.join(&request.wasm)
        };
        let components = self
            .components
            .lock()
            .expect("shadow lock")
            .clone()
            .ok_or(refused(
                RefusalKind::Conflict,
                "the job has not started yet".to_string(),
            ))?;
        let candidate = components
            .load(&wasm)
            .map_err(|e| refused(RefusalKind::Invalid, format!("candidate refused: {e}")))?;
        let saved = restore::recorded(&op.states);
        let what = format!("the running operator `{}`", op.id);
        let plan =
            plan_states(&what, &op.id, Some(saved), &candidate.spec.states).map_err(|e| {
                refused(
                    RefusalKind::Invalid,
                    format!("candidate `{}` refused: {e}", wasm.display()),
                )
            })?;
        let plan = plan.operators.into_iter().next().unwrap_or_default();
        let diff_path = match &request.diff_file {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => job.base_dir.join(p),
            None => default_diff_file(&job.base_dir, &op.id),
        };
        let file = DiffFile::create(&diff_path).map_err(|e| refused(RefusalKind::Invalid, e))?;
        let run = Arc::new(ShadowRun {
            operator: op.id.clone(),
            parallelism: op.parallelism,
            max_parallelism: job.max_parallelism,
            candidate,
            live,
            plan,
            setup: op.setup.clone(),
            queue,
            file,
            source: job.source.clone(),
            over: AtomicBool::new(false),
            status: Mutex::new(RunStatus {
                state: RunState::Starting,
                reason: None,
                subtasks: vec![SubtaskShadow::default(); op.parallelism as usize],
            }),
        });
        tracing::info!(
            operator_id = %op.id,
            "shadow run of `{}` requested: subtasks join at their next checkpoint barrier; differences go to `{}`",
            wasm.display(),
            diff_path.display()
        );
        let status = run.status();
        *self.run.lock().expect("shadow run lock") = Some(run);
        Ok(status)
    }

    /// The current (or last) shadow run's status.
    pub fn status(&self) -> Option<LiveStatus> {
        let run = self.run.lock().expect("shadow run lock").clone()?;
        Some(run.status())
    }

    /// Stops the shadow run; returns its final status.
    pub fn stop(&self) -> Option<LiveStatus> {
        let run = self.run.lock().expect("shadow run lock").clone()?;
        run.end(RunState::Stopped, "stopped by request".to_string());
        Some(run.status())
    }

    /// The run subtask `subtask` of `operator` should join, if any.
    pub(super) fn pending(&self, operator: &str) -> Option<Arc<ShadowRun>> {
        let run = self.run.lock().expect("shadow run lock");
        run.as_ref()
            .filter(|r| r.operator == operator && !r.is_over())
            .cloned()
    }
}
