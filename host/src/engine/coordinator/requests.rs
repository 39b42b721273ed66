//! What the coordinator triggers next, when no barrier is in flight (as
//! Flink's `CheckpointRequestDecider`): savepoint and stop requests wait
//! in a queue; a shutdown (a signal) stops at a last checkpoint; the end of
//! the input asks for the final checkpoint once every source subtask has
//! read all of its input. A periodic checkpoint, or a swap's barrier, is
//! triggered only when none of these is due.
//!
//! The rules: a request waits while a barrier is in flight. A shutdown fails
//! the savepoints waiting (the job is going away), and so does a live swap
//! under way (savepoints are taken once it completes or rolls back). The
//! oldest savepoint request goes first; the final checkpoint carries it if
//! the input has ended. Once a stop's barrier is triggered the job is
//! stopping: later requests fail, and a shutdown adds nothing.

use std::collections::VecDeque;

use crate::engine::control::SavepointRequest;

/// Why a waiting savepoint fails when a shutdown comes.
pub const SHUTTING_DOWN: &str = "the job is shutting down";
/// Why a waiting savepoint fails while a live swap is under way.
pub const SWAPPING: &str =
    "a live swap is under way: savepoints are taken once it completes or rolls back";
/// Why a savepoint request fails once the job is stopping.
pub const STOPPING: &str = "the job is stopping";

/// The requests of one run.
#[derive(Debug)]
pub struct Requests {
    waiting: VecDeque<SavepointRequest>,
    sources: usize,
    ended_sources: usize,
    input_ended: bool,
    stopping: bool,
    shutdown: bool,
}

/// What to trigger next, with no barrier in flight. Requests that cannot be
/// served are handed back in `failed`, with why.
#[derive(Debug, Default)]
pub struct Next {
    /// Requests to fail, and why.
    pub failed: Vec<(SavepointRequest, &'static str)>,
    /// The savepoint request the next barrier serves, oldest first.
    pub savepoint: Option<SavepointRequest>,
    /// Every source subtask has ended: the final checkpoint is due.
    pub input_ended: bool,
    /// A shutdown is due: a last checkpoint.
    pub shutdown: bool,
}

impl Next {
    /// The next barrier, once its savepoint request was prepared
    /// (`prepared`: it was, and whether it stops the job with `Some(drain)`);
    /// `None` when nothing is due (a periodic checkpoint or a swap's barrier
    /// may go instead).
    pub fn barrier(&self, prepared: Option<Option<bool>>) -> Option<super::BarrierKind> {
        if !(self.input_ended || prepared.is_some() || self.shutdown) {
            return None;
        }
        let stop = self.shutdown || prepared.is_some_and(|stop| stop.is_some());
        Some(super::BarrierKind {
            last: self.input_ended || stop,
            input_ended: self.input_ended,
            shutdown: self.shutdown,
        })
    }
}

impl Requests {
    /// No request yet, in a job of `sources` source subtasks.
    pub fn new(sources: usize) -> Self {
        Requests {
            waiting: VecDeque::new(),
            sources,
            ended_sources: 0,
            input_ended: false,
            stopping: false,
            shutdown: false,
        }
    }

    /// A request from the control plane; handed back, with why, when it
    /// cannot be served.
    pub fn request(
        &mut self,
        request: SavepointRequest,
    ) -> Option<(SavepointRequest, &'static str)> {
        if request.checkpoint_only {
            // A stop under way already ends the job.
            self.shutdown = !self.stopping;
            None
        } else if self.stopping {
            Some((request, STOPPING))
        } else {
            self.waiting.push_back(request);
            None
        }
    }

    /// A source subtask has read its whole input.
    pub fn source_ended(&mut self) {
        self.ended_sources += 1;
        self.input_ended = self.ended_sources >= self.sources;
    }

    /// What to trigger next, with no barrier in flight; `swapping`: a live
    /// swap is waiting for its barrier or on probation. `None` once the job
    /// is stopping.
    pub fn next(&mut self, swapping: bool) -> Option<Next> {
        if self.stopping {
            return None;
        }
        let mut next = Next {
            input_ended: self.input_ended,
            shutdown: self.shutdown,
            ..Next::default()
        };
        if self.shutdown {
            next.failed
                .extend(self.waiting.drain(..).map(|r| (r, SHUTTING_DOWN)));
        }
        if swapping {
            next.failed
                .extend(self.waiting.drain(..).map(|r| (r, SWAPPING)));
        }
        next.savepoint = self.waiting.pop_front();
        Some(next)
    }

    /// The barrier `next` asked for was triggered; `stop`: it stops the job.
    pub fn triggered(&mut self, stop: bool) {
        self.stopping = stop;
        self.shutdown = false;
    }

    /// The requests still waiting when the run ends.
    pub fn into_waiting(self) -> VecDeque<SavepointRequest> {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::coordinator::BarrierKind;
    use std::path::PathBuf;

    fn savepoint(id: &str, stop: Option<bool>) -> SavepointRequest {
        SavepointRequest {
            id: id.to_string(),
            target: PathBuf::from("/savepoints"),
            stop,
            checkpoint_only: false,
        }
    }

    fn shutdown() -> SavepointRequest {
        SavepointRequest {
            id: "signal".to_string(),
            target: PathBuf::new(),
            stop: None,
            checkpoint_only: true,
        }
    }

    fn ids(failed: &[(SavepointRequest, &'static str)]) -> Vec<(String, &'static str)> {
        failed.iter().map(|(r, why)| (r.id.clone(), *why)).collect()
    }

    #[test]
    fn the_oldest_savepoint_goes_first() {
        let mut r = Requests::new(1);
        assert!(r.request(savepoint("a", None)).is_none());
        assert!(r.request(savepoint("b", Some(false))).is_none());
        let next = r.next(false).unwrap();
        assert!(next.failed.is_empty());
        assert_eq!(next.savepoint.as_ref().unwrap().id, "a");
        assert_eq!(
            next.barrier(Some(None)),
            Some(BarrierKind {
                last: false,
                input_ended: false,
                shutdown: false
            })
        );
        r.triggered(false);
        let next = r.next(false).unwrap();
        assert_eq!(next.savepoint.as_ref().unwrap().id, "b");
        // A stop-with-savepoint is a last barrier; after it, nothing is served.
        let kind = next.barrier(Some(Some(false))).unwrap();
        assert!(kind.last && !kind.input_ended);
        r.triggered(true);
        assert!(r.next(false).is_none(), "stopping: nothing follows");
        assert_eq!(
            r.request(savepoint("c", None)).map(|(r, why)| (r.id, why)),
            Some(("c".to_string(), STOPPING))
        );
    }

    #[test]
    fn nothing_due_leaves_room_for_a_periodic_checkpoint() {
        let mut r = Requests::new(2);
        let next = r.next(false).unwrap();
        assert!(next.savepoint.is_none());
        assert_eq!(next.barrier(None), None);
        // A request whose directory could not be made is as none.
        r.request(savepoint("a", None));
        let next = r.next(false).unwrap();
        assert!(next.savepoint.is_some());
        assert_eq!(next.barrier(None), None);
    }

    #[test]
    fn the_final_checkpoint_waits_for_every_source_subtask_and_carries_a_savepoint() {
        let mut r = Requests::new(2);
        r.source_ended();
        assert_eq!(r.next(false).unwrap().barrier(None), None);
        r.source_ended();
        let final_kind = BarrierKind {
            last: true,
            input_ended: true,
            shutdown: false,
        };
        assert_eq!(r.next(false).unwrap().barrier(None), Some(final_kind));
        r.request(savepoint("a", None));
        let next = r.next(false).unwrap();
        assert_eq!(next.savepoint.as_ref().unwrap().id, "a");
        assert_eq!(next.barrier(Some(None)), Some(final_kind));
    }

    #[test]
    fn a_shutdown_fails_the_waiting_savepoints_and_stops_at_a_last_checkpoint() {
        let mut r = Requests::new(1);
        r.request(savepoint("a", None));
        r.request(savepoint("b", Some(true)));
        assert!(r.request(shutdown()).is_none());
        let next = r.next(false).unwrap();
        assert_eq!(
            ids(&next.failed),
            [
                ("a".to_string(), SHUTTING_DOWN),
                ("b".to_string(), SHUTTING_DOWN)
            ]
        );
        assert!(next.savepoint.is_none());
        assert_eq!(
            next.barrier(None),
            Some(BarrierKind {
                last: true,
                input_ended: false,
                shutdown: true
            })
        );
        r.triggered(true);
        // A second signal while stopping adds nothing.
        assert!(r.request(shutdown()).is_none());
        assert!(r.next(false).is_none());
    }

    #[test]
    fn a_shutdown_not_triggered_is_tried_again() {
        let mut r = Requests::new(1);
        r.request(shutdown());
        assert!(r.next(false).unwrap().shutdown);
        // The source was busy: the barrier was not triggered.
        assert!(r.next(false).unwrap().shutdown);
        r.triggered(true);
        assert!(r.next(false).is_none());
    }

    #[test]
    fn a_live_swap_fails_the_waiting_savepoints() {
        let mut r = Requests::new(1);
        r.request(savepoint("a", None));
        let next = r.next(true).unwrap();
        assert_eq!(ids(&next.failed), [("a".to_string(), SWAPPING)]);
        assert_eq!(next.barrier(None), None);
        // Once the swap is over, savepoints are served again.
        r.request(savepoint("b", None));
        assert_eq!(r.next(false).unwrap().savepoint.unwrap().id, "b");
    }

    #[test]
    fn requests_left_when_the_run_ends_are_handed_back() {
        let mut r = Requests::new(1);
        r.request(savepoint("a", None));
        r.request(savepoint("b", None));
        let left: Vec<String> = r.into_waiting().into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["a", "b"]);
    }
}
