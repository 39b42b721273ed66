//! Opening the job's source and sink for a run, through the connector
//! registry ([`crate::connectors::registry`]): the engine never names a
//! connector. And what recovery asks of a sink that commits under markers
//! of its own ([`Committer`], an exactly-once Kafka sink): whether it
//! writes exactly once, which checkpoint its last commit names, and the
//! prefix it commits under.

use std::sync::Arc;
use std::time::Duration;

use crate::connectors::latency::{BatchClock, LatencySlot};
use crate::connectors::registry::{
    Checkpointing, Committer, SinkMode, SinkOpen, SinkRestore, SourceOpen,
};
use crate::engine::errors::RunError;
use crate::engine::recovery::{self, Marker};
use crate::job::{CheckpointMode, JobSpec};
use crate::model::{SinkWriter, SourceReader};
use crate::state::checkpoint::CheckpointStore;
use crate::state::restore::{Restore, RestoreSource};
use crate::state::savepoint::Savepoint;

/// The clock that lets a sink that measures latency (a `latency = true`
/// blackhole) measure from when a source that stamps its batches (a
/// wall-clock generator) made each batch, to the µs: for such jobs only.
pub(crate) fn batch_clock(spec: &JobSpec) -> Option<Arc<BatchClock>> {
    let stamped = spec.source.connector.get().wall_clock();
    let measured = spec.sink.get().measures_latency();
    (stamped && measured).then(|| Arc::new(BatchClock::default()))
}

/// Opens source subtask `subtask` of the job's source, at the position
/// `restore` holds.
pub(crate) fn open_source(
    spec: &JobSpec,
    restore: Option<&Restore>,
    subtask: u32,
    clock: Option<&Arc<BatchClock>>,
) -> Result<Box<dyn SourceReader>, RunError> {
    spec.source
        .connector
        .get()
        .open(&SourceOpen {
            subtask,
            batch_size: spec.source.batch_size,
            position: restore.map(|r| &r.meta.source.position),
            clock,
        })
        .map_err(RunError::Setup)
}

/// Opens the job's sink, restored from `restore`; `latency` is where a
/// sink that measures latency reports it.
pub(crate) fn open_sink(
    spec: &JobSpec,
    restore: Option<&Restore>,
    latency: &LatencySlot,
    store: Option<&CheckpointStore>,
    clock: Option<&Arc<BatchClock>>,
) -> Result<Box<dyn SinkWriter>, RunError> {
    let mode = match spec.checkpoint.as_ref().filter(|c| c.interval.is_some()) {
        None => SinkMode::Direct,
        Some(c) if c.mode == CheckpointMode::AtLeastOnce => SinkMode::AtLeastOnce,
        Some(_) => SinkMode::ExactlyOnce,
    };
    let exactly_once = exactly_once(spec)?;
    let store_instance = match (exactly_once, store) {
        (true, Some(store)) => store
            .instance()
            .map_err(|e| RunError::Setup(e.to_string()))?,
        _ => String::new(),
    };
    spec.sink
        .get()
        .open(&SinkOpen {
            mode,
            exactly_once,
            restored: restore.map(|r| SinkRestore {
                id: r.meta.id,
                state: r.meta.sink.as_ref(),
                savepoint: matches!(r.source, RestoreSource::Savepoint(_)),
            }),
            store_instance: &store_instance,
            latency,
            clock,
        })
        .map_err(RunError::Setup)
}

/// How the job takes periodic checkpoints, as its sink needs to know
/// (none: it takes none).
fn checkpointing(spec: &JobSpec) -> Option<Checkpointing> {
    let cp = spec.checkpoint.as_ref()?;
    Some(Checkpointing {
        interval: cp.interval?,
        exactly_once: cp.mode == CheckpointMode::ExactlyOnce,
        timeout: cp.timeout,
        longest_restart_delay: spec
            .restart
            .as_ref()
            .map_or(Duration::ZERO, |r| r.longest_delay()),
    })
}

/// Whether the job's sink writes exactly once (checked before anything
/// runs: a sink asked to that cannot is a setup error).
pub(crate) fn exactly_once(spec: &JobSpec) -> Result<bool, RunError> {
    spec.sink
        .get()
        .exactly_once(checkpointing(spec).as_ref())
        .map_err(RunError::Setup)
}

/// The job's sink, when it writes exactly once under commit markers of
/// its own: which checkpoint a run restores is then what its last commit
/// names (see [`recovery`]).
pub(crate) fn committer(spec: &JobSpec) -> Result<Option<&dyn Committer>, RunError> {
    Ok(if exactly_once(spec)? {
        spec.sink.get().committer()
    } else {
        None
    })
}

/// What the exactly-once Kafka sink's commit markers say about `store`.
/// Fences the producer of an earlier run first, so that its open
/// transaction is settled.
pub(crate) fn commit_marker(
    c: &dyn Committer,
    store: &CheckpointStore,
) -> Result<Marker, RunError> {
    let instance = store
        .instance()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let last = c.last_committed().map_err(RunError::Setup)?;
    Ok(match last {
        Some((store, checkpoint)) if store == instance => Marker::Own(checkpoint),
        Some((_, checkpoint)) => {
            tracing::info!(
                "the last Kafka transaction committed under `{}` is checkpoint {checkpoint} of another state directory",
                c.prefix(),
            );
            Marker::Foreign(checkpoint)
        }
        None => Marker::None,
    })
}

/// Refuses a savepoint whose output an exactly-once Kafka sink never
/// committed (the process died between writing it and the commit, or the
/// commit failed): restoring it would lose that output. Checked with the
/// commit markers, as a checkpoint restore is ([`recovery::savepoint_committed`]).
pub(crate) fn check_savepoint_committed(c: &dyn Committer, sp: &Savepoint) -> Result<(), RunError> {
    let Some(commit) = &sp.meta.sink_commit else {
        return Ok(());
    };
    if commit.transactional_id_prefix != c.prefix() {
        return Ok(());
    }
    let last = c.last_committed().map_err(RunError::Setup)?;
    recovery::savepoint_committed(
        &sp.dir.display().to_string(),
        sp.meta.id,
        &commit.store,
        c.prefix(),
        last.as_ref()
            .map(|(store, checkpoint)| (store.as_str(), *checkpoint)),
    )
    .map_err(RunError::Setup)
}

/// Records in the state directory which prefix its exactly-once Kafka
/// sink commits under (see [`recovery`]); when the prefix changed, first
/// aborts a transaction an earlier run may have left open under the old
/// one, so that it does not hold `read_committed` consumers up until it
/// times out.
pub(crate) fn record_sink(store: &CheckpointStore, c: &dyn Committer) -> Result<(), RunError> {
    let setup = |e: crate::state::checkpoint::CheckpointError| RunError::Setup(e.to_string());
    let old = store.sink_record().map_err(setup)?;
    if old.as_ref().is_some_and(|r| r.prefix == c.prefix()) {
        return Ok(());
    }
    if let Some(old) = &old {
        if let Err(e) = c.abort_left_open(&old.prefix) {
            tracing::warn!(
                "the job's transactional id prefix was `{}`: cannot abort a transaction left open under `{}-0` ({e}); abort it with Kafka's tools, or wait for its timeout",
                old.prefix,
                old.prefix
            );
        }
    }
    store
        .set_sink_record(&crate::state::checkpoint::SinkRecord {
            prefix: c.prefix().to_string(),
            committed: false,
        })
        .map_err(setup)
}
