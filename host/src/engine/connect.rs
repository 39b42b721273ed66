//! Opening the job's source and sink connectors for a run, and what the
//! engine asks of a sink that commits under its own markers (an
//! exactly-once Kafka sink): whether it writes exactly once, which
//! checkpoint its last commit names, and the prefix it commits under.

use std::sync::Arc;
use std::time::Duration;

use crate::connectors;
use crate::connectors::blackhole::LatencySlot;
use crate::connectors::file::SinkMode;
use crate::connectors::kafka::sink::{Delivery, KafkaSinkConfig};
use crate::connectors::latency::BatchClock;
use crate::engine::errors::RunError;
use crate::engine::recovery::{self, Marker};
use crate::job::{CheckpointMode, JobSpec, RestartStrategy, SinkSpec, SourceConnector};
use crate::model::{SinkWriter, SourcePosition, SourceReader};
use crate::state::checkpoint::CheckpointStore;
use crate::state::restore::{Restore, RestoreSource};
use crate::state::savepoint::Savepoint;

/// The clock that lets a `latency = true` blackhole sink measure from when
/// a wall-clock generator made each batch, to the µs: for such jobs only.
pub(crate) fn batch_clock(spec: &JobSpec) -> Option<Arc<BatchClock>> {
    let generator = matches!(&spec.source.connector, SourceConnector::Generator(c) if c.wall_clock);
    let sink = matches!(&spec.sink, SinkSpec::Blackhole(c) if c.latency);
    (generator && sink).then(|| Arc::new(BatchClock::default()))
}

/// Opens source subtask `subtask` of the job's source.
pub(crate) fn open_source(
    spec: &JobSpec,
    restore: Option<&Restore>,
    subtask: u32,
    clock: Option<&Arc<BatchClock>>,
) -> Result<Box<dyn SourceReader>, RunError> {
    let position = restore.map(|r| &r.meta.source.position);
    let batch_size = spec.source.batch_size;
    let reader: Box<dyn SourceReader> = match &spec.source.connector {
        SourceConnector::File(c) => {
            connectors::file::open_source(&c.path, c.format, batch_size, c.max_line_size, position)
                .map_err(RunError::Setup)?
        }
        SourceConnector::Stdin(c) => Box::new(connectors::stdio::StdinSource::start(
            c.format,
            batch_size,
            c.max_line_size,
        )),
        SourceConnector::Generator(c) => {
            let mut generator = connectors::generator::Generator::new(
                c.count,
                c.keys,
                c.value_size,
                c.seed,
                c.rate,
                batch_size,
            )
            .with_wall_clock(c.wall_clock)
            .with_batch_clock(clock.cloned());
            match position {
                Some(SourcePosition::Generator { next }) => generator.seek(*next),
                Some(other) => {
                    return Err(RunError::Setup(format!(
                        "the checkpoint holds a {other:?} position, not a generator position"
                    )))
                }
                None => {}
            }
            Box::new(generator)
        }
        SourceConnector::Kafka(c) => Box::new(
            connectors::kafka::source::KafkaSource::open(
                c,
                subtask,
                c.parallelism,
                batch_size,
                position,
            )
            .map_err(RunError::Setup)?,
        ),
    };
    Ok(reader)
}

pub(crate) fn open_sink(
    spec: &JobSpec,
    restore: Option<&Restore>,
    latency_out: &LatencySlot,
    store: Option<&CheckpointStore>,
    clock: Option<&Arc<BatchClock>>,
) -> Result<Box<dyn SinkWriter>, RunError> {
    let mode = match spec.checkpoint.as_ref().filter(|c| c.interval.is_some()) {
        None => SinkMode::Direct,
        Some(c) if c.mode == CheckpointMode::AtLeastOnce => SinkMode::AtLeastOnce,
        Some(_) => SinkMode::ExactlyOnce,
    };
    Ok(match &spec.sink {
        SinkSpec::File(c) => {
            let path = &c.path;
            let restored = restore.map(|r| {
                let state = r.meta.sink.as_ref();
                let len = std::fs::metadata(path).map_or(0, |m| m.len());
                let state = match (&r.source, state) {
                    // A savepoint restored where its output is not (a moved job,
                    // a new output file): the output is appended to, not cut.
                    (RestoreSource::Savepoint(_), Some(s)) if len < s.output_len => {
                        tracing::warn!(
                            "sink file `{}` is shorter ({len} bytes) than when the savepoint was taken ({} bytes): appending to it",
                            path.display(),
                            s.output_len
                        );
                        None
                    }
                    _ => state,
                };
                (r.meta.id, state)
            });
            Box::new(
                connectors::file::FileSink::open(path, c.format, mode, restored)
                    .map_err(RunError::Setup)?,
            )
        }
        SinkSpec::Stdout(c) => Box::new(connectors::stdio::StdoutSink::new(c.format)),
        SinkSpec::Blackhole(c) => Box::new(connectors::blackhole::BlackholeSink::new(
            c.latency.then(|| latency_out.clone()),
            clock.cloned(),
        )),
        SinkSpec::Kafka(c) => {
            let exactly_once = kafka_exactly_once(spec, c)?;
            let instance = match (exactly_once, store) {
                (true, Some(store)) => store
                    .instance()
                    .map_err(|e| RunError::Setup(e.to_string()))?,
                _ => String::new(),
            };
            Box::new(
                connectors::kafka::sink::KafkaSink::open(c, exactly_once, &instance)
                    .map_err(RunError::Setup)?,
            )
        }
    })
}

/// Whether a Kafka sink writes exactly once: its `delivery`, else exactly
/// once when the job takes checkpoints in exactly-once mode. Exactly-once
/// needs periodic checkpoints in that mode, and a transaction timeout that
/// outlasts a checkpoint (checked here, before anything runs).
pub(crate) fn kafka_exactly_once(spec: &JobSpec, c: &KafkaSinkConfig) -> Result<bool, RunError> {
    let checkpoint = spec.checkpoint.as_ref().filter(|c| c.interval.is_some());
    let aligned = checkpoint.is_some_and(|c| c.mode == CheckpointMode::ExactlyOnce);
    match c.delivery {
        Some(Delivery::AtLeastOnce) => Ok(false),
        None if !aligned => Ok(false),
        Some(Delivery::ExactlyOnce) if !aligned => Err(RunError::Setup(format!(
            "[sink] delivery = \"exactly-once\" needs periodic checkpoints in exactly-once mode ([checkpoint] interval{}): Kafka transactions are committed at checkpoints (or set delivery = \"at-least-once\")",
            if checkpoint.is_some() { " with mode = \"exactly-once\"" } else { "" }
        ))),
        _ => {
            let cp = checkpoint.expect("aligned implies a checkpoint");
            let restart_delay = spec.restart.as_ref().map_or(Duration::ZERO, |r| {
                if r.strategy == RestartStrategy::Exponential {
                    r.max_delay.unwrap_or(r.delay * (1u32 << r.attempts.min(20)))
                } else {
                    r.delay
                }
            });
            connectors::kafka::sink::check_transaction_timeout(
                c.transaction_timeout,
                cp.interval.expect("filtered"),
                cp.timeout,
                restart_delay,
            )
            .map_err(RunError::Setup)?;
            Ok(true)
        }
    }
}

/// What the exactly-once Kafka sink's commit markers say about `store`.
/// Fences the producer of an earlier run first, so that its open
/// transaction is settled.
pub(crate) fn commit_marker(
    c: &KafkaSinkConfig,
    store: &CheckpointStore,
) -> Result<Marker, RunError> {
    let instance = store
        .instance()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let last = connectors::kafka::sink::last_committed(c).map_err(RunError::Setup)?;
    Ok(match last {
        Some(m) if m.store == instance => Marker::Own(m.checkpoint),
        Some(m) => {
            tracing::info!(
                "the last Kafka transaction committed under `{}` is checkpoint {} of another state directory",
                c.transactional_id_prefix,
                m.checkpoint
            );
            Marker::Foreign(m.checkpoint)
        }
        None => Marker::None,
    })
}

/// Refuses a savepoint whose output an exactly-once Kafka sink never
/// committed (the process died between writing it and the commit, or the
/// commit failed): restoring it would lose that output. Checked with the
/// commit markers, as a checkpoint restore is ([`recovery::savepoint_committed`]).
pub(crate) fn check_savepoint_committed(
    c: &KafkaSinkConfig,
    sp: &Savepoint,
) -> Result<(), RunError> {
    let Some(commit) = &sp.meta.sink_commit else {
        return Ok(());
    };
    if commit.transactional_id_prefix != c.transactional_id_prefix {
        return Ok(());
    }
    let last = connectors::kafka::sink::last_committed(c).map_err(RunError::Setup)?;
    recovery::savepoint_committed(
        &sp.dir.display().to_string(),
        sp.meta.id,
        &commit.store,
        &c.transactional_id_prefix,
        last.as_ref().map(|m| (m.store.as_str(), m.checkpoint)),
    )
    .map_err(RunError::Setup)
}

/// Records in the state directory which prefix its exactly-once Kafka
/// sink commits under (see [`recovery`]); when the prefix changed, first
/// aborts a transaction an earlier run may have left open under the old
/// one, so that it does not hold `read_committed` consumers up until it
/// times out.
pub(crate) fn record_sink(store: &CheckpointStore, c: &KafkaSinkConfig) -> Result<(), RunError> {
    let setup = |e: crate::state::checkpoint::CheckpointError| RunError::Setup(e.to_string());
    let old = store.sink_record().map_err(setup)?;
    if old
        .as_ref()
        .is_some_and(|r| r.prefix == c.transactional_id_prefix)
    {
        return Ok(());
    }
    if let Some(old) = &old {
        if let Err(e) = connectors::kafka::sink::abort_left_open(c, &old.prefix) {
            tracing::warn!(
                "the job's transactional id prefix was `{}`: cannot abort a transaction left open under `{}-0` ({e}); abort it with Kafka's tools, or wait for its timeout",
                old.prefix,
                old.prefix
            );
        }
    }
    store
        .set_sink_record(&crate::state::checkpoint::SinkRecord {
            prefix: c.transactional_id_prefix.clone(),
            committed: false,
        })
        .map_err(setup)
}
