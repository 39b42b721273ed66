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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
}

/// What happens to one operator of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorPlan {
    /// Whether the snapshot has state for its ID.
    pub restored: bool,
    /// Its declared states, by name.
    pub states: BTreeMap<String, StatePlan>,
    /// Saved states it no longer declares (dropped).
    pub dropped_states: Vec<String>,
}

/// The plan of a restore, for the job's operators in job order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// One per job operator.
    pub operators: Vec<OperatorPlan>,
    /// Operator IDs in the snapshot that the job lacks (dropped).
    pub dropped_operators: Vec<String>,
}

impl RestorePlan {
    /// Whether the job restores exactly what was saved: same IDs, same
    /// states, nothing to migrate (so a checkpoint chain may go on).
    pub fn is_identity(&self) -> bool {
        self.dropped_operators.is_empty()
            && self.operators.iter().all(|o| {
                o.restored
                    && o.dropped_states.is_empty()
                    && o.states.values().all(|s| *s == StatePlan::Keep)
            })
    }

    /// One line per thing a user should know: what is dropped, new, migrated.
    pub fn report(&self, job_ids: &[String]) -> Vec<String> {
        let mut lines = Vec::new();
        for id in &self.dropped_operators {
            lines.push(format!(
                "operator `{id}`: its saved state is dropped (the job has no such operator; --allow-non-restored-state)"
            ));
        }
        for (id, op) in job_ids.iter().zip(&self.operators) {
            if !op.restored {
                lines.push(format!(
                    "operator `{id}` is new: it starts with empty state"
                ));
                continue;
            }
            for s in &op.dropped_states {
                lines.push(format!(
                    "operator `{id}`: state `{s}` is dropped (no longer declared; --allow-non-restored-state)"
                ));
            }
            for (name, plan) in &op.states {
                match plan {
                    StatePlan::New => lines.push(format!(
                        "operator `{id}`: state `{name}` is new: it starts empty"
                    )),
                    StatePlan::Migrate { from, to } => lines.push(format!(
                        "operator `{id}`: state `{name}` is migrated from version {from} to {to}"
                    )),
                    StatePlan::Keep => {}
                }
            }
        }
        lines
    }
}

/// An operator ID with its saved states: name, kind, version.
pub type SavedOperatorStates = (String, Vec<(String, String, u32)>);

/// Plans a restore of `saved` (operator ID and states, from `what`, e.g.
/// ``savepoint `DIR` ``) into the job's operators `job` (ID and declared states).
pub fn plan(
    what: &str,
    saved: &[SavedOperatorStates],
    job: &[(String, Vec<StateSpec>)],
    allow_non_restored: bool,
) -> Result<RestorePlan, String> {
    let hint = "pass --allow-non-restored-state to drop it";
    let mut plan = RestorePlan::default();
    for (id, _) in saved {
        if !job.iter().any(|(j, _)| j == id) {
            if !allow_non_restored {
                return Err(format!(
                    "{what} has state for operator `{id}`, which the job does not have ({hint}, or rename it with `weir savepoint edit --rename-operator {id}=NEW`)"
                ));
            }
            plan.dropped_operators.push(id.clone());
        }
    }
    for (id, specs) in job {
        let mut op = OperatorPlan::default();
        let saved_states = saved.iter().find(|(s, _)| s == id).map(|(_, st)| st);
        op.restored = saved_states.is_some();
        let saved_states: &[(String, String, u32)] = saved_states.map_or(&[], |v| v.as_slice());
        for spec in specs {
            let new_kind = kind_name(spec.kind);
            let state_plan = match saved_states.iter().find(|(n, _, _)| *n == spec.name) {
                None => StatePlan::New,
                Some((_, kind, _)) if kind != new_kind => {
                    return Err(format!(
                        "{what}: operator `{id}` state `{}` was {kind} state and the new operator declares it as {new_kind} state; a state's kind cannot change (give the new state another name)",
                        spec.name
                    ));
                }
                Some((_, _, version)) if *version > spec.version => {
                    return Err(format!(
                        "{what}: operator `{id}` state `{}` is at version {version} and the new operator declares version {}; state versions cannot go down",
                        spec.name, spec.version
                    ));
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
                    return Err(format!(
                        "{what}: operator `{id}` has saved state `{name}`, which the new operator does not declare ({hint})"
                    ));
                }
                op.dropped_states.push(name.clone());
            }
        }
        plan.operators.push(op);
    }
    Ok(plan)
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
                sp.load(op, groups, |r| match r {
                    Record::State(change) => f(change),
                    Record::Timer(_, t) => {
                        timers.push(t);
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
}
