//! `weir upgrade plan JOB.toml --from-savepoint DIR [--allow-non-restored-state] [--json]`:
//! says what a restore of the savepoint into the job would do, per operator
//! ID and per state, running nothing (see [`weir_host::engine::upgrades::plan`] for
//! the verdicts and the JSON form). The plan goes to standard output; exit
//! status 0 when the restore would go ahead, 1 (with the plan printed, and
//! the first refusal on stderr) when it would not. Input that cannot be
//! planned at all (no job file, an operator that does not load, a missing
//! or damaged savepoint) is one line on stderr and status 1.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use weir_host::engine::upgrades::plan as upgrade;
use weir_host::job::JobSpec;

/// `weir upgrade ...`
#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Say what restoring a savepoint into a job would do, per operator and state, running nothing.
    Plan(PlanArgs),
}

impl UpgradeCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            UpgradeCommand::Plan(args) => args.execute(),
        }
    }
}

/// Arguments of `weir upgrade plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The job file (TOML) to restore into.
    job: PathBuf,
    /// The savepoint directory to restore.
    #[arg(long, value_name = "DIR")]
    from_savepoint: PathBuf,
    /// Plan as `weir run --allow-non-restored-state` would: saved state the
    /// job has no place for is dropped rather than refused.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Print the plan as one JSON object.
    #[arg(long)]
    json: bool,
}

impl PlanArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = JobSpec::load(&self.job)?;
        let plan = upgrade::plan_savepoint(
            &spec,
            &self.job,
            &self.from_savepoint,
            self.allow_non_restored_state,
        )?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            let text = plan.text();
            outln!("{}", text.trim_end());
        }
        match plan.errors.first() {
            None => Ok(()),
            Some(first) if plan.errors.len() == 1 => {
                Err(anyhow::anyhow!("the restore would be refused: {first}"))
            }
            Some(first) => Err(anyhow::anyhow!(
                "the restore would be refused for {} reasons (the plan lists them), first: {first}",
                plan.errors.len()
            )),
        }
    }
}
