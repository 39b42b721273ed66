//! Completed checkpoints whose output the sink is publishing. What waits
//! for the sink's commit waits here: a savepoint is reported completed,
//! and the sources' consumer groups and retention learn of a checkpoint,
//! only once the output it covers is committed. A commit covers every
//! checkpoint up to its own.

use std::collections::VecDeque;
use std::path::PathBuf;

/// A completed checkpoint whose output the sink is publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishing {
    /// Checkpoint ID.
    pub id: u64,
    /// The savepoint it carries: its request ID and directory.
    pub savepoint: Option<(String, PathBuf)>,
}

/// The checkpoints being published, oldest first, and the last committed.
#[derive(Debug, Default)]
pub struct PublishQueue {
    committed: u64,
    queue: VecDeque<Publishing>,
}

impl PublishQueue {
    /// Nothing being published; `committed` is the checkpoint whose output
    /// the sink committed last, as far as this run knows (0: none).
    pub fn new(committed: u64) -> Self {
        PublishQueue {
            committed,
            queue: VecDeque::new(),
        }
    }

    /// Checkpoint `id` completed and the sink was told to publish it.
    pub fn push(&mut self, id: u64, savepoint: Option<(String, PathBuf)>) {
        self.queue.push_back(Publishing { id, savepoint });
    }

    /// The sink committed checkpoint `id`'s output: the checkpoints that
    /// commit covers, oldest first. Empty when it covers none being
    /// published (a commit heard before, or of an earlier run).
    pub fn committed(&mut self, id: u64) -> Vec<Publishing> {
        let mut done = Vec::new();
        while self.queue.front().is_some_and(|p| p.id <= id) {
            done.extend(self.queue.pop_front());
        }
        if !done.is_empty() {
            self.committed = id;
        }
        done
    }

    /// Whether the output of checkpoint `id` and of every one before it is committed.
    pub fn published(&self, id: u64) -> bool {
        self.committed >= id && self.queue.is_empty()
    }

    /// The checkpoint whose output the sink committed last (0: none known).
    pub fn last_committed(&self) -> u64 {
        self.committed
    }

    /// Everything still being published: its output will not be committed
    /// (the sink failed, or the run ended first).
    pub fn drain(&mut self) -> Vec<Publishing> {
        self.queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(ids: &[u64]) -> PublishQueue {
        let mut q = PublishQueue::new(0);
        for id in ids {
            q.push(*id, None);
        }
        q
    }

    fn done(q: &mut PublishQueue, id: u64) -> Vec<u64> {
        q.committed(id).iter().map(|p| p.id).collect()
    }

    /// Being published, committed, covered, nothing left being published, last committed.
    type Case = (&'static [u64], u64, &'static [u64], bool, u64);

    #[test]
    fn a_commit_covers_every_checkpoint_up_to_its_own() {
        let cases: &[Case] = &[
            (&[3], 3, &[3], true, 3),
            (&[3, 4, 5], 4, &[3, 4], false, 4),
            (&[3, 4, 5], 5, &[3, 4, 5], true, 5),
            // A commit heard twice, or one of an earlier run: nothing new.
            (&[3, 4], 2, &[], false, 0),
        ];
        for (publishing, id, covered, all, last) in cases {
            let mut q = queue(publishing);
            assert_eq!(done(&mut q, *id), *covered, "{publishing:?} committed {id}");
            assert_eq!(q.published(*id), *all, "{publishing:?} committed {id}");
            assert_eq!(q.last_committed(), *last);
        }
    }

    #[test]
    fn a_repeated_commit_covers_nothing_more() {
        let mut q = queue(&[1, 2]);
        assert_eq!(done(&mut q, 2), [1, 2]);
        assert!(done(&mut q, 2).is_empty());
        assert_eq!(q.last_committed(), 2);
    }

    #[test]
    fn published_needs_the_commit_and_nothing_left() {
        // A restored checkpoint counts as committed.
        let q = PublishQueue::new(7);
        assert!(q.published(7));
        assert!(!q.published(8));
        let mut q = queue(&[8]);
        assert!(!q.published(0), "checkpoint 8 is still being published");
        assert_eq!(q.drain().len(), 1);
        assert!(q.published(0));
    }
}
