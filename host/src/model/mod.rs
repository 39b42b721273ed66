//! The host's own types, which every other layer uses and which use nothing
//! of the host: events and batches in flat form, what an operator declares
//! and how its calls fail, key groups, time, bytes as JSON fields, the
//! positions sources and sinks store in checkpoints, and the
//! [`SourceReader`] and [`SinkWriter`] traits that connectors implement and
//! the engine drives (so connectors never import the engine).

pub mod batch;
pub mod clock;
pub mod config;
pub mod connector;
pub mod contract;
pub mod json;
pub mod keygroup;
pub mod logic;
pub mod position;

pub use batch::{show_bytes, show_key, Batch, Blobs, EventRef};
pub use clock::{now_ms, rfc3339, rfc3339_millis};
pub use connector::{SinkWriter, SourceReader};
pub use contract::{
    hex, GuestError, OperatorSpec, Rejected, StateKind, StateSpec, TaskInfo, TimeDomain, Timers,
};
pub use logic::LogicId;
pub use position::{KafkaPartition, SinkState, SourcePosition, SourceState};
