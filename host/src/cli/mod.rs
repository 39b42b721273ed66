//! The `weir` command line: one file per subcommand, each with an `execute()`.
//!
//! Commands print with `outln!`, not `println!`: when standard output is
//! closed early (`weir savepoint inspect … | head`), `println!` panics,
//! while `outln!` ends the process quietly with status 0, as the reader
//! asked for no more.

/// `println!` for command output that survives a closed standard output.
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod bench;
mod build;
mod checkpoints;
mod new;
mod operator;
mod run;
mod savepoint;
mod shadow;
mod state;
mod status;
mod stop;
mod swap;
mod upgrade;

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
    /// Create a new operator project (Rust, Python, JavaScript, C or Go) with a sample job.
    New(new::NewArgs),
    /// Work with operator components.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Work with a job's checkpoints.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
    /// Inspect, verify, delete and edit savepoints.
    #[command(subcommand)]
    Savepoint(savepoint::SavepointCommand),
    /// Export and import one state of a savepoint as JSON lines.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Stop a running job with a savepoint (through its REST API).
    Stop(stop::StopArgs),
    /// Swap the logic behind an operator ID in a running job, at a barrier, on probation.
    Swap(swap::SwapArgs),
    /// Show a running job's state, operators, logic and swaps (through its REST API).
    Status(status::StatusArgs),
    /// Plan upgrades: what a restore of a savepoint into a job would do.
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Run a candidate `.wasm` beside an operator and diff their outputs: offline
    /// from a savepoint and recorded input, or live in a running job (start, status, stop).
    Shadow(shadow::ShadowArgs),
    /// Run the benchmarks: real jobs against the native ceiling, checkpoints, savepoints, start.
    Bench(bench::BenchArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run(args) => args.execute(),
            Command::Build(args) => args.execute(),
            Command::New(args) => args.execute(),
            Command::Operator(cmd) => cmd.execute(),
            Command::Checkpoints(cmd) => cmd.execute(),
            Command::Savepoint(cmd) => cmd.execute(),
            Command::State(cmd) => cmd.execute(),
            Command::Stop(args) => args.execute(),
            Command::Swap(args) => args.execute(),
            Command::Status(args) => args.execute(),
            Command::Shadow(args) => args.execute(),
            Command::Bench(args) => args.execute(),
            Command::Upgrade(cmd) => cmd.execute(),
        }
    }
}

/// Writes command output; see `outln!`. Another write error (a full disk
/// behind a redirect) is one line on stderr and status 1.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
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
