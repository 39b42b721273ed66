//! Restore selection: which checkpoint or savepoint a run starts from
//! ([`crate::engine::recovery`] holds the rule), how its saved state maps
//! onto the job's operators (the restore plan that [`crate::engine::upgrades::plan`]
//! shows), and whether the job's source can resume from its position.

use std::path::Path;
use std::time::Instant;

use crate::connectors::registry::Committer;
use crate::engine::connect::commit_marker;
use crate::engine::errors::RunError;
use crate::engine::recovery::{self, Marker};
use crate::job::JobSpec;
use crate::model::SourcePosition;
use crate::state::checkpoint::{CheckpointMeta, CheckpointStore, OperatorMeta};
use crate::state::restore::{self, Restore, RestorePlan, RestoreSource};
use crate::state::savepoint::Savepoint;
use crate::wasm::operator::OperatorImpl;

/// Picks the checkpoint to restore, if any ([`recovery::choose`]), from
/// the completed checkpoints of `store` with an ID of at least `min_id`;
/// with an exactly-once Kafka sink, by its commit markers. Completed
/// checkpoints above the one whose output was committed last are forgotten:
/// their output never was.
pub(crate) fn choose_checkpoint(
    store: &CheckpointStore,
    fresh: bool,
    from_checkpoint: Option<u64>,
    min_id: u64,
    committer: Option<&dyn Committer>,
) -> Result<Option<CheckpointMeta>, RunError> {
    let setup = |e: crate::state::checkpoint::CheckpointError| RunError::Setup(e.to_string());
    let completed = store.list().map_err(setup)?;
    if fresh && !completed.is_empty() {
        tracing::warn!(
            "--fresh: ignoring {} checkpoint(s) in `{}`; the job starts from the beginning",
            completed.len(),
            store.dir().display()
        );
    }
    let record = store.sink_record().map_err(setup)?;
    let marker = match committer {
        Some(c) if !fresh => Some(commit_marker(c, store)?),
        _ => None,
    };
    let ids: Vec<u64> = completed.iter().map(|m| m.id).collect();
    let dir = store.dir().display().to_string();
    let situation = recovery::Situation {
        completed: &ids,
        fresh,
        from_checkpoint,
        min_id,
        commits: committer
            .zip(marker.clone())
            .map(|(c, marker)| recovery::Commits {
                marker,
                record: record.as_ref(),
                prefix: c.prefix(),
            }),
        dir: &dir,
    };
    let chosen = recovery::choose(&situation).map_err(RunError::Setup)?;
    if let (Some(Marker::Own(c)), None) = (&marker, from_checkpoint) {
        let forgotten = store.forget_above(*c).map_err(setup)?;
        if !forgotten.is_empty() {
            tracing::warn!(
                "checkpoint(s) {forgotten:?} completed but their Kafka transaction was not committed (the last committed is checkpoint {c}): the job restores {} and recomputes what came after",
                chosen.map_or("from the beginning".to_string(), |id| format!("checkpoint {id}"))
            );
        }
    }
    Ok(chosen.and_then(|id| completed.into_iter().find(|m| m.id == id)))
}

/// A savepoint's manifest, as the checkpoint metadata the runtime restores from.
pub(crate) fn savepoint_meta(sp: &Savepoint) -> CheckpointMeta {
    let m = &sp.meta;
    CheckpointMeta {
        format: crate::state::checkpoint::FORMAT_VERSION,
        id: m.id,
        chain: Vec::new(),
        job: m.job.clone(),
        max_parallelism: m.max_parallelism,
        triggered_at_ms: m.created_at_ms,
        completed_at_ms: m.created_at_ms,
        bytes_written: 0,
        finished: m.finished,
        source: m.source.clone(),
        sink: m.sink.clone(),
        watermark: m.watermark,
        operators: m
            .operators
            .iter()
            .map(|o| OperatorMeta {
                id: o.id.clone(),
                parallelism: o.parallelism,
                states: o
                    .states
                    .iter()
                    .map(|s| (s.name.clone(), s.kind.clone(), s.version))
                    .collect(),
                keys: o.states.iter().map(|s| s.keys).sum(),
                state_bytes: o.state_bytes,
                bytes_written: 0,
            })
            .collect(),
    }
}

/// Opens and checks a savepoint (manifest and every data file's checksum).
pub(crate) fn open_savepoint(dir: &Path) -> Result<Savepoint, RunError> {
    let started = Instant::now();
    let sp = Savepoint::open(dir).map_err(|e| RunError::Setup(e.to_string()))?;
    let (files, bytes) = sp.verify().map_err(|e| RunError::Setup(e.to_string()))?;
    tracing::info!(
        "checked savepoint `{}`: {files} data files, {bytes} bytes, in {:.1} ms",
        dir.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(sp)
}

/// What a restore from `source` is called in messages.
pub(crate) fn restore_what(meta: &CheckpointMeta, source: &RestoreSource) -> String {
    match source {
        RestoreSource::Savepoint(sp) => format!("savepoint `{}`", sp.dir.display()),
        RestoreSource::Checkpoint(_) => format!("checkpoint {}", meta.id),
    }
}

/// Plans how `meta` maps onto the job's operators, every verdict and every
/// refusal included ([`restore::plan_all`]): a savepoint taken with another
/// `max_parallelism` is re-keyed, a checkpoint is refused.
pub(crate) fn restore_plan(
    spec: &JobSpec,
    loaded: &[OperatorImpl],
    meta: &CheckpointMeta,
    source: &RestoreSource,
    allow_non_restored: bool,
) -> RestorePlan {
    let what = restore_what(meta, source);
    let saved: Vec<restore::SavedOperatorStates> = meta
        .operators
        .iter()
        .map(|o| (o.id.clone(), o.states.clone()))
        .collect();
    let job: Vec<(String, Vec<crate::model::StateSpec>)> = spec
        .operators
        .iter()
        .zip(loaded)
        .map(|(o, l)| (o.id.clone(), l.spec().states.clone()))
        .collect();
    let mut plan = restore::plan_all(&what, &saved, &job, allow_non_restored);
    if meta.max_parallelism != spec.max_parallelism {
        match source {
            RestoreSource::Savepoint(_) => {
                plan.rekey = Some((meta.max_parallelism, spec.max_parallelism));
            }
            RestoreSource::Checkpoint(_) => plan.errors.insert(
                0,
                format!(
                    "{what} was taken with max_parallelism {}, the job has {}: key groups cannot change",
                    meta.max_parallelism, spec.max_parallelism
                ),
            ),
        }
    }
    plan
}

/// Checks, before anything runs, that the job's source can resume from the
/// position `restore` holds: the same kind of source, and a file not shorter.
pub(crate) fn check_source_position(
    spec: &JobSpec,
    job_file: &Path,
    restore: &Restore,
) -> Result<(), RunError> {
    let what = restore_what(&restore.meta, &restore.source);
    source_fits(spec, job_file, &what, &restore.meta.source.position).map_err(RunError::Setup)
}

/// Whether the job's source (of `job_file`) can resume from `position`,
/// held by `what`: the same kind of source, and a file not shorter.
pub(crate) fn source_fits(
    spec: &JobSpec,
    job_file: &Path,
    what: &str,
    position: &SourcePosition,
) -> Result<(), String> {
    spec.source
        .connector
        .get()
        .resumes_from(position, what, job_file)
}

/// The first checkpoint ID of this run: above every checkpoint in the
/// store and above the restored snapshot's.
pub(crate) fn first_checkpoint_id(
    store: Option<&CheckpointStore>,
    restore: Option<&Restore>,
) -> u64 {
    let above_restore = restore.map_or(1, |r| r.meta.id + 1);
    store.map_or(1, CheckpointStore::next_id).max(above_restore)
}
