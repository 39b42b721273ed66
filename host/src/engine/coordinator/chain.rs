//! The incremental chain: a full checkpoint and the deltas after it, which
//! a restore of the newest reads together. A checkpoint is full when it
//! starts a chain, else when the chain's deltas add up to more than its
//! full checkpoint (at least 1 MiB), or it is 32 long: restores stay cheap.
//! An aborted checkpoint loses its changes, so the next starts a chain.

use crate::state::checkpoint::CheckpointStore;

/// Longest chain before a full checkpoint starts a new one.
const MAX_CHAIN: usize = 32;

/// The chain the next checkpoint extends: IDs and bytes written, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    ids: Vec<u64>,
    bytes: Vec<u64>,
}

impl Chain {
    /// The chain of the restored checkpoint `parent` (its IDs; empty: none),
    /// with the bytes each wrote, as `store` records them.
    pub fn restored(store: Option<&CheckpointStore>, parent: &[u64]) -> Self {
        let mut bytes = Vec::new();
        if let (Some(&last), Some(store)) = (parent.last(), store) {
            if let Ok(Some(meta)) = store.get(last) {
                for id in &meta.chain {
                    let b = store
                        .get(*id)
                        .ok()
                        .flatten()
                        .map(|m| m.bytes_written)
                        .unwrap_or(0);
                    bytes.push(b);
                }
            }
        }
        Chain {
            ids: parent.to_vec(),
            bytes,
        }
    }

    /// Whether the next checkpoint should be full.
    pub fn next_is_full(&self) -> bool {
        if self.ids.is_empty() || self.ids.len() >= MAX_CHAIN {
            return true;
        }
        let full = self.bytes.first().copied().unwrap_or(0);
        let deltas: u64 = self.bytes.iter().skip(1).sum();
        deltas > full.max(1 << 20)
    }

    /// Checkpoint `id` completed, `full` or a delta, having written `bytes`.
    pub fn completed(&mut self, id: u64, bytes: u64, full: bool) {
        if full {
            self.broken();
        }
        self.ids.push(id);
        self.bytes.push(bytes);
    }

    /// A checkpoint was aborted: its changes are lost with it, and the next
    /// checkpoint starts a chain.
    pub fn broken(&mut self) {
        self.ids.clear();
        self.bytes.clear();
    }

    /// The IDs of the chain, oldest (the full checkpoint) first.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn when_the_next_checkpoint_is_full() {
        // (checkpoints so far as (bytes, full), whether the next is full)
        let cases: &[(&[(u64, bool)], bool)] = &[
            (&[], true),
            (&[(10 * MIB, true)], false),
            (
                &[(10 * MIB, true), (4 * MIB, false), (4 * MIB, false)],
                false,
            ),
            // Deltas over the full checkpoint's size.
            (
                &[(10 * MIB, true), (6 * MIB, false), (5 * MIB, false)],
                true,
            ),
            // A small full checkpoint counts as 1 MiB.
            (&[(10, true), (MIB / 2, false)], false),
            (&[(10, true), (MIB / 2, false), (MIB, false)], true),
            // A full checkpoint starts the chain again.
            (
                &[(10 * MIB, true), (11 * MIB, false), (10 * MIB, true)],
                false,
            ),
        ];
        for (done, full) in cases {
            let mut chain = Chain::default();
            for (i, (bytes, is_full)) in done.iter().enumerate() {
                chain.completed(i as u64 + 1, *bytes, *is_full);
            }
            assert_eq!(chain.next_is_full(), *full, "after {done:?}");
        }
    }

    #[test]
    fn a_chain_ends_at_its_longest() {
        let mut chain = Chain::default();
        chain.completed(1, MIB, true);
        for id in 2..MAX_CHAIN as u64 {
            chain.completed(id, 0, false);
            assert!(!chain.next_is_full(), "after {id}");
        }
        chain.completed(MAX_CHAIN as u64, 0, false);
        assert!(chain.next_is_full());
    }

    #[test]
    fn an_aborted_checkpoint_breaks_the_chain() {
        let mut chain = Chain::default();
        chain.completed(1, MIB, true);
        chain.completed(2, 10, false);
        assert_eq!(chain.ids(), &[1, 2]);
        chain.broken();
        assert!(chain.ids().is_empty());
        assert!(chain.next_is_full());
    }
}
