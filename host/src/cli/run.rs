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
}

impl RunArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = JobSpec::load(&self.job)?;
        tracing::info!(job = %spec.name, "starting job `{}`", spec.name);
        let report =
            runtime::run(&spec, &self.job).with_context(|| format!("job `{}`", spec.name))?;
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
