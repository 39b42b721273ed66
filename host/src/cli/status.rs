//! `weir status [--addr HOST:PORT] [--json]`: a running job's status through
//! its REST API (`GET /jobs/{id}`): its state, each operator's current
//! logic (name, version, `.wasm` SHA-256) and its swaps (time, from, to,
//! outcome), the last checkpoint and the throughput.

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use weir_host::api::client;

/// Arguments of `weir status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
    /// Print `GET /jobs/{id}` as it is (JSON).
    #[arg(long)]
    json: bool,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn short(sha: &Value) -> String {
    let s = text(sha);
    s.chars().take(12).collect()
}

impl StatusArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let job = client::job_id(&self.addr)?;
        let (status, s) = client::request(&self.addr, "GET", &format!("/jobs/{job}"), None)?;
        if status != 200 {
            bail!("{}", client::message(status, &s));
        }
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&s)?);
            return Ok(());
        }
        outln!(
            "job `{job}`: {} (attempt {}), {} events in, {} out",
            text(&s["state"]),
            text(&s["attempt"]),
            text(&s["events-in"]),
            text(&s["events-out"])
        );
        if let Some(cp) = s["last-checkpoint"].as_object() {
            outln!(
                "last checkpoint: {} ({} bytes)",
                text(&cp["id"].clone()),
                text(&cp["bytes-written"].clone())
            );
        }
        for op in s["operators"].as_array().into_iter().flatten() {
            outln!(
                "operator `{}`: {} {} (wasm {}), parallelism {}",
                text(&op["id"]),
                text(&op["name"]),
                text(&op["version"]),
                short(&op["wasm-sha256"]),
                text(&op["parallelism"])
            );
            for sw in op["swaps"].as_array().into_iter().flatten() {
                let when = sw["requested-at-ms"]
                    .as_i64()
                    .map_or("-".to_string(), weir_host::model::rfc3339);
                outln!(
                    "  swap {} at {when}: {} {} ({}) -> {} {} ({}), {}{}{}",
                    text(&sw["request-id"]),
                    text(&sw["from"]["name"]),
                    text(&sw["from"]["version"]),
                    short(&sw["from"]["wasm-sha256"]),
                    text(&sw["to"]["name"]),
                    text(&sw["to"]["version"]),
                    short(&sw["to"]["wasm-sha256"]),
                    text(&sw["status"]),
                    match sw["barrier"].as_u64() {
                        Some(b) => format!(" at barrier {b}"),
                        None => String::new(),
                    },
                    match sw["reason"].as_str() {
                        Some(r) => format!(": {r}"),
                        None => String::new(),
                    }
                );
            }
        }
        Ok(())
    }
}
