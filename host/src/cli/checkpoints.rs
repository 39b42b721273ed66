//! `weir checkpoints list STATE_DIR [--json]`: the completed checkpoints in a
//! job's state directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use weir_host::model::rfc3339_millis;
use weir_host::state::checkpoint::CheckpointStore;

/// `weir checkpoints ...`
#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// List the completed checkpoints: id, completed-at, duration, bytes written, state per operator.
    List(ListArgs),
}

/// Arguments of `weir checkpoints list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The job's state directory (`[checkpoint] dir`).
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl CheckpointsCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            CheckpointsCommand::List(args) => args.execute(),
        }
    }
}

impl ListArgs {
    fn execute(self) -> anyhow::Result<()> {
        if !self.dir.join("checkpoints.sled").exists() {
            anyhow::bail!(
                "`{}` is not a weir state directory (it has no checkpoints.sled)",
                self.dir.display()
            );
        }
        let store = CheckpointStore::open(&self.dir)?;
        let list = store.list()?;
        if self.json {
            let out: Vec<_> = list
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "completed_at": rfc3339_millis(m.completed_at_ms),
                        "duration_ms": m.completed_at_ms - m.triggered_at_ms,
                        "bytes_written": m.bytes_written,
                        "full": m.is_full(),
                        "chain": m.chain,
                        "finished": m.finished,
                        "job": m.job,
                        "source": m.source.position,
                        "operators": m.operators.iter().map(|o| json!({
                            "id": o.id,
                            "parallelism": o.parallelism,
                            "keys": o.keys,
                            "state_bytes": o.state_bytes,
                            "bytes_written": o.bytes_written,
                            "states": o.states.iter().map(|(n, k, v)| json!({"name": n, "kind": k, "version": v})).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        if list.is_empty() {
            outln!("no completed checkpoints in {}", self.dir.display());
            return Ok(());
        }
        outln!(
            "{:>6}  {:<24}  {:>8}  {:>12}  {:<5}  operators (keys, state size, bytes written)",
            "id",
            "completed at",
            "ms",
            "bytes",
            "kind"
        );
        for m in &list {
            let ops: Vec<String> = m
                .operators
                .iter()
                .map(|o| {
                    format!(
                        "{} ({} keys, {} B, {} B written)",
                        o.id, o.keys, o.state_bytes, o.bytes_written
                    )
                })
                .collect();
            outln!(
                "{:>6}  {:<24}  {:>8}  {:>12}  {:<5}  {}{}",
                m.id,
                rfc3339_millis(m.completed_at_ms),
                m.completed_at_ms - m.triggered_at_ms,
                m.bytes_written,
                if m.is_full() { "full" } else { "delta" },
                ops.join(", "),
                if m.finished { "  [end of input]" } else { "" }
            );
        }
        outln!("database size on disk: {} bytes", store.size_on_disk());
        Ok(())
    }
}
