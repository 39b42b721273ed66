//! Live swaps: replacing the logic behind an operator ID in a running job,
//! at a checkpoint barrier, on probation, with automatic rollback.
//!
//! **Asking** (`weir swap`, `POST /jobs/{id}/operators/{op}/swap`,
//! [`crate::engine::control::JobControl::request_swap`]): before anything
//! changes, the new `.wasm` is loaded, compiled and checked (its world; its
//! declared states against the operator's current ones by the rules of a
//! restore, [`crate::state::restore::plan`]; a state cannot be dropped
//! live). A refusal answers at once and the job never notices. One swap at
//! a time; the job must take periodic checkpoints (the barrier is a
//! checkpoint's, and a rollback goes back to it). A copy of the `.wasm` is
//! kept in the state directory, so that a restart can run it whatever the
//! job file names. The swap is then IN_PROGRESS.
//!
//! **At the barrier**: the coordinator arms the board ([`SwapBoard`]) with
//! the order and the ID of the next checkpoint barrier before it triggers
//! it. Each subtask of the operator, once it has handed its snapshot of that
//! barrier to the coordinator (so the checkpoint holds the state as the old
//! logic left it) and forwarded the barrier, moves its state and timers
//! into a new instance of the new logic, migrates the states whose version
//! rose, calls `open`, and goes on with the events after the barrier. The
//! stages before and after it never stop. The checkpoint at the barrier
//! records the old logic; every later one the new ([`crate::state::checkpoint::CheckpointLogic`]).
//!
//! **Probation** (a time, or a number of events the new logic processes,
//! summed over its subtasks): the swap is PROBATION once its barrier's
//! checkpoint completes. Checkpoints go on being taken, but are marked as
//! taken on probation and the sink is told to hold them
//! ([`crate::engine::coordinator::SinkNotice::Aborted`]: an exactly-once
//! sink keeps everything after the swap barrier staged, the file sink in its
//! closed segments, the Kafka sink in its open transaction), and retention
//! keeps the swap barrier's checkpoint. The first checkpoint completed once
//! the window has passed (or the final one, when the input ends) ends the
//! probation: it is recorded as an ordinary checkpoint, the sink publishes
//! everything staged up to it, and the swap is COMPLETED.
//!
//! **Rollback**: a failure of the run while a swap is in progress or on
//! probation (the new logic fails to load, migrate or open, traps, overruns
//! a budget, or dead-letters more than its share of events; or anything else
//! fails the run then) rolls the swap back: the checkpoints taken on
//! probation are forgotten, and the job restarts at once from the newest
//! checkpoint left (the swap barrier's, or the one before it if that never
//! completed) with the old logic, which drops what the sink staged after
//! it. This does not count against `[restart] attempts`. The swap ends
//! ROLLED_BACK with the reason. A crash of the process does the same: a
//! checkpoint taken on probation is never restored.
//!
//! Only the state is handed over: the new logic starts with a fresh guest
//! instance, like a restore (its guest memory is new).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::restore::OperatorPlan;
use crate::wasm::operator::OperatorImpl;

/// How long a swap stays on probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probation {
    /// At least this long after the swap barrier.
    Time(Duration),
    /// Until the new logic has processed this many events.
    Events(u64),
}

impl std::fmt::Display for Probation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probation::Time(d) => write!(f, "{}", humantime::format_duration(*d)),
            Probation::Events(n) => write!(f, "{n} events"),
        }
    }
}

impl std::str::FromStr for Probation {
    type Err = String;

    /// `30s`, `1m30s` (a duration, as job files write them) or `5000 events`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(n) = t.strip_suffix("events").or_else(|| t.strip_suffix("event")) {
            let n = n.trim().trim_end_matches('-');
            return n.parse::<u64>().map(Probation::Events).map_err(|_| {
                format!(
                    "probation `{}`: `{n}` is not a number of events",
                    s.escape_debug()
                )
            });
        }
        crate::model::config::parse_duration(t)
            .map(Probation::Time)
            .map_err(|e| format!("probation: {e}; or a number of events, e.g. `5000 events`"))
    }
}

/// Default probation: 30 seconds.
pub const DEFAULT_PROBATION: Duration = Duration::from_secs(30);

/// Default largest share of events the new logic may dead-letter on probation.
pub const DEFAULT_MAX_DEAD_LETTER_SHARE: f64 = 0.01;

/// Dead letters on probation are judged once the new logic has seen this many events.
pub const DEAD_LETTER_MIN_EVENTS: u64 = 100;

/// An accepted swap, on its way to its barrier.
pub struct SwapOrder {
    /// The request ID.
    pub request_id: String,
    /// Index of the operator in the job.
    pub operator: usize,
    /// The operator ID.
    pub operator_id: String,
    /// The new logic, loaded and checked.
    pub logic: OperatorImpl,
    /// How the operator's states map onto the new logic's.
    pub plan: OperatorPlan,
    /// How long it is on probation.
    pub probation: Probation,
    /// Largest share of events it may dead-letter on probation (0 to 1).
    pub max_dead_letter_share: f64,
}

/// What the stages of a run share about the swap under way (one at a time).
#[derive(Default)]
pub struct SwapBoard {
    /// The barrier at which the armed order applies (0: none).
    armed_at: AtomicU64,
    armed: Mutex<Option<Arc<SwapOrder>>>,
    /// The new logic is on probation: its subtasks count events and dead letters.
    probation: AtomicBool,
}

impl SwapBoard {
    /// Arms `order` for barrier `id`: the operator's subtasks swap there.
    pub fn arm(&self, id: u64, order: Arc<SwapOrder>) {
        *self.armed.lock().expect("swap board lock") = Some(order);
        self.probation.store(true, Ordering::SeqCst);
        self.armed_at.store(id, Ordering::SeqCst);
    }

    /// The order armed for barrier `id` of operator `operator`, if any.
    pub fn order_at(&self, id: u64, operator: usize) -> Option<Arc<SwapOrder>> {
        if self.armed_at.load(Ordering::Relaxed) != id {
            return None;
        }
        self.armed
            .lock()
            .expect("swap board lock")
            .clone()
            .filter(|o| o.operator == operator)
    }

    /// Whether the swapped logic is still on probation.
    pub fn on_probation(&self) -> bool {
        self.probation.load(Ordering::Relaxed)
    }

    /// The swap is over (completed or abandoned).
    pub fn clear(&self) {
        self.probation.store(false, Ordering::SeqCst);
        self.armed_at.store(0, Ordering::SeqCst);
        *self.armed.lock().expect("swap board lock") = None;
    }
}

/// What a subtask running swapped-in logic counts while it is on probation.
#[derive(Debug, Clone, Copy)]
pub struct ProbationCount {
    /// Events the new logic was handed.
    pub events: u64,
    /// Events it rejected as bad input.
    pub dead_letters: u64,
    /// Its largest share of dead letters.
    pub max_share: f64,
}

impl ProbationCount {
    /// Counts a rejected event; an error when the new logic has now
    /// dead-lettered more than its share.
    pub fn dead_letter(&mut self) -> Result<(), String> {
        self.dead_letters += 1;
        self.check()
    }

    /// An error when more than the share of events went to the dead letters.
    pub fn check(&self) -> Result<(), String> {
        if self.events >= DEAD_LETTER_MIN_EVENTS
            && self.dead_letters as f64 > self.max_share * self.events as f64
        {
            return Err(format!(
                "the new logic sent {} of {} events to the dead-letter output on probation, more than its share of {}%",
                self.dead_letters,
                self.events,
                self.max_share * 100.0
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_reads_a_duration_or_a_number_of_events() {
        assert_eq!(
            "30s".parse::<Probation>(),
            Ok(Probation::Time(Duration::from_secs(30)))
        );
        assert_eq!(
            "1m30s".parse::<Probation>(),
            Ok(Probation::Time(Duration::from_secs(90)))
        );
        assert_eq!(
            "5000 events".parse::<Probation>(),
            Ok(Probation::Events(5000))
        );
        assert_eq!("1 event".parse::<Probation>(), Ok(Probation::Events(1)));
        assert_eq!("7-events".parse::<Probation>(), Ok(Probation::Events(7)));
        let e = "many events".parse::<Probation>().unwrap_err();
        assert!(e.contains("`many`"), "{e}");
        let e = "soon".parse::<Probation>().unwrap_err();
        assert!(e.contains("events"), "{e}");
        assert_eq!(Probation::Events(3).to_string(), "3 events");
        assert_eq!(Probation::Time(Duration::from_secs(2)).to_string(), "2s");
    }

    #[test]
    fn dead_letters_are_judged_against_the_share_after_enough_events() {
        let mut p = ProbationCount {
            events: 10,
            dead_letters: 0,
            max_share: 0.1,
        };
        // Too few events to judge: every one may be rejected.
        for _ in 0..10 {
            assert!(p.dead_letter().is_ok());
        }
        p.events = 100;
        p.dead_letters = 9;
        assert!(p.dead_letter().is_ok(), "10 of 100 is the share, not more");
        let e = p.dead_letter().unwrap_err();
        assert!(e.contains("11 of 100 events") && e.contains("10%"), "{e}");
        let none = ProbationCount {
            events: 1000,
            dead_letters: 1,
            max_share: 0.0,
        };
        assert!(none.check().is_err());
    }
}
