//! The benchmark's side of a child `weir run`: the native twins it runs
//! behind operator IDs (`--native-operator ID=NAME`), handed to the engine
//! as logic that overrides a `.wasm`, and the peak memory it writes to its
//! report (`--report`), read back by the job cases.

use std::collections::BTreeMap;

use super::error::{bail, BenchError};
use crate::engine::job::JobSpec;
use crate::wasm::native::NativeLogic;
use crate::wasm::operator::OperatorImpl;

/// The native twins `--native-operator` asks for (`ID=NAME`, NAME `map` or
/// `keyed-count`), checked against the job: operator ID → the logic to run
/// instead of its `.wasm` (the engine's `RunOptions::overrides`).
pub fn native_twins(
    spec: &JobSpec,
    pairs: &[String],
) -> Result<BTreeMap<String, OperatorImpl>, BenchError> {
    let mut twins = BTreeMap::new();
    for pair in pairs {
        let Some((id, name)) = pair.split_once('=') else {
            bail!("--native-operator takes ID=NAME, not `{pair}`");
        };
        if !spec.operators.iter().any(|o| o.id == id) {
            bail!("--native-operator: the job has no operator `{id}`");
        }
        let logic = NativeLogic::from_name(name)?;
        twins.insert(id.to_string(), OperatorImpl::Native(logic, logic.spec()));
    }
    Ok(twins)
}

/// Peak resident memory of this process (`VmHWM`), in KiB, where Linux tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
