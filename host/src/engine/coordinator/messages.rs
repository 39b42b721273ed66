//! What the coordinator and the stages tell each other: the stages'
//! acknowledgements ([`Ack`]), the barriers the coordinator asks the
//! sources to inject ([`Trigger`]), and what it tells the sink about the
//! barriers the sink pre-committed ([`SinkNotice`]).

use std::ops::Range;

use crate::engine::channel::Barrier;
use crate::model::{SinkState, SourceState};
use crate::state::keyed::StateSnapshot;
use crate::state::timers::TimerSnapshot;

/// What a stage tells the coordinator.
pub enum Ack {
    /// A source subtask injected barrier `id` at this position.
    Source {
        /// Checkpoint ID.
        id: u64,
        /// Which source subtask.
        subtask: u32,
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
        /// Changed (or, for a full checkpoint, all) state, shared
        /// copy-on-write with the subtask: its records are made here.
        state: StateSnapshot,
        /// Its timers (all, or for a delta what changed), copy-on-write:
        /// turned into records here.
        timers: TimerSnapshot,
        /// Its watermark.
        watermark: i64,
        /// Keys it holds.
        keys: u64,
        /// Bytes of keys and values it holds.
        state_bytes: u64,
        /// Events the logic swapped in live has processed here, while on probation.
        swapped_events: u64,
    },
    /// The sink pre-committed everything before barrier `id`.
    Sink {
        /// Checkpoint ID.
        id: u64,
        /// Its state, if it takes part in checkpoints.
        state: Option<SinkState>,
    },
    /// A source subtask has read its whole input and waits for the final
    /// checkpoint (which comes once every source subtask has).
    EndOfInput,
    /// The sink published (committed) what checkpoint `id` covers.
    Committed {
        /// Checkpoint ID.
        id: u64,
    },
    /// The sink could not publish what checkpoint `id` covers: it fails.
    CommitFailed {
        /// Checkpoint ID.
        id: u64,
        /// Why, in one line.
        why: String,
    },
}

/// What the coordinator tells the sink about a barrier it pre-committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkNotice {
    /// The checkpoint is complete and durable: publish what it covers.
    Complete(u64),
    /// The checkpoint was aborted: what it covers goes with the next one.
    Aborted(u64),
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
