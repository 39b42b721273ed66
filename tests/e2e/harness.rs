//! The end-to-end tests' helpers, each defined once:
//!
//! - [`process`]: the one builder of a `weir` process ([`Weir`]: arguments,
//!   environment, log file) and what a test does with it: run it to its
//!   end ([`Run`]), or start it ([`Process`]) and wait for a line in its
//!   log, its REST address (`--ready-file`), its exit; signal or kill it.
//!   Every wait is on a condition with a deadline ([`wait_until`]).
//! - [`sandbox`]: a temporary folder per test ([`Sandbox`]) with its files
//!   and `weir` commands run in it.
//! - [`rest`]: a job's REST API ([`http`], [`savepoint_answer`]).
//! - [`operators`]: the test operators, each built on first use, once per
//!   test run ([`operator`], [`polyglot`]).
//! - [`fixtures`]: job files, reference runs, and readers and checks of
//!   what a job wrote.
//! - [`kafka`]: the test broker, private clusters, Kafka's console tools,
//!   and the Kafka tests' shared input and job.

mod fixtures;
pub mod kafka;
mod operators;
mod process;
mod rest;
mod sandbox;

pub use fixtures::{
    assert_counts_continue, counts, counts_job, counts_reference, dir_snapshot, ev, events,
    final_counts, probe_items, resigned, root, run_and_stop_after, sorted_lines, toml_path,
    windows_job, Ev, Rng,
};
pub use kafka::kafka;
pub use operators::{operator, polyglot, LANGUAGES};
pub use process::{wait_until, weir_bin, Process, Run, Weir};
pub use rest::{http, savepoint_answer};
pub use sandbox::Sandbox;
