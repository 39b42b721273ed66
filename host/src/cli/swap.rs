//! `weir swap --operator ID --wasm NEW.wasm [--probation 30s] [--addr HOST:PORT]`:
//! a live swap through a running job's REST API
//! (`POST /jobs/{id}/operators/{operator}/swap`, see
//! [`weir_host::engine::upgrades::swap`]). It waits for the outcome and prints it: exit 0
//! when the swap COMPLETED, 1 when it was refused or ROLLED_BACK (with why).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::json;

use weir_host::api::client;

/// Arguments of `weir swap`.
#[derive(Debug, Args)]
pub struct SwapArgs {
    /// The operator ID whose logic is swapped.
    #[arg(long, value_name = "ID")]
    operator: String,
    /// The new logic (a path on the job's machine).
    #[arg(long, value_name = "NEW.wasm")]
    wasm: PathBuf,
    /// How long the new logic is on probation: a duration (`30s`, `2m`) or
    /// a number of events it processes (`5000 events`). Its output is held
    /// back until then.
    #[arg(long, value_name = "DURATION|N events", default_value = "30s")]
    probation: String,
    /// Roll back when the new logic sends more than this share of events
    /// to the dead-letter output on probation (0 to 1).
    #[arg(long, value_name = "SHARE", default_value_t = weir_host::engine::upgrades::swap::DEFAULT_MAX_DEAD_LETTER_SHARE)]
    max_dead_letter_share: f64,
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
    /// How long to wait for the outcome, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
}

impl SwapArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        self.probation
            .parse::<weir_host::engine::upgrades::swap::Probation>()
            .map_err(|e| anyhow!("--probation: {e}"))?;
        let wasm = client::absolute(&self.wasm)?;
        let job = client::job_id(&self.addr)?;
        let body = json!({
            "wasm": wasm,
            "probation": self.probation,
            "max-dead-letter-share": self.max_dead_letter_share,
        });
        let path = format!("/jobs/{job}/operators/{}/swap", self.operator);
        let (status, answer) = client::request(&self.addr, "POST", &path, Some(&body))?;
        if status != 202 {
            bail!(
                "job `{job}` refused the swap of operator `{}`: {}",
                self.operator,
                client::message(status, &answer)
            );
        }
        let id = answer["request-id"]
            .as_str()
            .ok_or_else(|| anyhow!("`{}` answered without a request id: {answer}", self.addr))?
            .to_string();
        eprintln!(
            "weir: swap {id} of operator `{}` accepted: it happens at the next checkpoint barrier, then is on probation for {}",
            self.operator, self.probation
        );
        let deadline = Instant::now() + Duration::from_secs(self.timeout);
        let mut shown = String::new();
        loop {
            let (status, s) =
                client::request(&self.addr, "GET", &format!("/jobs/{job}/swaps/{id}"), None)?;
            if status != 200 {
                bail!("{}", client::message(status, &s));
            }
            let state = s["status"].as_str().unwrap_or("?").to_string();
            if state != shown {
                if state == "PROBATION" {
                    eprintln!(
                        "weir: swap {id}: the new logic runs from barrier {}, on probation",
                        s["barrier"]
                    );
                }
                shown = state.clone();
            }
            let to = &s["to"];
            let from = &s["from"];
            match state.as_str() {
                "COMPLETED" => {
                    outln!(
                        "COMPLETED: operator `{}` runs {} {} ({}) since barrier {}, trusted at checkpoint {}",
                        self.operator,
                        to["name"].as_str().unwrap_or("?"),
                        to["version"].as_str().unwrap_or("?"),
                        to["wasm-sha256"].as_str().unwrap_or("?"),
                        s["barrier"],
                        s["completed-at-checkpoint"]
                    );
                    return Ok(());
                }
                "ROLLED_BACK" => bail!(
                    "ROLLED_BACK: operator `{}` runs {} {} again: {}",
                    self.operator,
                    from["name"].as_str().unwrap_or("?"),
                    from["version"].as_str().unwrap_or("?"),
                    s["reason"].as_str().unwrap_or("no reason given")
                ),
                _ if Instant::now() > deadline => bail!(
                    "swap {id} of job `{job}` is still {state} after {}s: GET /jobs/{job}/swaps/{id}",
                    self.timeout
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
