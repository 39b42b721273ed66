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

    /// The keys of the golden table: absent, empty, text, non-UTF-8, and one
    /// key in each of xxh3's length classes (0, 1-3, 4-8, 9-16, 17-128,
    /// 129-240, longer).
    fn golden_keys() -> Vec<(String, Option<Vec<u8>>)> {
        // Bytes that are not all text and not all alike.
        let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 + 7) as u8).collect() };
        let mut keys: Vec<(String, Option<Vec<u8>>)> = vec![("absent".into(), None)];
        for text in [
            "",
            "a",
            "b",
            "A",
            "0",
            "42",
            "key",
            "user-1",
            "user-2",
            "user-42",
            "hello world",
            "wörd",
            "日本語",
            "the quick brown fox jumps over the lazy dog",
        ] {
            keys.push((format!("{text:?}"), Some(text.as_bytes().to_vec())));
        }
        for bytes in [
            &[0xffu8, 0xfe, 0x00][..],
            &[0x80],
            &[0x00],
            &[0x00; 16],
            &[0xc3, 0x28],
        ] {
            keys.push((format!("{bytes:02x?}"), Some(bytes.to_vec())));
        }
        for n in [4, 9, 17, 128, 129, 240, 241, 1000, 4096] {
            keys.push((format!("pattern({n})"), Some(pattern(n))));
        }
        keys
    }

    /// The `max_parallelism` values of the golden table's columns.
    const GOLDEN_M: [u32; 5] = [1, 2, 7, 128, 32768];

    /// xxh3_64 of each golden key, and its key group for each of [`GOLDEN_M`].
    ///
    /// DO NOT CHANGE THESE NUMBERS. The key group of a key is part of the
    /// stored state format: every checkpoint and savepoint files its keys
    /// under these key groups, and a restore looks them up the same way. A
    /// change here (a new hash, a dependency upgrade that changes xxh3, a
    /// different reduction) orphans every stored state: keys would be looked
    /// for in key groups they were never written to. If this test fails, the
    /// change must be reverted, not the table.
    #[rustfmt::skip]
    const GOLDEN: [(u64, [u32; 5]); 29] = [
        (0x2d06800538d394c2, [0, 0, 4, 66, 5314]),
        (0x2d06800538d394c2, [0, 0, 4, 66, 5314]),
        (0xe6c632b61e964e1f, [0, 1, 1, 31, 19999]),
        (0x575a0b1c44d8843f, [0, 1, 4, 63, 1087]),
        (0xd0d496e05c553485, [0, 1, 1, 5, 13445]),
        (0x1982e3a7bb241055, [0, 1, 3, 85, 4181]),
        (0x1217cb28c0ef2191, [0, 1, 5, 17, 8593]),
        (0xbbea0d63a05165e3, [0, 1, 5, 99, 26083]),
        (0x7c7615c11438e5c9, [0, 1, 3, 73, 26057]),
        (0x20333bb6481664d4, [0, 0, 3, 84, 25812]),
        (0x50fe4b21cf7b09cd, [0, 1, 3, 77, 2509]),
        (0xd447b1ea40e6988b, [0, 1, 1, 11, 6283]),
        (0x75dfe5e15e57342f, [0, 1, 3, 47, 13359]),
        (0x11fec42c806050b7, [0, 1, 5, 55, 20663]),
        (0xe4541a9cacf545aa, [0, 0, 1, 42, 17834]),
        (0x27c05bffa4de513a, [0, 0, 6, 58, 20794]),
        (0x6b148c0872500941, [0, 1, 1, 65, 2369]),
        (0xc44bdff4074eecdb, [0, 1, 2, 91, 27867]),
        (0xd0a66a65c7528968, [0, 0, 4, 104, 2408]),
        (0x1927cbe2a617e813, [0, 1, 4, 19, 26643]),
        (0xdca012f95811b6b9, [0, 1, 6, 57, 14009]),
        (0xcbe393399f17ffbd, [0, 1, 0, 61, 32701]),
        (0x208bde5ee2bed407, [0, 1, 0, 7, 21511]),
        (0xf92b70eaa21a6288, [0, 0, 1, 8, 25224]),
        (0xf8f76713f2bb60fa, [0, 0, 6, 122, 24826]),
        (0xccc7375172c41f03, [0, 1, 3, 3, 7939]),
        (0x0b3b630948ce4a00, [0, 0, 4, 0, 18944]),
        (0x989765d0ea7a5ecd, [0, 1, 3, 77, 24269]),
        (0xa3c19f8174cde0bb, [0, 1, 5, 59, 24763]),
    ];

    #[test]
    fn key_groups_match_the_golden_table() {
        let keys = golden_keys();
        assert_eq!(keys.len(), GOLDEN.len());
        let mut bad = Vec::new();
        for ((label, key), (hash, groups)) in keys.iter().zip(GOLDEN) {
            let actual_hash = xxhash_rust::xxh3::xxh3_64(key.as_deref().unwrap_or(&[]));
            let actual: Vec<u32> = GOLDEN_M
                .iter()
                .map(|&m| key_group(key.as_deref(), m))
                .collect();
            if actual_hash != hash || actual != groups {
                bad.push(format!(
                    "{label}: hash {actual_hash:#018x} groups {actual:?}, the table says {hash:#018x} {groups:?}"
                ));
            }
        }
        assert!(bad.is_empty(), "key groups changed:\n{}", bad.join("\n"));
    }

    #[test]
    fn absent_and_empty_keys_share_a_key_group() {
        for m in GOLDEN_M {
            assert_eq!(key_group(None, m), key_group(Some(b""), m));
        }
    }

    #[test]
    fn subtask_ownership_is_pinned() {
        // Which subtask owns which key groups decides where a restored key
        // goes; Flink's ceil-division split.
        for (subtask, m, p, range) in [
            (0, 1, 1, 0..1),
            (0, 128, 3, 0..43),
            (1, 128, 3, 43..86),
            (2, 128, 3, 86..128),
            (0, 10, 4, 0..3),
            (1, 10, 4, 3..5),
            (2, 10, 4, 5..8),
            (3, 10, 4, 8..10),
            (5, 7, 7, 5..6),
            (1, 32768, 7, 4682..9363),
            (6, 32768, 7, 28087..32768),
        ] {
            assert_eq!(
                range_for(subtask, m, p),
                range,
                "range_for({subtask}, {m}, {p})"
            );
        }
        for (kg, m, p, subtask) in [
            (0, 128, 3, 0),
            (42, 128, 3, 0),
            (43, 128, 3, 1),
            (127, 128, 3, 2),
            (4681, 32768, 7, 0),
            (4682, 32768, 7, 1),
            (32767, 32768, 7, 6),
            (127, 128, 128, 127),
            (9, 10, 4, 3),
        ] {
            assert_eq!(
                subtask_for(kg, m, p),
                subtask,
                "subtask_for({kg}, {m}, {p})"
            );
        }
    }
}
