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
//!
//! Its parts: `start` checks the job and chooses what the first attempt
//! restores; `plane` serves the control plane; `restart` runs attempts
//! and restarts after failures; `attempt` wires and watches one attempt.

mod attempt;
mod plane;
mod restart;
mod start;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::control::{JobControl, OperatorStatus};
use crate::engine::errors::RunError;
use crate::job::JobSpec;
use crate::wasm::operator::OperatorImpl;

use plane::Plane;
use restart::attempts;
use start::Start;

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
    pub latency: Option<crate::connectors::latency::LatencyHistogram>,
    /// Stopped gracefully on a signal, at this last checkpoint (0: the job
    /// takes no checkpoints).
    pub shut_down_at: Option<u64>,
    /// A stop-with-savepoint failed (why) after its checkpoint completed:
    /// the run ended, the job resumes from that checkpoint.
    pub resume: Option<String>,
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
    /// Operator ID → logic the caller loaded, to run instead of the `.wasm` the job file names.
    pub overrides: BTreeMap<String, OperatorImpl>,
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

/// Runs the job described by `spec` (read from `job_file`) to the end of its
/// input (or until stopped with a savepoint), restoring from a checkpoint or
/// savepoint and restarting after failures as the job file and `options`
/// say. With a REST address, the REST API is served while it runs.
pub fn run(spec: &JobSpec, job_file: &Path, options: &RunOptions) -> Result<JobReport, RunError> {
    let start = Start::prepare(spec, job_file, options)?;
    let restore = start.initial.clone();
    let loaded = start.initial_loaded.clone();
    let replayable = start.replayable;
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
                logic: l.logic_id(),
                parallelism: o.parallelism,
            })
            .collect(),
        &job_dir,
        spec.savepoint.as_ref().map(|s| s.dir.clone()),
        replayable,
    ));
    control
        .shadow
        .configure(spec, &loaded, start.components.clone());
    let plane = Plane::start(spec, options, &control)?;
    control.restore_swap_history(&start.history);
    let result = attempts(&start, &control, &plane.runtime, restore, loaded);
    plane.finish(&control, &result);
    result
}
