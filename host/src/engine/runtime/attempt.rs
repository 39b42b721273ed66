//! One attempt of a run: wires the job graph (a bounded channel per edge,
//! per pair of instances), starts every operator subtask and waits until
//! each has restored and opened, then opens the outputs, starts the sink,
//! the dead-letter writer, the checkpoint coordinator and the sources, and
//! watches them until they end or one fails.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::connectors::dead_letter::{self, DeadLetter};
use crate::engine::channel::{self, Inputs, Message, StageError};
use crate::engine::connect::{batch_clock, committer, open_sink, open_source, record_sink};
use crate::engine::control::JobControl;
use crate::engine::coordinator::{
    Ack, Coordinator, CoordinatorEnd, OperatorRecord, PublishQueue, SinkNotice, Trigger,
};
use crate::engine::dataflow::partition::{Router, Routing};
use crate::engine::dataflow::sink::SinkCheckpointing;
use crate::engine::dataflow::source::SourceCheckpointing;
use crate::engine::dataflow::subtask::Subtask;
use crate::engine::errors::RunError;
use crate::engine::restore::first_checkpoint_id;
use crate::job::{CheckpointMode, InputMode, JobSpec};
use crate::model::keygroup;
use crate::model::TaskInfo;
use crate::state::restore::{self, Restore, RestoreSource};
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

use super::start::LazyStore;
use super::JobReport;

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
            let (tx, rx) = channel::channel();
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

/// Everything one run of the data path needs.
pub(super) struct Wiring<'a> {
    pub spec: &'a JobSpec,
    pub loaded: &'a [OperatorImpl],
    /// What the job file names (checkpoints record both).
    pub job_loaded: &'a [OperatorImpl],
    pub components: &'a Arc<Components>,
    pub store: &'a LazyStore,
    pub restore: Option<&'a Restore>,
    pub attempt: u32,
    /// Report a failure only once every stage has stopped, so that a
    /// restart does not race with the failed run.
    pub wait_all: bool,
    pub control: &'a Arc<JobControl>,
    pub plane: &'a tokio::runtime::Runtime,
}

/// One run of the job's data path, from `restore` if given. With
/// `wait_all`, a failure is reported only once every stage has stopped, so
/// that a restart does not race with the failed run.
pub(super) fn run_attempt(w: Wiring<'_>) -> Result<JobReport, RunError> {
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
    let swaps = Arc::new(crate::engine::upgrades::swap::SwapBoard::default());

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
            let shadow = Some(crate::engine::upgrades::shadow::ShadowTap::new(
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
    let committer = committer(spec)?;
    if let (Some(s), Some(c)) = (&store, committer) {
        record_sink(s, c)?;
    }
    control.set_swap_context(crate::engine::control::SwapContext {
        components: components.clone(),
        logic: loaded.to_vec(),
        store: store.clone().filter(|_| checkpoint.is_some()),
        transaction_timeout: committer.map(|c| c.transaction_timeout()),
        setups: spec.operators.iter().map(|o| o.setup()).collect(),
        max_parallelism: max_p,
    });
    let first_id = first_checkpoint_id(store.as_ref(), restore);
    let clock = batch_clock(spec);
    let sink = open_sink(
        spec,
        restore,
        &control.latency,
        store.as_ref(),
        clock.as_ref(),
    )?;
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
        let _ = done.send(Done::Sink(crate::engine::dataflow::sink::run_sink(
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
                .map(|((o, l), j)| OperatorRecord {
                    id: o.id.clone(),
                    parallelism: o.parallelism,
                    states: restore::recorded(&l.spec().states),
                    logic: l.logic_id(),
                    job_wasm_sha256: j.sha256().to_string(),
                })
                .collect(),
        ),
        interval: checkpoint.and_then(|c| c.interval),
        retain,
        publishing: std::cell::RefCell::new(PublishQueue::new(
            restore
                .filter(|r| matches!(r.source, RestoreSource::Checkpoint(_)))
                .map_or(0, |r| r.meta.id),
        )),
        sink_commit: match (committer, &store) {
            (Some(c), Some(s)) => Some(crate::state::savepoint::SinkCommit {
                transactional_id_prefix: c.prefix().to_string(),
                store: s.instance().map_err(|e| RunError::Setup(e.to_string()))?,
            }),
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
            .map_or(crate::job::DEFAULT_CHECKPOINT_TIMEOUT, |c| c.timeout),
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
            let _ = done.send(Done::Source(crate::engine::dataflow::source::run_source(
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
