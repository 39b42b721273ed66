//! `weir bench [CASE ...] [--runs N] [--quick] [--json]`: the benchmarks.
//!
//! The job cases run real jobs, generator → operator → blackhole, each run
//! in a child `weir run` of its own (so that peak memory is the run's own),
//! and report events/s (the median of the runs), peak RSS (and for
//! `keyed-count-1m` the bytes per key over the 10,000 keys of
//! `keyed-count`: at the peak with checkpoints, and held by the state, from
//! the same two jobs run without checkpoints), and for `latency` and `latency-1m` the end-to-end
//! p50/p99/max at a fixed input rate, measured to the µs (`latency-1m`
//! over 1,000,000 keys, through full checkpoints and a savepoint triggered
//! over REST halfway). `map` and `keyed-count` also run the same logic
//! compiled into the host (the native ceiling), so the cost of the
//! WebAssembly boundary is a measured ratio. The other cases run inside this
//! process over the real code: checkpoint cost (value state; map state with
//! windows and timers), savepoint write and restore, component start. `--quick` runs
//! everything small and once: a smoke run, not a measurement.
//!
//! Operators come from `plugins/rust` (built with `weir build` when their
//! `.wasm` is missing); `--plugins DIR` points elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::{json, Value};

/// Every case, in the order they run.
const CASES: [&str; 12] = [
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

/// Sizes of the cases: full, or `--quick`.
struct Scale {
    events: u64,
    keys_1m: u64,
    state_keys: u64,
    runs: usize,
}

/// One job case: its job file, and the native logic behind it if any.
#[derive(Clone, Copy)]
struct JobCase {
    row: &'static str,
    operator: &'static str,
    native: Option<&'static str>,
    input: &'static str,
    events: u64,
    keys: u64,
    config: &'static str,
    checkpoints: bool,
    rate: Option<u64>,
    latency: bool,
    /// Event time from the wall clock (`timestamps = "now"`).
    now: bool,
    /// Subtasks of the operator.
    parallelism: u32,
    /// Trigger a savepoint (over REST) in the middle of the run.
    savepoint: bool,
}

impl BenchArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        for c in &self.cases {
            if !CASES.contains(&c.as_str()) {
                bail!("no benchmark case `{c}` (there are: {})", CASES.join(", "));
            }
        }
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        let scale = if self.quick {
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
                runs: self.runs,
            }
        };
        // `kafka` needs a broker: it runs when named, or when --kafka says where.
        let wanted = |c: &str| {
            (self.cases.is_empty() && (c != "kafka" || self.kafka.is_some()))
                || self.cases.iter().any(|x| x == c)
        };
        let work = tempfile::Builder::new()
            .prefix("weir-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let mut results: Vec<Value> = Vec::new();
        let mut report = |v: Value| {
            if !self.json {
                outln!("{}", describe(&v));
            }
            results.push(v);
        };
        if !self.json {
            outln!(
                "weir bench: {} run(s) per job case, {} events each; machine: {}",
                scale.runs,
                scale.events,
                machine()
            );
        }
        // Peak RSS of `keyed-count` (10,000 keys), the base of memory per key.
        let mut count_rss: Option<f64> = None;
        for (case, native) in job_cases(&scale) {
            if !wanted(case.row) {
                continue;
            }
            let wasm = self.operator(case.operator)?;
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
                let median_rss = |case: &JobCase| -> anyhow::Result<f64> {
                    let mut rss = (0..scale.runs)
                        .map(|_| run_once(case, &wasm, work.path()).map(|r| r.rss_mib))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    Ok(median(&mut rss))
                };
                let base = match count_rss {
                    Some(rss) => rss,
                    None => median_rss(&count)?,
                };
                let per_key =
                    |rss: f64, base: f64| (rss - base) * (1 << 20) as f64 / extra_keys as f64;
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
            let f = weir_host::api::bench::checkpoint(
                scale.state_keys,
                0.01,
                &work.path().join("checkpoint"),
            )
            .map_err(anyhow::Error::msg)?;
            report(json!({ "case": "checkpoint", "figures": f }));
        }
        if wanted("checkpoint-map") {
            let f = weir_host::api::bench::checkpoint_map(
                scale.state_keys,
                0.01,
                &work.path().join("checkpoint-map"),
            )
            .map_err(anyhow::Error::msg)?;
            report(json!({ "case": "checkpoint-map", "figures": f }));
        }
        if wanted("savepoint") {
            let f =
                weir_host::api::bench::savepoint(scale.state_keys, &work.path().join("savepoints"))
                    .map_err(anyhow::Error::msg)?;
            report(json!({ "case": "savepoint", "figures": f }));
        }
        if wanted("start") {
            let wasm = self.operator("keyed-count")?;
            let f = weir_host::api::bench::component_start(&wasm, &work.path().join("cache"))
                .map_err(anyhow::Error::msg)?;
            report(json!({ "case": "start", "figures": f }));
        }
        if wanted("languages") {
            let count = job_cases(&scale)[1].0;
            for (lang, row, share) in LANGUAGES {
                let wasm = self.language_operator(lang)?;
                let size = std::fs::metadata(&wasm)?.len();
                let start =
                    weir_host::api::bench::component_start(&wasm, &work.path().join("cache"))
                        .map_err(anyhow::Error::msg)?;
                let case = JobCase {
                    row,
                    events: (scale.events / share).max(2_000),
                    ..count
                };
                let runs = (0..scale.runs)
                    .map(|_| run_once(&case, &wasm, work.path()))
                    .collect::<anyhow::Result<Vec<_>>>()?;
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
            let bootstrap = self.kafka.as_deref().unwrap_or("127.0.0.1:9092");
            super::bench_kafka::check_reachable(bootstrap)?;
            let wasm = self.operator("keyed-count")?;
            let kafka = super::bench_kafka::KafkaScale {
                events: if self.quick { 20_000 } else { 2_000_000 },
                runs: scale.runs,
                rate: if self.quick { 2_000 } else { 10_000 },
                duration: std::time::Duration::from_secs(if self.quick { 4 } else { 30 }),
            };
            for row in super::bench_kafka::run(bootstrap, &wasm, work.path(), &kafka)? {
                report(row);
            }
        }
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "machine": machine(), "results": results }))?
            );
        }
        Ok(())
    }

    /// The `.wasm` of example operator `name`, built if missing.
    fn operator(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = std::path::absolute(self.plugins.join(name))?;
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
        Ok(weir_host::build::build_plugin(&dir, None)?)
    }
}

impl BenchArgs {
    /// `plugins/<lang>/keyed-count` (next to `--plugins`), built if missing.
    fn language_operator(&self, lang: &str) -> anyhow::Result<PathBuf> {
        let plugins = std::path::absolute(&self.plugins)?;
        let dir = plugins
            .parent()
            .unwrap_or(&plugins)
            .join(lang)
            .join("keyed-count");
        let wasm = dir.join("keyed_count.wasm");
        if wasm.is_file() {
            return Ok(wasm);
        }
        Ok(weir_host::build::build_plugin(&dir, None)?)
    }
}

/// The job cases, each with its native twin where there is one.
fn job_cases(s: &Scale) -> Vec<(JobCase, Option<JobCase>)> {
    let base = JobCase {
        row: "",
        operator: "",
        native: None,
        input: "forward",
        events: s.events,
        keys: 10_000,
        config: "",
        checkpoints: false,
        rate: None,
        latency: false,
        now: false,
        parallelism: 1,
        savepoint: false,
    };
    let map = JobCase {
        row: "map",
        operator: "map",
        ..base
    };
    let count = JobCase {
        row: "keyed-count",
        operator: "keyed-count",
        input: "key",
        checkpoints: true,
        ..base
    };
    vec![
        (
            map,
            Some(JobCase {
                row: "map-native",
                native: Some("map"),
                ..map
            }),
        ),
        (
            count,
            Some(JobCase {
                row: "keyed-count-native",
                native: Some("keyed-count"),
                ..count
            }),
        ),
        (
            JobCase {
                row: "keyed-count-1m",
                keys: s.keys_1m,
                ..count
            },
            None,
        ),
        (
            JobCase {
                row: "windowed-sum",
                operator: "windowed-sum",
                keys: 100_000,
                // Event time from the clock: a 1 s window holds a second's
                // worth of events, over all 100,000 keys.
                now: true,
                config: "config = { size_ms = \"1000\" }",
                ..count
            },
            None,
        ),
        (
            JobCase {
                row: "latency",
                events: (s.events / 2).max(1),
                rate: Some(if s.events < 1_000_000 {
                    20_000
                } else {
                    500_000
                }),
                latency: true,
                now: true,
                ..count
            },
            None,
        ),
        (
            // ~10 s at a fixed rate over 1,000,000 keys: several checkpoints
            // (full ones whenever the deltas outgrow the last full one, as
            // they soon do with 40 % of the keys changed each second) and a
            // savepoint in the middle.
            JobCase {
                row: "latency-1m",
                keys: s.keys_1m,
                events: if s.events < 1_000_000 {
                    40_000
                } else {
                    5_000_000
                },
                rate: Some(if s.events < 1_000_000 {
                    10_000
                } else {
                    500_000
                }),
                latency: true,
                now: true,
                savepoint: true,
                ..count
            },
            None,
        ),
    ]
}

fn job_file(case: &JobCase, wasm: &Path) -> String {
    let mut job = format!(
        r#"name = "bench-{row}"
max_parallelism = 128

[source]
type = "generator"
count = {events}
keys = {keys}
value_size = 100
{rate}{timestamps}
[[operators]]
id = "op"
wasm = {wasm:?}
parallelism = {parallelism}
input = "{input}"
{config}

[sink]
type = "blackhole"
{latency}
"#,
        row = case.row,
        events = case.events,
        keys = case.keys,
        rate = case
            .rate
            .map(|r| format!("rate = {r}\n"))
            .unwrap_or_default(),
        timestamps = if case.now {
            "timestamps = \"now\"\n"
        } else {
            ""
        },
        wasm = wasm.display().to_string(),
        input = case.input,
        parallelism = case.parallelism,
        config = case.config,
        latency = if case.latency { "latency = true" } else { "" },
    );
    if case.checkpoints {
        job.push_str(
            "\n[checkpoint]\ninterval = \"1s\"\ndir = \"state\"\nmode = \"exactly-once\"\n",
        );
    }
    job
}

/// What one run of a job case measured.
struct RunFigures {
    rate: f64,
    rss_mib: f64,
    /// p50, p99, max (ms).
    latency: Option<(f64, f64, f64)>,
    /// Checkpoints completed, and how many of them full (with a savepoint).
    checkpoints: Option<(u64, u64)>,
}

/// Runs a job case once, in a child `weir run` of its own.
fn run_once(case: &JobCase, wasm: &Path, work: &Path) -> anyhow::Result<RunFigures> {
    let dir = work.join(case.row);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("job.toml"), job_file(case, wasm))?;
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let me = std::env::current_exe().context("finding the weir binary")?;
    let mut cmd = Command::new(&me);
    cmd.current_dir(&dir)
        .args(["run", "job.toml", "--report", "report.json"])
        .env("WEIR_LOG", "warn");
    if let Some(native) = case.native {
        cmd.arg("--native-operator").arg(format!("op={native}"));
    }
    let (status, log) = if case.savepoint {
        run_with_savepoint(case, cmd, &dir)?
    } else {
        let out = cmd.output().context("running weir run")?;
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    if !status.success() {
        bail!("case `{}`: the job failed: {}", case.row, log.trim());
    }
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    let events = r["events_in"].as_u64().unwrap_or(0);
    if events != case.events {
        bail!(
            "case `{}`: {events} events read of {}",
            case.row,
            case.events
        );
    }
    Ok(RunFigures {
        rate: events as f64 / r["elapsed_s"].as_f64().unwrap_or(f64::NAN),
        rss_mib: r["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        latency: r["latency_ms"].as_object().map(|l| {
            (
                l["p50"].as_f64().unwrap_or(0.0),
                l["p99"].as_f64().unwrap_or(0.0),
                l["max"].as_f64().unwrap_or(0.0),
            )
        }),
        checkpoints: case.savepoint.then(|| {
            let done = log.lines().filter(|l| l.contains("complete in"));
            let (mut all, mut full) = (0, 0);
            for line in done.filter(|l| l.contains("checkpoint")) {
                all += 1;
                full += u64::from(line.contains(", full)"));
            }
            (all, full)
        }),
    })
}

/// Runs `cmd` (a `weir run` of `case`) with a REST address, and triggers a
/// savepoint into `dir/savepoints` halfway through its input (and after its
/// first checkpoint); returns its exit status and its log.
fn run_with_savepoint(
    case: &JobCase,
    mut cmd: Command,
    dir: &Path,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .args(["--rest-addr", "127.0.0.1:0"])
        // Checkpoints are logged at `info`: counted from the log.
        .env("WEIR_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running weir run")?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some((_, addr)) = line
                .split_once("REST API of job")
                .and_then(|(_, r)| r.split_once("at http://"))
            {
                let _ = tx.send(Some(addr.trim().to_string()));
            } else if line.contains("checkpoint") && line.contains("complete in") {
                let _ = tx.send(None);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let triggered = (|| -> anyhow::Result<()> {
        let wait = Duration::from_secs(120);
        let addr = loop {
            match rx.recv_timeout(wait) {
                Ok(Some(addr)) => break addr,
                Ok(None) => {}
                Err(_) => bail!("the job printed no REST address"),
            }
        };
        let started = Instant::now();
        // After the first checkpoint, and at least halfway through the input.
        while rx
            .recv_timeout(wait)
            .context("no checkpoint completed")?
            .is_some()
        {}
        let half =
            Duration::from_secs_f64(case.events as f64 / case.rate.unwrap_or(1) as f64 / 2.0);
        if let Some(rest) = half.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        let target = std::path::absolute(dir.join("savepoints"))?;
        let _ = std::fs::remove_dir_all(&target);
        weir_host::api::client::savepoint_and_wait(
            &addr,
            "savepoints",
            json!({ "target-directory": target.display().to_string() }),
            wait,
        )?;
        Ok(())
    })();
    if let Err(e) = triggered {
        let _ = child.kill();
        let _ = child.wait();
        let log = reader.join().unwrap_or_default();
        bail!(
            "case `{}`: the savepoint failed: {e:#}; the job's log: {}",
            case.row,
            log.trim()
        );
    }
    let status = child.wait()?;
    let log = reader.join().unwrap_or_default();
    Ok((status, log))
}

/// The medians of a case's runs.
fn summarize(case: &JobCase, runs: &[RunFigures]) -> Value {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let mut rss: Vec<f64> = runs.iter().map(|r| r.rss_mib).collect();
    let mut v = json!({
        "case": case.row,
        "events": case.events,
        "keys": case.keys,
        "runs": runs.len(),
        "checkpoints": case.checkpoints,
        "events_per_s": median(&mut rates),
        "events_per_s_min": rates.iter().copied().fold(f64::INFINITY, f64::min),
        "events_per_s_max": rates.iter().copied().fold(0.0, f64::max),
        "peak_rss_mib": median(&mut rss),
    });
    if let Some(rate) = case.rate {
        v["input_rate"] = json!(rate);
    }
    let mut p50: Vec<f64> = runs.iter().filter_map(|r| r.latency.map(|l| l.0)).collect();
    let mut p99: Vec<f64> = runs.iter().filter_map(|r| r.latency.map(|l| l.1)).collect();
    let mut max: Vec<f64> = runs.iter().filter_map(|r| r.latency.map(|l| l.2)).collect();
    if !p99.is_empty() {
        v["latency_p50_ms"] = json!(median(&mut p50));
        v["latency_p99_ms"] = json!(median(&mut p99));
        v["latency_max_ms"] = json!(median(&mut max));
        v["latency_p99_ms_max"] = json!(p99.iter().copied().fold(0.0, f64::max));
    }
    let cps: Vec<(u64, u64)> = runs.iter().filter_map(|r| r.checkpoints).collect();
    if !cps.is_empty() {
        v["checkpoints"] = json!(cps.iter().map(|c| c.0).collect::<Vec<_>>());
        v["full_checkpoints"] = json!(cps.iter().map(|c| c.1).collect::<Vec<_>>());
        v["savepoints"] = json!(1);
    }
    v
}

/// The median of `xs` (sorts them).
pub(super) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("?".to_string(), |kib| format!("{} GiB", kib / (1 << 20)));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".to_string());
    format!("{cores} cores ({cpu}), {mem}")
}

/// One line for a result.
fn describe(v: &Value) -> String {
    let case = v["case"].as_str().unwrap_or("?");
    if case.starts_with("kafka-latency") {
        return super::bench_kafka::describe_latency(v);
    }
    if let Some(rate) = v["events_per_s"].as_f64() {
        let mut line = format!(
            "{case:<20} {:>7.2} M events/s (min {:.2}, max {:.2}), peak RSS {:.0} MiB",
            rate / 1e6,
            v["events_per_s_min"].as_f64().unwrap_or(0.0) / 1e6,
            v["events_per_s_max"].as_f64().unwrap_or(0.0) / 1e6,
            v["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
        if let Some(d) = v["delivery"].as_str() {
            line.push_str(&format!(
                ", {d}, {} partitions, {} events (the bench's own producer wrote them at {:.2} M/s, its read_committed reader read the output at {:.2} M/s)",
                v["partitions"],
                v["events"],
                v["input_produced_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                v["output_read_per_s"].as_f64().unwrap_or(0.0) / 1e6,
            ));
        }
        if let Some(r) = v["of_native"].as_f64() {
            line.push_str(&format!(", {:.0} % of native", r * 100.0));
        }
        if let Some(p99) = v["latency_p99_ms"].as_f64() {
            line.push_str(&format!(
                ", latency p50 {:.3} ms, p99 {p99:.3} ms, max {:.3} ms at {} events/s",
                v["latency_p50_ms"].as_f64().unwrap_or(0.0),
                v["latency_max_ms"].as_f64().unwrap_or(0.0),
                v["input_rate"]
            ));
        }
        if let Some(full) = v["full_checkpoints"].as_array() {
            line.push_str(&format!(
                " (checkpoints per run {}, of them full {}, and a savepoint)",
                v["checkpoints"],
                json!(full)
            ));
        }
        if let Some(b) = v["bytes_per_key"].as_f64() {
            line.push_str(&format!(
                ", {b:.0} bytes per key at the peak with checkpoints every second (over {:.0} MiB with 10,000 keys)",
                v["base_rss_mib"].as_f64().unwrap_or(0.0)
            ));
        }
        if let Some(b) = v["held_bytes_per_key"].as_f64() {
            line.push_str(&format!(
                ", {b:.0} held by the state (the same job without checkpoints)"
            ));
        }
        if let Some(bytes) = v["wasm_bytes"].as_u64() {
            let start = &v["start"];
            line.push_str(&format!(
                "; .wasm {:.2} MiB, start cold {:.0} ms / cached {:.1} ms, {:.1} MiB per subtask",
                bytes as f64 / (1 << 20) as f64,
                start["cold_ms"].as_f64().unwrap_or(0.0),
                start["cached_ms"].as_f64().unwrap_or(0.0),
                v["mib_per_subtask"].as_f64().unwrap_or(0.0),
            ));
        }
        return line;
    }
    let f = &v["figures"];
    match case {
        "checkpoint" => format!(
            "{case:<20} {} keys: full {} bytes (at the barrier {:.1} ms, write {:.0} ms); {} changed: delta {} bytes = {:.2} % of full (at the barrier {:.2} ms, write {:.1} ms)",
            f["keys"], f["full_bytes"],
            f["full_copy_ms"].as_f64().unwrap_or(0.0), f["full_write_ms"].as_f64().unwrap_or(0.0),
            f["changed"], f["delta_bytes"],
            100.0 * f["delta_bytes"].as_f64().unwrap_or(0.0) / f["full_bytes"].as_f64().unwrap_or(1.0),
            f["delta_copy_ms"].as_f64().unwrap_or(0.0), f["delta_write_ms"].as_f64().unwrap_or(0.0),
        ),
        "checkpoint-map" => format!(
            "{case:<20} {} keys of map state + a timer each: full {} bytes ({} state + {} timers; at the barrier {:.1} ms, write {:.0} ms); {} changed: delta {} bytes ({} state + {} timers) = {:.2} % of full (at the barrier {:.2} ms, write {:.1} ms)",
            f["keys"], f["full_bytes"], f["full_state_bytes"], f["full_timer_bytes"],
            f["full_copy_ms"].as_f64().unwrap_or(0.0), f["full_write_ms"].as_f64().unwrap_or(0.0),
            f["changed"], f["delta_bytes"], f["delta_state_bytes"], f["delta_timer_bytes"],
            100.0 * f["delta_bytes"].as_f64().unwrap_or(0.0) / f["full_bytes"].as_f64().unwrap_or(1.0),
            f["delta_copy_ms"].as_f64().unwrap_or(0.0), f["delta_write_ms"].as_f64().unwrap_or(0.0),
        ),
        "savepoint" => format!(
            "{case:<20} {} keys, {} bytes: write {:.0} ms (+ snapshot at the barrier {:.1} ms), check {:.0} ms, restore {:.0} ms",
            f["keys"], f["bytes"],
            f["write_ms"].as_f64().unwrap_or(0.0), f["copy_ms"].as_f64().unwrap_or(0.0),
            f["check_ms"].as_f64().unwrap_or(0.0), f["restore_ms"].as_f64().unwrap_or(0.0),
        ),
        "start" => format!(
            "{case:<20} keyed-count: cold (compile) {:.0} ms, cached {:.1} ms (+ engine set-up {:.1} ms once per process)",
            f["cold_ms"].as_f64().unwrap_or(0.0), f["cached_ms"].as_f64().unwrap_or(0.0),
            f["engine_ms"].as_f64().unwrap_or(0.0),
        ),
        _ => v.to_string(),
    }
}
