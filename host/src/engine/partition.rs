//! The partitioner: routes a stage's output to the subtasks of the next stage.
//!
//! `input = "key"` sends each event to the subtask that owns its key group.
//! `input = "forward"` keeps events with the subtask of the same index when
//! both stages have the same parallelism (each upstream instance is then wired
//! to exactly one downstream subtask), and otherwise deals whole batches out
//! round-robin. Watermarks and the end marker go to every connected subtask.

use crossbeam_channel::Sender;

use crate::engine::stream::{Message, Offsets};
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

/// The downstream stage went away: it failed, and the job is stopping.
#[derive(Debug)]
pub struct Closed;

/// Sends a stage's output downstream.
pub struct Router {
    senders: Vec<Sender<Message>>,
    routing: Routing,
    next: usize,
    parts: Vec<Batch>,
    part_offsets: Vec<Offsets>,
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
            part_offsets: vec![Vec::new(); n],
            sent_events: 0,
        }
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
                        self.senders[target]
                            .send(Message::Batch(part, part_offsets))
                            .map_err(|_| Closed)?;
                    }
                }
                Ok(())
            }
            _ => {
                let target = self.next % n;
                self.next = self.next.wrapping_add(1);
                self.senders[target]
                    .send(Message::Batch(batch, offsets))
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

    /// Tells every connected subtask that this instance is idle (see [`Message::Idle`]).
    pub fn send_idle(&mut self) -> Result<(), Closed> {
        for s in &self.senders {
            s.send(Message::Idle).map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Sends a checkpoint barrier to every connected subtask.
    pub fn send_barrier(&mut self, barrier: crate::engine::stream::Barrier) -> Result<(), Closed> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_routing_splits_offsets_with_their_events() {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| crate::engine::stream::channel()).unzip();
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
