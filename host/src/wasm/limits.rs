//! What an operator may reach and use: the WASI capabilities it is granted
//! (`[operators.capabilities]`) and the budgets of each of its subtasks
//! (`[operators.limits]`). The job file fills them in; the operator
//! instance enforces them.

use std::path::PathBuf;
use std::time::Duration;

/// `[operators.capabilities]`: the WASI access an operator is granted. By
/// default it has none: no files, no environment variables, no network. A
/// guest that tries gets a WASI error (no such file, variable unset,
/// permission denied), never access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `env = { NAME = "value" }`: the environment the operator sees (weir's
    /// own environment is never passed through).
    pub env: Vec<(String, String)>,
    /// `dirs` (read-only) and `writable_dirs`: folders of the host the
    /// operator sees, each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// `network = true`: outgoing and incoming TCP and UDP, and name lookups.
    pub network: bool,
}

/// `[operators.limits]`: the budgets of each subtask of an operator.
/// Exceeding one traps the subtask with a message naming the operator, the
/// subtask, the budget and its value; the job's restart strategy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: largest linear memory of an instance, in bytes.
    pub memory: u64,
    /// `cpu_per_call`: longest time one guest call may run.
    pub cpu_per_call: Duration,
    /// `output_per_call`: most events one `process` or `on-timer` call may emit.
    pub output_per_call: u64,
    /// `state_value_size`: largest state value, in bytes.
    pub state_value_size: u64,
    /// `state_memory`: most state a subtask may hold in the host, in bytes
    /// of keys and values plus [`crate::state::keyed::ENTRY_OVERHEAD`] per key, map
    /// entry and list element.
    pub state_memory: u64,
    /// `pending_timers`: most timers a subtask may have pending.
    pub pending_timers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 1 << 30,
            cpu_per_call: Duration::from_secs(10),
            output_per_call: 1_000_000,
            state_value_size: 16 << 20,
            state_memory: 4 << 30,
            pending_timers: 10_000_000,
        }
    }
}

/// One folder granted to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The path the guest opens it at, e.g. `/data`.
    pub guest: String,
    /// The host folder (absolute).
    pub host: PathBuf,
    /// Whether the guest may create, write and delete files in it.
    pub writable: bool,
}
