//! What `weir bench` runs: which cases (all but `kafka` unless named), at
//! which scale (full, or `--quick`), in which order, and the rows they
//! report; where the example operators are, built when their `.wasm` is
//! missing.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::{bail, BenchError, Context as _};
use super::jobs::{job_cases, run_once, summarize, JobCase, Scale};
use super::report::{describe, machine};
use super::stats::median;
use super::{inproc, kafka};

/// Every case, in the order they run.
pub(super) const CASES: [&str; 12] = [
    "map",
    "keyed-count",
    "keyed-count-1m",
    "windowed-sum",
    "latency",
    "latency-1m",
    "checkpoint",
    "checkpoint-map",
    "savepoint",
    "start",
    "languages",
    "kafka",
];

/// The `languages` case: each language's `keyed-count`, and the share of
/// the full event count it runs (the slow interpreters get fewer events so
/// that a run takes seconds, not minutes).
const LANGUAGES: [(&str, &str, u64); 5] = [
    ("rust", "keyed-count-rust", 1),
    ("c", "keyed-count-c", 1),
    ("go", "keyed-count-go", 5),
    ("python", "keyed-count-python", 25),
    ("js", "keyed-count-js", 100),
];

/// What `weir bench` was asked to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cases to run, by name; none: all but `kafka` (which runs too
    /// when [`Settings::kafka`] is given).
    pub cases: Vec<String>,
    /// Runs of each job case (the median is reported).
    pub runs: usize,
    /// A smoke run: every case small and once (not a measurement).
    pub quick: bool,
    /// Results as one JSON document at the end rather than a line each.
    pub json: bool,
    /// Where the example operators' sources are (`plugins/rust`).
    pub plugins: PathBuf,
    /// The Kafka cluster of the `kafka` case.
    pub kafka: Option<String>,
}

/// Runs the benchmarks `settings` asks for, handing each line of output to
/// `out` as it comes (a result, or the JSON document at the end).
pub fn run(settings: &Settings, out: &mut dyn FnMut(&str)) -> Result<(), BenchError> {
    for c in &settings.cases {
        if !CASES.contains(&c.as_str()) {
            bail!("no benchmark case `{c}` (there are: {})", CASES.join(", "));
        }
    }
    if settings.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scale = if settings.quick {
        Scale {
            events: 20_000,
            keys_1m: 5_000,
            state_keys: 10_000,
            runs: 1,
        }
    } else {
        Scale {
            events: 5_000_000,
            keys_1m: 1_000_000,
            state_keys: 1_000_000,
            runs: settings.runs,
        }
    };
    // `kafka` needs a broker: it runs when named, or when --kafka says where.
    let wanted = |c: &str| {
        (settings.cases.is_empty() && (c != "kafka" || settings.kafka.is_some()))
            || settings.cases.iter().any(|x| x == c)
    };
    let work = tempfile::Builder::new()
        .prefix("weir-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    if !settings.json {
        out(&format!(
            "weir bench: {} run(s) per job case, {} events each; machine: {}",
            scale.runs,
            scale.events,
            machine()
        ));
    }
    let mut results: Vec<Value> = Vec::new();
    let mut report = |v: Value| {
        if !settings.json {
            out(&describe(&v));
        }
        results.push(v);
    };
    // Peak RSS of `keyed-count` (10,000 keys), the base of memory per key.
    let mut count_rss: Option<f64> = None;
    for (case, native) in job_cases(&scale) {
        if !wanted(case.row) {
            continue;
        }
        let wasm = operator(&settings.plugins, case.operator)?;
        // A case and its native twin run in turns, so that a noisy
        // neighbour slows both alike and their ratio holds.
        let mut runs = Vec::new();
        let mut native_runs = Vec::new();
        for _ in 0..scale.runs {
            if let Some(n) = &native {
                native_runs.push(run_once(n, &wasm, work.path())?);
            }
            runs.push(run_once(&case, &wasm, work.path())?);
        }
        let mut row = summarize(&case, &runs);
        if case.row == "keyed-count" {
            count_rss = row["peak_rss_mib"].as_f64();
        }
        // Memory per key: against the same job over 10,000 keys (the
        // `keyed-count` case, run now if it was not).
        let count = job_cases(&scale)[1].0;
        let extra_keys = case.keys.saturating_sub(count.keys);
        if case.row == "keyed-count-1m" && extra_keys > 0 {
            // The median peak RSS of `case` over the runs.
            let median_rss = |case: &JobCase| -> Result<f64, BenchError> {
                let mut rss = (0..scale.runs)
                    .map(|_| run_once(case, &wasm, work.path()).map(|r| r.rss_mib))
                    .collect::<Result<Vec<_>, BenchError>>()?;
                Ok(median(&mut rss))
            };
            let base = match count_rss {
                Some(rss) => rss,
                None => median_rss(&count)?,
            };
            let per_key = |rss: f64, base: f64| (rss - base) * (1 << 20) as f64 / extra_keys as f64;
            let rss = row["peak_rss_mib"].as_f64().unwrap_or(0.0);
            row["bytes_per_key"] = json!(per_key(rss, base));
            row["base_rss_mib"] = json!(base);
            // What the state holds per key, apart from checkpoints: the
            // peak above adds the shards copied on write while a full
            // checkpoint is being written, and the checkpoint's buffers.
            let quiet = |case: JobCase| JobCase {
                checkpoints: false,
                ..case
            };
            let held = (median_rss(&quiet(case))?, median_rss(&quiet(count))?);
            row["held_bytes_per_key"] = json!(per_key(held.0, held.1));
        }
        if let Some(n) = &native {
            let mut ratios: Vec<f64> = runs
                .iter()
                .zip(&native_runs)
                .map(|(w, n)| w.rate / n.rate)
                .collect();
            row["of_native"] = json!(median(&mut ratios));
            report(summarize(n, &native_runs));
        }
        report(row);
    }
    if wanted("checkpoint") {
        let f = inproc::checkpoint(scale.state_keys, 0.01, &work.path().join("checkpoint"))?;
        report(json!({ "case": "checkpoint", "figures": f }));
    }
    if wanted("checkpoint-map") {
        let f =
            inproc::checkpoint_map(scale.state_keys, 0.01, &work.path().join("checkpoint-map"))?;
        report(json!({ "case": "checkpoint-map", "figures": f }));
    }
    if wanted("savepoint") {
        let f = inproc::savepoint(scale.state_keys, &work.path().join("savepoints"))?;
        report(json!({ "case": "savepoint", "figures": f }));
    }
    if wanted("start") {
        let wasm = operator(&settings.plugins, "keyed-count")?;
        let f = inproc::component_start(&wasm, &work.path().join("cache"))?;
        report(json!({ "case": "start", "figures": f }));
    }
    if wanted("languages") {
        let count = job_cases(&scale)[1].0;
        for (lang, row, share) in LANGUAGES {
            let wasm = language_operator(&settings.plugins, lang)?;
            let size = std::fs::metadata(&wasm)?.len();
            let start = inproc::component_start(&wasm, &work.path().join("cache"))?;
            let case = JobCase {
                row,
                events: (scale.events / share).max(2_000),
                ..count
            };
            let runs = (0..scale.runs)
                .map(|_| run_once(&case, &wasm, work.path()))
                .collect::<Result<Vec<_>, BenchError>>()?;
            // Memory per subtask: 4 subtasks against 1, on a short input.
            let small = |parallelism| JobCase {
                events: 2_000,
                parallelism,
                checkpoints: false,
                ..case
            };
            let one = run_once(&small(1), &wasm, work.path())?.rss_mib;
            let four = run_once(&small(4), &wasm, work.path())?.rss_mib;
            let mut row = summarize(&case, &runs);
            row["language"] = json!(lang);
            row["wasm_bytes"] = json!(size);
            row["start"] = serde_json::to_value(&start)?;
            row["mib_per_subtask"] = json!((four - one) / 3.0);
            report(row);
        }
    }
    if wanted("kafka") {
        let bootstrap = settings.kafka.as_deref().unwrap_or("127.0.0.1:9092");
        kafka::check_reachable(bootstrap)?;
        let wasm = operator(&settings.plugins, "keyed-count")?;
        let kafka_scale = kafka::KafkaScale {
            events: if settings.quick { 20_000 } else { 2_000_000 },
            runs: scale.runs,
            rate: if settings.quick { 2_000 } else { 10_000 },
            duration: std::time::Duration::from_secs(if settings.quick { 4 } else { 30 }),
        };
        for row in kafka::run(bootstrap, &wasm, work.path(), &kafka_scale)? {
            report(row);
        }
    }
    if settings.json {
        out(&serde_json::to_string_pretty(
            &json!({ "machine": machine(), "results": results }),
        )?);
    }
    Ok(())
}

/// The `.wasm` of example operator `name` in `plugins`, built if missing.
fn operator(plugins: &Path, name: &str) -> Result<PathBuf, BenchError> {
    let dir = std::path::absolute(plugins.join(name))?;
    let wasm = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if wasm.is_file() {
        return Ok(wasm);
    }
    if !dir.is_dir() {
        bail!(
            "operator `{name}` not found: no `{}` (run from the repository root, or pass --plugins DIR)",
            dir.display()
        );
    }
    Ok(crate::build::build_plugin(&dir, None)?)
}

/// `<lang>/keyed-count` next to `plugins` (`plugins/rust`), built if missing.
fn language_operator(plugins: &Path, lang: &str) -> Result<PathBuf, BenchError> {
    let plugins = std::path::absolute(plugins)?;
    let dir = plugins
        .parent()
        .unwrap_or(&plugins)
        .join(lang)
        .join("keyed-count");
    let wasm = dir.join("keyed_count.wasm");
    if wasm.is_file() {
        return Ok(wasm);
    }
    Ok(crate::build::build_plugin(&dir, None)?)
}
