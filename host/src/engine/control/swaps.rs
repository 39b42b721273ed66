//! Live swap requests: the new logic is loaded, compiled and checked (its
//! states migrated dry against a copy) before the coordinator is handed the
//! order; the status of each swap, as `GET /jobs/{id}/swaps/{request-id}`
//! shows it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::engine::errors::{refused, Refusal, RefusalKind};
use crate::engine::upgrades::swap::{Probation, SwapOrder};
use crate::model::now_ms;
use crate::model::LogicId;
use crate::state::checkpoint::CheckpointStore;
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

use super::{JobControl, JobState};

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

impl JobControl {
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
}
