//! `weir bench [CASE ...] [--runs N] [--quick] [--json]`: the arguments of
//! the benchmarks, which are `weir_host::bench`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `weir bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Cases to run (default: all but `kafka`): map, keyed-count,
    /// keyed-count-1m, windowed-sum, latency, latency-1m (1,000,000 keys at
    /// a fixed rate, through full checkpoints and a savepoint), checkpoint,
    /// checkpoint-map (map state and timers), savepoint, start,
    /// languages (`keyed-count` in Rust, C, Go, Python and JavaScript:
    /// `.wasm` size, start, memory per subtask, events/s), kafka (Kafka →
    /// keyed-count → Kafka, exactly-once and at-least-once: events/s, and
    /// latency at a fixed rate; needs a broker, see --kafka).
    cases: Vec<String>,
    /// Runs of each job case (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A smoke run: every case small and once (not a measurement).
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Where the example operators' sources are.
    #[arg(long, value_name = "DIR", default_value = "plugins/rust")]
    plugins: PathBuf,
    /// The Kafka cluster of the `kafka` case (`scripts/services.sh up kafka`
    /// starts one); giving it also runs the case when no case is named.
    #[arg(long, value_name = "BOOTSTRAP")]
    kafka: Option<String>,
}

impl BenchArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let settings = weir_host::bench::Settings {
            cases: self.cases,
            runs: self.runs,
            quick: self.quick,
            json: self.json,
            plugins: self.plugins,
            kafka: self.kafka,
        };
        weir_host::bench::run(&settings, &mut |line| outln!("{line}"))?;
        Ok(())
    }
}
