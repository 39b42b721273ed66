//! `weir shadow`: run a candidate `.wasm` beside an operator's current
//! logic and diff their outputs (see `weir_host::engine::upgrades::shadow`).
//!
//! - `weir shadow [JOB.toml] --from-savepoint DIR --input FILE --operator ID
//!   --wasm CANDIDATE.wasm [--json] [--diff-file PATH]`: offline, replays
//!   recorded input through both, each restored from the savepoint. The job
//!   file (default `job.toml` in the current directory) names the
//!   operator's current `.wasm`, its config and budgets, and the source's
//!   format and watermark delay.
//! - `weir shadow start --operator ID --wasm CANDIDATE.wasm [--queue N]
//!   [--diff-file PATH] [--addr HOST:PORT]`, `weir shadow status [--json]`,
//!   `weir shadow stop`: a live shadow run in a running job, through its
//!   REST API.
//!
//! Differences are findings, not errors: the commands exit 0 with them. A
//! refused candidate, a failed candidate (offline) or a job that cannot be
//! reached exit 1 with one line.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use weir_host::engine::upgrades::shadow;
use weir_host::job::JobSpec;
use weir_host::model::show_key;

use weir_host::api::client;

/// Arguments of `weir shadow`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ShadowArgs {
    #[command(subcommand)]
    command: Option<ShadowCommand>,
    #[command(flatten)]
    offline: OfflineArgs,
}

/// Offline: `weir shadow [JOB.toml] --from-savepoint DIR --input FILE ...`.
#[derive(Debug, Args)]
struct OfflineArgs {
    /// The job file that names the operator's current `.wasm`, config and
    /// budgets (default: `job.toml` in the current directory).
    #[arg(value_name = "JOB.toml")]
    job: Option<PathBuf>,
    /// The savepoint whose state both logics start from.
    #[arg(long, value_name = "DIR", required = true)]
    from_savepoint: Option<PathBuf>,
    /// Recorded input to replay (JSON lines, or the job source's format),
    /// as the operator receives it.
    #[arg(long, value_name = "FILE", required = true)]
    input: Option<PathBuf>,
    /// The operator ID.
    #[arg(long, value_name = "ID", required = true)]
    operator: Option<String>,
    /// The candidate `.wasm`.
    #[arg(long, value_name = "CANDIDATE.wasm", required = true)]
    wasm: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Where every difference goes, as JSON lines (default:
    /// `shadow-<operator>-<ms>.jsonl` next to the job file).
    #[arg(long, value_name = "PATH")]
    diff_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ShadowCommand {
    /// Start a shadow run of a candidate in a running job.
    Start(StartArgs),
    /// Show the running job's shadow run.
    Status(StatusArgs),
    /// End the running job's shadow run.
    Stop(StopArgs),
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The operator ID.
    #[arg(long, value_name = "ID")]
    operator: String,
    /// The candidate `.wasm`.
    #[arg(long, value_name = "CANDIDATE.wasm")]
    wasm: PathBuf,
    /// Batches each subtask's shadow may fall behind by before it stops.
    #[arg(long, value_name = "N")]
    queue: Option<u64>,
    /// Where every difference goes (default: `shadow-<operator>-<ms>.jsonl`
    /// next to the job file).
    #[arg(long, value_name = "PATH")]
    diff_file: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
}

impl ShadowArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Some(ShadowCommand::Start(a)) => a.execute(),
            Some(ShadowCommand::Status(a)) => {
                let s = live(&a.addr, "GET", None)?;
                show(&s, a.json);
                Ok(())
            }
            Some(ShadowCommand::Stop(a)) => {
                let s = live(&a.addr, "DELETE", None)?;
                show(&s, a.json);
                Ok(())
            }
            None => self.offline.execute(),
        }
    }
}

impl OfflineArgs {
    fn execute(self) -> anyhow::Result<()> {
        let missing =
            |flag: &str| anyhow!("weir shadow needs {flag} (or a subcommand: start, status, stop)");
        let job_file = self.job.unwrap_or_else(|| PathBuf::from("job.toml"));
        let spec = JobSpec::load(&job_file)?;
        let operator = self.operator.ok_or_else(|| missing("--operator"))?;
        let diff_file = self
            .diff_file
            .unwrap_or_else(|| shadow::default_diff_file(&spec.base_dir, &operator));
        let options = shadow::ReplayOptions {
            job_file,
            spec,
            savepoint: self
                .from_savepoint
                .ok_or_else(|| missing("--from-savepoint"))?,
            input: self.input.ok_or_else(|| missing("--input"))?,
            operator,
            candidate: self.wasm.ok_or_else(|| missing("--wasm"))?,
            diff_file,
        };
        let report = shadow::replay(&options).map_err(|e| anyhow!(e))?;
        let value = serde_json::to_value(&report)?;
        show(&value, self.json);
        if let Some(reason) = &report.reason {
            bail!("{reason}");
        }
        Ok(())
    }
}

impl StartArgs {
    fn execute(self) -> anyhow::Result<()> {
        let mut body = json!({ "wasm": client::absolute(&self.wasm)? });
        if let Some(q) = self.queue {
            body["queue"] = json!(q);
        }
        if let Some(d) = &self.diff_file {
            body["diff-file"] = json!(client::absolute(d)?);
        }
        let job = client::job_id(&self.addr)?;
        let path = format!("/jobs/{job}/operators/{}/shadow", self.operator);
        let (status, answer) = client::request(&self.addr, "POST", &path, Some(&body))?;
        if !(200..300).contains(&status) {
            bail!(
                "job `{job}` refused the shadow run: {}",
                error_of(status, &answer)
            );
        }
        show(&answer, self.json);
        Ok(())
    }
}

fn error_of(status: u16, body: &Value) -> String {
    match body.get("error").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => format!("HTTP {status}: {body}"),
    }
}

/// `method /jobs/{id}/shadow`: the shadow run's status.
fn live(addr: &str, method: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let job = client::job_id(addr)?;
    let (status, answer) = client::request(addr, method, &format!("/jobs/{job}/shadow"), body)?;
    if status != 200 {
        bail!("job `{job}`: {}", error_of(status, &answer));
    }
    Ok(answer)
}

/// Prints a shadow status (a `ShadowReport` as JSON): as JSON, or as text.
fn show(s: &Value, json: bool) {
    if json {
        outln!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    let str_of = |v: &Value| v.as_str().unwrap_or("?").to_string();
    outln!(
        "shadow run of operator `{}`: {}{}",
        str_of(&s["operator"]),
        str_of(&s["state"]),
        s["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    for side in ["live", "candidate"] {
        let l = &s[side];
        outln!(
            "  {side:<9}  {} {} ({}, sha256 {})",
            str_of(&l["name"]),
            str_of(&l["version"]),
            short_path(&str_of(&l["wasm"])),
            str_of(&l["sha256"]).get(..12).unwrap_or("?")
        );
    }
    let c = &s["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    outln!(
        "  inputs {}, compared {}: equal {}, different {}, only-live {}, only-candidate {}",
        n("inputs"),
        n("compared"),
        n("equal"),
        n("different"),
        n("only-live"),
        n("only-candidate")
    );
    outln!("  differences in {}", str_of(&s["diff-file"]));
    let diffs = s["differences"].as_array().cloned().unwrap_or_default();
    if !diffs.is_empty() {
        outln!("  first differences:");
    }
    for d in diffs {
        let key = show_key(d["key"].as_str().map(str::as_bytes));
        let ev = |e: &Value| {
            if e.is_null() {
                "nothing".to_string()
            } else {
                format!("{} @{}", e["value"], e["timestamp"])
            }
        };
        outln!(
            "    {:<14} {key}, {}: live {}, candidate {}",
            str_of(&d["kind"]),
            str_of(&d["at"]),
            ev(&d["live"]),
            ev(&d["candidate"])
        );
    }
}

fn short_path(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map_or(p.to_string(), |f| f.to_string_lossy().into_owned())
}
