//! End-to-end tests: build the operators in `plugins/` (and the test-only ones
//! in `tests/plugins/`) with the real `weir build`, run the real `weir` binary
//! on real files in a temporary directory, and compare its output with
//! expected output computed independently here.

mod harness;

mod bench;
mod capabilities;
mod checkpoints;
mod cli;
mod conformance;
mod diagnostics;
mod docs;
mod errors;
mod fuzz;
mod hostile;
mod jobs;
mod kafka;
mod kafka_recovery;
mod kafka_source;
mod keyless;
mod lifecycle;
mod limits;
mod savepoint_tools;
mod savepoints;
mod scaffold;
mod shadow;
mod shutdown;
mod swap;
mod upgrade;
