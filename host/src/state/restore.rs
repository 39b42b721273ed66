//! Restore planning: before anything runs, match the operator IDs and
//! declared states of a checkpoint or savepoint with the job's.
//!
//! State belongs to the operator ID, never to the `.wasm`:
//! - an ID in the snapshot that the job lacks is an error, unless
//!   `--allow-non-restored-state`, which drops it and says so;
//! - an ID in the job that the snapshot lacks starts empty;
//! - a state the new operator no longer declares is, likewise, an error
//!   unless non-restored state is allowed;
//! - a state declared anew starts empty;
//! - a state whose kind changed is an error;
//! - a state whose version rose goes through the new operator's `migrate`;
//!   a lower version is an error.
//!
//! Each subtask then loads its own key groups ([`Restore::load`]), on its own
//! thread. From a savepoint, a subtask reads the data files that overlap its
//! key groups: whole (and checksummed) when it owns all of a file's key
//! groups, else only its part, seeking past the frames of the others, so
//! that at another parallelism the subtasks together read each data file
//! once (the choice is explained in [`crate::state::savepoint`]).
//!
//! **Planning goes on past a refusal.** [`plan_all`] gives every state its
//! verdict (restore as is, migrate, start empty, drop, refuse) and collects
//! every reason the restore cannot go ahead, so that `weir upgrade plan`
//! shows them all at once; [`plan`], what a restore uses, fails with the
//! first of them, with the same message it always had.
//!
//! **Re-keying a savepoint.** A savepoint holds the keys themselves, so it
//! restores into a job with another `max_parallelism` ([`RestorePlan::rekey`];
//! a checkpoint does not, the runtime refuses that). Key groups of the old
//! layout then say nothing about who owns a key in the new one: each
//! restoring subtask reads every data file of its operator whole (and
//! checked), hashes each key again among the new number of key groups
//! ([`crate::model::keygroup::key_group`]) and keeps the state and timers of
//! the keys whose new key group it owns. So a re-keying restore reads each
//! file once per subtask of the operator rather than once in all: a one-off
//! cost of an upgrade, paid for a layout that otherwise could never change.
//! A timer with no key (only restored from an older weir, see
//! [`crate::state::timers`]) is stored under the key group of the empty key,
//! which is where it re-keys too: the subtask that owns the empty key's key
//! group in the new layout restores it, exactly one subtask, as a restore
//! without re-keying would. State always has a key (a state call without
//! one traps, see [`crate::wasm::host_state`]), so no state is keyless.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::keygroup::key_group;
use crate::model::StateSpec;
use crate::state::checkpoint::{CheckpointMeta, CheckpointStore, TimerRecord};
use crate::state::keyed::{kind_name, StateChange};
use crate::state::savepoint::{Record, Savepoint};

/// What happens to one declared state of an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatePlan {
    /// Restored as it is.
    Keep,
    /// Restored, then every value goes through `migrate` from `from` to `to`.
    Migrate {
        /// The saved version.
        from: u32,
        /// The declared version.
        to: u32,
    },
    /// Not in the snapshot: starts empty.
    New,
    /// The restore cannot go ahead: why, in a few words (the whole message
    /// is in [`RestorePlan::errors`]).
    Refuse(String),
}

/// What happens to one operator of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorPlan {
    /// Its ID.
    pub id: String,
    /// Whether the snapshot has state for its ID.
    pub restored: bool,
    /// Its declared states, by name.
    pub states: BTreeMap<String, StatePlan>,
    /// Saved states it no longer declares (dropped, which takes
    /// `--allow-non-restored-state`).
    pub dropped_states: Vec<String>,
}

/// The plan of a restore, for the job's operators in job order, with every
/// verdict: a refusal does not stop the planning, so that a user sees all
/// of them at once ([`plan_all`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// One per job operator.
    pub operators: Vec<OperatorPlan>,
    /// Operator IDs in the snapshot that the job lacks (dropped, which takes
    /// `--allow-non-restored-state`).
    pub dropped_operators: Vec<String>,
    /// Whether `--allow-non-restored-state` was given.
    pub allow_non_restored: bool,
    /// The snapshot's number of key groups and the job's, when they differ
    /// (a savepoint's keys are re-hashed into the job's key groups).
    pub rekey: Option<(u32, u32)>,
    /// Why the restore cannot go ahead, one message each, in the order they
    /// were found; empty when it can.
    pub errors: Vec<String>,
}

impl RestorePlan {
    /// Whether the restore would go ahead.
    pub fn restorable(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether the job restores exactly what was saved: same IDs, same
    /// states, same key groups, nothing to migrate (so a checkpoint chain
    /// may go on).
    pub fn is_identity(&self) -> bool {
        self.errors.is_empty()
            && self.rekey.is_none()
            && self.dropped_operators.is_empty()
            && self.operators.iter().all(|o| {
                o.restored
                    && o.dropped_states.is_empty()
                    && o.states.values().all(|s| *s == StatePlan::Keep)
            })
    }
}

/// An operator ID with its saved states: name, kind, version.
pub type SavedOperatorStates = (String, Vec<(String, String, u32)>);

/// Declared states as a snapshot records them: name, kind, version.
pub fn recorded(specs: &[StateSpec]) -> Vec<(String, String, u32)> {
    specs
        .iter()
        .map(|s| (s.name.clone(), kind_name(s.kind).to_string(), s.version))
        .collect()
}

/// Plans a restore of `saved` (operator ID and states, from `what`, e.g.
/// ``savepoint `DIR` ``) into the job's operators `job` (ID and declared
/// states), and fails with the first refusal ([`plan_all`] has them all).
pub fn plan(
    what: &str,
    saved: &[SavedOperatorStates],
    job: &[(String, Vec<StateSpec>)],
    allow_non_restored: bool,
) -> Result<RestorePlan, String> {
    let plan = plan_all(what, saved, job, allow_non_restored);
    match plan.errors.first() {
        Some(e) => Err(e.clone()),
        None => Ok(plan),
    }
}

/// Plans a restore like [`plan`], but goes on past a refusal: every state
/// gets its verdict, and [`RestorePlan::errors`] holds every reason the
/// restore cannot go ahead, in the order [`plan`] would meet them (saved
/// operators the job lacks, then the job's operators in order: their
/// declared states, then their saved states no longer declared).
pub fn plan_all(
    what: &str,
    saved: &[SavedOperatorStates],
    job: &[(String, Vec<StateSpec>)],
    allow_non_restored: bool,
) -> RestorePlan {
    let hint = "pass --allow-non-restored-state to drop it";
    let mut plan = RestorePlan {
        allow_non_restored,
        ..RestorePlan::default()
    };
    for (id, _) in saved {
        if !job.iter().any(|(j, _)| j == id) {
            if !allow_non_restored {
                plan.errors.push(format!(
                    "{what} has state for operator `{id}`, which the job does not have ({hint}, or rename it with `weir savepoint edit --rename-operator {id}=NEW`)"
                ));
            }
            plan.dropped_operators.push(id.clone());
        }
    }
    for (id, specs) in job {
        let mut op = OperatorPlan {
            id: id.clone(),
            ..OperatorPlan::default()
        };
        let saved_states = saved.iter().find(|(s, _)| s == id).map(|(_, st)| st);
        op.restored = saved_states.is_some();
        let saved_states: &[(String, String, u32)] = saved_states.map_or(&[], |v| v.as_slice());
        for spec in specs {
            let new_kind = kind_name(spec.kind);
            let state_plan = match saved_states.iter().find(|(n, _, _)| *n == spec.name) {
                None => StatePlan::New,
                Some((_, kind, _)) if kind != new_kind => {
                    plan.errors.push(format!(
                        "{what}: operator `{id}` state `{}` was {kind} state and the new operator declares it as {new_kind} state; a state's kind cannot change (give the new state another name)",
                        spec.name
                    ));
                    StatePlan::Refuse(format!("its kind changed from {kind} to {new_kind}"))
                }
                Some((_, _, version)) if *version > spec.version => {
                    plan.errors.push(format!(
                        "{what}: operator `{id}` state `{}` is at version {version} and the new operator declares version {}; state versions cannot go down",
                        spec.name, spec.version
                    ));
                    StatePlan::Refuse(format!(
                        "its version went down from {version} to {}",
                        spec.version
                    ))
                }
                Some((_, _, version)) if *version < spec.version => StatePlan::Migrate {
                    from: *version,
                    to: spec.version,
                },
                Some(_) => StatePlan::Keep,
            };
            op.states.insert(spec.name.clone(), state_plan);
        }
        for (name, _, _) in saved_states {
            if !specs.iter().any(|s| s.name == *name) {
                if !allow_non_restored {
                    plan.errors.push(format!(
                        "{what}: operator `{id}` has saved state `{name}`, which the new operator does not declare ({hint})"
                    ));
                }
                op.dropped_states.push(name.clone());
            }
        }
        plan.operators.push(op);
    }
    plan
}

/// Where restored state comes from.
#[derive(Clone)]
pub enum RestoreSource {
    /// A checkpoint in the job's sled database.
    Checkpoint(CheckpointStore),
    /// A savepoint directory (checked before the job starts).
    Savepoint(Arc<Savepoint>),
}

/// A checkpoint or savepoint to restore subtasks from, with its plan.
#[derive(Clone)]
pub struct Restore {
    /// The snapshot: ID, chain (empty for a savepoint), source and sink
    /// state, watermark, operators.
    pub meta: CheckpointMeta,
    /// Where the state is read from.
    pub source: RestoreSource,
    /// How saved state maps onto the job's operators.
    pub plan: Arc<RestorePlan>,
}

impl Restore {
    /// The savepoint directory, when restoring a savepoint.
    pub fn savepoint_dir(&self) -> Option<PathBuf> {
        match &self.source {
            RestoreSource::Savepoint(sp) => Some(sp.dir.clone()),
            RestoreSource::Checkpoint(_) => None,
        }
    }

    /// Hands every saved state entry of `op` in key groups `groups` to `f`,
    /// and returns its timers there.
    pub fn load(
        &self,
        op: &str,
        groups: std::ops::Range<u32>,
        mut f: impl FnMut(StateChange) -> Result<(), String>,
    ) -> Result<Vec<TimerRecord>, String> {
        match &self.source {
            RestoreSource::Checkpoint(store) => {
                store
                    .load_state(&self.meta, op, groups.clone(), f)
                    .map_err(|e| e.to_string())?;
                store
                    .load_timers(&self.meta, op, groups)
                    .map_err(|e| e.to_string())
            }
            RestoreSource::Savepoint(sp) => {
                let mut timers = Vec::new();
                let Some((_, to)) = self.plan.rekey else {
                    sp.load(op, groups, |r| match r {
                        Record::State(change) => f(change),
                        Record::Timer(_, t) => {
                            timers.push(t);
                            Ok(())
                        }
                    })
                    .map_err(|e| e.to_string())?;
                    return Ok(timers);
                };
                // Re-key: the saved key groups say nothing of the new ones,
                // so every file of the operator is read whole (and checked),
                // and each key is hashed again among `to` key groups.
                sp.load(op, 0..u32::MAX, |r| match r {
                    Record::State(mut change) => {
                        let kg = key_group(Some(&change.key), to);
                        if !groups.contains(&kg) {
                            return Ok(());
                        }
                        change.key_group = kg;
                        f(change)
                    }
                    Record::Timer(_, t) => {
                        if groups.contains(&key_group(t.2.as_deref(), to)) {
                            timers.push(t);
                        }
                        Ok(())
                    }
                })
                .map_err(|e| e.to_string())?;
                Ok(timers)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StateKind;

    fn spec(name: &str, kind: StateKind, version: u32) -> StateSpec {
        StateSpec {
            name: name.into(),
            kind,
            version,
        }
    }

    fn saved(id: &str, states: &[(&str, &str, u32)]) -> SavedOperatorStates {
        (
            id.into(),
            states
                .iter()
                .map(|(n, k, v)| (n.to_string(), k.to_string(), *v))
                .collect(),
        )
    }

    #[test]
    fn plans_map_state_by_operator_id() {
        let job = vec![
            (
                "count".to_string(),
                vec![
                    spec("count", StateKind::Value, 2),
                    spec("last_seen", StateKind::Value, 1),
                ],
            ),
            ("fresh".to_string(), vec![spec("x", StateKind::Map, 1)]),
        ];
        let sp = vec![saved("count", &[("count", "value", 1)])];
        let p = plan("savepoint", &sp, &job, false).unwrap();
        assert!(p.operators[0].restored && !p.operators[1].restored);
        assert_eq!(
            p.operators[0].states["count"],
            StatePlan::Migrate { from: 1, to: 2 }
        );
        assert_eq!(p.operators[0].states["last_seen"], StatePlan::New);
        assert!(!p.is_identity());

        let extra = vec![saved("count", &[("count", "value", 1)]), saved("old", &[])];
        let e = plan("savepoint", &extra, &job, false).unwrap_err();
        assert!(e.contains("operator `old`"), "{e}");
        let p = plan("savepoint", &extra, &job, true).unwrap();
        assert_eq!(p.dropped_operators, vec!["old".to_string()]);

        let kind = vec![saved("count", &[("count", "map", 1)])];
        let e = plan("savepoint", &kind, &job, true).unwrap_err();
        assert!(
            e.contains("was map state") && e.contains("value state"),
            "{e}"
        );

        let down = vec![saved("count", &[("count", "value", 3)])];
        assert!(plan("savepoint", &down, &job, true).is_err());

        let same = vec![
            saved("count", &[("count", "value", 2), ("last_seen", "value", 1)]),
            saved("fresh", &[("x", "map", 1)]),
        ];
        assert!(plan("cp", &same, &job, false).unwrap().is_identity());
    }

    #[test]
    fn plan_all_gives_every_verdict_and_plan_fails_with_the_first() {
        let job = vec![(
            "count".to_string(),
            vec![
                spec("a", StateKind::Value, 1),
                spec("b", StateKind::Map, 2),
                spec("c", StateKind::Value, 1),
                spec("d", StateKind::List, 2),
                spec("e", StateKind::Value, 1),
            ],
        )];
        let sp = vec![
            saved("gone", &[("x", "value", 1)]),
            saved(
                "count",
                &[
                    ("a", "value", 1),
                    ("b", "value", 2),
                    ("c", "value", 4),
                    ("d", "list", 1),
                    ("old", "map", 1),
                ],
            ),
        ];
        let p = plan_all("savepoint `sp`", &sp, &job, false);
        let states = &p.operators[0].states;
        assert_eq!(states["a"], StatePlan::Keep);
        assert_eq!(
            states["b"],
            StatePlan::Refuse("its kind changed from value to map".into())
        );
        assert_eq!(
            states["c"],
            StatePlan::Refuse("its version went down from 4 to 1".into())
        );
        assert_eq!(states["d"], StatePlan::Migrate { from: 1, to: 2 });
        assert_eq!(states["e"], StatePlan::New);
        assert_eq!(p.operators[0].dropped_states, vec!["old".to_string()]);
        assert_eq!(p.dropped_operators, vec!["gone".to_string()]);
        assert!(!p.restorable() && !p.is_identity());
        // Every refusal, in the order a restore meets them.
        assert_eq!(p.errors.len(), 4, "{:?}", p.errors);
        assert!(p.errors[0].contains("operator `gone`"), "{:?}", p.errors);
        assert!(p.errors[1].contains("state `b` was value state"));
        assert!(p.errors[2].contains("state versions cannot go down"));
        assert!(p.errors[3].contains("saved state `old`"));
        assert_eq!(
            plan("savepoint `sp`", &sp, &job, false).unwrap_err(),
            p.errors[0]
        );
        // The flag turns the drops into verdicts, not refusals.
        let p = plan_all("savepoint `sp`", &sp, &job, true);
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.dropped_operators, vec!["gone".to_string()]);
        assert_eq!(
            plan("savepoint `sp`", &sp, &job, true).unwrap_err(),
            p.errors[0]
        );
    }

    #[test]
    fn a_rekeyed_savepoint_restore_hands_each_key_to_its_new_key_group() {
        use crate::model::keygroup::range_for;
        use crate::model::{SourcePosition, SourceState};
        use crate::state::keyed::StoredEntry;
        use crate::state::savepoint::{
            new_metadata, SavedOperator, SavepointKind, SavepointWriter,
        };
        let dir = tempfile::tempdir().unwrap();
        let (old_m, new_m) = (8u32, 5u32);
        let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("k{i}").into_bytes()).collect();
        // Two data files of the old layout, as two subtasks wrote them.
        let w = SavepointWriter::create_named(dir.path(), "sp").unwrap();
        let mut files = Vec::new();
        for (i, range) in [0..3u32, 3..8].into_iter().enumerate() {
            let mut changes: Vec<StateChange> = keys
                .iter()
                .filter(|k| range.contains(&key_group(Some(k), old_m)))
                .map(|k| StateChange {
                    state: "count".into(),
                    key_group: key_group(Some(k), old_m),
                    key: k.clone(),
                    entry: StoredEntry::Value(k.clone()),
                })
                .collect();
            changes.sort_by(|a, b| (a.key_group, &a.key).cmp(&(b.key_group, &b.key)));
            let mut timers: Vec<(u32, Vec<TimerRecord>)> = changes
                .iter()
                .map(|c| (c.key_group, vec![(0u8, 100i64, Some(c.key.clone()))]))
                .collect();
            // A timer with no key: in the key group of the empty key.
            let keyless = key_group(None, old_m);
            if range.contains(&keyless) {
                timers.push((keyless, vec![(0u8, 50i64, None)]));
            }
            timers.sort_by_key(|(kg, _)| *kg);
            let mut merged: Vec<(u32, Vec<TimerRecord>)> = Vec::new();
            for (kg, t) in timers {
                match merged.last_mut() {
                    Some((last, ts)) if *last == kg => ts.extend(t),
                    _ => merged.push((kg, t)),
                }
            }
            let (file, _) = w
                .write_data(&format!("op0-sub{i}.state"), range, &changes, &merged)
                .unwrap();
            files.push(file);
        }
        let mut meta = new_metadata(
            "j",
            1,
            SavepointKind::Stop,
            0,
            old_m,
            false,
            SourceState {
                position: SourcePosition::Generator { next: 0 },
                max_timestamp: 0,
            },
            None,
            0,
        );
        meta.operators.push(SavedOperator {
            id: "op".into(),
            name: "n".into(),
            version: "1".into(),
            wasm_sha256: "00".into(),
            parallelism: 2,
            states: vec![],
            timers: 0,
            state_bytes: 0,
            files,
        });
        let sp = Savepoint::open(&w.finish(&meta).unwrap()).unwrap();
        let restore = Restore {
            meta: CheckpointMeta {
                format: crate::state::checkpoint::FORMAT_VERSION,
                id: 1,
                chain: Vec::new(),
                job: "j".into(),
                max_parallelism: old_m,
                triggered_at_ms: 0,
                completed_at_ms: 0,
                bytes_written: 0,
                finished: false,
                source: meta.source.clone(),
                sink: None,
                watermark: 0,
                operators: Vec::new(),
            },
            source: RestoreSource::Savepoint(Arc::new(sp)),
            plan: Arc::new(RestorePlan {
                rekey: Some((old_m, new_m)),
                ..RestorePlan::default()
            }),
        };
        // Three subtasks of the new layout: every key once, in its new key group.
        let mut seen = Vec::new();
        let mut keyless_timers = 0;
        for s in 0..3 {
            let groups = range_for(s, new_m, 3);
            let mut got = Vec::new();
            let timers = restore
                .load("op", groups.clone(), |c| {
                    assert_eq!(c.key_group, key_group(Some(&c.key), new_m));
                    assert!(groups.contains(&c.key_group));
                    got.push(c.key);
                    Ok(())
                })
                .unwrap();
            for (_, _, key) in &timers {
                assert!(groups.contains(&key_group(key.as_deref(), new_m)));
                keyless_timers += usize::from(key.is_none());
            }
            assert_eq!(
                timers.len(),
                got.len() + usize::from(groups.contains(&key_group(None, new_m)))
            );
            seen.extend(got);
        }
        assert_eq!(keyless_timers, 1, "the keyless timer goes to one subtask");
        seen.sort();
        let mut all = keys.clone();
        all.sort();
        assert_eq!(seen, all);
    }
}
