//! Which checkpoint a run restores: the rule, apart from the I/O that
//! gathers its inputs (the state directory's checkpoints, and for an
//! exactly-once Kafka sink its commit markers), so that every combination
//! has a unit test.
//!
//! Without a transactional sink the newest completed checkpoint is
//! restored. With an exactly-once Kafka sink the output is in Kafka
//! transactions, each of which names its checkpoint in a commit marker; the
//! checkpoint the last committed marker names is the only one whose state
//! matches the output:
//! - restoring a newer one would lose the output of the epochs whose
//!   transactions never committed;
//! - restoring an older one would write again what was committed after it.
//!
//! So it is restored exactly, and a run that cannot find it refuses to
//! start rather than quietly recompute the whole history. A state directory
//! that holds checkpoints but finds no marker of its own is refused too,
//! unless it never committed one (a crash before its first commit): the
//! markers were lost (the topic deleted, or one replica that died), or
//! another state directory writes under the same prefix, or the prefix was
//! changed. The state directory records its prefix and whether it ever
//! committed ([`SinkRecord`]) to tell these apart.

use crate::state::checkpoint::SinkRecord;

/// What the sink's commit markers say about this state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// No marker (no marker topic, or an empty one).
    None,
    /// The last committed marker names checkpoint `N` of this state directory.
    Own(u64),
    /// The last committed marker is checkpoint `N` of another state directory.
    Foreign(u64),
}

/// The commit side of the inputs, for an exactly-once Kafka sink.
#[derive(Debug, Clone)]
pub struct Commits<'a> {
    /// What the markers say.
    pub marker: Marker,
    /// What the state directory recorded of its sink.
    pub record: Option<&'a SinkRecord>,
    /// The sink's transactional id prefix now.
    pub prefix: &'a str,
}

/// Everything the rule looks at.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// The completed checkpoints, oldest first.
    pub completed: &'a [u64],
    /// `--fresh`.
    pub fresh: bool,
    /// `--from-checkpoint`.
    pub from_checkpoint: Option<u64>,
    /// Checkpoints below this are not this run's to restore (a restart
    /// after a savepoint restore: the savepoint comes first).
    pub min_id: u64,
    /// For an exactly-once Kafka sink.
    pub commits: Option<Commits<'a>>,
    /// The state directory, for messages.
    pub dir: &'a str,
}

/// The checkpoint to restore (`None`: start from the beginning, or from
/// the savepoint the run was started with), or a one-line refusal.
pub fn choose(s: &Situation<'_>) -> Result<Option<u64>, String> {
    if s.fresh {
        return Ok(None);
    }
    let candidates: Vec<u64> = s
        .completed
        .iter()
        .copied()
        .filter(|id| *id >= s.min_id)
        .collect();
    let own = s.commits.as_ref().and_then(|c| match c.marker {
        Marker::Own(n) => Some(n),
        _ => None,
    });
    if let Some(id) = s.from_checkpoint {
        if let Some(c) = own.filter(|c| id > *c) {
            return Err(format!(
                "--from-checkpoint {id}: the Kafka transaction of checkpoint {id} was never committed (the last committed is checkpoint {c}): its output would be lost; restore that one or an earlier one"
            ));
        }
        return if s.completed.contains(&id) {
            Ok(Some(id))
        } else {
            let ids: Vec<String> = s.completed.iter().map(u64::to_string).collect();
            Err(format!(
                "there is no completed checkpoint {id} in `{}` (there are: {})",
                s.dir,
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ))
        };
    }
    let Some(commits) = &s.commits else {
        return Ok(candidates.last().copied());
    };
    let topic = format!("{}.commits", commits.prefix);
    if let Some(c) = own {
        if c < s.min_id {
            // Nothing this run took has committed yet.
            return Ok(None);
        }
        if s.completed.contains(&c) {
            return Ok(Some(c));
        }
        return Err(format!(
            "the last committed Kafka transaction (topic `{topic}`) is checkpoint {c} of state directory `{}`, which is not there any more: restoring another would lose output or write it twice; start over with --fresh (its output is then written again)",
            s.dir
        ));
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let found = match commits.marker {
        Marker::Foreign(n) => format!(
            "its last commit marker is checkpoint {n} of another state directory (a copied job folder, another host, or another job with the same transactional id prefix)"
        ),
        _ => "it holds no commit marker (the topic was deleted or lost)".to_string(),
    };
    match commits.record {
        Some(r) if r.prefix != commits.prefix && r.committed => Err(format!(
            "state directory `{}` committed its checkpoints to Kafka under transactional id prefix `{}`, and the sink now uses `{}` (the job, topic or `transactional_id_prefix` changed): set `transactional_id_prefix = \"{}\"` to resume, or start over with --fresh",
            s.dir, r.prefix, commits.prefix, r.prefix
        )),
        Some(r) if r.committed => Err(format!(
            "state directory `{}` holds checkpoints committed to Kafka topic `{topic}`, but {found}: restoring one could lose output or write it twice; start over with --fresh (its output is then written again), or restore one with --from-checkpoint ID",
            s.dir
        )),
        // Nothing of this directory was ever committed: its output is
        // written from the beginning (a crash before the first commit).
        Some(_) => Ok(None),
        None => Err(format!(
            "state directory `{}` holds checkpoints taken without an exactly-once Kafka sink (at-least-once delivery, or an older weir), and Kafka topic `{topic}` has no commit marker of its own: restore one with --from-checkpoint ID, or start over with --fresh",
            s.dir
        )),
    }
}

/// Whether the output of savepoint `dir` (taken at barrier `id` by the
/// state directory whose instance is `store`) was committed, by the last
/// commit marker under `prefix` (`(store, checkpoint)`): refused when that
/// marker is the same state directory's and older. A marker of another
/// state directory says nothing of it (the job has run elsewhere since).
pub fn savepoint_committed(
    dir: &str,
    id: u64,
    store: &str,
    prefix: &str,
    last: Option<(&str, u64)>,
) -> Result<(), String> {
    match last {
        Some((s, n)) if s == store && n < id => Err(format!(
            "savepoint `{dir}` (barrier {id}) was written, but its output was never committed to Kafka (the last commit under transactional id prefix `{prefix}` is checkpoint {n} of the same state directory): restoring it would lose that output; restore the job's checkpoints instead (`weir run` without --from-savepoint), or an earlier savepoint"
        )),
        // No marker at all: the job moved to another cluster (or nothing
        // was ever committed under this prefix).
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(prefix: &str, committed: bool) -> SinkRecord {
        SinkRecord {
            prefix: prefix.to_string(),
            committed,
        }
    }

    /// (completed, min_id, marker, record, Ok(choice) or Err(part of the message)).
    type Case = (
        &'static [u64],
        u64,
        Marker,
        Option<SinkRecord>,
        Result<Option<u64>, &'static str>,
    );

    #[test]
    fn an_exactly_once_sink_restores_exactly_what_its_last_commit_names() {
        let p = "weir-j";
        let cases: Vec<Case> = vec![
            // Nothing yet.
            (&[], 0, Marker::None, None, Ok(None)),
            (&[], 0, Marker::None, Some(record(p, false)), Ok(None)),
            // The marker's checkpoint, not the newest (uncommitted) ones.
            (
                &[3, 4, 5],
                0,
                Marker::Own(3),
                Some(record(p, true)),
                Ok(Some(3)),
            ),
            (
                &[3, 4, 5],
                0,
                Marker::Own(5),
                Some(record(p, true)),
                Ok(Some(5)),
            ),
            // A marker from before the record existed.
            (&[3, 4], 0, Marker::Own(4), None, Ok(Some(4))),
            // The marker's checkpoint is gone: refused, never from the beginning.
            (
                &[4, 5],
                0,
                Marker::Own(3),
                Some(record(p, true)),
                Err("is checkpoint 3 of state directory `dir`, which is not there any more"),
            ),
            (
                &[],
                0,
                Marker::Own(3),
                Some(record(p, true)),
                Err("--fresh"),
            ),
            // A restart after a savepoint restore: nothing of this run committed yet.
            (
                &[3, 12, 13],
                12,
                Marker::Own(3),
                Some(record(p, true)),
                Ok(None),
            ),
            (
                &[3, 12, 13],
                12,
                Marker::Own(12),
                Some(record(p, true)),
                Ok(Some(12)),
            ),
            // A crash before the first commit: from the beginning.
            (&[1, 2], 0, Marker::None, Some(record(p, false)), Ok(None)),
            (
                &[1, 2],
                0,
                Marker::Foreign(7),
                Some(record(p, false)),
                Ok(None),
            ),
            // Committed before, and now no marker of its own.
            (
                &[1, 2],
                0,
                Marker::None,
                Some(record(p, true)),
                Err("holds no commit marker"),
            ),
            (
                &[1, 2],
                0,
                Marker::Foreign(9),
                Some(record(p, true)),
                Err("checkpoint 9 of another state directory"),
            ),
            // The prefix changed.
            (
                &[1, 2],
                0,
                Marker::None,
                Some(record("weir-old", true)),
                Err("set `transactional_id_prefix = \"weir-old\"`"),
            ),
            (
                &[1, 2],
                0,
                Marker::None,
                Some(record("weir-old", false)),
                Ok(None),
            ),
            // Checkpoints without any record of commits (at-least-once before).
            (
                &[1, 2],
                0,
                Marker::None,
                None,
                Err("taken without an exactly-once Kafka sink"),
            ),
            // Only checkpoints below min_id, without a marker: the savepoint.
            (&[1, 2], 5, Marker::None, Some(record(p, true)), Ok(None)),
        ];
        for (completed, min_id, marker, record, want) in cases {
            let s = Situation {
                completed,
                fresh: false,
                from_checkpoint: None,
                min_id,
                commits: Some(Commits {
                    marker: marker.clone(),
                    record: record.as_ref(),
                    prefix: p,
                }),
                dir: "dir",
            };
            let got = choose(&s);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{completed:?} {min_id} {marker:?} {record:?}"),
                (Err(e), Err(part)) => {
                    assert!(e.contains(part), "{e:?} lacks {part:?}");
                    assert!(!e.contains('\n'), "{e:?}");
                }
                _ => panic!(
                    "{completed:?} {min_id} {marker:?} {record:?}: got {got:?}, wanted {want:?}"
                ),
            }
            // --fresh always starts over.
            assert_eq!(choose(&Situation { fresh: true, ..s }), Ok(None));
        }
    }

    #[test]
    fn a_savepoint_restores_only_when_its_commit_happened() {
        let ok = |last| savepoint_committed("sp", 7, "a", "p", last);
        assert_eq!(ok(Some(("a", 7))), Ok(()));
        assert_eq!(ok(Some(("a", 9))), Ok(()));
        // Another state directory has committed since: nothing to tell.
        assert_eq!(ok(Some(("b", 3))), Ok(()));
        let e = ok(Some(("a", 6))).unwrap_err();
        assert!(e.contains("its output was never committed"), "{e}");
        assert!(
            e.contains("checkpoint 6 of the same state directory"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // No marker (another cluster): nothing to tell either.
        assert_eq!(ok(None), Ok(()));
    }

    #[test]
    fn without_a_transactional_sink_the_newest_is_restored() {
        let s = |completed, min_id| Situation {
            completed,
            fresh: false,
            from_checkpoint: None,
            min_id,
            commits: None,
            dir: "dir",
        };
        assert_eq!(choose(&s(&[1, 2, 3], 0)), Ok(Some(3)));
        assert_eq!(choose(&s(&[], 0)), Ok(None));
        assert_eq!(choose(&s(&[1, 2], 3)), Ok(None));
    }

    #[test]
    fn from_checkpoint_is_refused_above_the_last_commit_or_when_missing() {
        let r = record("p", true);
        let s = |id, marker| Situation {
            completed: &[2, 3, 4],
            fresh: false,
            from_checkpoint: Some(id),
            min_id: 0,
            commits: Some(Commits {
                marker,
                record: Some(&r),
                prefix: "p",
            }),
            dir: "dir",
        };
        assert_eq!(choose(&s(2, Marker::Own(3))), Ok(Some(2)));
        assert_eq!(choose(&s(4, Marker::None)), Ok(Some(4)));
        let e = choose(&s(4, Marker::Own(3))).unwrap_err();
        assert!(
            e.contains("was never committed (the last committed is checkpoint 3)"),
            "{e}"
        );
        let e = choose(&s(9, Marker::None)).unwrap_err();
        assert!(
            e.contains("no completed checkpoint 9 in `dir` (there are: 2, 3, 4)"),
            "{e}"
        );
    }
}
