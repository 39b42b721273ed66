//! The partitioner: routes a stage's output to the subtasks of the next stage.
//!
//! `input = "key"` sends each event to the subtask that owns its key group.
//! `input = "forward"` keeps events with the subtask of the same index when
//! both stages have the same parallelism (each upstream instance is then wired
//! to exactly one downstream subtask), and otherwise deals whole batches out
//! round-robin. Watermarks and the end marker go to every connected subtask.

use crossbeam_channel::Sender;

use crate::bindings::Batch;
use crate::keygroup;
use crate::stream::Message;

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

/// The downstream stage went away: it failed, and the job is stopping.
#[derive(Debug)]
pub struct Closed;

/// Sends a stage's output downstream.
pub struct Router {
    senders: Vec<Sender<Message>>,
    routing: Routing,
    next: usize,
    parts: Vec<Batch>,
    sent_events: u64,
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
            sent_events: 0,
        }
    }

    /// Number of events sent so far.
    pub fn sent_events(&self) -> u64 {
        self.sent_events
    }

    /// Routes the events of `batch`.
    pub fn send_batch(&mut self, batch: Batch) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        self.sent_events += batch.len() as u64;
        let n = self.senders.len();
        match self.routing {
            Routing::Key { max_parallelism } if n > 1 => {
                for event in batch.iter() {
                    let kg = keygroup::key_group(event.key, max_parallelism);
                    let target = keygroup::subtask_for(kg, max_parallelism, n as u32) as usize;
                    self.parts[target].push_ref(&event);
                }
                for target in 0..n {
                    if !self.parts[target].is_empty() {
                        let part = std::mem::take(&mut self.parts[target]);
                        self.senders[target]
                            .send(Message::Batch(part))
                            .map_err(|_| Closed)?;
                    }
                }
                Ok(())
            }
            _ => {
                let target = self.next % n;
                self.next = self.next.wrapping_add(1);
                self.senders[target]
                    .send(Message::Batch(batch))
                    .map_err(|_| Closed)
            }
        }
    }

    /// Sends a watermark to every connected subtask.
    pub fn send_watermark(&mut self, watermark: i64) -> Result<(), Closed> {
        for s in &self.senders {
            s.send(Message::Watermark(watermark)).map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Sends a checkpoint barrier to every connected subtask.
    pub fn send_barrier(&mut self, barrier: crate::stream::Barrier) -> Result<(), Closed> {
        for s in &self.senders {
            s.send(Message::Barrier(barrier)).map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Tells every connected subtask that this instance has finished.
    pub fn send_end(&mut self) -> Result<(), Closed> {
        for s in &self.senders {
            s.send(Message::End).map_err(|_| Closed)?;
        }
        Ok(())
    }
}
