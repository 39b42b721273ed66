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

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::bindings::TaskInfo;
use crate::checkpoint::{CheckpointStore, SourcePosition};
use crate::component::{Components, LoadedOperator};
use crate::connectors::file::SinkMode;
use crate::connectors::{self, SinkCheckpointing, SinkWriter, SourceCheckpointing, SourceReader};
use crate::coordinator::{Ack, Coordinator, CoordinatorEnd, OperatorInfo, Trigger};
use crate::dead_letter::{self, DeadLetter};
use crate::job::{
    CheckpointMode, InputMode, JobSpec, RestartSpec, RestartStrategy, SinkSpec, SourceSpec,
};
use crate::keygroup;
use crate::operator::{OperatorInstance, Restore, WasmOperator};
use crate::partition::{Router, Routing};
use crate::state::kind_name;
use crate::stream::{self, Inputs, Message, StageError};
use crate::subtask::Subtask;

/// What a finished job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// Events read by the source.
    pub events_in: u64,
    /// Events written by the sink.
    pub events_out: u64,
    /// Events sent to the dead-letter output.
    pub dead_letters: u64,
    /// Wall-clock time from the start of the data path to its end.
    pub elapsed: Duration,
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
}

/// Loads every operator of `spec`, with messages that name the job file line.
pub fn load_operators(
    components: &Components,
    spec: &JobSpec,
    job_file: &Path,
) -> Result<Vec<LoadedOperator>, RunError> {
    spec.operators
        .iter()
        .map(|op| {
            components.load(&op.wasm).map_err(|e| {
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

fn open_source(
    spec: &JobSpec,
    restore: Option<&Restore>,
) -> Result<(Box<dyn SourceReader>, Duration), RunError> {
    let position = restore.map(|r| &r.meta.source.position);
    Ok(match &spec.source {
        SourceSpec::File {
            path,
            format,
            watermark_delay,
            batch_size,
        } => (
            connectors::file::open_source(path, *format, *batch_size, position)
                .map_err(RunError::Setup)?,
            *watermark_delay,
        ),
        SourceSpec::Stdin {
            format,
            watermark_delay,
            batch_size,
        } => (
            Box::new(connectors::stdio::StdinSource::start(*format, *batch_size)),
            *watermark_delay,
        ),
        SourceSpec::Generator {
            count,
            keys,
            value_size,
            seed,
            rate,
            watermark_delay,
            batch_size,
        } => {
            let mut generator = connectors::generator::Generator::new(
                *count,
                *keys,
                *value_size,
                *seed,
                *rate,
                *batch_size,
            );
            match position {
                Some(SourcePosition::Generator { next }) => generator.seek(*next),
                Some(other) => {
                    return Err(RunError::Setup(format!(
                        "the checkpoint holds a {other:?} position, not a generator position"
                    )))
                }
                None => {}
            }
            (Box::new(generator), *watermark_delay)
        }
    })
}

fn open_sink(spec: &JobSpec, restore: Option<&Restore>) -> Result<Box<dyn SinkWriter>, RunError> {
    let mode = match spec.checkpoint.as_ref().filter(|c| c.interval.is_some()) {
        None => SinkMode::Direct,
        Some(c) if c.mode == CheckpointMode::AtLeastOnce => SinkMode::AtLeastOnce,
        Some(_) => SinkMode::ExactlyOnce,
    };
    Ok(match &spec.sink {
        SinkSpec::File { path, format } => {
            let restored = restore.map(|r| (r.meta.id, r.meta.sink.as_ref()));
            Box::new(
                connectors::file::FileSink::open(path, *format, mode, restored)
                    .map_err(RunError::Setup)?,
            )
        }
        SinkSpec::Stdout { format } => Box::new(connectors::stdio::StdoutSink::new(*format)),
        SinkSpec::Blackhole => Box::new(connectors::blackhole::BlackholeSink::default()),
    })
}

/// Picks the checkpoint to restore, and checks it fits the job.
fn choose_restore(
    spec: &JobSpec,
    store: &CheckpointStore,
    options: &RunOptions,
) -> Result<Option<Restore>, RunError> {
    let setup = |e: crate::checkpoint::CheckpointError| RunError::Setup(e.to_string());
    let completed = store.list().map_err(setup)?;
    if options.fresh {
        if !completed.is_empty() {
            tracing::warn!(
                "--fresh: ignoring {} checkpoint(s) in `{}`; the job starts from the beginning",
                completed.len(),
                store.dir().display()
            );
        }
        return Ok(None);
    }
    let meta = match options.from_checkpoint {
        Some(id) => completed
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| {
                let ids: Vec<String> = completed.iter().map(|m| m.id.to_string()).collect();
                RunError::Setup(format!(
                    "there is no completed checkpoint {id} in `{}` (there are: {})",
                    store.dir().display(),
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                ))
            })?,
        None => match completed.last() {
            Some(m) => m.clone(),
            None => return Ok(None),
        },
    };
    if meta.max_parallelism != spec.max_parallelism {
        return Err(RunError::Setup(format!(
            "checkpoint {} was taken with max_parallelism {}, the job has {}: key groups cannot change (use --fresh to start over)",
            meta.id, meta.max_parallelism, spec.max_parallelism
        )));
    }
    for op in &meta.operators {
        if !spec.operators.iter().any(|o| o.id == op.id) {
            return Err(RunError::Setup(format!(
                "checkpoint {} has state for operator `{}`, which the job does not have (use --fresh to start over)",
                meta.id, op.id
            )));
        }
    }
    Ok(Some(Restore {
        store: store.clone(),
        meta,
    }))
}

/// Runs the job described by `spec` (read from `job_file`) to the end of its
/// input, restoring from a checkpoint and restarting after failures as the
/// job file and `options` say.
pub fn run(spec: &JobSpec, job_file: &Path, options: &RunOptions) -> Result<JobReport, RunError> {
    let components =
        Components::new().map_err(|e| RunError::Setup(format!("cannot start wasmtime: {e}")))?;
    let loaded = load_operators(&components, spec, job_file)?;
    if let SourceSpec::File { path, .. } = &spec.source {
        if !path.is_file() {
            return Err(RunError::Setup(format!(
                "source file `{}` does not exist ({} [source] path)",
                path.display(),
                job_file.display()
            )));
        }
    }
    let checkpoint = spec.checkpoint.as_ref().filter(|c| c.interval.is_some());
    let store = match checkpoint {
        Some(cp) => {
            if matches!(spec.source, SourceSpec::Stdin { .. }) {
                return Err(RunError::Setup(format!(
                    "{}: checkpoints need a source that can be read again (file or generator), not stdin",
                    job_file.display()
                )));
            }
            let store =
                CheckpointStore::open(&cp.dir).map_err(|e| RunError::Setup(e.to_string()))?;
            store
                .retain(cp.retain, true)
                .map_err(|e| RunError::Setup(e.to_string()))?;
            Some(store)
        }
        None => {
            if options.from_checkpoint.is_some() {
                return Err(RunError::Setup(format!(
                    "--from-checkpoint: {} takes no checkpoints (it has no [checkpoint] interval)",
                    job_file.display()
                )));
            }
            None
        }
    };
    let mut restore = match &store {
        Some(store) => choose_restore(spec, store, options)?,
        None => None,
    };
    if let Some(r) = &restore {
        if r.meta.finished {
            tracing::info!(
                "job `{}` already finished: checkpoint {} was taken at the end of its input; nothing to do (use --fresh to run it again)",
                spec.name,
                r.meta.id
            );
            return Ok(JobReport {
                events_in: 0,
                events_out: 0,
                dead_letters: 0,
                elapsed: Duration::ZERO,
            });
        }
        tracing::info!(
            checkpoint_id = r.meta.id,
            "restoring checkpoint {}",
            r.meta.id
        );
    }
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
    let replayable = !matches!(spec.source, SourceSpec::Stdin { .. });
    let mut attempt = 0u32;
    loop {
        let can_restart = attempt < max_restarts && replayable;
        match run_attempt(
            spec,
            &loaded,
            store.as_ref(),
            restore.as_ref(),
            attempt,
            can_restart,
        ) {
            Ok(report) => return Ok(report),
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
                restore = match &store {
                    Some(store) => choose_restore(spec, store, &RunOptions::default())?,
                    None => None,
                };
                tracing::warn!(
                    "job `{}` failed: {message}; restart {attempt} of {max_restarts} in {:?} from {}",
                    spec.name,
                    delay,
                    restore.as_ref().map_or("the beginning".to_string(), |r| format!("checkpoint {}", r.meta.id))
                );
                std::thread::sleep(delay);
            }
            Err(RunError::Failed(message)) if max_restarts > 0 => {
                return Err(RunError::Failed(format!(
                    "{message} (gave up after {attempt} restarts)"
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One run of the job's data path, from `restore` if given. With
/// `wait_all`, a failure is reported only once every stage has stopped, so
/// that a restart does not race with the failed run.
fn run_attempt(
    spec: &JobSpec,
    loaded: &[LoadedOperator],
    store: Option<&CheckpointStore>,
    restore: Option<&Restore>,
    attempt: u32,
    wait_all: bool,
) -> Result<JobReport, RunError> {
    let checkpoint = spec
        .checkpoint
        .as_ref()
        .filter(|c| c.interval.is_some() && store.is_some());
    let aligned = checkpoint.is_none_or(|c| c.mode == CheckpointMode::ExactlyOnce);
    let max_p = spec.max_parallelism;
    let mut upstream = 1usize;
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
    let (trigger_tx, trigger_rx) = crossbeam_channel::bounded::<Trigger>(4);
    let (commit_tx, commit_rx) = crossbeam_channel::unbounded::<u64>();
    let (cancel_tx, cancel_rx) = crossbeam_channel::bounded::<()>(1);

    // Start every subtask and wait until each has restored and opened, before any output is touched.
    let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
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
    let source_senders = edges[0].senders.remove(0);
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
            let config = op.config.clone();
            let ready = ready_tx.clone();
            let done = done_tx.clone();
            let dead = dead_tx.clone();
            let id = op.id.clone();
            let restore = restore.cloned();
            let acks = checkpoint.map(|_| (ack_tx.clone(), stage));
            let track = checkpoint.is_some();
            std::thread::Builder::new()
                .name(format!("weir-{}-{i}", op.id))
                .spawn(move || {
                    let op = match WasmOperator::start(
                        &component,
                        task,
                        key_groups,
                        &config,
                        restore.as_ref(),
                        track,
                    ) {
                        Ok(op) => {
                            let _ = ready.send(Ok(()));
                            op
                        }
                        Err(e) => {
                            let _ = ready.send(Err(format!("operator `{id}` subtask {i}: {e}")));
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
                        op: Box::new(op) as Box<dyn OperatorInstance>,
                        inputs,
                        router: Router::new(outs, routing),
                        dead_letters: dead,
                        operator_id: id,
                        subtask: i as u32,
                        checkpointing: acks,
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
            Ok(Err(e)) => return Err(RunError::Setup(e)),
            Err(_) => {
                return Err(RunError::Setup(
                    "a subtask thread died while opening".to_string(),
                ))
            }
        }
    }

    // Everything opened: now the outputs may be created and the data may flow.
    let sink = open_sink(spec, restore)?;
    let dead_file = match &spec.dead_letter {
        Some(d) => Some((
            dead_letter::open(&d.path, restore.is_some()).map_err(RunError::Setup)?,
            d.path.clone(),
        )),
        None => None,
    };
    let (reader, watermark_delay) = open_source(spec, restore)?;
    let started = Instant::now();

    let mut sink_inputs = Inputs::new(to_sink.receivers.into_iter().next().expect("one sink"));
    sink_inputs.set_aligned(aligned);
    let sink_cp = checkpoint.map(|_| SinkCheckpointing {
        acks: ack_tx.clone(),
        commits: commit_rx,
    });
    let done = done_tx.clone();
    spawn("weir-sink", move || {
        let _ = done.send(Done::Sink(connectors::run_sink(sink_inputs, sink, sink_cp)));
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
    if let (Some(cp), Some(store)) = (checkpoint, store) {
        let coordinator = Coordinator {
            store: store.clone(),
            job: spec.name.clone(),
            max_parallelism: max_p,
            operators: spec
                .operators
                .iter()
                .zip(loaded)
                .map(|(o, l)| OperatorInfo {
                    id: o.id.clone(),
                    parallelism: o.parallelism,
                    states: l
                        .spec
                        .states
                        .iter()
                        .map(|s| (s.name.clone(), kind_name(s.kind).to_string(), s.version))
                        .collect(),
                })
                .collect(),
            interval: cp.interval,
            retain: cp.retain,
            parent_chain: restore.map(|r| r.meta.chain.clone()).unwrap_or_default(),
            acks: ack_rx,
            triggers: trigger_tx,
            commits: commit_tx,
            cancel: cancel_rx,
        };
        let done = done_tx.clone();
        spawn("weir-coordinator", move || {
            let _ = done.send(Done::Coordinator(coordinator.run()));
        })?;
        stages += 1;
    }
    let source_routing = match spec.operators[0].input {
        InputMode::Key => Routing::Key {
            max_parallelism: max_p,
        },
        InputMode::Forward => Routing::Forward,
    };
    let router = Router::new(source_senders, source_routing);
    let source_cp = checkpoint.map(|_| SourceCheckpointing {
        triggers: trigger_rx,
        acks: ack_tx.clone(),
        restored_max_timestamp: restore.map_or(i64::MIN, |r| r.meta.source.max_timestamp),
    });
    let done = done_tx.clone();
    spawn("weir-source", move || {
        let _ = done.send(Done::Source(connectors::run_source(
            reader,
            router,
            watermark_delay,
            source_cp,
        )));
    })?;
    stages += 1;
    drop(done_tx);
    drop(ack_tx);

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("cannot start the control plane: {e}")))?;
    let mut report = control.block_on(watch(done_rx, stages, cancel_tx, wait_all))?;
    report.elapsed = started.elapsed();
    Ok(report)
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
    let mut report = JobReport {
        events_in: 0,
        events_out: 0,
        dead_letters: 0,
        elapsed: Duration::ZERO,
    };
    let mut cancel = Some(cancel);
    let mut failure: Option<String> = None;
    let mut cancelled = false;
    for _ in 0..stages {
        let Some(result) = done.recv().await else {
            break;
        };
        let failed = match result {
            Done::Source(Ok(n)) => {
                report.events_in = n;
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
