//! The partitioner: routes a stage's output to the subtasks of the next stage.
//!
//! `input = "key"` sends each event to the subtask that owns its key group.
//! `input = "forward"` keeps events with the subtask of the same index when
//! both stages have the same parallelism (each upstream instance is then wired
//! to exactly one downstream subtask), and otherwise deals whole batches out
//! round-robin. Watermarks and the end marker go to every connected subtask.
//!
//! The router counts the time it spends blocked on a full channel (the next
//! stage is slower: back-pressure), so that a source can tell time it had
//! nothing to read from time it could not send.

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::engine::channel::{Closed, Message, Offsets};
use crate::model::keygroup;
use crate::model::Batch;

/// How a stage's output is spread over the next stage's subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Whole batches, round-robin over the connected subtasks.
    Forward,
    /// Each event to the owner of its key group.
    Key {
        /// Number of key groups.
        max_parallelism: u32,
    },
}

/// Sends a stage's output downstream.
pub struct Router {
    senders: Vec<Sender<Message>>,
    routing: Routing,
    next: usize,
    parts: Vec<Batch>,
    part_offsets: Vec<Offsets>,
    sent_events: u64,
    /// Time spent blocked on full channels since [`Router::take_blocked`].
    blocked: Duration,
}

/// Sends `message` on `sender`, adding to `blocked` the time spent waiting
/// when the channel is full.
fn send(sender: &Sender<Message>, message: Message, blocked: &mut Duration) -> Result<(), Closed> {
    match sender.try_send(message) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(message)) => {
            let since = Instant::now();
            let sent = sender.send(message).map_err(|_| Closed);
            *blocked += since.elapsed();
            sent
        }
        Err(TrySendError::Disconnected(_)) => Err(Closed),
    }
}

impl Router {
    /// A router over `senders`, one per connected downstream subtask, in
    /// subtask order (for key routing: all of them).
    pub fn new(senders: Vec<Sender<Message>>, routing: Routing) -> Self {
        let n = senders.len();
        Router {
            senders,
            routing,
            next: 0,
            parts: (0..n).map(|_| Batch::default()).collect(),
            part_offsets: vec![Vec::new(); n],
            sent_events: 0,
            blocked: Duration::ZERO,
        }
    }

    /// The time spent blocked on full channels (back-pressure) since the
    /// last call.
    pub fn take_blocked(&mut self) -> Duration {
        std::mem::take(&mut self.blocked)
    }

    /// Number of events sent so far.
    pub fn sent_events(&self) -> u64 {
        self.sent_events
    }

    /// Routes the events of `batch`, with their source offsets if known.
    pub fn send_batch(&mut self, batch: Batch, offsets: Option<Offsets>) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        self.sent_events += batch.len() as u64;
        let n = self.senders.len();
        match self.routing {
            Routing::Key { max_parallelism } if n > 1 => {
                for (i, event) in batch.iter().enumerate() {
                    let kg = keygroup::key_group(event.key, max_parallelism);
                    let target = keygroup::subtask_for(kg, max_parallelism, n as u32) as usize;
                    self.parts[target].push_ref(&event);
                    if let Some(&o) = offsets.as_ref().and_then(|o| o.get(i)) {
                        self.part_offsets[target].push(o);
                    }
                }
                for target in 0..n {
                    if !self.parts[target].is_empty() {
                        let part = std::mem::take(&mut self.parts[target]);
                        let part_offsets = offsets
                            .as_ref()
                            .map(|_| std::mem::take(&mut self.part_offsets[target]));
                        send(
                            &self.senders[target],
                            Message::Batch(part, part_offsets),
                            &mut self.blocked,
                        )?;
                    }
                }
                Ok(())
            }
            _ => {
                let target = self.next % n;
                self.next = self.next.wrapping_add(1);
                send(
                    &self.senders[target],
                    Message::Batch(batch, offsets),
                    &mut self.blocked,
                )
            }
        }
    }

    /// Sends a watermark to every connected subtask.
    pub fn send_watermark(&mut self, watermark: i64) -> Result<(), Closed> {
        for s in &self.senders {
            send(s, Message::Watermark(watermark), &mut self.blocked)?;
        }
        Ok(())
    }

    /// Tells every connected subtask that this instance is idle (see [`Message::Idle`]).
    pub fn send_idle(&mut self) -> Result<(), Closed> {
        for s in &self.senders {
            send(s, Message::Idle, &mut self.blocked)?;
        }
        Ok(())
    }

    /// Sends a checkpoint barrier to every connected subtask.
    pub fn send_barrier(&mut self, barrier: crate::engine::channel::Barrier) -> Result<(), Closed> {
        for s in &self.senders {
            send(s, Message::Barrier(barrier), &mut self.blocked)?;
        }
        Ok(())
    }

    /// Tells every connected subtask that this instance has finished.
    pub fn send_end(&mut self) -> Result<(), Closed> {
        for s in &self.senders {
            send(s, Message::End, &mut self.blocked)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_routing_splits_offsets_with_their_events() {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| crate::engine::channel::channel()).unzip();
        let mut router = Router::new(
            senders,
            Routing::Key {
                max_parallelism: 128,
            },
        );
        let mut batch = Batch::default();
        for i in 0..40u64 {
            batch.push(Some(format!("k{i}").as_bytes()), &[], 0);
        }
        router
            .send_batch(batch, Some((100..140).collect()))
            .unwrap();
        let mut seen = 0;
        for rx in &receivers {
            while let Ok(Message::Batch(part, offsets)) = rx.try_recv() {
                let offsets = offsets.expect("offsets travel with the events");
                assert_eq!(offsets.len(), part.len());
                for (event, offset) in part.iter().zip(offsets) {
                    assert_eq!(event.key.unwrap(), format!("k{}", offset - 100).as_bytes());
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 40);
    }
}
