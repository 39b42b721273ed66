//! The control plane of a run: a small tokio runtime that serves the REST
//! API, samples the job's rates, and turns SIGTERM and SIGINT into a
//! graceful stop. Guest code never runs on it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::control::{JobControl, JobState};
use crate::engine::errors::RunError;
use crate::job::JobSpec;

use super::{JobReport, RunOptions};

/// SIGTERM and SIGINT (what init systems, containers and Ctrl-C send) stop
/// the job gracefully ([`JobControl::request_shutdown`]): the checkpoint
/// in flight finishes, a last one (or a savepoint, with `[shutdown]
/// savepoint = true`) is taken and its output committed, and the process
/// exits 0. A second signal, or `[shutdown] timeout`, ends the process at
/// once (exit 128 + the signal): still exactly-once, by recovery.
fn handle_signals(
    plane: &tokio::runtime::Runtime,
    control: &Arc<JobControl>,
    shutdown: &crate::job::ShutdownSpec,
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

/// The control plane of a run.
pub(super) struct Plane {
    /// Its tokio runtime.
    pub runtime: tokio::runtime::Runtime,
    /// The REST API is served.
    serving: bool,
}

impl Plane {
    /// Starts the control plane of the job `spec` that `control` handles:
    /// the REST API at `options`' address or the job file's, the sampler
    /// of the job's rates, and the signal handlers.
    pub fn start(
        spec: &JobSpec,
        options: &RunOptions,
        control: &Arc<JobControl>,
    ) -> Result<Plane, RunError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
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
                    RunError::Setup(
                        "a REST address is set, but no REST server was given".to_string(),
                    )
                })?;
                let bound = runtime
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
        handle_signals(&runtime, control, &spec.shutdown, &spec.name);
        let sampler = control.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sampler.sample();
            }
        });
        Ok(Plane { runtime, serving })
    }

    /// The run ended with `result`: reports it on the job's status, lets
    /// a client that asked for a stop or a swap read how it ended, and
    /// stops the control plane.
    pub fn finish(self, control: &JobControl, result: &Result<JobReport, RunError>) {
        match result {
            Ok(report) if report.stopped_with_savepoint.is_some() => {
                control.set_state(JobState::Stopped);
                if self.serving {
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
        if self.serving {
            // Let a `weir swap` that waits read how its swap ended.
            let deadline = Instant::now() + Duration::from_secs(10);
            while control.swap_outcome_unread() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.runtime.shutdown_background();
    }
}
