//! A pending checkpoint (as Flink's `PendingCheckpoint`): the barrier in
//! flight, which stages have acknowledged it, and what their
//! acknowledgements add up to, until every source subtask, every operator
//! subtask and the sink have. Acknowledgements of another barrier (a late
//! one, of a checkpoint that was aborted) are not this one's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::control::SavepointRequest;
use crate::engine::upgrades::swap::SwapOrder;
use crate::model::{now_ms, SinkState, SourcePosition, SourceState};
use crate::state::savepoint::{DataFile, SavepointWriter};

/// A savepoint riding on a pending barrier.
pub struct PendingSavepoint {
    /// The request it answers.
    pub request: SavepointRequest,
    /// Its directory, being written.
    pub writer: SavepointWriter,
    /// Per operator: data files written so far.
    pub files: Vec<Vec<DataFile>>,
    /// Per operator: keys per state.
    pub keys: Vec<BTreeMap<String, u64>>,
    /// Per operator: timers.
    pub timers: Vec<u64>,
}

impl PendingSavepoint {
    /// A savepoint of `operators` operators, nothing written yet.
    pub fn new(request: SavepointRequest, writer: SavepointWriter, operators: usize) -> Self {
        PendingSavepoint {
            request,
            writer,
            files: vec![Vec::new(); operators],
            keys: vec![Default::default(); operators],
            timers: vec![0; operators],
        }
    }
}

/// What a barrier to trigger is, besides a savepoint it may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BarrierKind {
    /// The last barrier: the source ends after it.
    pub last: bool,
    /// The input has ended (the final checkpoint).
    pub input_ended: bool,
    /// A graceful shutdown on a signal.
    pub shutdown: bool,
}

/// The barrier in flight.
pub struct Pending {
    /// Checkpoint ID.
    pub id: u64,
    /// A full checkpoint (else a delta on the chain).
    pub full: bool,
    /// The last barrier: the source ends after it.
    pub last: bool,
    /// When it was triggered, wall clock.
    pub triggered_at_ms: i64,
    /// When it was triggered, for its duration and timeout.
    pub started: Instant,
    /// Each source subtask's acknowledgement: `Some(None)` for a source
    /// with no position (stdin).
    pub sources: Vec<Option<Option<SourceState>>>,
    /// The sink's acknowledgement.
    pub sink: Option<Option<SinkState>>,
    /// Operator subtasks that have acknowledged.
    pub subtasks: usize,
    /// Bytes written to the store.
    pub bytes: u64,
    /// The lowest watermark of the acknowledging subtasks.
    pub watermark: i64,
    /// Per operator: keys held.
    pub keys: Vec<u64>,
    /// Per operator: bytes of keys and values held.
    pub state_bytes: Vec<u64>,
    /// Per operator: bytes written to the store.
    pub op_bytes: Vec<u64>,
    /// The savepoint it carries.
    pub savepoint: Option<PendingSavepoint>,
    /// The input had ended: the last barrier finishes the job.
    pub finished: bool,
    /// (operator, subtask) that have acknowledged.
    pub acked: BTreeSet<(usize, u32)>,
    /// This stop's savepoint failed while being written: why.
    pub stop_failed: Option<String>,
    /// The live swap whose barrier this is.
    pub swap: Option<Arc<SwapOrder>>,
    /// Events the logic swapped in has processed, as of this barrier.
    pub swapped_events: u64,
    /// The last barrier of a shutdown (a signal).
    pub shutdown: bool,
}

impl Pending {
    /// Barrier `id` of `kind`, just triggered at `sources` source subtasks,
    /// in a job of `operators` operators.
    pub fn new(
        id: u64,
        full: bool,
        kind: BarrierKind,
        sources: usize,
        operators: usize,
        savepoint: Option<PendingSavepoint>,
        swap: Option<Arc<SwapOrder>>,
    ) -> Self {
        let BarrierKind {
            last,
            input_ended,
            shutdown,
        } = kind;
        Pending {
            id,
            full,
            last,
            triggered_at_ms: now_ms(),
            started: Instant::now(),
            sources: vec![None; sources],
            sink: None,
            subtasks: 0,
            bytes: 0,
            watermark: i64::MAX,
            keys: vec![0; operators],
            state_bytes: vec![0; operators],
            op_bytes: vec![0; operators],
            savepoint,
            finished: last && input_ended,
            acked: BTreeSet::new(),
            stop_failed: None,
            swap,
            swapped_events: 0,
            shutdown: shutdown && last && !input_ended,
        }
    }

    /// What this barrier is, for messages: `checkpoint 7`, `savepoint 7`.
    pub fn what(&self) -> String {
        if self.savepoint.is_some() {
            format!("savepoint {}", self.id)
        } else if self.last {
            format!("final checkpoint {}", self.id)
        } else {
            format!("checkpoint {}", self.id)
        }
    }

    /// Source subtask `subtask` injected the barrier at `state`.
    pub fn source_acked(&mut self, subtask: u32, state: Option<SourceState>) {
        if let Some(slot) = self.sources.get_mut(subtask as usize) {
            *slot = Some(state);
        }
    }

    /// The sink pre-committed everything before the barrier.
    pub fn sink_acked(&mut self, state: Option<SinkState>) {
        self.sink = Some(state);
    }

    /// Subtask `subtask` of operator `operator` acknowledged with what it
    /// holds (its snapshot is written by the coordinator).
    pub fn subtask_acked(
        &mut self,
        operator: usize,
        subtask: u32,
        keys: u64,
        state_bytes: u64,
        watermark: i64,
    ) {
        self.keys[operator] += keys;
        self.state_bytes[operator] += state_bytes;
        self.watermark = self.watermark.min(watermark);
        self.subtasks += 1;
        self.acked.insert((operator, subtask));
    }

    /// Every stage has acknowledged, in a job of `subtasks` operator subtasks.
    pub fn is_complete(&self, subtasks: usize) -> bool {
        self.sources.iter().all(Option::is_some) && self.sink.is_some() && self.subtasks == subtasks
    }

    /// When it times out: checkpoints (`checkpoints`: the job takes them)
    /// and savepoints do; the final barrier of a job without checkpoints
    /// does not.
    pub fn expiry(&self, checkpoints: bool, timeout: Duration) -> Option<Instant> {
        (checkpoints || self.savepoint.is_some()).then(|| self.started + timeout)
    }

    /// The one-line reason of a barrier that timed out after `timeout`,
    /// naming the stages it waits for, of a job whose operators are
    /// `operators` (ID, parallelism).
    pub fn timed_out(&self, operators: &[(String, u32)], timeout: Duration) -> String {
        let mut missing = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            if s.is_none() {
                missing.push(if self.sources.len() == 1 {
                    "the source".to_string()
                } else {
                    format!("source subtask {i}")
                });
            }
        }
        for (i, (id, parallelism)) in operators.iter().enumerate() {
            for sub in 0..*parallelism {
                if !self.acked.contains(&(i, sub)) {
                    missing.push(format!("operator `{id}` subtask {sub}"));
                }
            }
        }
        if self.sink.is_none() {
            missing.push("the sink".to_string());
        }
        const SHOWN: usize = 6;
        let more = missing.len().saturating_sub(SHOWN);
        missing.truncate(SHOWN);
        let mut waiting = missing.join(", ");
        if more > 0 {
            waiting += &format!(" and {more} more");
        }
        format!(
            "{} timed out after {:?} (`[checkpoint] timeout`) waiting for {waiting}",
            self.what(),
            timeout
        )
    }

    /// The source's part of the checkpoint ([`merge_sources`]).
    pub fn take_source(&mut self) -> SourceState {
        merge_sources(std::mem::take(&mut self.sources))
    }
}

/// The source's part of a checkpoint, from each source subtask's: their
/// positions merged ([`SourcePosition::merge`]), the highest timestamp any
/// saw. A source with no position (stdin) stores a placeholder.
fn merge_sources(parts: Vec<Option<Option<SourceState>>>) -> SourceState {
    let states: Vec<SourceState> = parts.into_iter().flatten().flatten().collect();
    let max_timestamp = states
        .iter()
        .map(|s| s.max_timestamp)
        .max()
        .unwrap_or(i64::MIN);
    let position = SourcePosition::merge(states.into_iter().map(|s| s.position).collect())
        .unwrap_or(SourcePosition::Generator { next: 0 });
    SourceState {
        position,
        max_timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sources: usize, operators: usize) -> Pending {
        Pending::new(
            7,
            false,
            BarrierKind::default(),
            sources,
            operators,
            None,
            None,
        )
    }

    fn at(next: u64, max_timestamp: i64) -> Option<SourceState> {
        Some(SourceState {
            position: SourcePosition::Generator { next },
            max_timestamp,
        })
    }

    #[test]
    fn complete_only_once_every_stage_has_acknowledged() {
        // Two source subtasks, operators of parallelism 2 and 1: 3 subtasks.
        // Each step: (the acknowledgement, complete after it).
        enum A {
            Source(u32),
            Subtask(usize, u32),
            Sink,
        }
        let orders: &[&[(A, bool)]] = &[
            &[
                (A::Source(0), false),
                (A::Source(1), false),
                (A::Subtask(0, 0), false),
                (A::Subtask(0, 1), false),
                (A::Subtask(1, 0), false),
                (A::Sink, true),
            ],
            &[
                (A::Sink, false),
                (A::Subtask(1, 0), false),
                (A::Subtask(0, 1), false),
                (A::Source(1), false),
                (A::Subtask(0, 0), false),
                (A::Source(0), true),
            ],
        ];
        for (n, order) in orders.iter().enumerate() {
            let mut p = pending(2, 2);
            for (step, (ack, complete)) in order.iter().enumerate() {
                match ack {
                    A::Source(s) => p.source_acked(*s, at(1, 1)),
                    A::Subtask(o, s) => p.subtask_acked(*o, *s, 1, 10, 100),
                    A::Sink => p.sink_acked(None),
                }
                assert_eq!(p.is_complete(3), *complete, "order {n}, step {step}");
            }
        }
    }

    #[test]
    fn a_source_without_a_position_still_acknowledges() {
        let mut p = pending(1, 0);
        p.source_acked(0, None);
        p.sink_acked(None);
        assert!(p.is_complete(0));
        // An acknowledgement from a source subtask the barrier never went to is not counted.
        let mut p = pending(1, 0);
        p.source_acked(3, at(1, 1));
        p.sink_acked(None);
        assert!(!p.is_complete(0));
    }

    #[test]
    fn acknowledgements_add_up() {
        let mut p = pending(1, 2);
        p.subtask_acked(0, 0, 3, 30, 500);
        p.subtask_acked(0, 1, 4, 40, 200);
        p.subtask_acked(1, 0, 5, 50, 900);
        assert_eq!(p.keys, vec![7, 5]);
        assert_eq!(p.state_bytes, vec![70, 50]);
        assert_eq!(p.watermark, 200, "the lowest subtask watermark");
        assert_eq!(p.subtasks, 3);
    }

    #[test]
    fn the_source_state_merges_its_subtasks() {
        let mut p = pending(2, 0);
        p.source_acked(0, at(5, 100));
        p.source_acked(1, at(5, 300));
        let s = p.take_source();
        assert_eq!(s.max_timestamp, 300);
        // Stdin has no position: a placeholder.
        let mut p = pending(1, 0);
        p.source_acked(0, None);
        let s = p.take_source();
        assert_eq!(s.max_timestamp, i64::MIN);
        assert!(matches!(s.position, SourcePosition::Generator { next: 0 }));
    }

    #[test]
    fn a_timeout_names_what_it_waits_for() {
        let ops = vec![("count".to_string(), 2), ("sum".to_string(), 1)];
        let mut p = pending(1, 2);
        p.source_acked(0, at(1, 1));
        p.subtask_acked(0, 1, 0, 0, 0);
        assert_eq!(
            p.timed_out(&ops, Duration::from_secs(2)),
            "checkpoint 7 timed out after 2s (`[checkpoint] timeout`) waiting for operator `count` subtask 0, operator `sum` subtask 0, the sink"
        );
        let ops = vec![("wide".to_string(), 9)];
        let p = pending(2, 1);
        assert_eq!(
            p.timed_out(&ops, Duration::from_millis(1500)),
            "checkpoint 7 timed out after 1.5s (`[checkpoint] timeout`) waiting for source subtask 0, source subtask 1, operator `wide` subtask 0, operator `wide` subtask 1, operator `wide` subtask 2, operator `wide` subtask 3 and 6 more"
        );
    }

    #[test]
    fn what_a_barrier_is_called_and_when_it_expires() {
        let timeout = Duration::from_secs(60);
        let p = pending(1, 0);
        assert_eq!(p.what(), "checkpoint 7");
        assert!(p.expiry(true, timeout).is_some());
        // The final barrier of a job without checkpoints never times out.
        let last = BarrierKind {
            last: true,
            input_ended: true,
            shutdown: false,
        };
        let p = Pending::new(8, true, last, 1, 0, None, None);
        assert_eq!(p.what(), "final checkpoint 8");
        assert!(p.finished);
        assert!(p.expiry(false, timeout).is_none());
        // A shutdown's last barrier, not the end of the input.
        let shutdown = BarrierKind {
            last: true,
            input_ended: false,
            shutdown: true,
        };
        let p = Pending::new(9, true, shutdown, 1, 0, None, None);
        assert!(p.shutdown && !p.finished);
    }
}
