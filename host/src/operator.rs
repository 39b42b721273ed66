//! An operator instance: one subtask's running operator, behind the
//! [`OperatorInstance`] interface so that instances are replaceable (a live
//! swap, a native benchmark operator). The WebAssembly implementation keeps
//! one wasmtime `Store` per subtask; state and timers live in the host
//! ([`SubtaskCtx`]), never in guest memory.

use std::collections::BTreeMap;
use std::ops::Range;

use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{Batch, GuestError, OperatorWorld, TaskInfo, Timers};
use crate::component::LoadedOperator;
use crate::guest_output::GuestOutput;
use crate::state::StateBackend;
use crate::timers::TimerService;

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
            timers: TimerService::default(),
            watermark: i64::MIN,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
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

/// The data of a subtask's wasmtime `Store`: WASI (no files, network or
/// environment) and the subtask's host-owned context.
pub struct HostCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// The host-owned part of the subtask.
    pub sub: SubtaskCtx,
}

impl HostCtx {
    /// A context for a subtask. The guest's stdout and stderr go to the host's stderr.
    pub fn new(sub: SubtaskCtx) -> Self {
        let stdout = GuestOutput::new(&sub.operator_id, sub.subtask, false);
        let stderr = GuestOutput::new(&sub.operator_id, sub.subtask, true);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        HostCtx {
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            sub,
        }
    }

    /// Marks the start of a guest call (for [`HostCtx::guest_output`]).
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
        Self::new(SubtaskCtx::new("", 0, 1, 0..1))
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

/// A running operator: what the subtask loop calls.
pub trait OperatorInstance: Send {
    /// Processes a batch. The outer error is a failure of the instance (a
    /// trap); the inner one is the operator's own answer.
    fn process(&mut self, input: &Batch) -> Result<Result<Batch, GuestError>, String>;
    /// Handles timers that fired.
    fn on_timer(&mut self, fired: &Timers) -> Result<Result<Batch, GuestError>, String>;
    /// The host-owned context: state, timers, watermark.
    fn ctx(&mut self) -> &mut SubtaskCtx;
}

/// A checkpoint to restore subtasks from.
#[derive(Clone)]
pub struct Restore {
    /// The checkpoint database.
    pub store: crate::checkpoint::CheckpointStore,
    /// The checkpoint.
    pub meta: crate::checkpoint::CheckpointMeta,
}

/// An operator instance running a WebAssembly component.
pub struct WasmOperator {
    store: Store<HostCtx>,
    world: OperatorWorld,
}

impl WasmOperator {
    /// Instantiates `loaded` for a subtask, declares its states, restores
    /// its key groups' state and timers from `restore` if given, and calls `open`.
    pub fn start(
        loaded: &LoadedOperator,
        task: TaskInfo,
        key_groups: Range<u32>,
        config: &BTreeMap<String, String>,
        restore: Option<&Restore>,
        track_changes: bool,
    ) -> Result<Self, String> {
        let mut sub = SubtaskCtx::new(
            &task.operator_id,
            task.subtask,
            task.max_parallelism,
            key_groups.clone(),
        );
        sub.state.declare(&loaded.spec.states)?;
        if let Some(r) = restore {
            let state = &mut sub.state;
            r.store
                .load_state(&r.meta, &task.operator_id, key_groups.clone(), |change| {
                    state.restore(change)
                })
                .map_err(|e| e.to_string())?;
            let timers = r
                .store
                .load_timers(r.meta.id, &task.operator_id, key_groups)
                .map_err(|e| e.to_string())?;
            sub.timers.restore(timers);
            sub.watermark = r.meta.watermark;
        }
        if track_changes {
            sub.state.track_changes();
        }
        let mut store = Store::new(loaded.pre.engine(), HostCtx::new(sub));
        let world = loaded
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("cannot instantiate: {}", describe_error(&e)))?;
        store.data().start_call();
        let config: Vec<(String, String)> =
            config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        world
            .weir_operator_guest()
            .call_open(&mut store, &task, &config)
            .map_err(|e| with_guest_output(describe_error(&e), store.data()))?
            .map_err(|e| format!("open() refused the config: {e}"))?;
        Ok(WasmOperator { store, world })
    }
}

impl OperatorInstance for WasmOperator {
    fn process(&mut self, input: &Batch) -> Result<Result<Batch, GuestError>, String> {
        self.store.data().start_call();
        self.world
            .weir_operator_guest()
            .call_process(&mut self.store, input)
            .map_err(|e| with_guest_output(describe_error(&e), self.store.data()))
    }

    fn on_timer(&mut self, fired: &Timers) -> Result<Result<Batch, GuestError>, String> {
        self.store.data().start_call();
        self.world
            .weir_operator_guest()
            .call_on_timer(&mut self.store, fired)
            .map_err(|e| with_guest_output(describe_error(&e), self.store.data()))
    }

    fn ctx(&mut self) -> &mut SubtaskCtx {
        &mut self.store.data_mut().sub
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
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
            .filter(|name| !is_runtime_frame(name))
            .take(3)
            .collect();
        if !frames.is_empty() {
            text.push_str(&format!(" (in {})", frames.join(" <- ")));
        }
    }
    text
}

/// Frames of the language runtime (panic and abort machinery, allocator),
/// which say nothing about where the operator went wrong.
fn is_runtime_frame(name: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "__rdl",
        "rust_panic",
        "abort",
        "_start",
        "wit_bindgen",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || name.starts_with("<") && name.contains(" as core::")
}
