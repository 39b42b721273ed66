//! `weir run JOB.toml`: runs a job to the end of its input, or until it is
//! stopped with a savepoint; restores a checkpoint or a savepoint first.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use weir_host::engine::runtime;
use weir_host::job::JobSpec;

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Ignore the checkpoints in the state directory and start from the beginning.
    #[arg(long, conflicts_with_all = ["from_checkpoint", "from_savepoint"])]
    fresh: bool,
    /// Restore this checkpoint rather than the newest (see `weir checkpoints list`).
    #[arg(long, value_name = "ID", conflicts_with = "from_savepoint")]
    from_checkpoint: Option<u64>,
    /// Restore this savepoint directory: state is mapped by operator ID.
    #[arg(long, value_name = "DIR")]
    from_savepoint: Option<PathBuf>,
    /// Let a restore drop saved state the job has no place for (an operator
    /// ID it lacks, a state an operator no longer declares), reporting it.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Serve the REST API on HOST:PORT (port 0 picks a free one); overrides `[rest] addr`.
    #[arg(long, value_name = "HOST:PORT")]
    rest_addr: Option<String>,
    /// Once the REST API listens, write its address (HOST:PORT and a newline)
    /// to FILE, atomically: wait for this file rather than read the log.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Benchmarks: run native logic (`map`, `keyed-count`) behind operator ID.
    #[arg(long, value_name = "ID=NAME", hide = true)]
    native_operator: Vec<String>,
    /// Benchmarks: write what the run did (events, time, peak memory) as JSON to FILE.
    #[arg(long, value_name = "FILE", hide = true)]
    report: Option<PathBuf>,
}

impl RunArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = JobSpec::load(&self.job)?;
        tracing::info!(job = %spec.name, "starting job `{}`", spec.name);
        if self.ready_file.is_some() && self.rest_addr.is_none() && spec.rest.is_none() {
            anyhow::bail!(
                "--ready-file is given, but the job serves no REST API: \
                 add `[rest] addr` to `{}`, or pass --rest-addr",
                self.job.display()
            );
        }
        let native = self
            .native_operator
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(id, name)| (id.to_string(), name.to_string()))
                    .ok_or_else(|| anyhow::anyhow!("--native-operator takes ID=NAME, not `{pair}`"))
            })
            .collect::<anyhow::Result<_>>()?;
        let options = runtime::RunOptions {
            fresh: self.fresh,
            from_checkpoint: self.from_checkpoint,
            from_savepoint: self.from_savepoint,
            allow_non_restored_state: self.allow_non_restored_state,
            rest_addr: self.rest_addr,
            ready_file: self.ready_file,
            serve: Some(weir_host::api::rest::serve_boxed),
            overrides: weir_host::bench::native_twins(&spec, &native)
                .with_context(|| format!("job `{}`", spec.name))?,
        };
        let report = runtime::run(&spec, &self.job, &options)
            .with_context(|| format!("job `{}`", spec.name))?;
        if let Some(path) = &self.report {
            let json = serde_json::json!({
                "events_in": report.events_in,
                "events_out": report.events_out,
                "dead_letters": report.dead_letters,
                "elapsed_s": report.elapsed.as_secs_f64(),
                "peak_rss_kib": weir_host::bench::peak_rss_kib(),
                "latency_ms": report.latency.as_ref().map(|l| serde_json::json!({
                    "p50": l.quantile_ms(0.5), "p99": l.quantile_ms(0.99), "max": l.max_ms(), "count": l.count(),
                })),
            });
            std::fs::write(path, json.to_string())
                .with_context(|| format!("writing the report `{}`", path.display()))?;
        }
        if let Some(dir) = &report.stopped_with_savepoint {
            tracing::info!(
                job = %spec.name,
                "job `{}` stopped with savepoint {} after {:.3}s: {} events in, {} out, {} dead letters",
                spec.name,
                dir.display(),
                report.elapsed.as_secs_f64(),
                report.events_in,
                report.events_out,
                report.dead_letters
            );
            return Ok(());
        }
        if let Some(id) = report.shut_down_at {
            tracing::info!(
                job = %spec.name,
                "job `{}` stopped on a signal after {:.3}s at its last checkpoint {id}, its output committed: {} events in, {} out, {} dead letters; `weir run` resumes it there",
                spec.name,
                report.elapsed.as_secs_f64(),
                report.events_in,
                report.events_out,
                report.dead_letters
            );
            return Ok(());
        }
        tracing::info!(
            job = %spec.name,
            events_in = report.events_in,
            events_out = report.events_out,
            dead_letters = report.dead_letters,
            "job `{}` finished in {:.3}s: {} events in, {} out, {} dead letters",
            spec.name,
            report.elapsed.as_secs_f64(),
            report.events_in,
            report.events_out,
            report.dead_letters
        );
        Ok(())
    }
}
