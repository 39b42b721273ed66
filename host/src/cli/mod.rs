//! The `weir` command line: one file per subcommand, each with an `execute()`.

mod build;
mod checkpoints;
mod operator;
mod run;

use clap::{Parser, Subcommand};

/// weir runs WebAssembly stream operators with exactly-once, host-owned state.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job file to the end of its input.
    Run(run::RunArgs),
    /// Build an operator from its source folder into a `.wasm` component.
    Build(build::BuildArgs),
    /// Work with operator components.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Work with a job's checkpoints.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run(args) => args.execute(),
            Command::Build(args) => args.execute(),
            Command::Operator(cmd) => cmd.execute(),
            Command::Checkpoints(cmd) => cmd.execute(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_tree_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
