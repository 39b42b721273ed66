//! What flows on the data path's channels, and a stage's view of its inputs.
//!
//! Every edge of the job graph is a bounded channel from one upstream
//! instance to one downstream instance, so a slow stage back-pressures its
//! producers. Batches, watermarks and the end-of-input marker flow in-band on
//! the same channels, in order (checkpoint barriers will too).

use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender};

use crate::model::Batch;

/// Batches in flight per channel before the sender blocks.
pub const CHANNEL_CAPACITY: usize = 16;

/// One message on a data-path channel.
#[derive(Debug)]
pub enum Message {
    /// Events, and their [`Offsets`] when they come straight from the source.
    Batch(Batch, Option<Offsets>),
    /// No event with a timestamp at or below this will follow on this channel
    /// (late ones aside).
    Watermark(i64),
    /// The sender has nothing to read for now (an idle source, or an
    /// operator whose inputs are all idle): its watermark holds back no one
    /// until it sends a batch or a watermark again (Flink's idle status).
    Idle,
    /// Checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(Barrier),
    /// The sender has finished: nothing more will follow.
    End,
}

/// Where each event of a batch sits in the job's source, one per event: the
/// 0-based line of a file or of standard input, the index of a generated
/// event. Only batches straight from the source carry them (an operator's
/// output is not one-to-one with its input); they are what a failure message
/// names as the offset of the event being processed.
pub type Offsets = Vec<u64>;

/// A checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint's ID.
    pub id: u64,
    /// Whether operators snapshot all their state, not only what changed.
    pub full: bool,
    /// The final checkpoint: nothing follows but the end (of a finished
    /// input, or of a job stopped with a savepoint).
    pub last: bool,
    /// Stop without draining: after it, operators end at once, without
    /// advancing event time or firing timers (stop-with-savepoint).
    pub stop: bool,
}

/// A bounded data-path channel.
pub fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::bounded(CHANNEL_CAPACITY)
}

/// What [`Inputs::recv`] found.
pub enum Received {
    /// A message from input `.0` (never a barrier: see `Barrier`).
    Message(usize, Message),
    /// The barrier has arrived on every input that has not ended.
    Barrier(Barrier),
    /// Every input has sent `End`.
    AllEnded,
    /// An input's sender went away without `End`: an upstream stage failed.
    Disconnected(usize),
    /// The deadline passed first.
    Timeout,
}

/// The inputs of a stage: one channel per upstream instance, with the
/// per-input watermark and end-of-input bookkeeping.
pub struct Inputs {
    receivers: Vec<Receiver<Message>>,
    ended: Vec<bool>,
    watermarks: Vec<i64>,
    idle: Vec<bool>,
    next_first: usize,
    /// Exactly-once: an input whose barrier has arrived is held back until
    /// the barrier has arrived on all inputs.
    align: bool,
    barrier: Option<Barrier>,
    arrived: Vec<bool>,
}

impl Inputs {
    /// Inputs over `receivers`.
    pub fn new(receivers: Vec<Receiver<Message>>) -> Self {
        let n = receivers.len();
        Inputs {
            receivers,
            ended: vec![false; n],
            watermarks: vec![i64::MIN; n],
            idle: vec![false; n],
            next_first: 0,
            align: true,
            barrier: None,
            arrived: vec![false; n],
        }
    }

    /// Whether barriers are aligned (exactly-once, the default) or only
    /// counted (at-least-once: no input is held back).
    pub fn set_aligned(&mut self, align: bool) {
        self.align = align;
    }

    /// Starts every input at `watermark` (after a restore).
    pub fn start_watermarks_at(&mut self, watermark: i64) {
        self.watermarks.iter_mut().for_each(|w| *w = watermark);
    }

    /// If the pending barrier has arrived on every input that has not ended,
    /// completes it.
    fn barrier_complete(&mut self) -> Option<Barrier> {
        let barrier = self.barrier?;
        let done = (0..self.receivers.len()).all(|i| self.arrived[i] || self.ended[i]);
        if !done {
            return None;
        }
        self.barrier = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        Some(barrier)
    }

    /// Waits for the next message from any input that has not ended, until
    /// `deadline` if one is given. Inputs are polled in rotating order.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Received {
        loop {
            match self.recv_one(deadline) {
                Received::Message(input, Message::Barrier(b)) => {
                    if let Some(pending) = self.barrier {
                        if pending.id != b.id {
                            // A newer barrier overtook one that never completed
                            // (at-least-once): the older one is abandoned.
                            self.arrived.iter_mut().for_each(|a| *a = false);
                        }
                    }
                    self.barrier = Some(b);
                    self.arrived[input] = true;
                    if let Some(done) = self.barrier_complete() {
                        return Received::Barrier(done);
                    }
                }
                other => return other,
            }
        }
    }

    fn recv_one(&mut self, deadline: Option<Instant>) -> Received {
        if let Some(done) = self.barrier_complete() {
            return Received::Barrier(done);
        }
        let n = self.receivers.len();
        let held = |i: usize| self.align && self.barrier.is_some() && self.arrived[i];
        let open: Vec<usize> = (0..n)
            .map(|i| (self.next_first + i) % n.max(1))
            .filter(|&i| !self.ended[i] && !held(i))
            .collect();
        if open.is_empty() {
            return Received::AllEnded;
        }
        self.next_first = (self.next_first + 1) % n;
        let mut select = Select::new();
        for &i in &open {
            select.recv(&self.receivers[i]);
        }
        let op = match deadline {
            None => select.select(),
            Some(d) => match select.select_deadline(d) {
                Ok(op) => op,
                Err(_) => return Received::Timeout,
            },
        };
        let input = open[op.index()];
        match op.recv(&self.receivers[input]) {
            Ok(Message::End) => {
                self.ended[input] = true;
                self.watermarks[input] = i64::MAX;
                Received::Message(input, Message::End)
            }
            Ok(Message::Watermark(w)) => {
                self.watermarks[input] = self.watermarks[input].max(w);
                self.idle[input] = false;
                Received::Message(input, Message::Watermark(w))
            }
            Ok(Message::Idle) => {
                self.idle[input] = true;
                Received::Message(input, Message::Idle)
            }
            Ok(m) => {
                if matches!(m, Message::Batch(..)) {
                    self.idle[input] = false;
                }
                Received::Message(input, m)
            }
            Err(_) => Received::Disconnected(input),
        }
    }

    /// The combined watermark: the lowest of the inputs' watermarks.
    pub fn watermark(&self) -> i64 {
        // Idle inputs do not count, unless every input is idle: then
        // nothing moves event time on.
        let active = (0..self.watermarks.len())
            .filter(|&i| !self.idle[i] || self.ended[i])
            .map(|i| self.watermarks[i])
            .min();
        active.unwrap_or_else(|| self.watermarks.iter().copied().min().unwrap_or(i64::MAX))
    }

    /// Whether every input that has not ended is idle (and one has not).
    pub fn all_idle(&self) -> bool {
        let open: Vec<usize> = (0..self.ended.len()).filter(|&i| !self.ended[i]).collect();
        !open.is_empty() && open.iter().all(|&i| self.idle[i])
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }
}

/// Why a stage stopped early.
#[derive(Debug)]
pub enum StageError {
    /// Another stage failed and the channels closed: not the cause.
    Cancelled,
    /// This stage failed, with a one-line message.
    Failed(String),
}

/// The downstream stage went away: it failed, and the job is stopping.
#[derive(Debug)]
pub struct Closed;

impl From<Closed> for StageError {
    fn from(_: Closed) -> Self {
        StageError::Cancelled
    }
}

/// The watermark once the highest timestamp seen is `max_ts`, with a
/// watermark delay of `delay_ms`: `max_ts - delay_ms - 1`, saturating at
/// `i64::MIN` (no watermark yet). It is below `i64::MAX` for every
/// `max_ts`, since `i64::MAX` means the end of the input.
pub fn watermark_after(max_ts: i64, delay_ms: i64) -> i64 {
    if max_ts == i64::MIN {
        return i64::MIN;
    }
    max_ts.saturating_sub(delay_ms.max(0)).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barriers_are_aligned_across_inputs() {
        let (a_tx, a_rx) = channel();
        let (b_tx, b_rx) = channel();
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        let barrier = Barrier {
            id: 1,
            full: false,
            last: false,
            stop: false,
        };
        a_tx.send(Message::Barrier(barrier)).unwrap();
        a_tx.send(Message::Watermark(5)).unwrap();
        b_tx.send(Message::Watermark(3)).unwrap();
        // Input a is held back after its barrier: b's watermark comes first.
        assert!(matches!(
            inputs.recv(None),
            Received::Message(1, Message::Watermark(3))
        ));
        b_tx.send(Message::Barrier(barrier)).unwrap();
        assert!(matches!(inputs.recv(None), Received::Barrier(b) if b == barrier));
        assert!(matches!(
            inputs.recv(None),
            Received::Message(0, Message::Watermark(5))
        ));
        a_tx.send(Message::End).unwrap();
        b_tx.send(Message::End).unwrap();
        assert!(matches!(
            inputs.recv(None),
            Received::Message(_, Message::End)
        ));
        assert!(matches!(
            inputs.recv(None),
            Received::Message(_, Message::End)
        ));
        assert!(matches!(inputs.recv(None), Received::AllEnded));
    }

    #[test]
    fn an_ended_input_does_not_hold_a_barrier() {
        let (a_tx, a_rx) = channel();
        let (b_tx, b_rx) = channel();
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        b_tx.send(Message::End).unwrap();
        assert!(matches!(
            inputs.recv(None),
            Received::Message(1, Message::End)
        ));
        a_tx.send(Message::Barrier(Barrier {
            id: 7,
            full: true,
            last: false,
            stop: false,
        }))
        .unwrap();
        assert!(matches!(inputs.recv(None), Received::Barrier(b) if b.id == 7));
    }

    #[test]
    fn the_watermark_is_one_below_the_highest_timestamp_less_the_delay() {
        // An event at the newest timestamp may still come: it must not be behind the watermark.
        assert_eq!(watermark_after(1999, 0), 1998);
        assert_eq!(watermark_after(5000, 2000), 2999);
        assert_eq!(watermark_after(0, 0), -1);
        assert_eq!(watermark_after(-5, 10), -16);
    }

    #[test]
    fn the_watermark_saturates_and_never_reaches_the_end_of_input() {
        // Nothing seen yet: no watermark.
        assert_eq!(watermark_after(i64::MIN, 0), i64::MIN);
        assert_eq!(watermark_after(i64::MIN, 1000), i64::MIN);
        // Just above the minimum: saturates rather than wrapping.
        assert_eq!(watermark_after(i64::MIN + 1, 0), i64::MIN);
        assert_eq!(watermark_after(i64::MIN + 1, 1000), i64::MIN);
        assert_eq!(watermark_after(0, i64::MAX), i64::MIN);
        assert_eq!(watermark_after(i64::MAX, i64::MAX), -1);
        // `i64::MAX` is the end of the input; an event stamped with it does not claim it.
        assert_eq!(watermark_after(i64::MAX, 0), i64::MAX - 1);
        // A negative delay cannot come from a duration; it counts as none.
        assert_eq!(watermark_after(10, -5), 9);
    }
}
