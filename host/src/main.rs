//! The `weir` binary: parses the command line, sets up logging to stderr
//! (filtered by `WEIR_LOG`, e.g. `WEIR_LOG=debug` or `WEIR_LOG=weir::guest=trace`),
//! runs the subcommand and turns any error into one line and exit status 1.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_tracing() {
    let filter = match std::env::var("WEIR_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: ignoring WEIR_LOG={spec:?}: {e}");
            EnvFilter::new("info")
        }),
        Err(_) => EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .init();
}

/// The error and its causes on one line, each cause once (an error that
/// quotes its source is not followed by that source again).
fn one_line(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message.replace('\n', " ")
}

fn main() -> ExitCode {
    // A panic the checkpoint store catches (sled's, on a damaged file) is
    // reported as a one-line error; every other panic as usual.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !weir_host::state::checkpoint::panic_is_caught() {
            report(info);
        }
    }));
    let cli = cli::Cli::parse();
    init_tracing();
    match cli.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
