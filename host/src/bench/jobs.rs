//! The job cases of `weir bench`: real jobs, generator → operator →
//! blackhole, each run in a child `weir run` of its own (so that peak
//! memory is the run's own), which writes what it did to a report file
//! (`--report`); a case's twin runs native logic behind the operator's ID
//! (`--native-operator`). [`summarize`] makes a case's row of its runs.
//!
//! The case that triggers a savepoint halfway ([`run_with_savepoint`])
//! reads the child's log: the REST address from the line that announces it,
//! and its completed checkpoints.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::error::{bail, BenchError, Context as _};
use super::stats::{self, median};
use crate::api::client;

/// Sizes of the cases: full, or `--quick`.
pub(super) struct Scale {
    /// Events of each job case.
    pub(super) events: u64,
    /// Keys of the cases over "1,000,000 keys".
    pub(super) keys_1m: u64,
    /// Keys of the in-process state cases.
    pub(super) state_keys: u64,
    /// Runs of each job case.
    pub(super) runs: usize,
}

/// One job case: its job file, and the native logic behind it if any.
#[derive(Clone, Copy)]
pub(super) struct JobCase {
    /// The row it reports.
    pub(super) row: &'static str,
    /// The example operator it runs.
    pub(super) operator: &'static str,
    /// The native twin run instead of the operator's `.wasm`.
    pub(super) native: Option<&'static str>,
    /// The operator's input mode (`forward`, `key`).
    pub(super) input: &'static str,
    /// Events the generator makes.
    pub(super) events: u64,
    /// Distinct keys among them.
    pub(super) keys: u64,
    /// The operator's `config = …` line, if any.
    pub(super) config: &'static str,
    /// Checkpoints every second.
    pub(super) checkpoints: bool,
    /// A fixed input rate, events/s.
    pub(super) rate: Option<u64>,
    /// The blackhole sink measures end-to-end latency.
    pub(super) latency: bool,
    /// Event time from the wall clock (`timestamps = "now"`).
    pub(super) now: bool,
    /// Subtasks of the operator.
    pub(super) parallelism: u32,
    /// Trigger a savepoint (over REST) in the middle of the run.
    pub(super) savepoint: bool,
}

/// The job cases, each with its native twin where there is one.
pub(super) fn job_cases(s: &Scale) -> Vec<(JobCase, Option<JobCase>)> {
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
pub(super) struct RunFigures {
    /// Events/s over the job's own elapsed time.
    pub(super) rate: f64,
    /// Peak resident memory of the child, MiB.
    pub(super) rss_mib: f64,
    /// p50, p99, max (ms).
    latency: Option<(f64, f64, f64)>,
    /// Checkpoints completed, and how many of them full (with a savepoint).
    checkpoints: Option<(u64, u64)>,
}

/// Runs a job case once, in a child `weir run` of its own.
pub(super) fn run_once(case: &JobCase, wasm: &Path, work: &Path) -> Result<RunFigures, BenchError> {
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
) -> Result<(std::process::ExitStatus, String), BenchError> {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .args(["--rest-addr", "127.0.0.1:0", "--ready-file"])
        .arg(dir.join("ready"))
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
            if line.contains("checkpoint") && line.contains("complete in") {
                let _ = tx.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let triggered = (|| -> Result<(), BenchError> {
        let wait = Duration::from_secs(120);
        let what = format!("case `{}`", case.row);
        let addr = super::child::rest_address(&dir.join("ready"), &mut child, wait, &what)?;
        let started = Instant::now();
        // After the first checkpoint, and at least halfway through the input.
        rx.recv_timeout(wait).context("no checkpoint completed")?;
        let half =
            Duration::from_secs_f64(case.events as f64 / case.rate.unwrap_or(1) as f64 / 2.0);
        if let Some(rest) = half.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        let target = std::path::absolute(dir.join("savepoints"))?;
        let _ = std::fs::remove_dir_all(&target);
        client::savepoint_and_wait(
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
            "case `{}`: the savepoint failed: {e}; the job's log: {}",
            case.row,
            log.trim()
        );
    }
    let status = child.wait()?;
    let log = reader.join().unwrap_or_default();
    Ok((status, log))
}

/// The medians of a case's runs.
pub(super) fn summarize(case: &JobCase, runs: &[RunFigures]) -> Value {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let mut rss: Vec<f64> = runs.iter().map(|r| r.rss_mib).collect();
    let mut v = json!({
        "case": case.row,
        "events": case.events,
        "keys": case.keys,
        "runs": runs.len(),
        "checkpoints": case.checkpoints,
        "events_per_s": median(&mut rates),
        "events_per_s_min": stats::min(&rates),
        "events_per_s_max": stats::max(&rates),
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
        v["latency_p99_ms_max"] = json!(stats::max(&p99));
    }
    let cps: Vec<(u64, u64)> = runs.iter().filter_map(|r| r.checkpoints).collect();
    if !cps.is_empty() {
        v["checkpoints"] = json!(cps.iter().map(|c| c.0).collect::<Vec<_>>());
        v["full_checkpoints"] = json!(cps.iter().map(|c| c.1).collect::<Vec<_>>());
        v["savepoints"] = json!(1);
    }
    v
}
