//! `weir run JOB.toml`: runs a job to the end of its input.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use weir_host::job::JobSpec;
use weir_host::runtime;

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Ignore the checkpoints in the state directory and start from the beginning.
    #[arg(long, conflicts_with = "from_checkpoint")]
    fresh: bool,
    /// Restore this checkpoint rather than the newest (see `weir checkpoints list`).
    #[arg(long, value_name = "ID")]
    from_checkpoint: Option<u64>,
}

impl RunArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = JobSpec::load(&self.job)?;
        tracing::info!(job = %spec.name, "starting job `{}`", spec.name);
        let options = runtime::RunOptions {
            fresh: self.fresh,
            from_checkpoint: self.from_checkpoint,
        };
        let report = runtime::run(&spec, &self.job, &options)
            .with_context(|| format!("job `{}`", spec.name))?;
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
