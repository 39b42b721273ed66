//! Key groups: the stable hash of an event key, the key group it falls in, and
//! which subtask owns a key group.
//!
//! `key_group(key) = xxh3_64(key) % max_parallelism`, where an absent key
//! hashes as the empty byte string. Subtask `i` of `p` owns the contiguous
//! range `[ceil(i * m / p), ceil((i + 1) * m / p))` of the `m` key groups, as
//! in Flink, so changing the parallelism moves whole key groups. The hash is
//! part of the state format: changing it would orphan stored state.

use std::ops::Range;

/// The key group of `key` among `max_parallelism` key groups.
pub fn key_group(key: Option<&[u8]>, max_parallelism: u32) -> u32 {
    let hash = xxhash_rust::xxh3::xxh3_64(key.unwrap_or(&[]));
    (hash % max_parallelism as u64) as u32
}

/// The subtask, of `parallelism`, that owns `key_group`.
pub fn subtask_for(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (key_group as u64 * parallelism as u64 / max_parallelism as u64) as u32
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn range_for(subtask: u32, max_parallelism: u32, parallelism: u32) -> Range<u32> {
    let m = max_parallelism as u64;
    let p = parallelism as u64;
    let start = (subtask as u64 * m).div_ceil(p);
    let end = ((subtask as u64 + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_and_agree_with_subtask_for() {
        for m in [1u32, 7, 128, 1000] {
            for p in 1..=m.min(12) {
                let mut next = 0;
                for s in 0..p {
                    let r = range_for(s, m, p);
                    assert_eq!(r.start, next);
                    next = r.end;
                    for kg in r {
                        assert_eq!(subtask_for(kg, m, p), s, "m={m} p={p} kg={kg}");
                    }
                }
                assert_eq!(next, m);
            }
        }
    }

    #[test]
    fn hash_is_stable() {
        // Part of the state format: these values must never change.
        assert_eq!(
            key_group(Some(b"user-1"), 128),
            key_group(Some(b"user-1"), 128)
        );
        assert_eq!(key_group(None, 128), key_group(Some(b""), 128));
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06800538d394c2);
    }
}
