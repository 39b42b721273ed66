//! The host's own names for what an operator declares and what it is called
//! with: state kinds and specs, time domains, fired timers, where a subtask
//! runs, and how a call failed.
//!
//! They mirror the records of `wit/operator.wit` field for field, but they
//! are the host's: storage, connectors and the engine use these, and only
//! the `wasm` layer converts them to and from the types `bindgen!` generates
//! (by moving their buffers, never copying). So a second version of the
//! contract is a second adapter in `wasm/`, not a change everywhere.

use super::batch::{Batch, Blobs};

/// The kinds of declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A map from user keys to values, per key.
    Map,
    /// An ordered list of values, per key.
    List,
}

/// A state an operator declares; the host owns and stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSpec {
    /// Unique within the operator.
    pub name: String,
    /// What kind of state it is.
    pub kind: StateKind,
    /// Schema version of the stored values.
    pub version: u32,
}

/// What an operator says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSpec {
    /// Human-readable name of the logic, e.g. `keyed-count`.
    pub name: String,
    /// Version of the logic, e.g. `1.0.0`.
    pub version: String,
    /// The states it declares.
    pub states: Vec<StateSpec>,
}

/// Where a subtask runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The operator ID in the job.
    pub operator_id: String,
    /// Index of this subtask, from 0.
    pub subtask: u32,
    /// Number of subtasks of the operator.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// How many times the job has been restarted after a failure in this run.
    pub attempt: u32,
}

/// Time domains of timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timer's timestamp.
    EventTime,
    /// Fires when the wall clock passes the timer's timestamp.
    ProcessingTime,
}

/// Timers that fire together, in flat form: `keys[i]` (absent: length -1)
/// and `timestamps[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    /// Their time domain.
    pub domain: TimeDomain,
    /// Each timer's key.
    pub keys: Blobs,
    /// The time each was set for.
    pub timestamps: Vec<i64>,
}

/// One event an operator rejected as bad input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the bad event in the batch the operator was called with.
    pub index: u32,
    /// Why it was rejected; written to the dead-letter output.
    pub message: String,
    /// Output of the events before `index`.
    pub output: Batch,
}

/// Why an operator call failed, as the operator says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// One event is bad: it goes to the dead-letter output and the job goes on.
    BadInput(Rejected),
    /// The job cannot go on: it fails and restarts from its last checkpoint.
    Fatal(String),
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
