//! The dataflow of one run: the source stage ([`source`]), the partitioner
//! that routes a stage's output to the next stage's subtasks
//! ([`partition`]), the operator subtasks ([`subtask`]) and the sink stage
//! ([`sink`]). Each runs on a thread of its own and talks to the others
//! only over the channels of [`crate::engine::channel`]; the checkpoint
//! coordinator talks to them through the links each stage is handed.

pub mod partition;
pub mod sink;
pub mod source;
pub mod subtask;
