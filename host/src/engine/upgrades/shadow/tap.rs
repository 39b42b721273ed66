//! The shadow tap: through it a live subtask joins a shadow run at a
//! barrier and copies its inputs, timer firings and outputs to the run's
//! thread, never waiting ([`ShadowTap`]).

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::model::{Batch, TimeDomain};
use crate::wasm::operator::SubtaskCtx;

use super::*;

/// A live subtask's link to shadow runs: at a checkpoint barrier it joins a
/// requested run (copying its state and timers, copy-on-write), and from
/// then on hands each input batch, each timer firing and what the live
/// logic emitted for them to the shadow thread through a bounded queue,
/// never waiting: when the queue is full, the run stops as fallen behind.
pub struct ShadowTap {
    pub(super) control: Arc<ShadowControl>,
    pub(super) operator: String,
    pub(super) subtask: u32,
    pub(super) feed: Option<(Arc<ShadowRun>, Sender<Item>)>,
    /// What the current input batch or timer firing is, and its live output so far.
    pub(super) pending: Option<(TapCall, Vec<Batch>)>,
}

pub(super) enum TapCall {
    Input(Batch, Option<Vec<u64>>),
    Fire(TimeDomain, i64),
}

impl ShadowTap {
    /// The tap of subtask `subtask` of `operator`.
    pub fn new(control: Arc<ShadowControl>, operator: &str, subtask: u32) -> Self {
        ShadowTap {
            control,
            operator: operator.to_string(),
            subtask,
            feed: None,
            pending: None,
        }
    }

    pub(super) fn feeding(&mut self) -> bool {
        if self.feed.as_ref().is_some_and(|(run, _)| run.is_over()) {
            self.feed = None;
        }
        self.feed.is_some()
    }

    /// At a checkpoint barrier, after the subtask's snapshot: joins a
    /// requested shadow run of this operator.
    pub fn at_barrier(&mut self, ctx: &mut SubtaskCtx, barrier: u64, last: bool) {
        if self.feeding() || last {
            return;
        }
        let Some(run) = self.control.pending(&self.operator) else {
            return;
        };
        if !run.join(self.subtask, barrier) {
            return;
        }
        // Copy-on-write: O(shards) here; the shadow thread copies the entries.
        let state = ctx.state.snapshot(true);
        let timers = ctx.timers.snapshot(true);
        let watermark = ctx.watermark;
        let key_groups = ctx.key_groups.clone();
        let (tx, rx) = crossbeam_channel::bounded(run.queue);
        let subtask = self.subtask;
        let thread_run = run.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weir-shadow-{}-{subtask}", self.operator))
            .spawn(move || {
                run_shadow(
                    thread_run, subtask, key_groups, state, timers, watermark, rx,
                )
            });
        match spawned {
            Ok(_) => self.feed = Some((run, tx)),
            Err(e) => run.end(RunState::Failed, format!("cannot start a thread: {e}")),
        }
    }

    /// An input batch is about to be processed.
    pub fn begin_input(&mut self, batch: &Batch, offsets: Option<&[u64]>) {
        if self.feeding() {
            let input = TapCall::Input(batch.clone(), offsets.map(<[u64]>::to_vec));
            self.pending = Some((input, Vec::new()));
        }
    }

    /// Timers of `domain` due at `time` are about to fire.
    pub fn begin_fire(&mut self, domain: TimeDomain, time: i64) {
        if self.feeding() {
            self.pending = Some((TapCall::Fire(domain, time), Vec::new()));
        }
    }

    /// The live logic emitted `out` for what began.
    pub fn collect(&mut self, out: &Batch) {
        if let Some((_, live)) = &mut self.pending {
            live.push(out.clone());
        }
    }

    /// What began is done: hands it to the shadow, without waiting.
    pub fn end(&mut self) {
        let Some((what, live)) = self.pending.take() else {
            return;
        };
        let Some((run, tx)) = &self.feed else {
            return;
        };
        let item = match what {
            TapCall::Input(batch, offsets) => Item::Input {
                batch,
                offsets,
                live,
            },
            TapCall::Fire(domain, time) => Item::Fire { domain, time, live },
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let at = crate::model::rfc3339(crate::model::now_ms());
                run.end(
                    RunState::FellBehind,
                    format!(
                        "fell behind: subtask {}'s queue of {} batches was full at {at}",
                        self.subtask, run.queue
                    ),
                );
                self.feed = None;
            }
            Err(TrySendError::Disconnected(_)) => self.feed = None,
        }
    }
}
