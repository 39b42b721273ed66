//! Where a source or a sink was when a checkpoint was taken: what goes into
//! every checkpoint and savepoint so that a restored job seeks back to it.

use serde::{Deserialize, Serialize};

/// Where a source was, so that it can seek back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePosition {
    /// A file: byte offset of the next line, and its number (from 1).
    File {
        /// Bytes consumed.
        offset: u64,
        /// Lines consumed.
        line: u64,
    },
    /// The generator: index of the next event.
    Generator {
        /// Events generated.
        next: u64,
    },
}

/// A source's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Its read position.
    pub position: SourcePosition,
    /// The highest event timestamp it had seen (the watermark's basis).
    pub max_timestamp: i64,
}

/// A sink's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Length of the output file once everything up to this checkpoint is published.
    pub output_len: u64,
}
