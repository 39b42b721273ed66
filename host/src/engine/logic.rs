//! Which logic each operator runs: the `.wasm` the job file names, logic
//! the caller supplies instead, or the copy of a `.wasm` swapped in live
//! that a checkpoint recorded.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::errors::RunError;
use crate::job::JobSpec;
use crate::state::checkpoint::{CheckpointMeta, CheckpointStore};
use crate::wasm::component::Components;
use crate::wasm::operator::OperatorImpl;

/// Loads every operator of `spec`, with messages that name the job file
/// line; an operator ID in `overrides` runs the logic given there instead.
pub fn load_operators(
    components: &Components,
    spec: &JobSpec,
    job_file: &Path,
    overrides: &BTreeMap<String, OperatorImpl>,
) -> Result<Vec<OperatorImpl>, RunError> {
    for id in overrides.keys() {
        if !spec.operators.iter().any(|o| &o.id == id) {
            return Err(RunError::Setup(format!(
                "the job has no operator `{id}` to run other logic behind"
            )));
        }
    }
    spec.operators
        .iter()
        .map(|op| {
            if let Some(logic) = overrides.get(&op.id) {
                return Ok(logic.clone());
            }
            components
                .load(&op.wasm)
                .map(OperatorImpl::Wasm)
                .map_err(|e| {
                    RunError::Setup(format!(
                        "operator `{}` ({}:{}): {e}",
                        op.id,
                        job_file.display(),
                        op.line
                    ))
                })
        })
        .collect()
}

/// The logic to run from checkpoint `meta`, and the swaps it records: for
/// each operator, the `.wasm` the checkpoint says it ran when that came
/// from a live swap and the job file still names the `.wasm` it named then
/// (its kept copy, [`CheckpointStore::wasm_path`]); else the job file's.
pub(crate) fn logic_at(
    components: &Components,
    store: &CheckpointStore,
    meta: &CheckpointMeta,
    job_loaded: &[OperatorImpl],
    spec: &JobSpec,
) -> Result<(Vec<OperatorImpl>, Vec<serde_json::Value>), RunError> {
    let mut out = job_loaded.to_vec();
    let Some(logic) = store
        .logic(meta.id)
        .map_err(|e| RunError::Setup(e.to_string()))?
    else {
        return Ok((out, Vec::new()));
    };
    for (i, op) in spec.operators.iter().enumerate() {
        let Some(l) = logic.operators.iter().find(|l| l.id == op.id) else {
            continue;
        };
        if l.wasm_sha256 == l.job_wasm_sha256 || l.wasm_sha256 == job_loaded[i].sha256() {
            continue;
        }
        if l.job_wasm_sha256 != job_loaded[i].sha256() {
            tracing::info!(
                "operator `{}`: checkpoint {} ran {} {} swapped in live, but the job file now names another .wasm: it runs the job file's",
                op.id,
                meta.id,
                l.name,
                l.version
            );
            continue;
        }
        let path = store.wasm_path(&l.wasm_sha256);
        let swapped = components.load(&path).map_err(|e| {
            RunError::Setup(format!(
                "operator `{}`: checkpoint {} ran {} {} (swapped in live), whose kept copy cannot be loaded: {e}",
                op.id, meta.id, l.name, l.version
            ))
        })?;
        tracing::info!(
            "operator `{}` runs {} {} ({}), swapped in live before checkpoint {}",
            op.id,
            l.name,
            l.version,
            path.display(),
            meta.id
        );
        out[i] = OperatorImpl::Wasm(swapped);
    }
    Ok((out, logic.swaps))
}
