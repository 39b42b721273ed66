//! What flows on the data path's channels, and a stage's view of its inputs.
//!
//! Every edge of the job graph is a bounded channel from one upstream
//! instance to one downstream instance, so a slow stage back-pressures its
//! producers. Batches, watermarks and the end-of-input marker flow in-band on
//! the same channels, in order (checkpoint barriers will too).

use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender};

use crate::bindings::Batch;

/// Batches in flight per channel before the sender blocks.
pub const CHANNEL_CAPACITY: usize = 16;

/// One message on a data-path channel.
#[derive(Debug)]
pub enum Message {
    /// Events.
    Batch(Batch),
    /// No event with a timestamp at or below this will follow on this channel
    /// (late ones aside).
    Watermark(i64),
    /// The sender has finished: nothing more will follow.
    End,
}

/// A bounded data-path channel.
pub fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::bounded(CHANNEL_CAPACITY)
}

/// What [`Inputs::recv`] found.
pub enum Received {
    /// A message from input `.0`.
    Message(usize, Message),
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
    next_first: usize,
}

impl Inputs {
    /// Inputs over `receivers`.
    pub fn new(receivers: Vec<Receiver<Message>>) -> Self {
        let n = receivers.len();
        Inputs {
            receivers,
            ended: vec![false; n],
            watermarks: vec![i64::MIN; n],
            next_first: 0,
        }
    }

    /// Waits for the next message from any input that has not ended, until
    /// `deadline` if one is given. Inputs are polled in rotating order.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Received {
        let n = self.receivers.len();
        let open: Vec<usize> = (0..n)
            .map(|i| (self.next_first + i) % n.max(1))
            .filter(|&i| !self.ended[i])
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
                Received::Message(input, Message::Watermark(w))
            }
            Ok(m) => Received::Message(input, m),
            Err(_) => Received::Disconnected(input),
        }
    }

    /// The combined watermark: the lowest of the inputs' watermarks.
    pub fn watermark(&self) -> i64 {
        self.watermarks.iter().copied().min().unwrap_or(i64::MAX)
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

impl From<crate::partition::Closed> for StageError {
    fn from(_: crate::partition::Closed) -> Self {
        StageError::Cancelled
    }
}
