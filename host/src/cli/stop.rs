//! `weir stop [--savepoint DIR] [--drain] [--addr HOST:PORT]`:
//! stop-with-savepoint through a running job's REST API. The savepoint and
//! the sink's final commit happen together, then the job's process exits 0;
//! this command waits for it and prints the savepoint's path.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use weir_host::api::client;

/// Arguments of `weir stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Directory to write the savepoint in (default: the job file's `[savepoint] dir`).
    #[arg(long, value_name = "DIR")]
    savepoint: Option<PathBuf>,
    /// Advance event time to the end first, so that every window and
    /// event-time timer fires (for ending a job for good).
    #[arg(long)]
    drain: bool,
    /// The job's REST address.
    #[arg(long, value_name = "HOST:PORT", default_value = client::DEFAULT_ADDR)]
    addr: String,
    /// How long to wait for the savepoint, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
}

impl StopArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let mut body = json!({ "drain": self.drain });
        if let Some(dir) = &self.savepoint {
            body["target-directory"] = json!(client::absolute(dir)?);
        }
        let location = client::savepoint_and_wait(
            &self.addr,
            "stop",
            body,
            Duration::from_secs(self.timeout),
        )?;
        outln!("{location}");
        Ok(())
    }
}
