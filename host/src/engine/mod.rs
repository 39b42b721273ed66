//! The dataflow: the job file ([`job`]), the channels and what flows on them
//! ([`stream`]), the partitioner ([`partition`]), operator subtasks
//! ([`subtask`]), the source and sink stages that drive connectors
//! ([`stages`]), the checkpoint coordinator ([`coordinator`]), the control
//! plane's handle on a running job ([`control`]) and the runtime that wires
//! it all up and restarts it ([`runtime`]), and the upgrade plan of a
//! restore ([`upgrade`]); which checkpoint a run restores ([`recovery`]);
//! shadow runs of candidate logic ([`shadow`]). Uses [`crate::wasm`],
//! [`crate::connectors`], [`crate::state`] and [`crate::model`].

pub mod control;
pub mod coordinator;
pub mod job;
pub mod partition;
pub mod recovery;
pub mod runtime;
pub mod shadow;
pub mod stages;
pub mod stream;
pub mod subtask;
pub mod swap;
pub mod upgrade;
