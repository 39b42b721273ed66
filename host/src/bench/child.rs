//! The benchmark's side of a child `weir run`: the native twins it runs
//! behind operator IDs (`--native-operator ID=NAME`), handed to the engine
//! as logic that overrides a `.wasm`, and the peak memory it writes to its
//! report (`--report`), read back by the job cases.

use std::collections::BTreeMap;

use super::error::{bail, BenchError};
use crate::job::JobSpec;
use crate::wasm::native::NativeLogic;
use crate::wasm::operator::OperatorImpl;

/// The native twins `--native-operator ID=NAME` asks for (operator ID →
/// NAME, `map` or `keyed-count`), checked against the job: operator ID →
/// the logic to run instead of its `.wasm` (the engine's
/// `RunOptions::overrides`).
pub fn native_twins(
    spec: &JobSpec,
    names: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, OperatorImpl>, BenchError> {
    for id in names.keys() {
        if !spec.operators.iter().any(|o| &o.id == id) {
            bail!("--native-operator: the job has no operator `{id}`");
        }
    }
    let mut twins = BTreeMap::new();
    for op in &spec.operators {
        if let Some(name) = names.get(&op.id) {
            let logic = NativeLogic::from_name(name)?;
            twins.insert(op.id.clone(), OperatorImpl::Native(logic, logic.spec()));
        }
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

/// The REST address a child `weir run --ready-file PATH` writes once it
/// listens; an error when the child ends first or nothing comes within
/// `wait`. `what` names the case in messages.
pub(super) fn rest_address(
    path: &std::path::Path,
    child: &mut std::process::Child,
    wait: std::time::Duration,
    what: &str,
) -> Result<String, BenchError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text.trim().to_string());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what}: the job ended ({status}) before its REST API listened");
        }
        if std::time::Instant::now() > deadline {
            bail!("{what}: the job's REST API did not listen within {wait:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
