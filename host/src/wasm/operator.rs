//! An operator instance: one subtask's running operator, behind the
//! [`OperatorInstance`] interface so that instances are replaceable (a live
//! swap, a native benchmark operator). The WebAssembly implementation keeps
//! one wasmtime `Store` per subtask; state and timers live in the host
//! ([`SubtaskCtx`]), never in guest memory.
//!
//! Budgets (`[operators.limits]`): the memory budget bounds the guest's
//! linear memory and the CPU budget each call; the host-side budgets bound
//! what a guest makes the host hold for it: each state value
//! (`state_value_size`), all its state (`state_memory`, counted as the state
//! backend goes, see [`crate::state::keyed::ENTRY_OVERHEAD`]) and its pending
//! timers (`pending_timers`). A write or registration past one traps the
//! call with a message naming the budget and its value; deletions are never
//! refused. A subtask whose restored (or migrated) state or timers are
//! already past a budget does not start: the job fails at once, since a
//! restart would restore the same.

use std::collections::BTreeMap;
use std::ops::Range;

use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::model::config::format_size;
use crate::model::{show_key, Batch, Blobs, GuestError, OperatorSpec, TaskInfo, Timers};
use crate::state::keyed::StateBackend;
use crate::state::restore::{OperatorPlan, Restore, StatePlan};
use crate::state::timers::TimerService;
use crate::wasm::bindings::{self as wit, OperatorWorld};
use crate::wasm::component::LoadedOperator;
use crate::wasm::convert::{lend_batch, lend_timers};
use crate::wasm::guest_output::GuestOutput;
use crate::wasm::limits::{Capabilities, Limits};

/// The host-owned part of a subtask: identity, declared state, timers, watermark.
pub struct SubtaskCtx {
    /// The operator ID.
    pub operator_id: String,
    /// Index of the subtask.
    pub subtask: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// The key groups this subtask owns.
    pub key_groups: Range<u32>,
    /// Declared keyed state.
    pub state: StateBackend,
    /// Registered timers.
    pub timers: TimerService,
    /// The subtask's current event-time watermark.
    pub watermark: i64,
    /// Largest state value the operator may store, in bytes.
    pub max_value_size: usize,
    /// Most state the subtask may hold, as [`StateBackend::memory`] counts it.
    pub max_state_memory: u64,
    /// Most timers the subtask may have pending.
    pub max_pending_timers: u64,
}

/// Default largest state value, in bytes.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 16 << 20;

impl SubtaskCtx {
    /// A context with no declared state yet.
    pub fn new(
        operator_id: &str,
        subtask: u32,
        max_parallelism: u32,
        key_groups: Range<u32>,
    ) -> Self {
        SubtaskCtx {
            operator_id: operator_id.to_string(),
            subtask,
            max_parallelism,
            key_groups: key_groups.clone(),
            state: StateBackend::new(subtask, max_parallelism, key_groups),
            timers: TimerService::new(max_parallelism),
            watermark: i64::MIN,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            max_state_memory: u64::MAX,
            max_pending_timers: u64::MAX,
        }
    }

    /// Takes the budgets of `limits`.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.max_value_size = usize::try_from(limits.state_value_size).unwrap_or(usize::MAX);
        self.max_state_memory = limits.state_memory;
        self.max_pending_timers = limits.pending_timers;
    }

    /// Errors if a write grew the state, from `before` (as
    /// [`StateBackend::memory`] counts it), past the state memory budget. A
    /// write that shrinks it is never refused.
    pub fn check_state_memory(&self, before: u64) -> Result<(), String> {
        let held = self.state.memory();
        if held > before {
            self.check_state_held()?;
        }
        Ok(())
    }

    fn check_state_held(&self) -> Result<(), String> {
        let held = self.state.memory();
        if held > self.max_state_memory {
            return Err(format!(
                "its state holds {} ({} bytes of keys and values, {} entries), over its state \
                 memory budget of {} (`[operators.limits] state_memory`)",
                format_size(held),
                self.state.bytes(),
                self.state.entries(),
                format_size(self.max_state_memory)
            ));
        }
        Ok(())
    }

    /// Errors if more timers are pending than the budget allows.
    pub fn check_pending_timers(&self) -> Result<(), String> {
        let pending = self.timers.pending() as u64;
        if pending > self.max_pending_timers {
            return Err(format!(
                "it has {pending} pending timers, over its budget of {} pending timers \
                 (`[operators.limits] pending_timers`)",
                self.max_pending_timers
            ));
        }
        Ok(())
    }

    /// [`SubtaskCtx::check_state_memory`] and
    /// [`SubtaskCtx::check_pending_timers`], for a subtask about to start
    /// from restored state.
    pub fn check_restored(&self) -> Result<(), String> {
        let restored = |e: String| format!("restored state is too large: {e}; raise the budget");
        self.check_state_held().map_err(restored)?;
        self.check_pending_timers().map_err(restored)
    }

    /// Traps if `value` is larger than the state value budget.
    pub fn check_value_size(&self, value: Option<&[u8]>) -> wasmtime::Result<()> {
        match value {
            Some(v) if v.len() > self.max_value_size => Err(wasmtime::Error::msg(format!(
                "a state value of {} bytes exceeds the limit of {} bytes",
                v.len(),
                self.max_value_size
            ))),
            _ => Ok(()),
        }
    }
}

/// What the job file sets for each subtask of an operator: the config
/// handed to `open`, the WASI it is granted and its budgets.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `config`.
    pub config: BTreeMap<String, String>,
    /// `[operators.capabilities]`.
    pub capabilities: Capabilities,
    /// `[operators.limits]`.
    pub limits: Limits,
}

/// The memory budget of one instance (`[operators.limits] memory`): a
/// growth past it traps with a message that names the budget.
struct MemoryBudget {
    limit: u64,
}

impl wasmtime::ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            return Err(wasmtime::Error::msg(format!(
                "its linear memory would grow to {}, over its memory budget of {} \
                 (`[operators.limits] memory`)",
                format_size(desired as u64),
                format_size(self.limit)
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element costs a pointer: hold tables to the same budget.
        Ok((desired as u64).saturating_mul(8) <= self.limit)
    }
}

/// The epoch ticks of a CPU budget, rounded up.
pub fn deadline_ticks(budget: std::time::Duration) -> u64 {
    let tick = crate::wasm::component::EPOCH_TICK.as_nanos();
    budget.as_nanos().div_ceil(tick).max(1) as u64
}

/// The data of a subtask's wasmtime `Store`: WASI (no files, network or
/// environment) and the subtask's host-owned context.
pub struct HostCtx {
    memory: MemoryBudget,
    /// The CPU budget of one guest call, in epoch ticks.
    cpu_ticks: u64,
    cpu_budget: std::time::Duration,
    output_budget: u64,
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// The host-owned part of the subtask.
    pub sub: SubtaskCtx,
    /// Where the keys of the current state call live (reused from call to call).
    pub(crate) places: Vec<crate::state::keyed::Place>,
    /// The state whose `get-many` filled `places` last, if no call has
    /// reused them since: a `put-many` of that state with at least as many
    /// keys takes them as hints for its first keys (an SDK writes back the
    /// keys it just read first, in the same order), so that a
    /// read-modify-write finds each entry once.
    pub(crate) hinted: Option<u32>,
}

impl HostCtx {
    /// A context for a subtask, with WASI as `caps` grants it: clocks,
    /// random, and stdout and stderr into the host's log always; files,
    /// environment variables and the network only when granted. Errors if a
    /// granted folder cannot be opened.
    pub fn new(sub: SubtaskCtx, caps: &Capabilities, limits: &Limits) -> Result<Self, String> {
        let stdout = GuestOutput::new(&sub.operator_id, sub.subtask, false);
        let stderr = GuestOutput::new(&sub.operator_id, sub.subtask, true);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        for (name, value) in &caps.env {
            wasi.env(name, value);
        }
        for dir in &caps.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| {
                    format!(
                        "cannot grant folder `{}` as `{}`: {e}",
                        dir.host.display(),
                        dir.guest
                    )
                })?;
        }
        if caps.network {
            wasi.inherit_network()
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
        let mut sub = sub;
        sub.set_limits(limits);
        Ok(HostCtx {
            memory: MemoryBudget {
                limit: limits.memory,
            },
            cpu_ticks: deadline_ticks(limits.cpu_per_call),
            cpu_budget: limits.cpu_per_call,
            output_budget: limits.output_per_call,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            stdout,
            stderr,
            sub,
            places: Vec::new(),
            hinted: None,
        })
    }

    /// Marks the start of a guest call (for [`HostCtx::guest_output`]).
    /// Callers also re-arm the CPU budget: see [`arm`].
    pub fn start_call(&self) {
        self.stdout.start_call();
        self.stderr.start_call();
    }

    /// What the guest wrote to stderr (else stdout) during the current call, on one line.
    pub fn guest_output(&self) -> String {
        let err = self.stderr.recent();
        if err.is_empty() {
            self.stdout.recent()
        } else {
            err
        }
    }

    /// A context for calling `describe()` only.
    pub fn for_describe() -> Self {
        Self::new(
            SubtaskCtx::new("", 0, 1, 0..1),
            &Capabilities::default(),
            &Limits::default(),
        )
        .expect("no folders are granted to describe()")
    }
}

impl WasiView for HostCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A guest call that failed, for [`OperatorInstance::isolate`].
#[derive(Clone, Copy)]
pub enum Call<'a> {
    /// `process` of this batch.
    Process(&'a Batch),
    /// `on-timer` with these timers.
    Timers(&'a Timers),
}

impl Call<'_> {
    /// Number of events or timers.
    pub fn len(&self) -> usize {
        match self {
            Call::Process(b) => b.len(),
            Call::Timers(t) => t.timestamps.len(),
        }
    }

    /// Whether it had no event or timer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A running operator: what the subtask loop calls.
pub trait OperatorInstance: Send {
    /// Processes a batch. The outer error is a failure of the instance (a
    /// trap); the inner one is the operator's own answer.
    fn process(&mut self, input: &mut Batch) -> Result<Result<Batch, GuestError>, String>;
    /// Handles timers that fired.
    fn on_timer(&mut self, fired: &mut Timers) -> Result<Result<Batch, GuestError>, String>;
    /// The host-owned context: state, timers, watermark.
    fn ctx(&mut self) -> &mut SubtaskCtx;
    /// Takes the host-owned context out, for the instance that replaces
    /// this one (a live swap); this one is spent.
    fn take_ctx(&mut self) -> SubtaskCtx {
        let ctx = self.ctx();
        let empty = SubtaskCtx::new(&ctx.operator_id, ctx.subtask, ctx.max_parallelism, 0..0);
        std::mem::replace(ctx, empty)
    }
    /// After `call` failed (a trap, a budget overrun, malformed output or a
    /// fatal error): the index of the first of its events (or timers) that
    /// fails on its own, when the operator is called with one at a time from
    /// where the failed call started; `None` if none does. The instance is
    /// spent afterwards: only the failure message uses this.
    fn isolate(&mut self, call: Call<'_>) -> Option<usize> {
        (call.len() == 1).then_some(0)
    }
}

/// Why a subtask's instance did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// One line: what failed.
    pub message: String,
    /// The operator's own code failed (a trap or budget overrun while it was
    /// instantiated, `migrate` or `open` failing or refusing), so the restart
    /// strategy applies, as to a failure while running; otherwise the
    /// job's setup is wrong (a granted folder missing, a restore that does
    /// not fit) and the job fails at once.
    pub in_guest: bool,
}

impl StartError {
    fn host(message: String) -> Self {
        StartError {
            message,
            in_guest: false,
        }
    }

    fn guest(message: String) -> Self {
        StartError {
            message,
            in_guest: true,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StartError> for String {
    fn from(e: StartError) -> String {
        e.message
    }
}

/// An operator instance running a WebAssembly component.
pub struct WasmOperator {
    store: Store<HostCtx>,
    world: OperatorWorld,
    /// What it was started from, to start it afresh ([`OperatorInstance::isolate`]).
    loaded: LoadedOperator,
    task: TaskInfo,
    setup: Setup,
}

/// A store for an instance, under the memory and CPU budgets of `ctx`.
pub fn new_store(engine: &wasmtime::Engine, ctx: HostCtx) -> Store<HostCtx> {
    let mut store = Store::new(engine, ctx);
    store.limiter(|ctx| &mut ctx.memory);
    store.epoch_deadline_trap();
    store
}

/// Instantiates `loaded` in `store`; instantiation runs guest code too (a
/// language runtime's start-up), under the budgets.
fn instantiate(
    loaded: &LoadedOperator,
    store: &mut Store<HostCtx>,
) -> Result<OperatorWorld, String> {
    arm(store);
    loaded
        .pre
        .instantiate(store)
        .map_err(|e| format!("cannot instantiate: {}", describe_error(&e)))
}

/// Calls the guest's `open` with the task and the job's config.
fn open(
    store: &mut Store<HostCtx>,
    world: &OperatorWorld,
    task: &TaskInfo,
    setup: &Setup,
) -> Result<(), String> {
    arm(store);
    let config: Vec<(String, String)> = setup
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    world
        .weir_operator_guest()
        .call_open(&mut *store, &wit::TaskInfo::from(task), &config)
        .map_err(|e| call_error(&e, store.data()))?
        .map_err(|e| format!("open() failed: {e}"))
}

impl WasmOperator {
    /// Instantiates `loaded` for a subtask, declares its states, restores
    /// its key groups' state and timers from `restore` if given (as the
    /// restore plan of operator `op_index` says: dropped states skipped,
    /// raised versions migrated by the guest), and calls `open` with the
    /// config, WASI grants and budgets of `setup`.
    pub fn start(
        loaded: &LoadedOperator,
        task: TaskInfo,
        key_groups: Range<u32>,
        setup: &Setup,
        restore: Option<(&Restore, usize)>,
        track_changes: bool,
    ) -> Result<Self, StartError> {
        let (mut sub, plan) =
            restored_ctx(&loaded.spec, &task, key_groups, restore).map_err(StartError::host)?;
        if track_changes {
            sub.state.track_changes();
        }
        Self::start_over(loaded, task, sub, setup, plan)
    }

    /// Instantiates `loaded` over a subtask context that already holds its
    /// state and timers (restored, or handed over by the instance it
    /// replaces in a live swap), migrates the states `plan` says, checks
    /// the budgets and calls `open`.
    pub fn start_over(
        loaded: &LoadedOperator,
        task: TaskInfo,
        sub: SubtaskCtx,
        setup: &Setup,
        plan: Option<&OperatorPlan>,
    ) -> Result<Self, StartError> {
        let ctx =
            HostCtx::new(sub, &setup.capabilities, &setup.limits).map_err(StartError::host)?;
        let mut store = new_store(loaded.pre.engine(), ctx);
        let world = instantiate(loaded, &mut store).map_err(StartError::guest)?;
        if let Some(plan) = plan {
            for (name, state_plan) in &plan.states {
                if let StatePlan::Migrate { from, to } = state_plan {
                    migrate(&mut store, &world, name, *from, *to).map_err(StartError::guest)?;
                }
            }
        }
        store
            .data()
            .sub
            .check_restored()
            .map_err(StartError::host)?;
        open(&mut store, &world, &task, setup).map_err(StartError::guest)?;
        Ok(WasmOperator {
            store,
            world,
            loaded: loaded.clone(),
            task,
            setup: setup.clone(),
        })
    }

    /// [`WasmOperator::start`] over a context already holding the
    /// subtask's declared states, state, timers and watermark (a shadow
    /// run's copy of a live subtask's): migrates as `plan` says and opens.
    pub fn start_with(
        loaded: &LoadedOperator,
        task: TaskInfo,
        mut sub: SubtaskCtx,
        plan: Option<&OperatorPlan>,
        setup: &Setup,
        track_changes: bool,
    ) -> Result<Self, StartError> {
        if track_changes {
            sub.state.track_changes();
        }
        Self::start_over(loaded, task, sub, setup, plan)
    }

    /// Replaces the instance with a fresh one of the same component, opened
    /// again, over the same host context (state, timers, watermark). The old
    /// store, and the memory it holds, is dropped first.
    fn restart_instance(&mut self) -> Result<(), String> {
        let empty = SubtaskCtx::new(
            &self.task.operator_id,
            self.task.subtask,
            self.task.max_parallelism,
            0..0,
        );
        let sub = std::mem::replace(&mut self.store.data_mut().sub, empty);
        let ctx = HostCtx::new(sub, &self.setup.capabilities, &self.setup.limits)?;
        self.store = new_store(self.loaded.pre.engine(), ctx);
        self.world = instantiate(&self.loaded, &mut self.store)?;
        open(&mut self.store, &self.world, &self.task, &self.setup)
    }

    /// Whether calling the guest with the one event or timer `i` of `call` fails.
    fn fails_alone(&mut self, call: Call<'_>, i: usize) -> bool {
        arm(&mut self.store);
        let guest = self.world.weir_operator_guest();
        let result = match call {
            Call::Process(batch) => {
                let Some(event) = batch.iter().nth(i) else {
                    return false;
                };
                let mut one = Batch::with_capacity(1, event.value.len() + 16);
                one.push_ref(&event);
                guest
                    .call_process(&mut self.store, &wit::Batch::from(one))
                    .map_err(|e| e.to_string())
                    .and_then(|r| check_output(r, 1, self.store.data()))
            }
            Call::Timers(fired) => {
                let Ok(keys) = fired.keys.split() else {
                    return false;
                };
                let (Some(key), Some(&timestamp)) = (keys.get(i), fired.timestamps.get(i)) else {
                    return false;
                };
                let mut one_key = Blobs::with_capacity(1);
                one_key.push(*key);
                let one = Timers {
                    domain: fired.domain,
                    keys: one_key,
                    timestamps: vec![timestamp],
                };
                guest
                    .call_on_timer(&mut self.store, &wit::Timers::from(one))
                    .map_err(|e| e.to_string())
                    .and_then(|r| check_output(r, 1, self.store.data()))
            }
        };
        matches!(result, Err(_) | Ok(Err(GuestError::Fatal(_))))
    }
}

/// A subtask's context with its declared states and, from `restore`, its
/// key groups' state and timers and the watermark; and the operator's
/// restore plan, if it has saved state.
pub fn restored_ctx<'r>(
    spec: &OperatorSpec,
    task: &TaskInfo,
    key_groups: Range<u32>,
    restore: Option<(&'r Restore, usize)>,
) -> Result<(SubtaskCtx, Option<&'r OperatorPlan>), String> {
    let mut sub = SubtaskCtx::new(
        &task.operator_id,
        task.subtask,
        task.max_parallelism,
        key_groups.clone(),
    );
    sub.state.declare(&spec.states)?;
    let plan = restore.and_then(|(r, i)| r.plan.operators.get(i).filter(|p| p.restored));
    if let (Some((r, _)), Some(plan)) = (restore, plan) {
        let state = &mut sub.state;
        let timers = r.load(&task.operator_id, key_groups, |change| {
            if plan.dropped_states.contains(&change.state) {
                return Ok(());
            }
            state.restore(change)
        })?;
        sub.timers.restore(timers);
    }
    if let Some((r, _)) = restore {
        sub.watermark = r.meta.watermark;
    }
    Ok((sub, plan))
}

/// What runs behind an operator ID: a loaded component or, for benchmarks
/// only, the same logic compiled into the host ([`crate::wasm::native`]).
#[derive(Clone)]
pub enum OperatorImpl {
    /// A WebAssembly component.
    Wasm(LoadedOperator),
    /// Native logic.
    Native(crate::wasm::native::NativeLogic, OperatorSpec),
}

impl std::fmt::Debug for OperatorImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorImpl::Wasm(l) => f.debug_tuple("Wasm").field(&l.path).finish(),
            OperatorImpl::Native(logic, _) => f.debug_tuple("Native").field(logic).finish(),
        }
    }
}

impl OperatorImpl {
    /// What the operator says of itself.
    pub fn spec(&self) -> &OperatorSpec {
        match self {
            OperatorImpl::Wasm(l) => &l.spec,
            OperatorImpl::Native(_, spec) => spec,
        }
    }

    /// Hex SHA-256 of the `.wasm` (`native` for native logic).
    pub fn sha256(&self) -> &str {
        match self {
            OperatorImpl::Wasm(l) => &l.sha256,
            OperatorImpl::Native(..) => "native",
        }
    }

    /// Which logic it is: its name and version and its `.wasm`'s hash.
    pub fn logic_id(&self) -> crate::model::LogicId {
        crate::model::LogicId {
            name: self.spec().name.clone(),
            version: self.spec().version.clone(),
            wasm_sha256: self.sha256().to_string(),
        }
    }

    /// Starts a subtask's instance (see [`WasmOperator::start`]).
    pub fn start(
        &self,
        task: TaskInfo,
        key_groups: Range<u32>,
        setup: &Setup,
        restore: Option<(&Restore, usize)>,
        track_changes: bool,
    ) -> Result<Box<dyn OperatorInstance>, StartError> {
        match self {
            OperatorImpl::Wasm(l) => Ok(Box::new(WasmOperator::start(
                l,
                task,
                key_groups,
                setup,
                restore,
                track_changes,
            )?)),
            OperatorImpl::Native(logic, spec) => {
                let (mut sub, plan) =
                    restored_ctx(spec, &task, key_groups, restore).map_err(StartError::host)?;
                if plan.is_some_and(|p| {
                    p.states
                        .values()
                        .any(|s| matches!(s, StatePlan::Migrate { .. }))
                }) {
                    return Err(StartError::host(
                        "native operators do not migrate state".to_string(),
                    ));
                }
                if track_changes {
                    sub.state.track_changes();
                }
                Ok(Box::new(crate::wasm::native::NativeOperator::new(
                    *logic, sub,
                )))
            }
        }
    }
}

impl OperatorImpl {
    /// Starts this logic in place of a subtask's instance in a live swap
    /// ([`crate::engine::upgrades::swap`]): over `sub`, the state and timers the old
    /// instance held at the swap barrier, with the new logic's states
    /// declared and migrated as `plan` says.
    pub fn swap_in(
        &self,
        task: TaskInfo,
        mut sub: SubtaskCtx,
        setup: &Setup,
        plan: &OperatorPlan,
    ) -> Result<Box<dyn OperatorInstance>, StartError> {
        sub.state
            .redeclare(&self.spec().states)
            .map_err(StartError::host)?;
        match self {
            OperatorImpl::Wasm(l) => Ok(Box::new(WasmOperator::start_over(
                l,
                task,
                sub,
                setup,
                Some(plan),
            )?)),
            OperatorImpl::Native(logic, _) => {
                if plan
                    .states
                    .values()
                    .any(|s| matches!(s, StatePlan::Migrate { .. }))
                {
                    return Err(StartError::host(
                        "native operators do not migrate state".to_string(),
                    ));
                }
                Ok(Box::new(crate::wasm::native::NativeOperator::new(
                    *logic, sub,
                )))
            }
        }
    }
}

/// Values handed to one `migrate` call.
const MIGRATE_BATCH: usize = 4096;

/// Runs every stored value of state `name` through the guest's `migrate`
/// from version `from`; the first refusal names the key.
fn migrate(
    store: &mut Store<HostCtx>,
    world: &OperatorWorld,
    name: &str,
    from: u32,
    to: u32,
) -> Result<(), String> {
    // The state leaves the store while the guest runs: `migrate` may not use state.
    let placeholder = StateBackend::new(0, 1, 0..0);
    let mut state = std::mem::replace(&mut store.data_mut().sub.state, placeholder);
    let max_value = store.data().sub.max_value_size;
    let result = (|| {
        let mut values = state.values_of(name);
        for chunk in values.chunks_mut(MIGRATE_BATCH) {
            let mut blobs = Blobs::with_capacity(chunk.len());
            for (_, v) in chunk.iter() {
                blobs.push(Some(v.as_slice()));
            }
            arm(store);
            let out = world
                .weir_operator_guest()
                .call_migrate(&mut *store, name, from, &wit::Blobs::from(blobs))
                .map_err(|e| call_error(&e, store.data()))?
                .map(Blobs::from);
            let key_of = |i: usize, chunk: &[(Vec<u8>, Vec<u8>)]| {
                chunk
                    .get(i)
                    .map_or("key `?`".to_string(), |(k, _)| show_key(Some(k)))
            };
            let out = out.map_err(|e| {
                format!(
                    "migrate of state `{name}` from version {from} to {to} failed at {}: {}",
                    key_of(e.index as usize, chunk),
                    e.message
                )
            })?;
            let parts = out.split().map_err(|e| format!("migrate returned {e}"))?;
            if parts.len() != chunk.len() {
                return Err(format!(
                    "migrate of state `{name}` returned {} values for {}",
                    parts.len(),
                    chunk.len()
                ));
            }
            for (i, new) in parts.into_iter().enumerate() {
                let Some(new) = new else {
                    return Err(format!(
                        "migrate of state `{name}` returned no value for {}",
                        key_of(i, chunk)
                    ));
                };
                if new.len() > max_value {
                    return Err(format!(
                        "migrate of state `{name}` returned a value of {} bytes for {}, over the limit of {max_value}",
                        new.len(),
                        key_of(i, chunk)
                    ));
                }
                let slot = &mut chunk[i].1;
                slot.clear();
                slot.extend_from_slice(new);
            }
        }
        state.replace_values(name, values.into_iter().map(|(_, v)| v).collect())
    })();
    store.data_mut().sub.state = state;
    result
}

/// Prepares `store` for a guest call: marks the call's start (for the
/// guest's output) and gives it its CPU budget afresh.
pub fn arm(store: &mut Store<HostCtx>) {
    store.data().start_call();
    let ticks = store.data().cpu_ticks;
    store.set_epoch_deadline(ticks);
}

/// The message of a failed guest call: a CPU budget overrun is named as
/// such; anything else as [`describe_error`] tells it, with what the guest
/// printed.
pub fn call_error(e: &wasmtime::Error, ctx: &HostCtx) -> String {
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        let mut message = format!(
            "ran past its CPU budget of {} for one call (`[operators.limits] cpu_per_call`)",
            humantime::format_duration(ctx.cpu_budget)
        );
        if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
            let frames = guest_frames(bt);
            if !frames.is_empty() {
                message.push_str(&format!(" (in {frames})"));
            }
        }
        return with_guest_output(message, ctx);
    }
    with_guest_output(describe_error(e), ctx)
}

/// A guest call's result in the host's own types; errors if it is malformed
/// (lengths that disagree, a rejected index past the `inputs` events or timers it was given) or over
/// the output budget.
fn check_output(
    result: Result<wit::Batch, wit::GuestError>,
    inputs: usize,
    ctx: &HostCtx,
) -> Result<Result<Batch, GuestError>, String> {
    let result = result.map(Batch::from).map_err(GuestError::from);
    let emitted = match &result {
        Ok(batch) => {
            batch.check().map_err(|e| format!("returned {e}"))?;
            batch.len()
        }
        Err(GuestError::BadInput(rejected)) => {
            if rejected.index as usize >= inputs {
                return Err(format!(
                    "rejected event {} of a batch of {inputs}",
                    rejected.index
                ));
            }
            rejected
                .output
                .check()
                .map_err(|e| format!("returned with its rejection a {e}"))?;
            rejected.output.len()
        }
        Err(GuestError::Fatal(_)) => 0,
    } as u64;
    if emitted > ctx.output_budget {
        return Err(format!(
            "emitted {emitted} events in one call, over its output budget of {} \
             (`[operators.limits] output_per_call`)",
            ctx.output_budget
        ));
    }
    Ok(result)
}

impl OperatorInstance for WasmOperator {
    fn process(&mut self, input: &mut Batch) -> Result<Result<Batch, GuestError>, String> {
        arm(&mut self.store);
        let guest = self.world.weir_operator_guest();
        let store = &mut self.store;
        let result = lend_batch(input, |batch| guest.call_process(&mut *store, batch))
            .map_err(|e| call_error(&e, self.store.data()))?;
        check_output(result, input.len(), self.store.data())
    }

    fn on_timer(&mut self, fired: &mut Timers) -> Result<Result<Batch, GuestError>, String> {
        arm(&mut self.store);
        let guest = self.world.weir_operator_guest();
        let store = &mut self.store;
        let result = lend_timers(fired, |timers| guest.call_on_timer(&mut *store, timers))
            .map_err(|e| call_error(&e, self.store.data()))?;
        check_output(result, fired.timestamps.len(), self.store.data())
    }

    fn ctx(&mut self) -> &mut SubtaskCtx {
        &mut self.store.data_mut().sub
    }

    fn isolate(&mut self, call: Call<'_>) -> Option<usize> {
        match call.len() {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        tracing::info!(
            events = call.len(),
            "re-running the failed call one event at a time, in a fresh instance, to find the event that fails"
        );
        if let Err(e) = self.restart_instance() {
            tracing::warn!("cannot start a fresh instance to find the failing event: {e}");
            return None;
        }
        (0..call.len()).find(|&i| self.fails_alone(call, i))
    }
}

fn with_guest_output(mut message: String, ctx: &HostCtx) -> String {
    let said = ctx.guest_output();
    if !said.is_empty() {
        message.push_str("; the guest wrote: ");
        message.push_str(&said);
    }
    message
}

/// One line describing a failed guest call: the trap or host error, and the
/// innermost guest functions on the stack.
pub fn describe_error(e: &wasmtime::Error) -> String {
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trapped: {trap}"),
        None => e.root_cause().to_string(),
    };
    let mut text = what
        .split('\n')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames = guest_frames(bt);
        if !frames.is_empty() {
            text.push_str(&format!(" (in {frames})"));
        }
    }
    text
}

/// The innermost three guest functions of `bt` that are not runtime frames,
/// `a <- b <- c`.
fn guest_frames(bt: &wasmtime::WasmBacktrace) -> String {
    bt.frames()
        .iter()
        .filter_map(|f| f.func_name())
        .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
        .filter(|name| !is_runtime_frame(name))
        .take(3)
        .collect::<Vec<_>>()
        .join(" <- ")
}

/// Frames of the language runtime (panic and abort machinery, allocator),
/// which say nothing about where the operator went wrong.
fn is_runtime_frame(name: &str) -> bool {
    const PREFIXES: [&str; 16] = [
        "sbrk",
        "dlmalloc",
        "malloc",
        "realloc",
        "calloc",
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "__rdl",
        "rust_panic",
        "abort",
        "_start",
        "wit_bindgen",
        // The export glue of wit-bindgen's C bindings and of the C SDK.
        "__wasm_export_",
        "exports_weir_operator_",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || name.starts_with("<") && name.contains(" as core::")
}
