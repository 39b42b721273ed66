//! `weir bench`: the benchmarks, all of them here. The binary's
//! `cli/bench.rs` parses the arguments into [`Settings`] and calls [`run`].
//! This part sits on top of the layers and may use every one of them.
//!
//! The job cases run real jobs, generator → operator → blackhole, each run
//! in a child `weir run` of its own (so that peak memory is the run's own),
//! and report events/s (the median of the runs), peak RSS (and for
//! `keyed-count-1m` the bytes per key over the 10,000 keys of
//! `keyed-count`: at the peak with checkpoints, and held by the state, from
//! the same two jobs run without checkpoints), and for `latency` and
//! `latency-1m` the end-to-end p50/p99/max at a fixed input rate, measured
//! to the µs (`latency-1m` over 1,000,000 keys, through full checkpoints and
//! a savepoint triggered over REST halfway). `map` and `keyed-count` also
//! run the same logic compiled into the host (the native ceiling), so the
//! cost of the WebAssembly boundary is a measured ratio. The `kafka` case
//! runs Kafka → `keyed-count` → Kafka against a real broker. The other
//! cases run inside this process over the real code: checkpoint cost (value
//! state; map state with windows and timers), savepoint write and restore,
//! component start. `--quick` runs everything small and once: a smoke run,
//! not a measurement.
//!
//! Operators come from `plugins/rust` (built with `weir build` when their
//! `.wasm` is missing); `--plugins DIR` points elsewhere.
//!
//! | file | holds |
//! | --- | --- |
//! | `run.rs` | [`run`] and its [`Settings`]: which cases run, at which scale, in which order; where the example operators are |
//! | `jobs.rs` | the job cases: their job files, one run in a child `weir run` and what it measured, a case's row of its runs |
//! | `kafka.rs` | the `kafka` case: topics, a producer and a `read_committed` reader of its own, throughput and latency |
//! | `inproc.rs` | what is measured inside this process: checkpoints, savepoints, component start |
//! | `child.rs` | the benchmark's side of a child `weir run`: the native twins behind operator IDs ([`native_twins`]), its peak memory ([`peak_rss_kib`]) |
//! | `report.rs` | one line per result, and the machine measured on |
//! | `stats.rs` | medians, minimums and maximums of runs, defined once for every case |
//! | `error.rs` | [`BenchError`]: why a case could not run, in one line |

mod child;
mod error;
mod inproc;
mod jobs;
mod kafka;
mod report;
mod run;
mod stats;

pub use child::{native_twins, peak_rss_kib};
pub use error::BenchError;
pub use run::{run, Settings};
