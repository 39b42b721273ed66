//! `weir checkpoints list STATE_DIR [--json]`: the completed checkpoints in a
//! job's state directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

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

fn rfc3339(ms: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), UTC.
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
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
                        "completed_at": rfc3339(m.completed_at_ms),
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
                rfc3339(m.completed_at_ms),
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

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
