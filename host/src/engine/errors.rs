//! Why a run could not start or ended early, and why a request to a running
//! job was refused: typed, one-line reasons. How a refusal is shown (an
//! HTTP status, a JSON body, an exit code) is for the layer above.

/// Why a job did not run to its end. The message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A check before the job started failed; nothing was written.
    #[error("{0}")]
    Setup(String),
    /// The job failed while running.
    #[error("{0}")]
    Failed(String),
}

/// What kind of refusal: the request is wrong, names what does not exist,
/// does not fit the job's state now, comes while too many are in progress,
/// or failed in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The request itself is wrong: a bad field, a `.wasm` that does not fit.
    Invalid,
    /// What it names does not exist: an operator ID.
    NotFound,
    /// The job's state does not allow it now: not running, stopping,
    /// another swap or shadow run under way.
    Conflict,
    /// Too many requests of its kind are in progress.
    Busy,
    /// The job could not carry it out (an I/O error in the state directory).
    Internal,
}

/// Why a request to a running job was refused, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// What is wrong.
    pub message: String,
}

/// A refusal of `kind` saying `message`.
pub fn refused(kind: RefusalKind, message: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        message: message.into(),
    }
}
