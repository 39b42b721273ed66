//! Savepoint, stop and shutdown requests: how they are checked and queued
//! for the coordinator, and the status of each, as `GET
//! /jobs/{id}/savepoints/{request-id}` shows it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::engine::errors::{refused, Refusal, RefusalKind};
use crate::model::now_ms;

use super::{JobControl, JobState};

/// Savepoint requests that may be in progress at once; more are refused (429).
pub const MAX_REQUESTS_IN_PROGRESS: usize = 8;

/// Finished savepoint requests remembered for `GET /jobs/{id}/savepoints`.
pub const MAX_REQUESTS_KEPT: usize = 256;

/// A request for a savepoint, perhaps followed by a stop.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    /// The request ID the caller polls.
    pub id: String,
    /// The directory the savepoint goes in (absolute).
    pub target: PathBuf,
    /// `Some(drain)`: stop the job right after the savepoint.
    pub stop: Option<bool>,
    /// No savepoint: stop at a last checkpoint (a graceful shutdown on a signal).
    pub checkpoint_only: bool,
}

/// Where a savepoint request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointState {
    /// Requested or being taken.
    InProgress,
    /// Written: `location` says where.
    Completed,
    /// Not taken: `failure` says why.
    Failed,
}

/// A savepoint request's status, as `GET /jobs/{id}/savepoints/{request-id}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointStatus {
    /// The request ID.
    pub request_id: String,
    /// Where it is.
    pub status: SavepointState,
    /// The savepoint directory, once completed.
    pub location: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The directory it was asked for in.
    pub target_directory: String,
    /// Whether the job stops after it.
    pub stop: bool,
    /// Whether event time is drained before it.
    pub drain: bool,
    /// When it was requested (ms since the Unix epoch).
    pub requested_at_ms: i64,
}

impl JobControl {
    /// Asks for a savepoint in `target` (else the job file's default) and,
    /// with `stop = Some(drain)`, for the job to stop after it. Returns the request ID.
    pub fn request_savepoint(
        &self,
        target: Option<&str>,
        stop: Option<bool>,
    ) -> Result<String, Refusal> {
        if !self.replayable {
            return Err(refused(
                RefusalKind::Conflict,
                "savepoints need a source that can be read again (file or generator); this job reads stdin",
            ));
        }
        let target = match target {
            Some(t) if t.trim().is_empty() => {
                return Err(refused(RefusalKind::Invalid, "`target-directory` is empty"));
            }
            Some(t) => {
                let p = PathBuf::from(t);
                if p.is_absolute() {
                    p
                } else {
                    self.base_dir.join(p)
                }
            }
            None => self.default_target.clone().ok_or_else(|| {
                refused(
                    RefusalKind::Invalid,
                    "no `target-directory` given and the job file has no [savepoint] dir",
                )
            })?,
        };
        self.refuse_once_ended("no savepoint can be taken")?;
        if let Some(s) = self.swap_under_way() {
            return Err(refused(
                RefusalKind::Conflict,
                format!(
                    "swap {} of operator `{}` is under way: savepoints and stops wait until it completes or rolls back (GET /jobs/{}/swaps/{})",
                    s.request_id, s.operator, self.job, s.request_id
                ),
            ));
        }
        if stop.is_some() {
            if self.stopping.swap(true, Ordering::SeqCst) {
                return Err(refused(
                    RefusalKind::Conflict,
                    "the job is already stopping",
                ));
            }
        } else if self.stopping.load(Ordering::SeqCst) {
            return Err(refused(RefusalKind::Conflict, "the job is stopping"));
        }
        let mut all = self.savepoints.lock().expect("savepoints lock");
        let in_progress = all
            .values()
            .filter(|s| s.status == SavepointState::InProgress)
            .count();
        if in_progress >= MAX_REQUESTS_IN_PROGRESS {
            if stop.is_some() {
                self.stopping.store(false, Ordering::SeqCst);
            }
            return Err(refused(
                RefusalKind::Busy,
                format!("{in_progress} savepoint requests are in progress, the most this job queues: wait until one completes or fails (GET /jobs/{}/savepoints)", self.job),
            ));
        }
        if all.len() >= MAX_REQUESTS_KEPT {
            // Forget the oldest finished request.
            if let Some(oldest) = all
                .values()
                .filter(|s| s.status != SavepointState::InProgress)
                .min_by_key(|s| s.requested_at_ms)
                .map(|s| s.request_id.clone())
            {
                all.remove(&oldest);
            }
        }
        let n = self.next_request.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{}-{n}-{}", self.job, now_ms()).as_bytes())
        );
        let status = SavepointStatus {
            request_id: id.clone(),
            status: SavepointState::InProgress,
            location: None,
            failure: None,
            target_directory: target.display().to_string(),
            stop: stop.is_some(),
            drain: stop.unwrap_or(false),
            requested_at_ms: now_ms(),
        };
        all.insert(id.clone(), status);
        drop(all);
        if stop.is_some() {
            self.set_state(JobState::Stopping);
        }
        let request = SavepointRequest {
            id: id.clone(),
            target,
            stop,
            checkpoint_only: false,
        };
        self.requests
            .0
            .send(request)
            .expect("the receiver lives in self");
        Ok(id)
    }

    /// Asks the job to stop gracefully, as on SIGTERM: with `savepoint`, a
    /// stop-with-savepoint into the job file's `[savepoint] dir` (a stop at
    /// a last checkpoint when that is refused, say during a live swap);
    /// else a stop at a last checkpoint, whose output the sink commits
    /// before the job ends, and which the next start restores. Nobody waits
    /// to read the outcome. Fails when the job is not running (it starts,
    /// restarts or already stops).
    pub fn request_shutdown(&self, savepoint: bool) -> Result<String, String> {
        let state = self.state();
        if state == JobState::Stopping || self.stopping.load(Ordering::SeqCst) {
            // A stop under way (`weir stop`) ends the job: it is waited for.
            return Ok("a stop is already under way".to_string());
        }
        if state != JobState::Running {
            return Err(format!("the job is {state:?}").to_lowercase());
        }
        self.stop_reported.store(true, Ordering::SeqCst);
        if savepoint {
            match self.request_savepoint(None, Some(false)) {
                Ok(_) => {
                    return Ok(format!(
                        "stopping with a savepoint in `{}`",
                        self.default_target
                            .as_ref()
                            .map_or(String::new(), |d| d.display().to_string())
                    ))
                }
                Err(r) => tracing::warn!(
                    "cannot stop with a savepoint ({}): stopping at a last checkpoint instead",
                    r.message
                ),
            }
        }
        if self.stopping.swap(true, Ordering::SeqCst) {
            return Ok("a stop is already under way".to_string());
        }
        self.set_state(JobState::Stopping);
        self.requests
            .0
            .send(SavepointRequest {
                id: "shutdown".to_string(),
                target: PathBuf::new(),
                stop: Some(false),
                checkpoint_only: true,
            })
            .expect("the receiver lives in self");
        Ok("stopping at a last checkpoint".to_string())
    }

    /// The requests, for the coordinator.
    pub fn requests(&self) -> Receiver<SavepointRequest> {
        self.requests.1.clone()
    }

    /// The status of savepoint request `id`. Reading the result of a
    /// completed stop lets the process exit.
    pub fn savepoint(&self, id: &str) -> Option<SavepointStatus> {
        let s = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .get(id)
            .cloned()?;
        if s.stop && s.status == SavepointState::Completed {
            self.stop_reported.store(true, Ordering::SeqCst);
        }
        Some(s)
    }

    /// Every savepoint request, oldest first.
    pub fn savepoints(&self) -> Vec<SavepointStatus> {
        let mut all: Vec<SavepointStatus> = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.requested_at_ms);
        all
    }

    /// Records that savepoint request `id` completed at `location`.
    pub fn savepoint_completed(&self, id: &str, location: &Path) {
        if let Some(s) = self.savepoints.lock().expect("savepoints lock").get_mut(id) {
            s.status = SavepointState::Completed;
            s.location = Some(location.display().to_string());
        }
    }

    /// Records that savepoint request `id` failed.
    pub fn savepoint_failed(&self, id: &str, why: &str) {
        let stop = {
            let mut all = self.savepoints.lock().expect("savepoints lock");
            let Some(s) = all.get_mut(id) else { return };
            s.status = SavepointState::Failed;
            s.failure = Some(why.to_string());
            s.stop
        };
        if stop {
            // The job goes on; another stop may be asked for.
            self.stopping.store(false, Ordering::SeqCst);
            if self.state() == JobState::Stopping {
                self.set_state(JobState::Running);
            }
        }
    }

    /// Fails every request not yet taken (the job ended first).
    pub fn fail_outstanding(&self, why: &str) {
        while self.requests.1.try_recv().is_ok() {}
        let ids: Vec<String> = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .values()
            .filter(|s| s.status == SavepointState::InProgress)
            .map(|s| s.request_id.clone())
            .collect();
        for id in ids {
            self.savepoint_failed(&id, why);
        }
    }
}
