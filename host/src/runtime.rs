//! The job runtime: loads a job's operators, wires source → (partitioner) →
//! operator subtasks → sink with bounded channels, runs it to the end of its
//! input, and reports the first failure.
//!
//! Threads and tokio: every stage of the data path (the source, each operator
//! subtask, the sink, the dead-letter writer) runs on a thread of its own, and
//! tokio runs the control plane that watches them (and will serve REST and
//! trigger checkpoints). Guest code must not run inside a tokio context:
//! wasmtime-wasi's synchronous bindings `block_on` the ambient runtime, which
//! panics there. Crossbeam channels connect the stages because a subtask
//! selects over several inputs with a deadline (processing-time timers) from
//! a plain thread, and will hold back inputs for barrier alignment.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::bindings::TaskInfo;
use crate::component::{Components, LoadedOperator};
use crate::connectors::{self, SinkWriter, SourceReader};
use crate::dead_letter::{self, DeadLetter};
use crate::job::{InputMode, JobSpec, SinkSpec, SourceSpec};
use crate::keygroup;
use crate::operator::{OperatorInstance, WasmOperator};
use crate::partition::{Router, Routing};
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

fn open_source(spec: &JobSpec) -> Result<(Box<dyn SourceReader>, Duration), RunError> {
    Ok(match &spec.source {
        SourceSpec::File {
            path,
            format,
            watermark_delay,
            batch_size,
        } => (
            connectors::file::open_source(path, *format, *batch_size).map_err(RunError::Setup)?,
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
        } => (
            Box::new(connectors::generator::Generator::new(
                *count,
                *keys,
                *value_size,
                *seed,
                *rate,
                *batch_size,
            )),
            *watermark_delay,
        ),
    })
}

fn open_sink(spec: &JobSpec) -> Result<Box<dyn SinkWriter>, RunError> {
    Ok(match &spec.sink {
        SinkSpec::File { path, format } => {
            Box::new(connectors::file::FileSink::create(path, *format).map_err(RunError::Setup)?)
        }
        SinkSpec::Stdout { format } => Box::new(connectors::stdio::StdoutSink::new(*format)),
        SinkSpec::Blackhole => Box::new(connectors::blackhole::BlackholeSink::default()),
    })
}

/// Runs the job described by `spec` (read from `job_file`) to the end of its input.
pub fn run(spec: &JobSpec, job_file: &Path) -> Result<JobReport, RunError> {
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

    // Wire the graph: the source is stage 0 with one instance.
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

    // Start every subtask and wait until each has opened, before any output is touched.
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
    for (stage, (op, component)) in spec.operators.iter().zip(&loaded).enumerate() {
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
            };
            let key_groups = keygroup::range_for(i as u32, max_p, op.parallelism);
            let component = component.clone();
            let config = op.config.clone();
            let ready = ready_tx.clone();
            let done = done_tx.clone();
            let dead = dead_tx.clone();
            let id = op.id.clone();
            std::thread::Builder::new()
                .name(format!("weir-{}-{i}", op.id))
                .spawn(move || {
                    let op = match WasmOperator::start(&component, task, key_groups, &config) {
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
                    let subtask = Subtask {
                        op: Box::new(op) as Box<dyn OperatorInstance>,
                        inputs: Inputs::new(ins),
                        router: Router::new(outs, routing),
                        dead_letters: dead,
                        operator_id: id,
                        subtask: i as u32,
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
    let sink = open_sink(spec)?;
    let dead_file = match &spec.dead_letter {
        Some(d) => Some((
            dead_letter::create(&d.path).map_err(RunError::Setup)?,
            d.path.clone(),
        )),
        None => None,
    };
    let (reader, watermark_delay) = open_source(spec)?;
    let started = Instant::now();

    let sink_inputs = Inputs::new(to_sink.receivers.into_iter().next().expect("one sink"));
    let done = done_tx.clone();
    spawn("weir-sink", move || {
        let _ = done.send(Done::Sink(connectors::run_sink(sink_inputs, sink)));
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
    let source_routing = match spec.operators[0].input {
        InputMode::Key => Routing::Key {
            max_parallelism: max_p,
        },
        InputMode::Forward => Routing::Forward,
    };
    let router = Router::new(source_senders, source_routing);
    let done = done_tx.clone();
    spawn("weir-source", move || {
        let _ = done.send(Done::Source(connectors::run_source(
            reader,
            router,
            watermark_delay,
        )));
    })?;
    stages += 1;
    drop(done_tx);

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(format!("cannot start the control plane: {e}")))?;
    let mut report = control.block_on(watch(done_rx, stages))?;
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
/// cancelled by another's failure) names the job's failure.
async fn watch(
    mut done: tokio::sync::mpsc::UnboundedReceiver<Done>,
    stages: usize,
) -> Result<JobReport, RunError> {
    let mut report = JobReport {
        events_in: 0,
        events_out: 0,
        dead_letters: 0,
        elapsed: Duration::ZERO,
    };
    let mut cancelled = false;
    for _ in 0..stages {
        let Some(result) = done.recv().await else {
            break;
        };
        let failure = match result {
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
            Done::Subtask(Ok(())) => None,
            Done::DeadLetters(Err(e)) => Some(e),
            Done::Source(Err(e)) | Done::Sink(Err(e)) | Done::Subtask(Err(e)) => match e {
                StageError::Failed(message) => Some(message),
                StageError::Cancelled => {
                    cancelled = true;
                    None
                }
            },
        };
        if let Some(message) = failure {
            return Err(RunError::Failed(message));
        }
    }
    if cancelled {
        return Err(RunError::Failed(
            "the job stopped: a stage ended early".to_string(),
        ));
    }
    Ok(report)
}
