//! What the coordinator does when the sink commits, or cannot: completes
//! the savepoints that waited for the commit, tells the sources (their
//! consumer groups), records the sink's first commit, and frees what
//! recovery no longer needs.

use super::*;

impl Coordinator {
    /// The sink committed what checkpoint `id` covers (and so everything
    /// before it): the savepoints riding on them are complete, the sources
    /// commit their offsets to their consumer groups, and retention may
    /// free what recovery no longer needs.
    pub(super) fn published(&self, id: u64) {
        let done = self.publishing.borrow_mut().committed(id);
        if done.is_empty() {
            return;
        }
        for p in &done {
            if let Some((request_id, dir)) = &p.savepoint {
                tracing::info!(
                    checkpoint_id = p.id,
                    "savepoint {} complete: {}",
                    p.id,
                    dir.display()
                );
                self.control.savepoint_completed(request_id, dir);
            }
        }
        for source in &self.source_completions {
            let _ = source.send(id);
        }
        if let Some(store) = &self.store {
            match store.sink_record() {
                Ok(Some(mut r)) if !r.committed => {
                    r.committed = true;
                    if let Err(e) = store.set_sink_record(&r) {
                        tracing::warn!(
                            checkpoint_id = id,
                            "cannot record the sink's first commit: {e}"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(checkpoint_id = id, "{e}"),
            }
        }
        self.free_old(id);
    }

    /// The sink could not commit what checkpoint `id` covers: it fails, and
    /// so does the run. The savepoints waiting for that commit fail (their
    /// output was not published, so they are removed).
    pub(super) fn publish_failed(&self, id: u64, why: &str) {
        self.unpublished(&format!(
            "the sink could not commit checkpoint {id}'s output: {why}"
        ));
    }

    /// Fails the savepoints whose output was not committed, for `why`, and
    /// removes them: restoring one would lose that output.
    pub(super) fn unpublished(&self, why: &str) {
        let failed = self.publishing.borrow_mut().drain();
        for p in failed {
            if let Some((request_id, dir)) = p.savepoint {
                tracing::warn!(checkpoint_id = p.id, "savepoint {} failed: {why}", p.id);
                self.control.savepoint_failed(&request_id, why);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("cannot remove failed savepoint `{}`: {e}", dir.display());
                }
            }
        }
    }

    /// Applies retention, once the output of checkpoint `committed` is
    /// committed: the `retain` newest checkpoints and `committed` are kept.
    pub(super) fn free_old(&self, committed: u64) {
        if let Some(store) = &self.store {
            if let Err(e) = store.retain(self.retain, false, &[committed]) {
                // Old checkpoints stay a little longer; the next commit retries.
                tracing::warn!(
                    checkpoint_id = committed,
                    "cannot free old checkpoints: {e}"
                );
            }
        }
    }

    /// Waits until the sink has committed checkpoint `id` (a last barrier:
    /// the run ends only with its output published). False when the sink
    /// failed, or the run was cancelled, first.
    pub(super) fn await_published(&self, id: u64) -> bool {
        loop {
            if self.publishing.borrow().published(id) {
                return true;
            }
            crossbeam_channel::select! {
                recv(self.acks) -> msg => match msg {
                    Ok(Ack::Committed { id }) => self.published(id),
                    Ok(Ack::CommitFailed { id, why }) => {
                        self.publish_failed(id, &why);
                        return false;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                recv(self.cancel) -> _ => break,
            }
        }
        self.unpublished(&format!(
            "the job failed before the sink committed checkpoint {id}'s output"
        ));
        false
    }
}
