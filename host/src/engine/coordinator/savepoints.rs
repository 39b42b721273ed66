//! The savepoints a barrier carries: started when triggered, a data file
//! per subtask as they acknowledge, the manifest when the checkpoint
//! completes; failures fail only the savepoint (a stop's, the run).

use std::path::PathBuf;

use crate::engine::control::SavepointRequest;
use crate::model::now_ms;
use crate::state::checkpoint::CheckpointMeta;
use crate::state::savepoint::{self, SavedOperator, SavedState, SavepointKind, SavepointWriter};

use super::*;

impl Coordinator {
    pub(super) fn finish_savepoint(
        &self,
        sp: PendingSavepoint,
        meta: &CheckpointMeta,
        p: &Pending,
    ) -> Result<PathBuf, String> {
        let kind = match sp.request.stop {
            None => SavepointKind::Triggered,
            Some(false) => SavepointKind::Stop,
            Some(true) => SavepointKind::StopDrain,
        };
        let mut manifest = savepoint::new_metadata(
            &self.job,
            p.id,
            kind,
            p.triggered_at_ms,
            self.max_parallelism,
            meta.finished,
            meta.source.clone(),
            meta.sink.clone(),
            meta.watermark,
        );
        manifest.sink_commit = self.sink_commit.clone();
        for (i, o) in self.operators.borrow().iter().enumerate() {
            let mut files = sp.files[i].clone();
            files.sort_by_key(|f| f.key_groups);
            manifest.operators.push(SavedOperator {
                id: o.id.clone(),
                name: o.logic.name.clone(),
                version: o.logic.version.clone(),
                wasm_sha256: o.logic.wasm_sha256.clone(),
                parallelism: o.parallelism,
                states: o
                    .states
                    .iter()
                    .map(|(name, kind, version)| SavedState {
                        name: name.clone(),
                        kind: kind.clone(),
                        version: *version,
                        keys: sp.keys[i].get(name).copied().unwrap_or(0),
                    })
                    .collect(),
                timers: sp.timers[i],
                state_bytes: p.state_bytes[i],
                files,
            });
        }
        sp.writer.finish(&manifest).map_err(|e| e.to_string())
    }

    /// Starts writing a requested savepoint; on failure (say, a directory
    /// that cannot be created) the request fails and the job goes on.
    pub(super) fn prepare_savepoint(
        &self,
        request: SavepointRequest,
        id: u64,
    ) -> Option<PendingSavepoint> {
        let n_ops = self.operators.borrow().len();
        match SavepointWriter::create(&request.target, &self.job, id, now_ms()) {
            Ok(writer) => Some(PendingSavepoint::new(request, writer, n_ops)),
            Err(e) => {
                tracing::warn!("savepoint request {} failed: {e}", request.id);
                self.control.savepoint_failed(&request.id, &e.to_string());
                None
            }
        }
    }

    /// A savepoint data file could not be written: the savepoint fails and
    /// is removed; the job goes on. For a stop, whose barrier ends the
    /// source, returns why: the job resumes from the checkpoint that barrier
    /// completes; without checkpoints it cannot go on.
    pub(super) fn savepoint_write_failed(
        &self,
        sp: PendingSavepoint,
        id: u64,
        why: &str,
    ) -> Result<Option<String>, String> {
        self.control.savepoint_failed(&sp.request.id, why);
        sp.writer.abort();
        if sp.request.stop.is_some() {
            if self.store.is_none() {
                tracing::error!(checkpoint_id = id, "stop-with-savepoint {id} failed: {why}");
                return Err(format!("stop-with-savepoint failed: {why}"));
            }
            return Ok(Some(why.to_string()));
        }
        tracing::warn!(
            checkpoint_id = id,
            "savepoint {id} failed: {why}; the job goes on"
        );
        Ok(None)
    }

    /// The source has not taken earlier barriers: a periodic checkpoint is
    /// skipped until the next interval, a savepoint request fails.
    pub(super) fn source_busy(&self, savepoint: Option<Box<PendingSavepoint>>) {
        const WHY: &str = "the source has not yet taken the barriers of earlier checkpoints that timed out (it is held up by back-pressure); try again later";
        match savepoint {
            Some(sp) => {
                tracing::warn!("savepoint request {} failed: {WHY}", sp.request.id);
                self.control.savepoint_failed(&sp.request.id, WHY);
                sp.writer.abort();
            }
            None => tracing::debug!("checkpoint skipped: {WHY}"),
        }
    }
}
