//! The upgrade plan: what a restore of a savepoint (or checkpoint) into a
//! job would do, per operator ID and per state, worked out without running
//! anything. `weir upgrade plan` prints it ([`plan_savepoint`]), and every
//! restore of `weir run` prints it first, in the same text form, on stderr
//! (one `info` log event, `warn` when the restore is refused).
//!
//! Verdicts, per state: `restore` (as is), `migrate` (from the saved version
//! to the declared one, through the new operator's `migrate`), `new` (not
//! saved: starts empty), `drop` (saved, but the new operator does not
//! declare it, or the job has no such operator: only with
//! `--allow-non-restored-state`, else the plan says `needs_flag`), `refuse`
//! (its kind changed, or its version went down). Per operator: `restore`,
//! `new` (the savepoint has no state for its ID) or `drop`. Besides, the
//! source must be able to resume from the saved position (same kind of
//! source, a file not shorter), and the number of key groups must match,
//! except that a savepoint taken with another `max_parallelism` is re-keyed
//! (see [`crate::state::restore`]): the plan says "re-key from 64 to 256 key
//! groups". A checkpoint with another `max_parallelism` is refused.
//!
//! The plan reports every verdict, not only the first refusal; `errors`
//! holds each reason the restore would not go ahead, worded as the restore
//! itself words its refusal (a restore fails with the first of them).
//!
//! # JSON (`weir upgrade plan --json`)
//!
//! One object; fields are only ever added:
//!
//! ```text
//! {
//!   "restore": "savepoint `sp/savepoint-counts-7-…`",   what is restored
//!   "job": "counts",
//!   "restorable": true,                  whether a restore would go ahead
//!   "allow_non_restored_state": false,
//!   "max_parallelism": {"saved": 64, "job": 256},
//!   "rekey": {"from": 64, "to": 256},    or null when unchanged
//!   "source": {"saved": "generator", "job": "generator", "error": null},
//!   "operators": [                       job operators in job order, then
//!     {                                  saved IDs the job lacks
//!       "id": "count",
//!       "verdict": "restore",            restore | new | drop
//!       "old": {"name": "keyed-count", "version": "1.0.0", "wasm_sha256": "…"},
//!       "new": {"name": "keyed-count", "version": "3.0.0", "wasm_sha256": "…"},
//!       "states": [                      declared states by name, then
//!         {                              saved states no longer declared
//!           "name": "count",
//!           "verdict": "migrate",        restore | migrate | new | drop | refuse
//!           "saved": {"kind": "value", "version": 1},      or null
//!           "declared": {"kind": "value", "version": 2},   or null
//!           "needs_flag": false,         a drop without --allow-non-restored-state
//!           "reason": null               why, for refuse and drop
//!         }
//!       ]
//!     }
//!   ],
//!   "errors": []                         every reason it would not go ahead
//! }
//! ```
//!
//! `old` is null for a new operator (and for a checkpoint written before
//! checkpoints recorded their logic), `new` for a dropped one; `source` is null in
//! the plan a restore prints (the run checks the source right after, with
//! the same words). The text form shortens each SHA-256 to 12 hex digits.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::engine::errors::RunError;
use crate::engine::{logic, restore};
use crate::job::JobSpec;
use crate::model::LogicId;
use crate::state::checkpoint::CheckpointMeta;
use crate::state::keyed::kind_name;
use std::sync::Arc;

use crate::state::restore::{Restore, RestorePlan, RestoreSource, StatePlan};
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

/// What a restore would do; see the module doc for its JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    /// What is restored: ``savepoint `DIR` `` or `checkpoint N`.
    pub restore: String,
    /// The job's name.
    pub job: String,
    /// Whether a restore would go ahead.
    pub restorable: bool,
    /// Whether `--allow-non-restored-state` was given.
    pub allow_non_restored_state: bool,
    /// The number of key groups, saved and the job's.
    pub max_parallelism: MaxParallelism,
    /// A re-key, when they differ (savepoints only).
    pub rekey: Option<Rekey>,
    /// Whether the job's source can resume from the saved position (not
    /// checked in the plan a restore prints).
    pub source: Option<SourceVerdict>,
    /// Per operator ID.
    pub operators: Vec<OperatorVerdict>,
    /// Every reason the restore would not go ahead.
    pub errors: Vec<String>,
}

/// The number of key groups, saved and the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MaxParallelism {
    /// In the savepoint or checkpoint.
    pub saved: u32,
    /// In the job file.
    pub job: u32,
}

/// Keys are re-hashed from `from` key groups into `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rekey {
    /// The saved number of key groups.
    pub from: u32,
    /// The job's.
    pub to: u32,
}

/// The saved source position against the job's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceVerdict {
    /// The kind of the saved position: `file`, `generator`, `kafka`.
    pub saved: String,
    /// The kind of the job's source: `file`, `generator`, `kafka`, `stdin`.
    pub job: String,
    /// Why it cannot resume there, if it cannot.
    pub error: Option<String>,
}

/// The plan's JSON spells a logic's fields in snake case, as the rest of
/// the plan (the REST API spells them in kebab case).
fn snake_case<S: serde::Serializer>(logic: &Option<LogicId>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Snake<'a> {
        name: &'a str,
        version: &'a str,
        wasm_sha256: &'a str,
    }
    logic
        .as_ref()
        .map(|l| Snake {
            name: &l.name,
            version: &l.version,
            wasm_sha256: &l.wasm_sha256,
        })
        .serialize(s)
}

/// What happens to one operator ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorVerdict {
    /// The operator ID.
    pub id: String,
    /// `restore`, `new` or `drop`.
    pub verdict: &'static str,
    /// The logic that saved its state (savepoints only).
    #[serde(serialize_with = "snake_case")]
    pub old: Option<LogicId>,
    /// The job's logic for it.
    #[serde(serialize_with = "snake_case")]
    pub new: Option<LogicId>,
    /// Per state.
    pub states: Vec<StateVerdict>,
}

/// A state's kind and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateShape {
    /// `value`, `map` or `list`.
    pub kind: String,
    /// Schema version of its values.
    pub version: u32,
}

/// What happens to one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateVerdict {
    /// The state's name.
    pub name: String,
    /// `restore`, `migrate`, `new`, `drop` or `refuse`.
    pub verdict: &'static str,
    /// As saved, if saved.
    pub saved: Option<StateShape>,
    /// As the job's operator declares it, if it does.
    pub declared: Option<StateShape>,
    /// A drop that takes `--allow-non-restored-state`, not given.
    pub needs_flag: bool,
    /// Why, for `refuse` and `drop`.
    pub reason: Option<String>,
}

impl UpgradePlan {
    /// The plan for a person: one line per operator and per state, indented.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "upgrade plan: {} into job `{}`", self.restore, self.job);
        let m = self.max_parallelism;
        match self.rekey {
            Some(r) => {
                let _ = writeln!(t, "  re-key from {} to {} key groups", r.from, r.to);
            }
            None if m.saved != m.job => {
                let _ = writeln!(
                    t,
                    "  key groups: {} saved, {} in the job: refused",
                    m.saved, m.job
                );
            }
            None => {
                let _ = writeln!(t, "  key groups: {}, unchanged", m.job);
            }
        }
        if let Some(s) = &self.source {
            let _ = match &s.error {
                None => writeln!(
                    t,
                    "  source: resumes from the saved {} position ({} source)",
                    s.saved, s.job
                ),
                Some(e) => writeln!(t, "  source: refused: {e}"),
            };
        }
        for op in &self.operators {
            let id = &op.id;
            let _ = match (op.verdict, &op.old, &op.new) {
                ("new", _, Some(new)) => writeln!(
                    t,
                    "  operator `{id}` is new: it starts with empty state; its logic: {}",
                    logic(new)
                ),
                ("drop", old, _) if self.allow_non_restored_state => writeln!(
                    t,
                    "  operator `{id}`: its saved state is dropped (the job has no such operator; --allow-non-restored-state){}",
                    old.as_ref().map_or(String::new(), |o| format!("; it was {}", logic(o)))
                ),
                ("drop", old, _) => writeln!(
                    t,
                    "  operator `{id}`: its saved state would be dropped (the job has no such operator): needs --allow-non-restored-state{}",
                    old.as_ref().map_or(String::new(), |o| format!("; it was {}", logic(o)))
                ),
                (_, Some(old), Some(new)) if old == new => {
                    writeln!(t, "  operator `{id}`: {}, unchanged", logic(new))
                }
                (_, Some(old), Some(new)) => writeln!(
                    t,
                    "  operator `{id}`: {} -> {}",
                    logic(old),
                    logic(new)
                ),
                (_, None, Some(new)) => writeln!(t, "  operator `{id}`: {}", logic(new)),
                _ => writeln!(t, "  operator `{id}`"),
            };
            for s in &op.states {
                let name = &s.name;
                let kind = s
                    .declared
                    .as_ref()
                    .or(s.saved.as_ref())
                    .map_or(String::new(), |d| format!("{} state, ", d.kind));
                let _ = match s.verdict {
                    "restore" => writeln!(
                        t,
                        "    state `{name}` is restored as is ({kind}version {})",
                        s.declared.as_ref().map_or(0, |d| d.version)
                    ),
                    "migrate" => writeln!(
                        t,
                        "    state `{name}` is migrated from version {} to {} ({kind}through the new operator's migrate)",
                        s.saved.as_ref().map_or(0, |d| d.version),
                        s.declared.as_ref().map_or(0, |d| d.version)
                    ),
                    "new" => writeln!(t, "    state `{name}` is new: it starts empty"),
                    "drop" if op.verdict == "drop" => writeln!(
                        t,
                        "    state `{name}` {} with its operator",
                        if s.needs_flag { "would be dropped" } else { "is dropped" }
                    ),
                    "drop" if s.needs_flag => writeln!(
                        t,
                        "    state `{name}` would be dropped (no longer declared): needs --allow-non-restored-state"
                    ),
                    "drop" => writeln!(
                        t,
                        "    state `{name}` is dropped (no longer declared; --allow-non-restored-state)"
                    ),
                    _ => writeln!(
                        t,
                        "    state `{name}` is refused: {}",
                        s.reason.as_deref().unwrap_or("")
                    ),
                };
            }
        }
        if self.errors.is_empty() {
            let _ = writeln!(t, "  the restore goes ahead");
        } else {
            let n = self.errors.len();
            let _ = writeln!(
                t,
                "  the restore is refused ({n} problem{}):",
                if n == 1 { "" } else { "s" }
            );
            for e in &self.errors {
                let _ = writeln!(t, "    - {e}");
            }
        }
        t
    }
}

/// `name version (wasm 0123456789ab)`.
fn logic(l: &LogicId) -> String {
    let short: String = l.wasm_sha256.chars().take(12).collect();
    format!("{} {} (wasm {short})", l.name, l.version)
}

fn shape(kind: &str, version: u32) -> StateShape {
    StateShape {
        kind: kind.to_string(),
        version,
    }
}

/// The plan `plan` of a restore of `meta` (from `source`) into the job, with
/// the operators' names, versions and hashes, as it is shown. The source
/// position is not checked here ([`plan_savepoint`] does).
pub fn describe(
    spec: &JobSpec,
    loaded: &[OperatorImpl],
    meta: &CheckpointMeta,
    source: &RestoreSource,
    plan: &RestorePlan,
) -> UpgradePlan {
    let saved_logic = |id: &str| match source {
        RestoreSource::Savepoint(sp) => sp.meta.operator(id).map(|o| LogicId {
            name: o.name.clone(),
            version: o.version.clone(),
            wasm_sha256: o.wasm_sha256.clone(),
        }),
        // What the checkpoint records of the logic (a store written before
        // live swaps records nothing).
        RestoreSource::Checkpoint(store) => store
            .logic(meta.id)
            .ok()
            .flatten()
            .and_then(|l| l.operators.into_iter().find(|o| o.id == id))
            .map(|o| LogicId {
                name: o.name,
                version: o.version,
                wasm_sha256: o.wasm_sha256,
            }),
    };
    let saved_states = |id: &str| {
        meta.operators
            .iter()
            .find(|o| o.id == id)
            .map_or(&[][..], |o| o.states.as_slice())
    };
    let dropped = |id: &str, name: &str, saved: Option<StateShape>| StateVerdict {
        name: name.to_string(),
        verdict: "drop",
        saved,
        declared: None,
        needs_flag: !plan.allow_non_restored,
        reason: Some(if plan.operators.iter().any(|o| o.id == id) {
            "no longer declared by the new operator".to_string()
        } else {
            "the job has no such operator".to_string()
        }),
    };
    let mut operators = Vec::new();
    for ((op, l), op_plan) in spec.operators.iter().zip(loaded).zip(&plan.operators) {
        let id = &op.id;
        let saved = saved_states(id);
        let find_saved = |name: &str| {
            saved
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, k, v)| shape(k, *v))
        };
        let mut states = Vec::new();
        for declared in &l.spec().states {
            let name = &declared.name;
            let (verdict, reason) = match op_plan.states.get(name) {
                Some(StatePlan::Keep) => ("restore", None),
                Some(StatePlan::Migrate { .. }) => ("migrate", None),
                Some(StatePlan::Refuse(why)) => ("refuse", Some(why.clone())),
                Some(StatePlan::New) | None => ("new", None),
            };
            states.push(StateVerdict {
                name: name.clone(),
                verdict,
                saved: find_saved(name),
                declared: Some(shape(kind_name(declared.kind), declared.version)),
                needs_flag: false,
                reason,
            });
        }
        for name in &op_plan.dropped_states {
            states.push(dropped(id, name, find_saved(name)));
        }
        operators.push(OperatorVerdict {
            id: id.clone(),
            verdict: if op_plan.restored { "restore" } else { "new" },
            old: saved_logic(id),
            new: Some(l.logic_id()),
            states,
        });
    }
    for id in &plan.dropped_operators {
        operators.push(OperatorVerdict {
            id: id.clone(),
            verdict: "drop",
            old: saved_logic(id),
            new: None,
            states: saved_states(id)
                .iter()
                .map(|(n, k, v)| dropped(id, n, Some(shape(k, *v))))
                .collect(),
        });
    }
    UpgradePlan {
        restore: restore::restore_what(meta, source),
        job: spec.name.clone(),
        restorable: plan.restorable(),
        allow_non_restored_state: plan.allow_non_restored,
        max_parallelism: MaxParallelism {
            saved: meta.max_parallelism,
            job: spec.max_parallelism,
        },
        rekey: plan.rekey.map(|(from, to)| Rekey { from, to }),
        source: None,
        operators,
        errors: plan.errors.clone(),
    }
}

/// The kind of the job's source, as the plan names it.
fn source_kind(spec: &JobSpec) -> &'static str {
    spec.source.connector.kind()
}

/// `weir upgrade plan`: loads and compiles the job's operators (as `weir
/// run` does), opens and checks the savepoint at `dir` (its manifest and
/// every data file's checksum), and plans a restore of it into the job,
/// source position included. Touches nothing: no state directory, no
/// output. An error is input that cannot be planned at all (a job operator
/// that does not load, a missing or damaged savepoint).
pub fn plan_savepoint(
    spec: &JobSpec,
    job_file: &Path,
    dir: &Path,
    allow_non_restored: bool,
) -> Result<UpgradePlan, RunError> {
    let components =
        Components::new().map_err(|e| RunError::Setup(format!("cannot start wasmtime: {e}")))?;
    let loaded = logic::load_operators(&components, spec, job_file, &Default::default())?;
    let sp = std::sync::Arc::new(restore::open_savepoint(dir)?);
    let meta = restore::savepoint_meta(&sp);
    let source = RestoreSource::Savepoint(sp);
    let plan = restore::restore_plan(spec, &loaded, &meta, &source, allow_non_restored);
    let mut shown = describe(spec, &loaded, &meta, &source, &plan);
    let what = restore::restore_what(&meta, &source);
    let missing_file = spec.source.connector.get().check(job_file).err();
    let error = missing_file
        .or_else(|| restore::source_fits(spec, job_file, &what, &meta.source.position).err());
    if let Some(e) = &error {
        shown.errors.push(e.clone());
        shown.restorable = false;
    }
    shown.source = Some(SourceVerdict {
        saved: meta.source.position.kind().to_string(),
        job: source_kind(spec).to_string(),
        error,
    });
    Ok(shown)
}

/// Checks that `meta` fits the job and plans how its state maps onto the
/// job's operators; prints the plan (see [`crate::engine::upgrades::plan`]) and
/// fails with its first refusal.
pub(crate) fn plan_restore(
    spec: &JobSpec,
    loaded: &[OperatorImpl],
    meta: CheckpointMeta,
    source: RestoreSource,
    allow_non_restored: bool,
) -> Result<Restore, RunError> {
    let fix = match &source {
        RestoreSource::Savepoint(_) => "",
        RestoreSource::Checkpoint(_) => " (use --fresh to start over)",
    };
    let plan = restore::restore_plan(spec, loaded, &meta, &source, allow_non_restored);
    let shown = describe(spec, loaded, &meta, &source, &plan);
    if plan.restorable() {
        tracing::info!("{}", shown.text().trim_end());
    } else {
        tracing::warn!("{}", shown.text().trim_end());
    }
    if let Some(e) = plan.errors.first() {
        return Err(RunError::Setup(format!("{e}{fix}")));
    }
    if !plan.dropped_operators.is_empty()
        || plan.operators.iter().any(|o| !o.dropped_states.is_empty())
    {
        tracing::warn!(
            "restoring {}: saved state is dropped (--allow-non-restored-state), see the plan above",
            shown.restore
        );
    }
    Ok(Restore {
        meta,
        source,
        plan: Arc::new(plan),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(
        name: &str,
        verdict: &'static str,
        saved: Option<u32>,
        declared: Option<u32>,
    ) -> StateVerdict {
        StateVerdict {
            name: name.into(),
            verdict,
            saved: saved.map(|v| shape("value", v)),
            declared: declared.map(|v| shape("value", v)),
            needs_flag: false,
            reason: None,
        }
    }

    fn logic_of(version: &str, sha: char) -> LogicId {
        LogicId {
            name: "keyed-count".into(),
            version: version.into(),
            wasm_sha256: std::iter::repeat_n(sha, 64).collect(),
        }
    }

    #[test]
    fn the_text_form_has_a_line_per_operator_and_state() {
        let mut refused = state("c", "refuse", Some(1), Some(1));
        refused.reason = Some("its kind changed from map to value".into());
        let mut dropped = state("d", "drop", Some(1), None);
        dropped.needs_flag = true;
        let plan = UpgradePlan {
            restore: "savepoint `sp`".into(),
            job: "counts".into(),
            restorable: false,
            allow_non_restored_state: false,
            max_parallelism: MaxParallelism {
                saved: 64,
                job: 256,
            },
            rekey: Some(Rekey { from: 64, to: 256 }),
            source: None,
            operators: vec![
                OperatorVerdict {
                    id: "count".into(),
                    verdict: "restore",
                    old: Some(logic_of("1.0.0", 'a')),
                    new: Some(logic_of("3.0.0", 'b')),
                    states: vec![
                        state("a", "restore", Some(1), Some(1)),
                        state("b", "migrate", Some(1), Some(2)),
                        refused,
                        dropped,
                        state("e", "new", None, Some(1)),
                    ],
                },
                OperatorVerdict {
                    id: "gone".into(),
                    verdict: "drop",
                    old: Some(logic_of("1.0.0", 'a')),
                    new: None,
                    states: vec![],
                },
            ],
            errors: vec!["one".into(), "two".into()],
        };
        let text = plan.text();
        for line in [
            "upgrade plan: savepoint `sp` into job `counts`",
            "  re-key from 64 to 256 key groups",
            "  operator `count`: keyed-count 1.0.0 (wasm aaaaaaaaaaaa) -> keyed-count 3.0.0 (wasm bbbbbbbbbbbb)",
            "    state `a` is restored as is (value state, version 1)",
            "    state `b` is migrated from version 1 to 2",
            "    state `c` is refused: its kind changed from map to value",
            "    state `d` would be dropped (no longer declared): needs --allow-non-restored-state",
            "    state `e` is new: it starts empty",
            "  operator `gone`: its saved state would be dropped (the job has no such operator): needs --allow-non-restored-state",
            "  the restore is refused (2 problems):",
            "    - two",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["rekey"], serde_json::json!({"from": 64, "to": 256}));
        assert_eq!(json["operators"][0]["states"][1]["verdict"], "migrate");
        assert_eq!(json["operators"][0]["states"][3]["needs_flag"], true);
    }
}
