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
