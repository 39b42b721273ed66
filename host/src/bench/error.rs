//! Why a benchmark stopped: [`BenchError`], one line. Inside the bench part
//! it is made as the binary makes its errors: `bail!("…")`, `?` on any
//! error, and `.context("what was being done")`.

use std::error::Error;
use std::fmt::Display;

/// Why `weir bench` could not run or measure a case: one line, naming the
/// case and what to do where it can.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

/// `message`, then each cause of `e` that it does not already tell, joined
/// with `: ` (as the binary prints an error and its causes).
fn joined(mut message: String, e: &dyn Error) -> String {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

impl From<String> for BenchError {
    fn from(message: String) -> Self {
        BenchError(message)
    }
}

/// The errors `?` turns into a [`BenchError`], causes included.
macro_rules! from_errors {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for BenchError {
            fn from(e: $t) -> Self {
                BenchError(joined(String::new(), &e))
            }
        })*
    };
}

from_errors!(
    std::io::Error,
    std::time::SystemTimeError,
    serde_json::Error,
    rdkafka::error::KafkaError,
    crate::build::BuildError,
    crate::api::client::ClientError,
);

/// What was being done when an error happened, in front of it.
pub(super) trait Context<T> {
    /// `what: error`.
    fn context(self, what: impl Display) -> Result<T, BenchError>;
    /// `what(): error`, `what` called only on an error.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T, BenchError>;
}

impl<T, E: Error> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, BenchError> {
        self.map_err(|e| BenchError(joined(what.to_string(), &e)))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T, BenchError> {
        self.map_err(|e| BenchError(joined(what().to_string(), &e)))
    }
}

/// Returns a [`BenchError`] made like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::bench::BenchError::from(format!($($arg)*)))
    };
}
pub(super) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_in_one_line_each_once() {
        let io = || std::io::Error::other("disk full");
        let e: Result<(), _> = Err(Outer(io()));
        assert_eq!(
            e.context("writing `x`").unwrap_err().to_string(),
            "writing `x`: outer: disk full"
        );
        // A cause the message already tells is not told again.
        let e: Result<(), _> = Err(io());
        assert_eq!(e.context("disk full").unwrap_err().to_string(), "disk full");
        assert_eq!(BenchError::from(io()).to_string(), "disk full");
    }
}
