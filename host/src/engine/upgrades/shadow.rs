//! Shadow runs: a candidate `.wasm` runs beside an operator's current logic,
//! on a copy of its state and the same input, writes to no sink, and its
//! output is diffed with the current logic's ([`Comparator`]).
//!
//! Its parts: the comparison ([`compare`]), a side of the run
//! ([`side`]), offline replays ([`mod@replay`]), live runs ([`live`]) and the
//! tap a live subtask joins them through ([`tap`]).
//!
//! # Matching
//!
//! Outputs are compared per *cause*: one input batch handed to the
//! operator, or one firing of its timers (the watermark passing a time, or
//! the clock). The output of a cause is grouped by output key, keeping
//! the order each side emitted it in; within a key, the `i`-th event of
//! the live side is paired with the `i`-th of the candidate: a pair whose
//! value and timestamp agree is *equal*, else *different*; the events past
//! the shorter side are *only-live* or *only-candidate*. *Compared* counts
//! every pair and every unpaired event. Operators need not emit in the same
//! order across keys, but do within a key (a per-key running result, the
//! usual shape, always does). A difference names its key and, when the
//! cause was an input batch from the source, the source offset of the
//! input event of that key at the same place (the `i`-th event of the key
//! in the batch, else its last): for an operator that emits one event per
//! input, exactly the event that caused it.
//!
//! Every difference goes, as one JSON line, to the diff file; the first
//! [`DIFFERENCES_KEPT`] are also kept for the status.
//!
//! # Offline ([`replay()`])
//!
//! Both logics are restored from a savepoint into one subtask owning every
//! key group, by the rules of a restore ([`plan_states`]); recorded input
//! is replayed in the source's batches, the watermark following it as the
//! source's would ([`crate::engine::channel::watermark_after`] with the job's `watermark_delay`),
//! then set to the end of the input; processing-time timers due at the end
//! fire then.
//!
//! # Live ([`ShadowControl`], [`ShadowTap`])
//!
//! One shadow run at a time per job. A request loads and checks the
//! candidate before anything changes. Each live subtask of the operator
//! joins at the next checkpoint barrier it snapshots: it takes a second
//! copy-on-write snapshot of its state and timers right after the
//! checkpoint's (O(shards); nothing changed in between, so the checkpoint's
//! change tracking is untouched) and a thread of its own builds the
//! candidate's context from it and opens the candidate, under the
//! operator's `[operators.limits]` and `[operators.capabilities]`. From then
//! on the subtask hands each input batch (cloned, with its offsets), each
//! timer firing and the live output of either to that thread through a
//! bounded queue with `try_send`: the live path never waits; a full queue
//! ends the run as `FELL_BEHIND`. The candidate's event-time timers fire as
//! the live watermark moves; its processing-time timers fire when the live
//! subtask's do, at the same time. An event the candidate rejects as bad
//! input is skipped and counted; a trap, budget overrun or fatal error ends
//! the run as `FAILED`, never the job. A subtask joins a run once: after a
//! restart of the job, the new subtasks do not join again, and the run
//! ends (`STOPPED`) once the subtasks it ran beside are gone.

pub mod compare;
pub mod live;
pub mod replay;
pub mod side;
pub mod tap;

pub use compare::*;
pub use live::*;
pub use replay::*;
pub use side::*;
pub use tap::*;

#[cfg(test)]
mod tests;
