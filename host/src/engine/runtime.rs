//! The job runtime: loads a job's operators, wires source → (partitioner) →
//! operator subtasks → sink with bounded channels, runs it to the end of its
//! input, and reports the first failure.
//!
//! Threads and tokio: every stage of the data path (the source, each operator
//! subtask, the sink, the dead-letter writer) runs on a thread of its own, and
//! so does the checkpoint coordinator, whose sled writes block; tokio runs the
//! control plane that watches them (and will serve REST). Guest code must not run inside a tokio context:
//! wasmtime-wasi's synchronous bindings `block_on` the ambient runtime, which
//! panics there. Crossbeam channels connect the stages because a subtask
//! selects over several inputs with a deadline (processing-time timers) from
//! a plain thread, and will hold back inputs for barrier alignment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::connectors;
use crate::connectors::dead_letter::{self, DeadLetter};
use crate::connectors::file::SinkMode;
use crate::connectors::kafka::sink::{Delivery, KafkaSinkConfig};
use crate::connectors::latency::BatchClock;
use crate::engine::control::{JobControl, JobState, OperatorStatus};
use crate::engine::coordinator::{
    Ack, Coordinator, CoordinatorEnd, OperatorInfo, SinkNotice, Trigger,
};
use crate::engine::job::{
    CheckpointMode, InputMode, JobSpec, RestartSpec, RestartStrategy, SinkSpec, SourceConnector,
};
use crate::engine::partition::{Router, Routing};
use crate::engine::recovery::{self, Marker};
use crate::engine::stages::{SinkCheckpointing, SourceCheckpointing};
use crate::engine::stream::{self, Inputs, Message, StageError};
use crate::engine::subtask::Subtask;
use crate::model::keygroup;
use crate::model::SourcePosition;
use crate::model::TaskInfo;
use crate::model::{SinkWriter, SourceReader};
use crate::state::checkpoint::{CheckpointMeta, CheckpointStore, OperatorMeta};
use crate::state::restore::{self, Restore, RestorePlan, RestoreSource};
use crate::state::savepoint::Savepoint;
use crate::wasm::component::Components;
use crate::wasm::native::NativeLogic;
use crate::wasm::operator::OperatorImpl;

/// What a finished job did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Events read by the source.
    pub events_in: u64,
    /// Events written by the sink.
    pub events_out: u64,
    /// Events sent to the dead-letter output.
    pub dead_letters: u64,
    /// Wall-clock time from the start of the data path to its end.
    pub elapsed: Duration,
    /// The job was stopped with this savepoint.
    pub stopped_with_savepoint: Option<PathBuf>,
    /// End-to-end latencies, from a `latency = true` blackhole sink.
    pub latency: Option<crate::connectors::blackhole::LatencyHistogram>,
    /// Stopped gracefully on a signal, at this last checkpoint (0: the job
    /// takes no checkpoints).
    pub shut_down_at: Option<u64>,
    /// A stop-with-savepoint failed (why) after its checkpoint completed:
    /// the run ended, the job resumes from that checkpoint.
    pub resume: Option<String>,
}

/// Why a job did not run to its end. The message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A check before the job started failed; nothing was written.
    #[error("{0}")]
    Setup(String),
    /// The job failed while running.
    #[error("{0}")]
    Failed(String),
}

/// The wiring of one edge of the job graph: for each upstream instance, the
/// senders it routes over; for each downstream instance, its receivers.
struct Edge {
    senders: Vec<Vec<Sender<Message>>>,
    receivers: Vec<Vec<Receiver<Message>>>,
}

fn wire(upstream: usize, downstream: usize, one_to_one: bool) -> Edge {
    let mut senders: Vec<Vec<Sender<Message>>> = (0..upstream).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Receiver<Message>>> = (0..downstream).map(|_| Vec::new()).collect();
    for (u, out) in senders.iter_mut().enumerate() {
        for (d, ins) in receivers.iter_mut().enumerate() {
            if one_to_one && u != d {
                continue;
            }
            let (tx, rx) = stream::channel();
            out.push(tx);
            ins.push(rx);
        }
    }
    Edge { senders, receivers }
}

enum Done {
    Source(Result<u64, StageError>),
    Sink(Result<u64, StageError>),
    DeadLetters(Result<u64, String>),
    Subtask(Result<(), StageError>),
    Coordinator(Result<CoordinatorEnd, String>),
}

/// How `weir run` chooses where to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Ignore existing checkpoints.
    pub fresh: bool,
    /// Restore this checkpoint rather than the newest.
    pub from_checkpoint: Option<u64>,
    /// Restore this savepoint directory.
    pub from_savepoint: Option<PathBuf>,
    /// Let a restore drop saved state that the job has no place for.
    pub allow_non_restored_state: bool,
    /// Serve the REST API here (overrides the job file's `[rest] addr`).
    pub rest_addr: Option<String>,
    /// Once the REST API listens, write its address here (`HOST:PORT` and a
    /// newline), atomically: a script or a test waits for this file instead
    /// of reading the log.
    pub ready_file: Option<PathBuf>,
    /// Benchmarks: operator ID → native logic to run instead of its `.wasm`.
    pub native: BTreeMap<String, String>,
    /// What serves the REST API when an address is set (the `api` layer's
    /// server, handed down so that the engine does not name the layer above).
    pub serve: Option<ServeFn>,
}

/// Starts a REST server for a job at `addr`; resolves to the address bound.
pub type ServeFn = fn(
    String,
    Arc<JobControl>,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<std::net::SocketAddr, String>> + Send>,
>;

/// Loads every operator of `spec`, with messages that name the job file
/// line; an operator ID in `native` runs that native logic instead (benchmarks).
pub fn load_operators(
    components: &Components,
    spec: &JobSpec,
    job_file: &Path,
    native: &BTreeMap<String, String>,
) -> Result<Vec<OperatorImpl>, RunError> {
    for id in native.keys() {
        if !spec.operators.iter().any(|o| &o.id == id) {
            return Err(RunError::Setup(format!(
                "--native-operator: the job has no operator `{id}`"
            )));
        }
    }
    spec.operators
        .iter()
        .map(|op| {
            if let Some(name) = native.get(&op.id) {
                let logic = NativeLogic::from_name(name).map_err(RunError::Setup)?;
                return Ok(OperatorImpl::Native(logic, logic.spec()));
            }
            components
                .load(&op.wasm)
                .map(OperatorImpl::Wasm)
                .map_err(|e| {
                    RunError::Setup(format!(
                        "operator `{}` ({}:{}): {e}",
                        op.id,
                        job_file.display(),
                        op.line
                    ))
                })
        })
        .collect()
}

/// The clock that lets a `latency = true` blackhole sink measure from when
/// a wall-clock generator made each batch, to the µs: for such jobs only.
fn batch_clock(spec: &JobSpec) -> Option<Arc<BatchClock>> {
    let generator = matches!(&spec.source.connector, SourceConnector::Generator(c) if c.wall_clock);
    let sink = matches!(&spec.sink, SinkSpec::Blackhole(c) if c.latency);
    (generator && sink).then(|| Arc::new(BatchClock::default()))
}

/// Opens source subtask `subtask` of the job's source.
fn open_source(
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

fn open_sink(
    spec: &JobSpec,
    restore: Option<&Restore>,
    latency_out: &Arc<JobControl>,
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
            c.latency.then(|| latency_out.latency.clone()),
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
fn kafka_exactly_once(spec: &JobSpec, c: &KafkaSinkConfig) -> Result<bool, RunError> {
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
fn commit_marker(c: &KafkaSinkConfig, store: &CheckpointStore) -> Result<Marker, RunError> {
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

/// Picks the checkpoint to restore, if any ([`recovery::choose`]), from
/// the completed checkpoints of `store` with an ID of at least `min_id`;
/// with an exactly-once Kafka sink, by its commit markers. Completed
/// checkpoints above the one whose output was committed last are forgotten:
/// their output never was.
fn choose_checkpoint(
    store: &CheckpointStore,
    options: &RunOptions,
    min_id: u64,
    kafka_eos: Option<&KafkaSinkConfig>,
) -> Result<Option<CheckpointMeta>, RunError> {
    let setup = |e: crate::state::checkpoint::CheckpointError| RunError::Setup(e.to_string());
    let completed = store.list().map_err(setup)?;
    if options.fresh && !completed.is_empty() {
        tracing::warn!(
            "--fresh: ignoring {} checkpoint(s) in `{}`; the job starts from the beginning",
            completed.len(),
            store.dir().display()
        );
    }
    let record = store.sink_record().map_err(setup)?;
    let marker = match kafka_eos {
        Some(c) if !options.fresh => Some(commit_marker(c, store)?),
        _ => None,
    };
    let ids: Vec<u64> = completed.iter().map(|m| m.id).collect();
    let dir = store.dir().display().to_string();
    let situation = recovery::Situation {
        completed: &ids,
        fresh: options.fresh,
        from_checkpoint: options.from_checkpoint,
        min_id,
        commits: kafka_eos
            .zip(marker.clone())
            .map(|(c, marker)| recovery::Commits {
                marker,
                record: record.as_ref(),
                prefix: &c.transactional_id_prefix,
            }),
        dir: &dir,
    };
    let chosen = recovery::choose(&situation).map_err(RunError::Setup)?;
    if let (Some(Marker::Own(c)), None) = (&marker, options.from_checkpoint) {
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

/// Refuses a savepoint whose output an exactly-once Kafka sink never
/// committed (the process died between writing it and the commit, or the
/// commit failed): restoring it would lose that output. Checked with the
/// commit markers, as a checkpoint restore is ([`recovery::savepoint_committed`]).
fn check_savepoint_committed(c: &KafkaSinkConfig, sp: &Savepoint) -> Result<(), RunError> {
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

/// The logic to run from checkpoint `meta`, and the swaps it records: for
/// each operator, the `.wasm` the checkpoint says it ran when that came
/// from a live swap and the job file still names the `.wasm` it named then
/// (its kept copy, [`CheckpointStore::wasm_path`]); else the job file's.
fn logic_at(
    components: &Components,
    store: &CheckpointStore,
    meta: &CheckpointMeta,
    job_loaded: &[OperatorImpl],
    spec: &JobSpec,
) -> Result<(Vec<OperatorImpl>, Vec<serde_json::Value>), RunError> {
    let mut out = job_loaded.to_vec();
    let Some(logic) = store
        .logic(meta.id)
        .map_err(|e| RunError::Setup(e.to_string()))?
    else {
        return Ok((out, Vec::new()));
    };
    for (i, op) in spec.operators.iter().enumerate() {
        let Some(l) = logic.operators.iter().find(|l| l.id == op.id) else {
            continue;
        };
        if l.sha256 == l.job_sha256 || l.sha256 == job_loaded[i].sha256() {
            continue;
        }
        if l.job_sha256 != job_loaded[i].sha256() {
            tracing::info!(
                "operator `{}`: checkpoint {} ran {} {} swapped in live, but the job file now names another .wasm: it runs the job file's",
                op.id,
                meta.id,
                l.name,
                l.version
            );
            continue;
        }
        let path = store.wasm_path(&l.sha256);
        let swapped = components.load(&path).map_err(|e| {
            RunError::Setup(format!(
                "operator `{}`: checkpoint {} ran {} {} (swapped in live), whose kept copy cannot be loaded: {e}",
                op.id, meta.id, l.name, l.version
            ))
        })?;
        tracing::info!(
            "operator `{}` runs {} {} ({}), swapped in live before checkpoint {}",
            op.id,
            l.name,
            l.version,
            path.display(),
            meta.id
        );
        out[i] = OperatorImpl::Wasm(swapped);
    }
    Ok((out, logic.swaps))
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

/// Checks that `meta` fits the job and plans how its state maps onto the
/// job's operators; prints the plan (see [`crate::engine::upgrade`]) and
/// fails with its first refusal.
fn plan_restore(
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
    let plan = restore_plan(spec, loaded, &meta, &source, allow_non_restored);
    let shown = crate::engine::upgrade::describe(spec, loaded, &meta, &source, &plan);
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

/// Checks, before anything runs, that the job's source can resume from the
/// position `restore` holds: the same kind of source, and a file not shorter.
fn check_source_position(
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
    let mismatch = |source: &str| {
        format!(
            "{what} holds a {} position and the job ({}) reads {source}: a source resumes only from a position of its own kind",
            position.kind(),
            job_file.display()
        )
    };
    match (&spec.source.connector, position) {
        (SourceConnector::File(c), SourcePosition::File { offset, .. }) => {
            let path = &c.path;
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            if *offset > len {
                return Err(format!(
                    "source file `{}` is shorter ({len} bytes) than the position in {what} ({offset} bytes): was it replaced?",
                    path.display()
                ));
            }
            Ok(())
        }
        (SourceConnector::Generator(_), SourcePosition::Generator { .. }) => Ok(()),
        (SourceConnector::Kafka(c), SourcePosition::Kafka { topic, .. }) => {
            if *topic != c.topic {
                return Err(format!(
                    "{what} holds offsets of Kafka topic `{topic}` and the job ({}) reads topic `{}`: a source resumes only from its own topic's offsets",
                    job_file.display(),
                    c.topic
                ));
            }
            Ok(())
        }
        (SourceConnector::Kafka(_), _) => Err(mismatch("Kafka")),
        (SourceConnector::File(_), _) => Err(mismatch("a file")),
        (SourceConnector::Generator(_), _) => Err(mismatch("a generator")),
        (SourceConnector::Stdin(_), _) => Err(mismatch("stdin")),
    }
}

/// Writes `addr` and a newline to `path` atomically (a file beside it,
/// then renamed over it): whoever sees the file reads the whole address.
fn write_ready_file(path: &Path, addr: std::net::SocketAddr) -> Result<(), String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write the ready file `{}`: {e}", path.display())
        })
}

/// Runs the job described by `spec` (read from `job_file`) to the end of its
/// input (or until stopped with a savepoint), restoring from a checkpoint or
/// savepoint and restarting after failures as the job file and `options`
/// say. With a REST address, the REST API is served while it runs.
pub fn run(spec: &JobSpec, job_file: &Path, options: &RunOptions) -> Result<JobReport, RunError> {
    let components = Arc::new(
        Components::new().map_err(|e| RunError::Setup(format!("cannot start wasmtime: {e}")))?,
    );
    // What the job file names; `loaded` is what runs (a live swap, or a
    // checkpoint taken after one, changes it).
    let job_loaded = load_operators(&components, spec, job_file, &options.native)?;
    let mut loaded = job_loaded.clone();
    if let SourceConnector::File(c) = &spec.source.connector {
        let path = &c.path;
        if !path.is_file() {
            return Err(RunError::Setup(format!(
                "source file `{}` does not exist ({} [source] path)",
                path.display(),
                job_file.display()
            )));
        }
    }
    let replayable = !matches!(spec.source.connector, SourceConnector::Stdin(_));
    if options.from_savepoint.is_some() && !replayable {
        return Err(RunError::Setup(format!(
            "--from-savepoint: {} reads stdin, which cannot be read from a savepoint's position",
            job_file.display()
        )));
    }
    // Every check of a savepoint runs before the state directory is touched.
    let savepoint = match &options.from_savepoint {
        Some(dir) => Some(Arc::new(open_savepoint(dir)?)),
        None => None,
    };
    let savepoint_restore = match &savepoint {
        Some(sp) => Some(plan_restore(
            spec,
            &job_loaded,
            savepoint_meta(sp),
            RestoreSource::Savepoint(sp.clone()),
            options.allow_non_restored_state,
        )?),
        None => None,
    };
    let checkpoint = spec.checkpoint.as_ref().filter(|c| c.interval.is_some());
    if checkpoint.is_some() && !replayable {
        return Err(RunError::Setup(format!(
            "{}: checkpoints need a source that can be read again (file or generator), not stdin",
            job_file.display()
        )));
    }
    if checkpoint.is_none() && options.from_checkpoint.is_some() {
        return Err(RunError::Setup(format!(
            "--from-checkpoint: {} takes no checkpoints (it has no [checkpoint] interval)",
            job_file.display()
        )));
    }
    // An exactly-once Kafka sink: the checkpoint to restore is the one
    // whose transaction committed last (see `recovery`). The process holds
    // the sink's transactional id prefix while it runs, so that a second
    // process on it is refused rather than fencing this one.
    let kafka_eos = match &spec.sink {
        SinkSpec::Kafka(c) if kafka_exactly_once(spec, c)? => Some(c),
        _ => None,
    };
    let _prefix_lock = match kafka_eos {
        Some(c) => Some(connectors::kafka::sink::lock_prefix(c).map_err(RunError::Setup)?),
        None => None,
    };
    if let (Some(c), Some(sp)) = (kafka_eos, &savepoint) {
        check_savepoint_committed(c, sp)?;
    }
    let store = LazyStore {
        spec: checkpoint.map(|c| (c.dir.clone(), c.retain)),
        store: Default::default(),
        min_id: savepoint_restore.as_ref().map_or(0, |r| r.meta.id + 1),
    };
    // A checkpoint restore also says which logic runs (see `logic_at`).
    let checkpoint_restore = |options: &RunOptions,
                              min_id: u64,
                              loaded: &mut Vec<OperatorImpl>,
                              history: &mut Vec<serde_json::Value>|
     -> Result<Option<Restore>, RunError> {
        let Some(store) = store.get()? else {
            return Ok(None);
        };
        match choose_checkpoint(&store, options, min_id, kafka_eos)? {
            Some(meta) => {
                let (logic, swaps) = logic_at(&components, &store, &meta, &job_loaded, spec)?;
                *loaded = logic;
                *history = swaps;
                Ok(Some(plan_restore(
                    spec,
                    loaded,
                    meta,
                    RestoreSource::Checkpoint(store.clone()),
                    options.allow_non_restored_state,
                )?))
            }
            None => {
                *loaded = job_loaded.clone();
                Ok(None)
            }
        }
    };
    let mut history = Vec::new();
    // Restoring a savepoint, the state directory is opened only once every
    // subtask has restored and migrated its state: a failed restore leaves it untouched.
    let initial = match savepoint_restore {
        Some(r) => Some(r),
        None => checkpoint_restore(options, 0, &mut loaded, &mut history)?,
    };
    let initial_loaded = loaded.clone();
    if let Some(r) = &initial {
        check_source_position(spec, job_file, r)?;
    }
    let mut restore = initial.clone();
    if let Some(r) = &restore {
        if r.meta.finished {
            tracing::info!(
                "job `{}` already finished: {} was taken at the end of its input; nothing to do{}",
                spec.name,
                r.savepoint_dir()
                    .map_or(format!("checkpoint {}", r.meta.id), |d| format!(
                        "savepoint `{}`",
                        d.display()
                    )),
                if r.savepoint_dir().is_some() {
                    ""
                } else {
                    " (use --fresh to run it again)"
                }
            );
            return Ok(JobReport::default());
        }
        match r.savepoint_dir() {
            Some(dir) => tracing::info!(
                checkpoint_id = r.meta.id,
                "restoring savepoint `{}`",
                dir.display()
            ),
            None => tracing::info!(
                checkpoint_id = r.meta.id,
                "restoring checkpoint {}",
                r.meta.id
            ),
        }
    }

    let job_dir = job_file.parent().map(Path::to_path_buf).unwrap_or_default();
    let job_dir = std::path::absolute(&job_dir).unwrap_or(job_dir);
    let control = Arc::new(JobControl::new(
        &spec.name,
        spec.operators
            .iter()
            .zip(&loaded)
            .map(|(o, l)| OperatorStatus {
                id: o.id.clone(),
                name: l.spec().name.clone(),
                version: l.spec().version.clone(),
                wasm_sha256: l.sha256().to_string(),
                parallelism: o.parallelism,
            })
            .collect(),
        &job_dir,
        spec.savepoint.as_ref().map(|s| s.dir.clone()),
        replayable,
    ));
    control.shadow.configure(spec, &loaded, components.clone());
    let plane = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weir-control")
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("cannot start the control plane: {e}")))?;
    let rest_addr = options
        .rest_addr
        .clone()
        .or_else(|| spec.rest.as_ref().map(|r| r.addr.clone()));
    let serving = match &rest_addr {
        Some(addr) => {
            let serve = options.serve.ok_or_else(|| {
                RunError::Setup("a REST address is set, but no REST server was given".to_string())
            })?;
            let bound = plane
                .block_on(serve(addr.clone(), control.clone()))
                .map_err(RunError::Setup)?;
            // Printed whatever WEIR_LOG says: scripts and tests read it.
            eprintln!("weir: REST API of job `{}` at http://{bound}", spec.name);
            if let Some(path) = &options.ready_file {
                write_ready_file(path, bound).map_err(RunError::Setup)?;
            }
            true
        }
        None => false,
    };
    handle_signals(&plane, &control, &spec.shutdown, &spec.name);
    let sampler = control.clone();
    plane.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            sampler.sample();
        }
    });

    let restart = spec.restart.clone().unwrap_or(RestartSpec {
        strategy: RestartStrategy::None,
        attempts: 0,
        delay: Duration::ZERO,
        max_delay: None,
    });
    let max_restarts = if restart.strategy == RestartStrategy::None {
        0
    } else {
        restart.attempts
    };
    let mut attempt = 0u32;
    // After a failure, the checkpoint to restore is chosen again before the
    // next attempt (an exactly-once Kafka sink asks the cluster which one
    // it committed): a failure to choose, or any setup error of a restart
    // (the broker is still away), fails that attempt, not the job.
    let mut choose_again = false;
    control.restore_swap_history(&history);
    let choose = |restore: &mut Option<Restore>,
                  loaded: &mut Vec<OperatorImpl>|
     -> Result<String, RunError> {
        let first_id = store.first_id()?;
        let mut history = Vec::new();
        *restore = checkpoint_restore(&RunOptions::default(), first_id, loaded, &mut history)?;
        if restore.is_none() {
            *restore = initial.clone();
            *loaded = initial_loaded.clone();
        }
        Ok(restore
            .as_ref()
            .map_or("the beginning".to_string(), |r| match r.savepoint_dir() {
                Some(d) => format!("savepoint `{}`", d.display()),
                None => format!("checkpoint {}", r.meta.id),
            }))
    };
    let result = loop {
        let can_restart = attempt < max_restarts && replayable;
        control.set_state(JobState::Running);
        let outcome = 'attempt: {
            if choose_again {
                match choose(&mut restore, &mut loaded) {
                    Ok(from) => tracing::info!("job `{}` restarts from {from}", spec.name),
                    Err(e) => break 'attempt Err(e),
                }
                choose_again = false;
            }
            let wiring = Wiring {
                spec,
                loaded: &loaded,
                job_loaded: &job_loaded,
                components: &components,
                store: &store,
                restore: restore.as_ref(),
                attempt,
                wait_all: can_restart,
                control: &control,
                plane: &plane,
            };
            run_attempt(wiring)
        };
        let outcome = match outcome {
            Err(RunError::Setup(message)) if attempt > 0 => Err(RunError::Failed(message)),
            other => other,
        };
        // Swaps that passed their probation run on, whatever happens next.
        if let Some(now) = control.current_logic() {
            loaded = now;
        }
        if let Err(RunError::Failed(message)) = &outcome {
            let at_barrier = control.swap_under_way().and_then(|s| s.barrier);
            if let Some(barrier) = at_barrier {
                // The new logic ran, on probation: back to the swap barrier
                // with the old logic, without using a restart attempt.
                control.swap_rolled_back(message);
                if let Some(s) = store.get()? {
                    s.drop_probation()
                        .map_err(|e| RunError::Failed(e.to_string()))?;
                }
                let from = chosen(choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}`: the swap at barrier {barrier} rolled back ({message}); the job goes on from {from} with the old logic",
                    spec.name
                );
                continue;
            }
            control.swap_rolled_back(&format!(
                "the job failed before the swap's barrier: {message}"
            ));
        }
        match outcome {
            Ok(report) if report.resume.is_some() => {
                // Not a failure: no restart attempt is used, and there is no delay.
                let from = chosen(choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}`: stop-with-savepoint failed ({}); the job resumes from {from}",
                    spec.name,
                    report.resume.as_deref().unwrap_or_default(),
                );
            }
            Ok(report) => break Ok(report),
            Err(RunError::Failed(message)) if can_restart => {
                let factor = if restart.strategy == RestartStrategy::Exponential {
                    1u32 << attempt.min(20)
                } else {
                    1
                };
                let mut delay = restart.delay * factor;
                if let Some(max) = restart.max_delay {
                    delay = delay.min(max);
                }
                attempt += 1;
                control.restarting(attempt, &message);
                let from = chosen(choose(&mut restore, &mut loaded), &mut choose_again);
                tracing::warn!(
                    "job `{}` failed: {message}; restart {attempt} of {max_restarts} in {:?} from {from}",
                    spec.name,
                    delay,
                );
                std::thread::sleep(delay);
            }
            Err(RunError::Failed(message)) if max_restarts > 0 => {
                break Err(RunError::Failed(format!(
                    "{message} (gave up after {attempt} restarts)"
                )));
            }
            Err(e) => break Err(e),
        }
    };
    match &result {
        Ok(report) if report.stopped_with_savepoint.is_some() => {
            control.set_state(JobState::Stopped);
            if serving {
                // Let the client that asked for the stop read where the savepoint is.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !control.stop_reported() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(report) if report.shut_down_at.is_some() => control.set_state(JobState::Stopped),
        Ok(_) => control.set_state(JobState::Finished),
        Err(e) => control.failed(&e.to_string()),
    }
    control.fail_outstanding("the job ended before the savepoint could be taken");
    control.swap_rolled_back("the job ended before the swap completed");
    if serving {
        // Let a `weir swap` that waits read how its swap ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        while control.swap_outcome_unread() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    plane.shutdown_background();
    result
}

/// SIGTERM and SIGINT (what init systems, containers and Ctrl-C send) stop
/// the job gracefully ([`JobControl::request_shutdown`]): the checkpoint
/// in flight finishes, a last one (or a savepoint, with `[shutdown]
/// savepoint = true`) is taken and its output committed, and the process
/// exits 0. A second signal, or `[shutdown] timeout`, ends the process at
/// once (exit 128 + the signal): still exactly-once, by recovery.
fn handle_signals(
    plane: &tokio::runtime::Runtime,
    control: &Arc<JobControl>,
    shutdown: &crate::engine::job::ShutdownSpec,
    job: &str,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = plane.enter();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot handle SIGTERM and SIGINT: they end the process at once");
        return;
    };
    let control = control.clone();
    let shutdown = shutdown.clone();
    let job = job.to_string();
    plane.spawn(async move {
        let (name, number) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 15),
            _ = int.recv() => ("SIGINT", 2),
        };
        match control.request_shutdown(shutdown.savepoint) {
            Ok(how) => tracing::warn!(
                "job `{job}`: {name}: {how}; a second signal, or {} (`[shutdown] timeout`), ends the process at once",
                humantime::format_duration(shutdown.timeout)
            ),
            Err(why) => {
                tracing::warn!(
                    "job `{job}`: {name} while {why}: exiting at once (the next start recovers from the last checkpoint)"
                );
                std::process::exit(128 + number);
            }
        }
        let why = tokio::select! {
            _ = term.recv() => "a second signal",
            _ = int.recv() => "a second signal",
            _ = tokio::time::sleep(shutdown.timeout) => "`[shutdown] timeout`",
        };
        tracing::error!(
            "job `{job}`: {why} before the graceful stop ended: exiting at once (the next start recovers from the last checkpoint)"
        );
        std::process::exit(128 + number);
    });
}

/// What a restart resumes from, for its message; when it cannot be chosen
/// now (the Kafka cluster that says which checkpoint committed is away), it
/// is chosen again just before the next attempt.
fn chosen(choice: Result<String, RunError>, choose_again: &mut bool) -> String {
    match choice {
        Ok(from) => from,
        Err(e) => {
            *choose_again = true;
            format!("the checkpoint to be chosen then (cannot choose it now: {e})")
        }
    }
}

/// Everything one run of the data path needs.
struct Wiring<'a> {
    spec: &'a JobSpec,
    loaded: &'a [OperatorImpl],
    /// What the job file names (checkpoints record both).
    job_loaded: &'a [OperatorImpl],
    components: &'a Arc<Components>,
    store: &'a LazyStore,
    restore: Option<&'a Restore>,
    attempt: u32,
    /// Report a failure only once every stage has stopped, so that a
    /// restart does not race with the failed run.
    wait_all: bool,
    control: &'a Arc<JobControl>,
    plane: &'a tokio::runtime::Runtime,
}

/// The job's checkpoint database, opened when first needed.
struct LazyStore {
    /// Directory and retention, when the job takes checkpoints.
    spec: Option<(PathBuf, usize)>,
    /// The database and the first checkpoint ID of this process, once open.
    store: std::sync::Mutex<Option<(CheckpointStore, u64)>>,
    /// The lowest ID new checkpoints may have (above a restored savepoint's).
    min_id: u64,
}

impl LazyStore {
    /// Opens the database (once; clearing incomplete checkpoints), if the job takes checkpoints.
    fn get(&self) -> Result<Option<CheckpointStore>, RunError> {
        Ok(self.open()?.map(|(s, _)| s))
    }

    fn open(&self) -> Result<Option<(CheckpointStore, u64)>, RunError> {
        let Some((dir, _)) = &self.spec else {
            return Ok(None);
        };
        let mut slot = self.store.lock().expect("store lock");
        if slot.is_none() {
            let store = CheckpointStore::open(dir).map_err(|e| RunError::Setup(e.to_string()))?;
            // A probation that never ended (the process died): its checkpoints are not restored.
            let dropped = store
                .drop_probation()
                .map_err(|e| RunError::Setup(e.to_string()))?;
            if dropped > 0 {
                tracing::warn!(
                    "{dropped} checkpoint(s) of `{}` were taken while a live swap was on probation: the job goes back to the swap barrier with the old logic",
                    dir.display()
                );
            }
            // Only what no completed checkpoint needs (one being written
            // when the process died): which completed ones recovery needs
            // is known once it has chosen, and the coordinator frees the
            // rest as checkpoints commit.
            store
                .retain(usize::MAX, true, &[])
                .map_err(|e| RunError::Setup(e.to_string()))?;
            let first = store.next_id().max(self.min_id);
            *slot = Some((store, first));
        }
        Ok(slot.clone())
    }

    /// The first checkpoint ID of this process: later ones are this run's own.
    fn first_id(&self) -> Result<u64, RunError> {
        Ok(self.open()?.map_or(self.min_id.max(1), |(_, id)| id))
    }
}

/// One run of the job's data path, from `restore` if given. With
/// `wait_all`, a failure is reported only once every stage has stopped, so
/// that a restart does not race with the failed run.
fn run_attempt(w: Wiring<'_>) -> Result<JobReport, RunError> {
    let Wiring {
        spec,
        loaded,
        job_loaded,
        components,
        store,
        restore,
        attempt,
        wait_all,
        control,
        plane,
    } = w;
    let checkpoint = spec.checkpoint.as_ref().filter(|c| c.interval.is_some());
    let aligned = checkpoint.is_none_or(|c| c.mode == CheckpointMode::ExactlyOnce);
    let max_p = spec.max_parallelism;
    let source_parallelism = spec.source.parallelism() as usize;
    let mut upstream = source_parallelism;
    let mut edges = Vec::new();
    for op in &spec.operators {
        let p = op.parallelism as usize;
        let one_to_one = op.input == InputMode::Forward && upstream == p;
        edges.push(wire(upstream, p, one_to_one));
        upstream = p;
    }
    let to_sink = wire(upstream, 1, false);

    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let (dead_tx, dead_rx) = match &spec.dead_letter {
        Some(_) => {
            let (tx, rx) = crossbeam_channel::bounded::<DeadLetter>(1024);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
    let (trigger_tx, trigger_rx): (Vec<_>, Vec<_>) = (0..source_parallelism)
        .map(|_| crossbeam_channel::bounded::<Trigger>(4))
        .unzip();
    let (completion_tx, completion_rx): (Vec<_>, Vec<_>) = (0..source_parallelism)
        .map(|_| crossbeam_channel::unbounded::<u64>())
        .unzip();
    let (commit_tx, commit_rx) = crossbeam_channel::unbounded::<SinkNotice>();
    let (cancel_tx, cancel_rx) = crossbeam_channel::bounded::<()>(1);
    let swaps = Arc::new(crate::engine::swap::SwapBoard::default());

    // Start every subtask and wait until each has restored and opened, before any output is touched.
    let opening = Instant::now();
    let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), RunError>>();
    let mut receivers_by_stage: Vec<Vec<Vec<Receiver<Message>>>> = edges
        .iter_mut()
        .map(|e| std::mem::take(&mut e.receivers))
        .collect();
    let mut senders_by_stage: Vec<Vec<Vec<Sender<Message>>>> = edges
        .iter_mut()
        .skip(1)
        .map(|e| std::mem::take(&mut e.senders))
        .chain(std::iter::once(to_sink.senders))
        .collect();
    let source_senders = std::mem::take(&mut edges[0].senders);
    let mut subtasks = 0usize;
    for (stage, (op, component)) in spec.operators.iter().zip(loaded).enumerate() {
        let routing = match spec.operators.get(stage + 1).map(|next| next.input) {
            Some(InputMode::Key) => Routing::Key {
                max_parallelism: max_p,
            },
            _ => Routing::Forward,
        };
        let receivers = std::mem::take(&mut receivers_by_stage[stage]);
        let senders = std::mem::take(&mut senders_by_stage[stage]);
        for (i, (ins, outs)) in receivers.into_iter().zip(senders).enumerate() {
            let task = TaskInfo {
                operator_id: op.id.clone(),
                subtask: i as u32,
                parallelism: op.parallelism,
                max_parallelism: max_p,
                attempt,
            };
            let key_groups = keygroup::range_for(i as u32, max_p, op.parallelism);
            let component = component.clone();
            let setup = op.setup();
            let ready = ready_tx.clone();
            let done = done_tx.clone();
            let dead = dead_tx.clone();
            let id = op.id.clone();
            let restore = restore.cloned();
            let acks = Some((ack_tx.clone(), stage));
            let track = checkpoint.is_some();
            let source = spec.source.clone();
            let swaps = swaps.clone();
            let task_info = task.clone();
            let shadow = Some(crate::engine::shadow::ShadowTap::new(
                control.shadow.clone(),
                &op.id,
                i as u32,
            ));
            std::thread::Builder::new()
                .name(format!("weir-{}-{i}", op.id))
                .spawn(move || {
                    let op = match component.start(
                        task,
                        key_groups,
                        &setup,
                        restore.as_ref().map(|r| (r, stage)),
                        track,
                    ) {
                        Ok(op) => {
                            let _ = ready.send(Ok(()));
                            op
                        }
                        Err(e) => {
                            let message = format!("operator `{id}` subtask {i}: {e}");
                            let _ = ready.send(Err(if e.in_guest {
                                RunError::Failed(message)
                            } else {
                                RunError::Setup(message)
                            }));
                            return;
                        }
                    };
                    drop(ready);
                    let mut inputs = Inputs::new(ins);
                    inputs.set_aligned(aligned);
                    if let Some(r) = &restore {
                        inputs.start_watermarks_at(r.meta.watermark);
                    }
                    let subtask = Subtask {
                        op,
                        inputs,
                        router: Router::new(outs, routing),
                        dead_letters: dead,
                        operator_id: id,
                        subtask: i as u32,
                        checkpointing: acks,
                        stopped: false,
                        source: source.clone(),
                        task: task_info,
                        setup,
                        swaps,
                        probation: None,
                        shadow,
                    };
                    let _ = done.send(Done::Subtask(subtask.run()));
                })
                .map_err(|e| RunError::Setup(format!("cannot start a thread: {e}")))?;
            subtasks += 1;
        }
    }
    drop(ready_tx);
    drop(dead_tx);
    for _ in 0..subtasks {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            // A failure of the operator's own code while it starts is a
            // failure of the job (the restart strategy applies); any other
            // start error is a setup error.
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(RunError::Setup(
                    "a subtask thread died while opening".to_string(),
                ))
            }
        }
    }
    if let Some(r) = restore {
        let keys: u64 = r.meta.operators.iter().map(|o| o.keys).sum();
        tracing::info!(
            checkpoint_id = r.meta.id,
            "restored {} into {subtasks} subtasks in {:.1} ms ({keys} keys)",
            r.savepoint_dir()
                .map_or(format!("checkpoint {}", r.meta.id), |d| format!(
                    "savepoint `{}`",
                    d.display()
                )),
            opening.elapsed().as_secs_f64() * 1e3
        );
    }

    // Everything opened: now the state directory and the outputs may be
    // touched, and the data may flow.
    let retain = store.spec.as_ref().map_or(1, |(_, r)| *r);
    let store = store.get()?;
    if let Some(s) = &store {
        control.set_store(s.clone());
    }
    if let (Some(s), SinkSpec::Kafka(c)) = (&store, &spec.sink) {
        if kafka_exactly_once(spec, c)? {
            record_sink(s, c)?;
        }
    }
    control.set_swap_context(crate::engine::control::SwapContext {
        components: components.clone(),
        logic: loaded.to_vec(),
        store: store.clone().filter(|_| checkpoint.is_some()),
        transaction_timeout: match &spec.sink {
            SinkSpec::Kafka(c) if kafka_exactly_once(spec, c)? => Some(c.transaction_timeout),
            _ => None,
        },
        setups: spec.operators.iter().map(|o| o.setup()).collect(),
        max_parallelism: max_p,
    });
    let first_id = first_checkpoint_id(store.as_ref(), restore);
    let clock = batch_clock(spec);
    let sink = open_sink(spec, restore, control, store.as_ref(), clock.as_ref())?;
    let dead_file = match &spec.dead_letter {
        Some(d) => Some((
            dead_letter::open(&d.path, restore.is_some()).map_err(RunError::Setup)?,
            d.path.clone(),
        )),
        None => None,
    };
    let mut readers = Vec::with_capacity(source_parallelism);
    for i in 0..source_parallelism {
        readers.push(open_source(spec, restore, i as u32, clock.as_ref())?);
    }
    let watermark_delay = spec.source.watermark_delay;
    let started = Instant::now();

    let mut sink_inputs = Inputs::new(to_sink.receivers.into_iter().next().expect("one sink"));
    sink_inputs.set_aligned(aligned);
    let sink_cp = Some(SinkCheckpointing {
        acks: ack_tx.clone(),
        commits: commit_rx,
    });
    let done = done_tx.clone();
    let sink_control = control.clone();
    spawn("weir-sink", move || {
        let _ = done.send(Done::Sink(crate::engine::stages::run_sink(
            sink_inputs,
            sink,
            sink_cp,
            Some(sink_control),
        )));
    })?;
    let mut stages = subtasks + 1;
    if let (Some((file, path)), Some(rx)) = (dead_file, dead_rx) {
        let done = done_tx.clone();
        spawn("weir-dead-letter", move || {
            let _ = done.send(Done::DeadLetters(dead_letter::write_dead_letters(
                file, &path, rx,
            )));
        })?;
        stages += 1;
    }
    let parent_chain = restore
        .filter(|r| r.plan.is_identity() && matches!(r.source, RestoreSource::Checkpoint(_)))
        .map(|r| r.meta.chain.clone())
        .unwrap_or_default();
    let coordinator = Coordinator {
        store: store.clone(),
        job: spec.name.clone(),
        max_parallelism: max_p,
        operators: std::cell::RefCell::new(
            spec.operators
                .iter()
                .zip(loaded)
                .zip(job_loaded)
                .map(|((o, l), j)| OperatorInfo {
                    id: o.id.clone(),
                    parallelism: o.parallelism,
                    states: restore::recorded(&l.spec().states),
                    name: l.spec().name.clone(),
                    version: l.spec().version.clone(),
                    wasm_sha256: l.sha256().to_string(),
                    job_wasm_sha256: j.sha256().to_string(),
                })
                .collect(),
        ),
        interval: checkpoint.and_then(|c| c.interval),
        retain,
        committed: std::cell::Cell::new(
            restore
                .filter(|r| matches!(r.source, RestoreSource::Checkpoint(_)))
                .map_or(0, |r| r.meta.id),
        ),
        publishing: Default::default(),
        sink_commit: match (&spec.sink, &store) {
            (SinkSpec::Kafka(c), Some(s)) if kafka_exactly_once(spec, c)? => {
                Some(crate::state::savepoint::SinkCommit {
                    transactional_id_prefix: c.transactional_id_prefix.clone(),
                    store: s.instance().map_err(|e| RunError::Setup(e.to_string()))?,
                })
            }
            _ => None,
        },
        parent_chain,
        acks: ack_rx,
        triggers: trigger_tx,
        source_completions: completion_tx,
        commits: commit_tx,
        cancel: cancel_rx,
        control: control.clone(),
        first_id,
        // Savepoints time out too, with or without periodic checkpoints.
        timeout: spec
            .checkpoint
            .as_ref()
            .map_or(crate::engine::job::DEFAULT_CHECKPOINT_TIMEOUT, |c| {
                c.timeout
            }),
        tolerable_failures: checkpoint.map_or(0, |c| c.tolerable_failures),
        swaps: swaps.clone(),
        swap: Default::default(),
    };
    let done = done_tx.clone();
    spawn("weir-coordinator", move || {
        let _ = done.send(Done::Coordinator(coordinator.run()));
    })?;
    stages += 1;
    let source_routing = match spec.operators[0].input {
        InputMode::Key => Routing::Key {
            max_parallelism: max_p,
        },
        InputMode::Forward => Routing::Forward,
    };
    let restored_max_timestamp = restore.map_or(i64::MIN, |r| r.meta.source.max_timestamp);
    for (i, (((reader, senders), triggers), completions)) in readers
        .into_iter()
        .zip(source_senders)
        .zip(trigger_rx)
        .zip(completion_rx)
        .enumerate()
    {
        let router = Router::new(senders, source_routing);
        let source_cp = Some(SourceCheckpointing {
            subtask: i as u32,
            triggers,
            completions,
            acks: ack_tx.clone(),
            restored_max_timestamp,
        });
        let done = done_tx.clone();
        let source_control = control.clone();
        let name = if source_parallelism == 1 {
            "weir-source".to_string()
        } else {
            format!("weir-source-{i}")
        };
        spawn(&name, move || {
            let _ = done.send(Done::Source(crate::engine::stages::run_source(
                reader,
                router,
                watermark_delay,
                source_cp,
                Some(source_control),
            )));
        })?;
        stages += 1;
    }
    drop(done_tx);
    drop(ack_tx);
    tracing::info!(
        "job `{}` is running: {subtasks} operator subtasks, {source_parallelism} source subtask(s)",
        spec.name
    );

    let mut report = plane.block_on(watch(done_rx, stages, cancel_tx, wait_all))?;
    report.elapsed = started.elapsed();
    report.latency = control.latency.lock().expect("latency lock").take();
    Ok(report)
}

/// Records in the state directory which prefix its exactly-once Kafka
/// sink commits under (see [`recovery`]); when the prefix changed, first
/// aborts a transaction an earlier run may have left open under the old
/// one, so that it does not hold `read_committed` consumers up until it
/// times out.
fn record_sink(store: &CheckpointStore, c: &KafkaSinkConfig) -> Result<(), RunError> {
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

/// The first checkpoint ID of this run: above every checkpoint in the
/// store and above the restored snapshot's.
fn first_checkpoint_id(store: Option<&CheckpointStore>, restore: Option<&Restore>) -> u64 {
    let above_restore = restore.map_or(1, |r| r.meta.id + 1);
    store.map_or(1, CheckpointStore::next_id).max(above_restore)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), RunError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| RunError::Setup(format!("cannot start a thread: {e}")))
}

/// Waits for every stage; the first stage that failed (rather than being
/// cancelled by another's failure) names the job's failure. On a failure the
/// coordinator is cancelled; with `wait_all` the other stages are awaited.
async fn watch(
    mut done: tokio::sync::mpsc::UnboundedReceiver<Done>,
    stages: usize,
    cancel: crossbeam_channel::Sender<()>,
    wait_all: bool,
) -> Result<JobReport, RunError> {
    let mut report = JobReport::default();
    let mut cancel = Some(cancel);
    let mut failure: Option<String> = None;
    let mut cancelled = false;
    for _ in 0..stages {
        let Some(result) = done.recv().await else {
            break;
        };
        let failed = match result {
            Done::Source(Ok(n)) => {
                report.events_in += n;
                None
            }
            Done::Sink(Ok(n)) => {
                report.events_out = n;
                None
            }
            Done::DeadLetters(Ok(n)) => {
                report.dead_letters = n;
                None
            }
            Done::Subtask(Ok(())) | Done::Coordinator(Ok(CoordinatorEnd::Finished)) => None,
            Done::Coordinator(Ok(CoordinatorEnd::StoppedWithSavepoint(dir))) => {
                report.stopped_with_savepoint = Some(dir);
                None
            }
            Done::Coordinator(Ok(CoordinatorEnd::ShutDown(id))) => {
                report.shut_down_at = Some(id);
                None
            }
            Done::Coordinator(Ok(CoordinatorEnd::Resume(why))) => {
                report.resume = Some(why);
                None
            }
            Done::Coordinator(Ok(CoordinatorEnd::Stopped)) => {
                cancelled = true;
                None
            }
            Done::DeadLetters(Err(e)) | Done::Coordinator(Err(e)) => Some(e),
            Done::Source(Err(e)) | Done::Sink(Err(e)) | Done::Subtask(Err(e)) => match e {
                StageError::Failed(message) => Some(message),
                StageError::Cancelled => {
                    cancelled = true;
                    None
                }
            },
        };
        if let Some(message) = failed {
            drop(cancel.take());
            failure.get_or_insert(message);
            if !wait_all {
                break;
            }
        }
    }
    if let Some(message) = failure {
        return Err(RunError::Failed(message));
    }
    if cancelled {
        return Err(RunError::Failed(
            "the job stopped: a stage ended early".to_string(),
        ));
    }
    Ok(report)
}
